"""Settings, read from ``BANKHUB_*`` environment variables (see README, "Production settings")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Settings", "NO_KEY_PROVIDER"]

NO_KEY_PROVIDER = (
    "no key provider: message bodies are encrypted at rest, so set BANKHUB_KEY_FILE to a key file "
    "(create one: bankhub keys init --file /etc/bankhub/keys.json) or BANKHUB_KEY_PROVIDER to an HSM/KMS "
    "provider factory ('package.module:factory')"
)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"BANKHUB_{name}")
    return value if value not in (None, "") else default


@dataclass
class Settings:
    database_url: str = ""
    redis_url: str | None = None
    # base64 of 32 bytes; seals payloads on Redis. Required with redis_url.
    cluster_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    tls_cert: str | None = None
    tls_key: str | None = None
    node_name: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    session_ttl_hours: float = 12.0
    # absolute session lifetime, counted from the password sign-in: refresh never extends a
    # session (or the sessions refreshed from it) past signed_in_at + this
    session_max_lifetime_hours: float = 24.0
    ws_ticket_ttl_seconds: int = 30
    # WebSocket gateway, per node: open sockets per user and per client address (beyond
    # them a handshake is refused 429 too_many_connections); seconds a request (headers,
    # body, WebSocket upgrade) may take to arrive (then 408); seconds a WebSocket may stay
    # without a frame from its client (then closed 4000; announced in hello.limits)
    max_sockets_per_user: int = 10
    max_sockets_per_ip: int = 200
    handshake_timeout_seconds: float = 10.0
    ws_idle_timeout_seconds: float = 90.0
    session_recheck_seconds: float = 30.0
    # official accounts: how often each node looks for scheduled notices that are due, and
    # adds its online delivery counts to storage
    notice_scheduler_seconds: float = 1.0
    notice_stats_seconds: float = 2.0
    allowed_origins: tuple[str, ...] = ()
    db_pool_size: int = 10
    commit_batch_max: int = 256
    # concurrent commit transactions; one keeps batches large (fewer commits per message), which
    # measured best on 2 cores; raise it when Postgres has cores to spare
    commit_writers: int = 1
    log_level: str = "info"
    # encryption at rest: a local KEK file (bankhub keys init), or an HSM/KMS provider factory
    key_file: str | None = None
    key_provider: str | None = None
    # transactional alerts: an alert no device received within alert_fallback_after_seconds
    # goes to the fallback channel (a factory, else the webhook; neither: no fallback), retried
    # with exponential backoff up to alert_retry_max_attempts, then dead-lettered
    alert_fallback_after_seconds: float = 60.0
    alert_channel: str | None = None
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    alert_retry_base_seconds: float = 5.0
    alert_retry_cap_seconds: float = 600.0
    alert_retry_max_attempts: int = 6
    alert_worker_seconds: float = 0.5

    @classmethod
    def from_env(cls) -> Settings:
        s = cls()
        s.database_url = _env("DATABASE_URL", "") or ""
        s.redis_url = _env("REDIS_URL")
        s.cluster_key = _env("CLUSTER_KEY")
        s.host = _env("HOST", s.host) or s.host
        s.port = int(_env("PORT", str(s.port)) or s.port)
        s.tls_cert = _env("TLS_CERT")
        s.tls_key = _env("TLS_KEY")
        s.node_name = _env("NODE_NAME", s.node_name) or s.node_name
        s.session_ttl_hours = float(_env("SESSION_TTL_HOURS", str(s.session_ttl_hours)) or s.session_ttl_hours)
        s.session_max_lifetime_hours = float(_env("SESSION_MAX_LIFETIME_HOURS", "") or s.session_max_lifetime_hours)
        s.max_sockets_per_user = int(_env("MAX_SOCKETS_PER_USER", "") or s.max_sockets_per_user)
        s.max_sockets_per_ip = int(_env("MAX_SOCKETS_PER_IP", "") or s.max_sockets_per_ip)
        s.handshake_timeout_seconds = float(_env("HANDSHAKE_TIMEOUT_SECONDS", "") or s.handshake_timeout_seconds)
        s.ws_idle_timeout_seconds = float(_env("WS_IDLE_TIMEOUT_SECONDS", "") or s.ws_idle_timeout_seconds)
        origins = _env("ALLOWED_ORIGINS", "") or ""
        s.allowed_origins = tuple(o.strip().rstrip("/") for o in origins.split(",") if o.strip())
        s.db_pool_size = int(_env("DB_POOL_SIZE", str(s.db_pool_size)) or s.db_pool_size)
        s.log_level = _env("LOG_LEVEL", s.log_level) or s.log_level
        s.commit_writers = int(_env("COMMIT_WRITERS", str(s.commit_writers)) or s.commit_writers)
        s.key_file = _env("KEY_FILE")
        s.key_provider = _env("KEY_PROVIDER")
        s.notice_scheduler_seconds = float(_env("NOTICE_SCHEDULER_SECONDS", str(s.notice_scheduler_seconds)) or 1.0)
        s.alert_fallback_after_seconds = float(_env("ALERT_FALLBACK_AFTER_SECONDS", "") or s.alert_fallback_after_seconds)
        s.alert_channel = _env("ALERT_CHANNEL")
        s.alert_webhook_url = _env("ALERT_WEBHOOK_URL")
        s.alert_webhook_secret = _env("ALERT_WEBHOOK_SECRET")
        s.alert_retry_base_seconds = float(_env("ALERT_RETRY_BASE_SECONDS", "") or s.alert_retry_base_seconds)
        s.alert_retry_cap_seconds = float(_env("ALERT_RETRY_CAP_SECONDS", "") or s.alert_retry_cap_seconds)
        s.alert_retry_max_attempts = int(_env("ALERT_RETRY_MAX_ATTEMPTS", "") or s.alert_retry_max_attempts)
        return s

    def validate(self) -> None:
        if not self.database_url:
            raise ValueError("BANKHUB_DATABASE_URL is required")
        if self.redis_url and not self.cluster_key:
            raise ValueError("BANKHUB_CLUSTER_KEY is required with BANKHUB_REDIS_URL (generate one: bankhub keygen)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("BANKHUB_TLS_CERT and BANKHUB_TLS_KEY go together")
        if self.max_sockets_per_user < 1 or self.max_sockets_per_ip < 1:
            raise ValueError("BANKHUB_MAX_SOCKETS_PER_USER and BANKHUB_MAX_SOCKETS_PER_IP must be at least 1")
        if not (self.handshake_timeout_seconds > 0 and self.ws_idle_timeout_seconds > 0):
            raise ValueError("BANKHUB_HANDSHAKE_TIMEOUT_SECONDS and BANKHUB_WS_IDLE_TIMEOUT_SECONDS must be positive")
        if not self.session_max_lifetime_hours > 0:
            raise ValueError("BANKHUB_SESSION_MAX_LIFETIME_HOURS must be positive")
        if not (self.key_file or self.key_provider):
            raise ValueError(NO_KEY_PROVIDER)
