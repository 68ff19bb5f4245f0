"""Every tunable of a node, declared once: name, type, default, environment variable, doc.

Each field of :class:`Settings` is written with :func:`setting`, which records its
``BANKHUB_*`` variable, its doc and its bounds in the dataclass field's metadata. From that
one declaration come :meth:`Settings.from_env` (parse each variable by the field's type;
a value that does not parse or is out of bounds raises :class:`SettingsError` naming the
variable), the bounds check of every instance (``__post_init__``), and the README's
settings table (:func:`settings_table`, printed by ``bankhub settings``; a unit test fails
when README differs from it).

``Settings`` is frozen: a variant is made with :func:`dataclasses.replace`, never by
assignment. :meth:`Settings.validate` adds what a production node needs beyond each
field's bounds (a database, a key provider, settings that go together).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from .protocol.frames import MAX_TEXT_CHARS
from .protocol.session import SessionLimits

__all__ = [
    "Settings",
    "SettingsError",
    "Setting",
    "NO_KEY_PROVIDER",
    "ENV_PREFIX",
    "SESSION_LIMITS",
    "setting",
    "specs",
    "settings_table",
]

ENV_PREFIX = "BANKHUB_"

NO_KEY_PROVIDER = (
    "no key provider: message bodies are encrypted at rest, so set BANKHUB_KEY_FILE to a key file "
    "(create one: bankhub keys init --file /etc/bankhub/keys.json) or BANKHUB_KEY_PROVIDER to an HSM/KMS "
    "provider factory ('package.module:factory')"
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""What uvicorn and the standard library both accept as a log level."""

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting that does not parse or is out of bounds; the message names its variable."""


@dataclass(frozen=True, slots=True)
class Setting:
    """What :func:`setting` records about one field (``dataclasses.Field.metadata["setting"]``)."""

    env: str
    """The full variable name, ``BANKHUB_...``."""
    doc: str
    """What it does, for operators (a cell of the README's table: Markdown, one line)."""
    shown: str | None = None
    """The table's Default cell when the value itself does not say it (``required``, ``unset: ...``)."""
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    """Parses the variable's text instead of the field type's parser."""
    secret: bool = False
    """Holds a password, key or token: left out of ``repr`` and of every error message."""


@overload
def setting(
    default: T, *, env: str, doc: str, shown: str | None = ..., gt: float | None = ..., ge: float | None = ...,
    le: float | None = ..., choices: tuple[str, ...] = ..., parse: Callable[[str], Any] | None = ..., secret: bool = ...,
) -> T: ...
@overload
def setting(
    *, factory: Callable[[], T], env: str, doc: str, shown: str | None = ..., gt: float | None = ...,
    ge: float | None = ..., le: float | None = ..., choices: tuple[str, ...] = ..., parse: Callable[[str], Any] | None = ...,
    secret: bool = ...,
) -> T: ...
def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    env: str,
    doc: str,
    shown: str | None = None,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    secret: bool = False,
) -> Any:
    """One field of :class:`Settings`: its default (or ``factory``), its variable ``BANKHUB_<env>``,
    its doc, and the bounds every value must keep (``gt``/``ge``/``le``, or one of ``choices``).
    A ``secret`` one (a password, key or token) is never shown: not in ``repr``, not in errors."""
    meta = {"setting": Setting(ENV_PREFIX + env, doc, shown, gt, ge, le, choices, parse, secret)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta, repr=not secret)
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def _words(text: str) -> tuple[str, ...]:
    """A comma-separated list, each item stripped, empty ones dropped."""
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _origins(text: str) -> tuple[str, ...]:
    # browsers send an Origin without a trailing slash; an operator may write one
    return tuple(o.rstrip("/") for o in _words(text))


def _domains(text: str) -> tuple[str, ...]:
    # host names compare in lower case; a trailing dot or slash an operator may write is not part of one
    return tuple(d.lower().rstrip("/.") for d in _words(text))


def _otlp_url(text: str) -> str:
    url = text.strip()
    if url and not (url.startswith(("http://", "https://")) and len(url) > len("https://")):
        raise ValueError("an http:// or https:// OTLP traces URL, or empty")
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        # credentials in the URL would be shown wherever the setting is (bankhub settings, errors)
        raise ValueError("an OTLP traces URL without user:password@ (set OTEL_EXPORTER_OTLP_HEADERS for the collector's auth)")
    return url


METRICS_TOKEN_MIN = 16
"""The shortest ``BANKHUB_METRICS_TOKEN`` accepted."""


def _metrics_token(text: str) -> str:
    # stripped (a trailing newline of a file would never match); visible ASCII: headers arrive latin-1 decoded
    token = text.strip()
    if len(token) < METRICS_TOKEN_MIN or not all("!" <= c <= "~" for c in token):
        raise ValueError(f"at least {METRICS_TOKEN_MIN} visible ASCII characters, no spaces (openssl rand -hex 32)")
    return token


_LIMITS = SessionLimits()
"""The protocol's default per-connection limits: the WebSocket settings' defaults."""

SESSION_LIMITS = {
    "max_frame_bytes": "ws_max_frame_bytes",
    "max_text_chars": "ws_max_text_chars",
    "max_sync_limit": "ws_max_sync_limit",
    "frames_per_second": "ws_frames_per_second",
    "frame_burst": "ws_frame_burst",
    "outbound_queue": "ws_outbound_queue",
    "max_strikes": "ws_max_strikes",
    "strike_window": "ws_strike_window_seconds",
    "idle_timeout": "ws_idle_timeout_seconds",
}
"""Each field of the sans-I/O :class:`SessionLimits` and the :class:`Settings` field it comes from
(protocol code never reads settings; :meth:`Settings.session_limits` hands them over)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """A node's settings. ``Settings.from_env()`` reads them; ``Settings(...)`` (tests, ``bankhub dev``) sets them."""

    # --- where things are -------------------------------------------------------------------
    database_url: str = setting(
        "", env="DATABASE_URL", secret=True, doc="Postgres DSN (`postgresql://user:pass@host:5432/bankhub`)", shown="required"
    )
    redis_url: str | None = setting(
        None, env="REDIS_URL", secret=True, shown="unset: in-process broker, single node",
        doc="Redis ≥ 7 / Valkey URL; when set, the Redis broker links the nodes (sharded pub/sub where available)",
    )
    cluster_key: str | None = setting(
        None, env="CLUSTER_KEY", secret=True, shown="required with `BANKHUB_REDIS_URL`",
        doc="base64 of 32 bytes (`bankhub keygen`); seals every payload on Redis with AES-256-GCM, so Redis never "
        "holds message text. Same value on every node",
    )
    key_file: str | None = setting(
        None, env="KEY_FILE", shown="required (or `BANKHUB_KEY_PROVIDER`)",
        doc="key file holding the KEKs that wrap each conversation's data key (`bankhub keys init --file PATH`; JSON, "
        "mode 0600; same file on every node, kept out of database backups). Message bodies, service-desk notes and "
        "CSAT comments are AES-256-GCM at rest: see [docs/encryption-at-rest.md](docs/encryption-at-rest.md)",
    )
    key_provider: str | None = setting(
        None, env="KEY_PROVIDER", shown="unset",
        doc="`package.module:factory` returning an HSM/KMS key provider, instead of a key file",
    )
    host: str = setting("127.0.0.1", env="HOST", doc="listen address")
    port: int = setting(8000, env="PORT", doc="listen port", ge=0, le=65535)
    tls_cert: str | None = setting(
        None, env="TLS_CERT", shown="unset (terminate TLS at the load balancer)",
        doc="PEM certificate chain: serve HTTPS/WSS directly (with `BANKHUB_TLS_KEY`)",
    )
    tls_key: str | None = setting(None, env="TLS_KEY", shown="unset", doc="PEM private key of `BANKHUB_TLS_CERT`")
    allowed_origins: tuple[str, ...] = setting(
        (), env="ALLOWED_ORIGINS", shown="none", parse=_origins,
        doc="comma-separated browser origins allowed to open WebSockets (besides the hub's own)",
    )
    node_name: str = setting(
        factory=lambda: f"{os.uname().nodename}-{os.getpid()}", env="NODE_NAME", shown="host-pid",
        doc="shown in `hello` and `/readyz`",
    )
    log_level: str = setting(
        "info", env="LOG_LEVEL", choices=LOG_LEVELS, parse=str.lower,
        doc="the server's log level: `debug`, `info`, `warning`, `error`, `critical` (or `trace`)",
    )
    log_format: str = setting(
        "text", env="LOG_FORMAT", choices=("text", "json"), parse=str.lower,
        doc="`text`, or `json`: one JSON object per line with `timestamp` (UTC), `level`, `logger`, `event`, `node` and, "
        "where they apply, `request_id`, `connection_id`, `user_id`, `exception` (set `json` in production: "
        "[docs/operations.md](docs/operations.md#logs-and-traces))",
    )
    otel_endpoint: str = setting(
        "", env="OTEL_ENDPOINT", shown="unset: no tracing", parse=_otlp_url,
        doc="an OTLP/HTTP traces URL (`http://collector:4318/v1/traces`): OpenTelemetry spans of each message's send, "
        "commit, publish and delivery go there (needs the `otel` extra: `pip install bankhub[otel]`)",
    )
    otel_sample_ratio: float = setting(
        1.0, env="OTEL_SAMPLE_RATIO", ge=0, le=1,
        doc="the share of sends traced when `BANKHUB_OTEL_ENDPOINT` is set (a sampled send's commit, publish and deliveries "
        "are recorded with it: [docs/operations.md](docs/operations.md#traces))",
    )

    # --- sessions -----------------------------------------------------------------------------
    session_ttl_hours: float = setting(
        12.0, env="SESSION_TTL_HOURS", gt=0,
        doc="bearer-token lifetime; `POST /v1/sessions/refresh` trades a token for a new one",
    )
    session_max_lifetime_hours: float = setting(
        24.0, env="SESSION_MAX_LIFETIME_HOURS", gt=0,
        doc="absolute session lifetime, counted from the password sign-in: a refreshed session keeps that time and "
        "expires at the latest this long after it; refreshing a session already at that deadline answers "
        "`401 reauthentication_required` (sign in with the password again)",
    )
    ws_ticket_ttl_seconds: int = setting(
        30, env="WS_TICKET_TTL_SECONDS", ge=1,
        doc="seconds a single-use WebSocket ticket (`POST /v1/ws-tickets`, for browsers) stays valid",
    )
    session_recheck_seconds: float = setting(
        30.0, env="SESSION_RECHECK_SECONDS", gt=0,
        doc="how often each node closes its WebSockets whose session was revoked or expired or whose user was "
        "disabled (with 1008; the safety net behind revocation signals) and compares up to 5,000 of its cached "
        "sessions with Postgres (docs/security.md)",
    )
    session_cache_size: int = setting(
        50_000, env="SESSION_CACHE_SIZE", ge=0,
        doc="verified sessions each node keeps (least recently used first out) so that a reconnect or a bearer "
        "request authenticates without Postgres; dropped on every revocation signal and whenever the broker link "
        "is lost; about 2 KB each, per worker; 0 turns the cache off (docs/security.md)",
    )
    session_cache_seconds: float = setting(
        60.0, env="SESSION_CACHE_SECONDS", ge=0, le=300,
        doc="longest time a cached session is used without asking Postgres again (never past the session's "
        "own expiry; 0 turns the cache off)",
    )

    # --- WebSocket gateway, per node ----------------------------------------------------------
    max_sockets_per_user: int = setting(
        10, env="MAX_SOCKETS_PER_USER", ge=1,
        doc="open WebSockets per user on one node; beyond them the handshake is refused `429 too_many_connections`",
    )
    max_sockets_per_ip: int = setting(
        200, env="MAX_SOCKETS_PER_IP", ge=1,
        doc="open WebSockets per client address on one node; beyond them the handshake is refused "
        "`429 too_many_connections` (the address is the TCP peer's, or the client address a proxy listed in "
        "uvicorn's `FORWARDED_ALLOW_IPS` forwards; behind a load balancer that is not listed there, size this cap for it)",
    )
    handshake_timeout_seconds: float = setting(
        10.0, env="HANDSHAKE_TIMEOUT_SECONDS", gt=0,
        doc="seconds a request (headers, body, WebSocket upgrade) may take to arrive; a slower one is answered "
        "`408 request_timeout` and its connection closed",
    )
    ws_idle_timeout_seconds: float = setting(
        _LIMITS.idle_timeout, env="WS_IDLE_TIMEOUT_SECONDS", gt=0,
        doc="a WebSocket with no frame from its client (a message or a WebSocket ping) for this long is closed with "
        "4000; announced as `hello.limits.idle_timeout` (keep it well above the clients' keep-alive: the SDK pings "
        "every 20 s)",
    )
    ws_ping_seconds: float = setting(
        20.0, env="WS_PING_SECONDS", gt=0,
        doc="the node sends a WebSocket ping this often and closes a connection whose pong does not come within as long",
    )
    ws_max_frame_bytes: int = setting(
        _LIMITS.max_frame_bytes, env="WS_MAX_FRAME_BYTES", ge=1024,
        doc="largest client frame; a larger one closes the connection with 1009; `hello.limits.max_frame_bytes`",
    )
    ws_max_text_chars: int = setting(
        _LIMITS.max_text_chars, env="WS_MAX_TEXT_CHARS", ge=1, le=MAX_TEXT_CHARS,
        doc=f"longest message text a `send` frame may carry (at most the protocol's {MAX_TEXT_CHARS}); "
        "`hello.limits.max_text_chars`",
    )
    ws_max_sync_limit: int = setting(
        _LIMITS.max_sync_limit, env="WS_MAX_SYNC_LIMIT", ge=1, le=500,  # the sync frames' own `limit` maximum
        doc="most messages per conversation a node sends when it fills a gap by itself (at most 500, the `sync` "
        "frame's own maximum); `hello.limits.max_sync_limit`",
    )
    ws_frames_per_second: float = setting(
        _LIMITS.frames_per_second, env="WS_FRAMES_PER_SECOND", gt=0,
        doc="client frames per second each connection may send on average (a token bucket; beyond it `rate_limited`); "
        "`hello.limits.frames_per_second`",
    )
    ws_frame_burst: int = setting(
        _LIMITS.frame_burst, env="WS_FRAME_BURST", ge=1,
        doc="client frames a connection may send at once before the rate applies; `hello.limits.frame_burst`",
    )
    ws_outbound_queue: int = setting(
        _LIMITS.outbound_queue, env="WS_OUTBOUND_QUEUE", ge=1,
        doc="frames a node queues for a connection whose socket does not take them before closing it with "
        "4008 (besides these, its transport buffers up to its 64 KiB high-water mark plus one batch of at "
        "most 64 KiB); a burst to a client that keeps up is written, however long; `hello.limits.outbound_queue`",
    )
    ws_max_strikes: int = setting(
        _LIMITS.max_strikes, env="WS_MAX_STRIKES", ge=0,
        doc="rejected frames a connection may send within the strike window; one more closes it with 1008; "
        "`hello.limits.max_strikes`",
    )
    ws_strike_window_seconds: float = setting(
        _LIMITS.strike_window, env="WS_STRIKE_WINDOW_SECONDS", gt=0,
        doc="the strike window, in seconds; `hello.limits.strike_window`",
    )

    # --- storage and the group committer ------------------------------------------------------
    db_pool_size: int = setting(10, env="DB_POOL_SIZE", ge=1, doc="Postgres connections per node")
    commit_batch_max: int = setting(
        256, env="COMMIT_BATCH_MAX", ge=1, doc="most messages one group-commit transaction writes",
    )
    # one writer keeps batches large (fewer commits per message), which measured best on 2 cores
    commit_writers: int = setting(
        1, env="COMMIT_WRITERS", ge=1,
        doc="concurrent group-commit transactions per node (messages of one conversation always share one, keeping "
        "their order); more only helps when Postgres has idle cores",
    )

    # --- recall and edit of one's own message (measured from the message's commit, hub clock)
    message_recall_seconds: float = setting(
        120.0, env="MESSAGE_RECALL_SECONDS", ge=0,
        doc="how long after sending a text message its sender may recall (withdraw) it; 0: never",
    )
    message_edit_seconds: float = setting(
        900.0, env="MESSAGE_EDIT_SECONDS", ge=0,
        doc="how long after sending a text message its sender may edit it; 0: never",
    )
    message_max_edits: int = setting(
        20, env="MESSAGE_MAX_EDITS", ge=0,
        doc="how many times one message may be edited (each edit keeps the text it replaced for compliance)",
    )

    # --- groups (docs/protocol.md, "Groups") ------------------------------------------------
    group_max_members: int = setting(
        500, env="GROUP_MAX_MEMBERS", ge=2, le=5000,
        doc="most members of a group its owner and admins manage (the creator counted); org groups follow the org "
        "tree and have no cap",
    )
    group_reconcile_seconds: float = setting(
        60.0, env="GROUP_RECONCILE_SECONDS", gt=0,
        doc="how often each node re-derives every org group's members from the org tree (a safety net: user "
        "actions reconcile at once)",
    )

    # --- read receipts, typing, presence (docs/protocol.md, "Receipts, typing and presence") ---
    receipts_max_members: int = setting(
        100, env="RECEIPTS_MAX_MEMBERS", ge=2, le=1000,
        doc="read positions are shown (live `receipt` frames and `GET /v1/conversations/{id}/receipts`) only in "
        "conversations of at most this many members; above it each member sees only their own",
    )
    typing_max_members: int = setting(
        100, env="TYPING_MAX_MEMBERS", ge=2, le=1000,
        doc="`typing` is forwarded only in conversations of at most this many members",
    )
    typing_interval_seconds: float = setting(
        3.0, env="TYPING_INTERVAL_SECONDS", gt=0, le=60,
        doc="at most one `typing` (active) forwarded per member per conversation per this many seconds",
    )
    typing_ttl_seconds: float = setting(
        6.0, env="TYPING_TTL_SECONDS", gt=0, le=120,
        doc="receivers clear a typing indicator not refreshed for this long (sent as `ttl_ms`), so a lost "
        "\"stopped\" clears",
    )
    typing_max_tracked: int = setting(
        10000, env="TYPING_MAX_TRACKED", ge=1,
        doc="most (member, conversation) typing states a node keeps; past it `typing` answers `rate_limited`",
    )
    presence_max_watch: int = setting(
        100, env="PRESENCE_MAX_WATCH", ge=1, le=1000,
        doc="most users one connection may watch (`watch_presence`) or one `GET /v1/presence` may ask about",
    )
    presence_max_watchers: int = setting(
        1000, env="PRESENCE_MAX_WATCHERS", ge=1,
        doc="most connections of one node that watch one user; more are answered but get no live `presence`",
    )
    presence_max_watched: int = setting(
        100000, env="PRESENCE_MAX_WATCHED", ge=1,
        doc="most distinct users the connections of one node watch together; more get no live `presence`",
    )
    presence_node_ttl_seconds: float = setting(
        30.0, env="PRESENCE_NODE_TTL_SECONDS", ge=3,
        doc="a node's liveness mark in the broker lasts this long (refreshed every third of it, one write per node, "
        "not per connection); a crashed node's users read as offline after it",
    )
    presence_last_seen_flush_seconds: float = setting(
        5.0, env="PRESENCE_LAST_SEEN_FLUSH_SECONDS", gt=0,
        doc="how often a node writes the last-seen times of users whose last connection closed (one statement)",
    )

    # --- metrics (docs/operations.md, "Metrics") ------------------------------------------------
    metrics_token: str = setting(
        "", env="METRICS_TOKEN", secret=True, shown="unset: loopback clients only", parse=_metrics_token,
        doc="bearer token a Prometheus server presents to `GET /metrics` (at least 16 visible ASCII characters); unset, "
        "only unproxied clients on a loopback address are answered. Any other request is answered 404 "
        "([docs/operations.md](docs/operations.md#metrics))",
    )

    # --- periodic work of each node -----------------------------------------------------------
    notice_scheduler_seconds: float = setting(
        1.0, env="NOTICE_SCHEDULER_SECONDS", gt=0,
        doc="how often each node looks for scheduled official-account notices that are due",
    )
    notice_stats_seconds: float = setting(
        2.0, env="NOTICE_STATS_SECONDS", gt=0,
        doc="how often each node adds its online notice delivery counts to storage",
    )
    desk_sweep_seconds: float = setting(
        5.0, env="DESK_SWEEP_SECONDS", gt=0,
        doc="how often each node routes the service-desk queues that have customers waiting (a safety net: routing "
        "also runs on every change) and re-reads which RMs are unavailable",
    )

    # --- transactional alerts: an alert no device received within alert_fallback_after_seconds
    # goes to the fallback channel (a factory, else the webhook; neither: no fallback), retried
    # with exponential backoff up to alert_retry_max_attempts, then dead-lettered
    alert_fallback_after_seconds: float = setting(
        60.0, env="ALERT_FALLBACK_AFTER_SECONDS", ge=0,
        doc="how long an alert waits for a device before it goes to the fallback channel",
    )
    alert_webhook_url: str | None = setting(
        None, env="ALERT_WEBHOOK_URL", secret=True, shown="unset: no fallback",
        doc="the fallback channel for alerts no device received in time: an SMS/push gateway's webhook (`https://`, "
        "plain `http://` only to loopback)",
    )
    alert_webhook_secret: str | None = setting(
        None, env="ALERT_WEBHOOK_SECRET", secret=True, shown="unset: unsigned",
        doc="signs the webhook's requests (as system `bankhub`)",
    )
    alert_channel: str | None = setting(
        None, env="ALERT_CHANNEL", shown="unset",
        doc="`package.module:factory` of another fallback channel, instead of the webhook",
    )
    alert_retry_base_seconds: float = setting(
        5.0, env="ALERT_RETRY_BASE_SECONDS", gt=0,
        doc="the fallback channel's first retry delay; attempt n waits `min(cap, base × 2^(n−1))`",
    )
    alert_retry_cap_seconds: float = setting(
        600.0, env="ALERT_RETRY_CAP_SECONDS", gt=0, doc="the fallback channel's longest retry delay",
    )
    alert_retry_max_attempts: int = setting(
        6, env="ALERT_RETRY_MAX_ATTEMPTS", ge=1,
        doc="fallback attempts of one alert before it is dead-lettered",
    )
    alert_worker_seconds: float = setting(
        0.5, env="ALERT_WORKER_SECONDS", gt=0,
        doc="how often each node's fallback worker looks for due alerts (with a fallback channel)",
    )
    alert_delivered_seconds: float = setting(
        0.2, env="ALERT_DELIVERED_SECONDS", gt=0,
        doc="how often each node records which alerts reached a device",
    )
    alert_sweep_seconds: float = setting(
        10.0, env="ALERT_SWEEP_SECONDS", gt=0,
        doc="how often each node expires unread alerts past their time (unread counts never wait for it)",
    )
    alert_ingest_batch_max: int = setting(
        64, env="ALERT_INGEST_BATCH_MAX", ge=1, le=1000,
        doc="most single alerts (`POST /v1/notifications`) one group-commit transaction writes; concurrent requests "
        "share a transaction, each keeping its own answer",
    )

    # --- contacts (docs/protocol.md, "Contacts"): every list a user can grow is bounded
    contacts_max_contacts: int = setting(
        1000, env="CONTACTS_MAX_CONTACTS", ge=1,
        doc="most contacts (friends) a user may have; accepting or redeeming past it is refused `409 conflict`",
    )
    contacts_max_pending: int = setting(
        50, env="CONTACTS_MAX_PENDING", ge=1,
        doc="most unanswered contact requests a user may have sent (within `BANKHUB_CONTACTS_REQUEST_TTL_DAYS`, "
        "withdrawn ones included); one more is refused `409 conflict`",
    )
    contacts_max_incoming: int = setting(
        200, env="CONTACTS_MAX_INCOMING", ge=1,
        doc="most pending contact requests a user is shown; past it a new request is kept from them (its sender "
        "is answered as always)",
    )
    contacts_max_blocks: int = setting(
        1000, env="CONTACTS_MAX_BLOCKS", ge=1, doc="most users one user may block",
    )
    contacts_max_invites: int = setting(
        5, env="CONTACTS_MAX_INVITES", ge=1,
        doc="most unused, unexpired invite codes a user may hold; one more is refused `409 conflict`",
    )
    contacts_invite_ttl_seconds: int = setting(
        86400, env="CONTACTS_INVITE_TTL_SECONDS", ge=60, le=30 * 86400,
        doc="how long an invite code (QR code) can be redeemed; each code works once",
    )
    contacts_request_ttl_days: int = setting(
        30, env="CONTACTS_REQUEST_TTL_DAYS", ge=1, le=365,
        doc="how long an unanswered contact request stays pending (and counts against its sender's limit)",
    )

    # --- pictures and voice (media): caps, signed URLs, blob storage, the optional scanner
    media_max_image_bytes: int = setting(
        10 * 1024 * 1024, env="MEDIA_MAX_IMAGE_BYTES", ge=1024, le=256 * 1024 * 1024,
        doc="largest picture upload (`POST /v1/conversations/{id}/media`); larger: `413 too_large`",
    )
    media_max_voice_bytes: int = setting(
        2 * 1024 * 1024, env="MEDIA_MAX_VOICE_BYTES", ge=1024, le=256 * 1024 * 1024,
        doc="largest voice-note upload; larger: `413 too_large`",
    )
    media_max_pixels: int = setting(
        40_000_000, env="MEDIA_MAX_PIXELS", ge=1, le=89_000_000,
        doc="most pixels (width × height, read from the file's header before anything is decoded) a picture may have; "
        "more: `413 too_many_pixels`",
    )
    media_max_voice_seconds: float = setting(
        120.0, env="MEDIA_MAX_VOICE_SECONDS", gt=0, le=3600,
        doc="longest voice note; longer: `422 too_long`",
    )
    media_url_ttl_seconds: int = setting(
        300, env="MEDIA_URL_TTL_SECONDS", ge=10, le=86400,
        doc="lifetime of the signed media URLs `GET /v1/media/{id}` hands out (bound to the user, the media item and "
        "the variant)",
    )
    media_url_key: str | None = setting(
        None, env="MEDIA_URL_KEY", secret=True, shown="unset: derived from the active KEK",
        doc="base64 of 32 bytes (`bankhub keygen`) that signs media URLs; same value on every node. Unset, the key is "
        "derived from the key provider (its wrap of a fixed label under the active KEK: set this with a provider whose "
        "wrapping is randomised)",
    )
    media_blob_backend: str = setting(
        "local", env="MEDIA_BLOB_BACKEND", choices=("local", "s3"),
        doc="where encrypted media bytes are kept: `local` (a directory, `BANKHUB_MEDIA_DIR`) or `s3` (S3-compatible "
        "object storage, `BANKHUB_MEDIA_S3_*`)",
    )
    media_dir: str | None = setting(
        None, env="MEDIA_DIR", shown="unset: a per-database directory under the system temp directory (development)",
        doc="the local blob store's directory; with several nodes a volume they all mount",
    )
    media_s3_endpoint: str | None = setting(
        None, env="MEDIA_S3_ENDPOINT", shown="unset", doc="S3-compatible endpoint URL (`https://s3.example.com`), path-style",
    )
    media_s3_bucket: str | None = setting(None, env="MEDIA_S3_BUCKET", shown="unset", doc="the bucket media go to")
    media_s3_region: str = setting("us-east-1", env="MEDIA_S3_REGION", doc="the region requests are signed for (SigV4)")
    media_s3_access_key: str | None = setting(None, env="MEDIA_S3_ACCESS_KEY", secret=True, shown="unset", doc="S3 access key id")
    media_s3_secret_key: str | None = setting(None, env="MEDIA_S3_SECRET_KEY", secret=True, shown="unset", doc="S3 secret access key")
    media_clamd: str | None = setting(
        None, env="MEDIA_CLAMD", shown="unset: no scanning",
        doc="ClamAV's clamd, `host:port` or `unix:/path/to/clamd.sock`: every upload stays `quarantined` until clamd "
        "(INSTREAM) finds it clean, and is `rejected` if it finds something",
    )
    media_scan_seconds: float = setting(
        10.0, env="MEDIA_SCAN_SECONDS", gt=0,
        doc="how often each node retries scanning media still in quarantine (with `BANKHUB_MEDIA_CLAMD`)",
    )
    media_max_pending: int = setting(
        50, env="MEDIA_MAX_PENDING", gt=0,
        doc="uploads a user may hold that no message carries yet (drafts, in every conversation); one more: "
        "`409 media_quota` until one is sent or swept",
    )
    media_max_pending_bytes: int = setting(
        200 * 1024 * 1024, env="MEDIA_MAX_PENDING_BYTES", gt=0,
        doc="bytes (as uploaded) of those unsent uploads a user may hold; at or over it: `409 media_quota`",
    )
    media_unattached_seconds: float = setting(
        86400.0, env="MEDIA_UNATTACHED_SECONDS", gt=0,
        doc="an upload no message carries this long after it was uploaded (never sent, refused by the scanner) is "
        "deleted, its row and its blobs",
    )
    media_sweep_seconds: float = setting(
        300.0, env="MEDIA_SWEEP_SECONDS", gt=0,
        doc="how often each node deletes unsent uploads older than `BANKHUB_MEDIA_UNATTACHED_SECONDS`",
    )

    # --- the embeddable service widget (docs/widget.md) -------------------------------------------
    widget_dev_origins: str = setting(
        "off", env="WIDGET_DEV_ORIGINS", choices=("off", "loopback"),
        doc="`loopback` also honours widget partner origins on plain `http://127.0.0.1`, `http://localhost` or "
        "`http://[::1]` (development and tests; `bankhub dev` sets it); `off`: only `https` origins are framed and "
        "trusted",
    )
    widget_token_max_lifetime_seconds: int = setting(
        300, env="WIDGET_TOKEN_MAX_LIFETIME_SECONDS", ge=10, le=3600,
        doc="longest life (`exp - iat`) of a partner's signed visitor token; each token is exchanged once",
    )
    widget_session_minutes: int = setting(
        60, env="WIDGET_SESSION_MINUTES", ge=1, le=720,
        doc="lifetime of a widget visitor's session (held in the frame's memory only; a new token opens a new one)",
    )

    # --- verified service cards -------------------------------------------------------------
    card_domains: tuple[str, ...] = setting(
        ("icbc.com.cn",), env="CARD_DOMAINS", parse=_domains,
        shown="`icbc.com.cn`",
        doc="comma-separated domains a service card's image and `https://` action links may point to (each domain and "
        "its subdomains); `bankhub://` deep links are always allowed",
    )

    # --- dlp: data-loss prevention (docs/compliance.md, "Data-loss prevention") ------------------
    dlp_customer_to_staff: str = setting(
        "mask", env="DLP_CUSTOMER_TO_STAFF", choices=("allow", "mask", "refuse"),
        doc="what a customer's text carrying a card, resident ID, account number, CVV or one-time code gets when "
        "staff receive it: `mask` (stored and delivered masked, the sender told), `refuse` (`sensitive_data`) or "
        "`allow`; a widget visitor counts as a customer",
    )
    dlp_staff_to_customer: str = setting(
        "refuse", env="DLP_STAFF_TO_CUSTOMER", choices=("allow", "mask", "refuse"),
        doc="the same from staff to a customer; a CVV or a one-time code from staff to a customer is always refused",
    )
    dlp_customer_to_customer: str = setting(
        "mask", env="DLP_CUSTOMER_TO_CUSTOMER", choices=("allow", "mask", "refuse"),
        doc="the same between customers (a CVV or a one-time code is masked at least, in every direction)",
    )
    dlp_staff_to_staff: str = setting(
        "mask", env="DLP_STAFF_TO_STAFF", choices=("allow", "mask", "refuse"),
        doc="the same between staff; with several recipients the strictest of their directions applies",
    )
    dlp_search_burst: int = setting(
        20, env="DLP_SEARCH_BURST", ge=1, le=1000,
        doc="investigator searches by value (`POST /v1/compliance/dlp/search`) one officer may make in a burst; with "
        "`BANKHUB_DLP_SEARCH_PER_HOUR` it bounds sweeps that would rebuild a masked value by trying candidates "
        "(429 `rate_limited`; the limiter unreachable: 503 `unavailable`, fail closed)",
    )
    dlp_search_per_hour: int = setting(
        60, env="DLP_SEARCH_PER_HOUR", ge=1, le=100_000,
        doc="searches by value per officer per hour once the burst is spent",
    )

    # --- exports (eDiscovery, docs/compliance.md) ----------------------------------------------
    export_max_messages: int = setting(
        100_000, env="EXPORT_MAX_MESSAGES", ge=1, le=10_000_000,
        doc="most messages one eDiscovery export may hold; a scope with more fails (`export.failed`, "
        "`too many messages in scope`): narrow it by date, custodian, conversation or keyword",
    )
    export_max_attachment_bytes: int = setting(
        256 * 1024 * 1024, env="EXPORT_MAX_ATTACHMENT_BYTES", ge=0, le=64 * 1024 * 1024 * 1024,
        doc="most bytes of pictures and voice notes one export copies; attachments past it are listed "
        "with `problem: size cap (BANKHUB_EXPORT_MAX_ATTACHMENT_BYTES)` instead of their bytes",
    )
    export_max_zip_bytes: int = setting(
        4 * 1024 * 1024 * 1024, env="EXPORT_MAX_ZIP_BYTES", ge=1024 * 1024, le=1024 * 1024 * 1024 * 1024,
        doc="most bytes of files one export may hold (and its zip); a bigger one fails (`export.failed`, "
        "`the export is too large`): narrow the scope. The build spools to the temp directory (`TMPDIR`), never to memory",
    )
    export_stale_seconds: float = setting(
        300.0, env="EXPORT_STALE_SECONDS", ge=30, le=86_400,
        doc="a running export whose build showed no sign of life this long (its node stopped or was lost) is "
        "marked failed (`interrupted`, audited `export.failed`); its requester or approver may retry it",
    )
    export_sweep_seconds: float = setting(
        60.0, env="EXPORT_SWEEP_SECONDS", ge=1, le=3600,
        doc="how often each node marks stale export builds interrupted and expires old exports (also at start-up)",
    )
    export_retention_days: int = setting(
        30, env="EXPORT_RETENTION_DAYS", ge=1, le=3650,
        doc="a ready export expires this many days after it was built: its data key is destroyed, its stored "
        "copy deleted (`export.expired`); downloads then answer `410 gone`",
    )
    export_batch_messages: int = setting(
        500, env="EXPORT_BATCH_MESSAGES", ge=1, le=10_000,
        doc="messages an export reads and decrypts per batch (its progress is saved after each)",
    )
    export_request_ttl_hours: int = setting(
        168, env="EXPORT_REQUEST_TTL_HOURS", ge=1, le=2160,
        doc="an export request not approved within this many hours can no longer be approved (`409 conflict`): "
        "reject it and file it again",
    )

    # --- holds: legal hold (docs/compliance.md, "Legal hold") ------------------------------------
    hold_release_ttl_hours: int = setting(
        168, env="HOLD_RELEASE_TTL_HOURS", ge=1, le=2160,
        doc="a requested release of a legal hold not approved within this many hours can no longer be approved "
        "(`409 conflict`; the hold stays active): reject it and ask again",
    )

    # --- retention: policies, purge, erasure (docs/compliance.md, "Retention") ------------------
    retention_floor_days: int = setting(
        1827, env="RETENTION_FLOOR_DAYS", ge=1, le=36500,
        doc="records floor: no retention policy may be shorter (`422 below_floor`); five calendar years by default "
        "(PRC anti-money-laundering record keeping; 1827 days cover any five years with their leap days). The "
        "database keeps the highest floor any node ran with: lowering this setting does not lower it",
    )
    retention_purge_batch: int = setting(
        1000, env="RETENTION_PURGE_BATCH", ge=1, le=10_000,
        doc="messages a purge looks at per batch (one transaction each, under the legal holds' shared lock)",
    )
    retention_purge_interval_seconds: float = setting(
        0.0, env="RETENTION_PURGE_INTERVAL_SECONDS", ge=0,
        shown="`0` (off)",
        doc="when above 0 (at least 60 on a production node), each node starts a purge this often (one runs at a "
        "time across the cluster; an interrupted one is resumed first)",
    )
    retention_purge_stale_seconds: float = setting(
        300.0, env="RETENTION_PURGE_STALE_SECONDS", ge=5,
        doc="a running purge whose worker has not finished a batch for this long counts as interrupted: "
        "it may be resumed, and a new one may start",
    )
    retention_request_ttl_hours: int = setting(
        168, env="RETENTION_REQUEST_TTL_HOURS", ge=1, le=2160,
        doc="a retention policy change or erasure request not approved by a second compliance officer within this "
        "many hours can no longer be approved (`409 conflict`): reject it and ask again",
    )

    # --- supervision: review queue, rules, sampling (docs/compliance.md, "Supervision") ---------
    supervision_sample_rate: float = setting(
        0.02, env="SUPERVISION_SAMPLE_RATE", ge=0, le=1,
        doc="share of the messages RMs and service-desk agents send that is sampled into the review queue "
        "(a keyed hash of the message id, reproducible); `0` samples none",
    )
    supervision_reload_seconds: float = setting(
        5.0, env="SUPERVISION_RELOAD_SECONDS", gt=0, le=300,
        doc="a node compares its compiled rules with the stored rules' version at most this often (when it commits "
        "messages); a moved version is compiled in the background while the old rules keep serving: a rule changed "
        "on another node applies here within this time plus the compile, on the changing node at once",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.metadata["setting"], getattr(self, f.name), f.name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``BANKHUB_*`` variables (``os.environ`` by default); an unset or empty
        variable keeps the default. Raises :class:`SettingsError` naming a bad variable."""
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            spec: Setting = f.metadata["setting"]
            text = env.get(spec.env, "")
            if text == "":
                continue
            parse = spec.parse or _parser(hints[f.name])
            try:
                values[f.name] = parse(text)
            except ValueError as exc:
                raise SettingsError(f"{spec.env} must be {exc}, got {_shown_value(spec, text)}") from None
        return cls(**values)

    def validate(self) -> None:
        """What a production node (``bankhub serve``) needs beyond each field's bounds."""
        if not self.database_url:
            raise ValueError("BANKHUB_DATABASE_URL is required")
        if self.redis_url and not self.cluster_key:
            raise ValueError("BANKHUB_CLUSTER_KEY is required with BANKHUB_REDIS_URL (generate one: bankhub keygen)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("BANKHUB_TLS_CERT and BANKHUB_TLS_KEY go together")
        if not (self.key_file or self.key_provider):
            raise ValueError(NO_KEY_PROVIDER)
        if 0 < self.retention_purge_interval_seconds < 60:
            # a purge every few seconds would hold the holds' and policies' locks almost constantly
            raise ValueError("BANKHUB_RETENTION_PURGE_INTERVAL_SECONDS is 0 (off) or at least 60")
        self._validate_media()

    def _validate_media(self) -> None:
        s3 = (self.media_s3_endpoint, self.media_s3_bucket, self.media_s3_access_key, self.media_s3_secret_key)
        if self.media_blob_backend == "s3" and not all(s3):
            raise ValueError(
                "BANKHUB_MEDIA_BLOB_BACKEND=s3 needs BANKHUB_MEDIA_S3_ENDPOINT, BANKHUB_MEDIA_S3_BUCKET, "
                "BANKHUB_MEDIA_S3_ACCESS_KEY and BANKHUB_MEDIA_S3_SECRET_KEY"
            )
        if self.media_url_key is not None:
            try:
                raw = base64.b64decode(self.media_url_key, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError("BANKHUB_MEDIA_URL_KEY must be base64 of 32 bytes (bankhub keygen)")
        clamd = self.media_clamd
        if clamd is not None and not (clamd.startswith(("unix:/", "/")) or clamd.rpartition(":")[2].isdigit()):
            raise ValueError("BANKHUB_MEDIA_CLAMD must be host:port or unix:/path/to/clamd.sock")

    def session_limits(self) -> SessionLimits:
        """The per-connection limits the gateway enforces and ``hello`` announces."""
        return SessionLimits(**{limit: getattr(self, name) for limit, name in SESSION_LIMITS.items()})


# --- parsing and checking ---------------------------------------------------------------------


def _shown_value(spec: Setting, value: object) -> str:
    if spec.secret:
        return "a value that is not shown (it is secret)"
    text = re.sub(r"://[^/@\s]*@", "://[userinfo]@", repr(value))  # a URL's credentials are never echoed
    return text if len(text) <= 80 else text[:77] + "..."


# a parser raises ValueError saying what it wants: "BANKHUB_X must be <that>, got ..."
def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("a whole number") from None


def _float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value):
        raise ValueError("a finite number")
    return value


def _parser(tp: Any) -> Callable[[str], Any]:
    """The parser of a field type: ``str``, ``int``, ``float``, ``tuple[str, ...]`` (comma-separated),
    or any of them ``| None`` (unset: None)."""
    if tp is str:
        return str
    if tp is int:
        return _int
    if tp is float:
        return _float
    if typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, Ellipsis):
        return _words
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _parser(args[0])
    raise TypeError(f"no parser for settings of type {tp!r}")


def _check(spec: Setting, value: Any, name: str) -> None:
    def bad(want: str) -> SettingsError:
        return SettingsError(f"{spec.env} ({name}) must be {want}, got {_shown_value(spec, value)}")

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.gt is not None and not value > spec.gt:
            raise bad(f"greater than {spec.gt:g}")
        if spec.ge is not None and not value >= spec.ge:
            raise bad(f"at least {spec.ge:g}")
        if spec.le is not None and not value <= spec.le:
            raise bad(f"at most {spec.le:g}")
    if spec.choices and value not in spec.choices:
        raise bad("one of " + ", ".join(spec.choices))


# --- the documentation ------------------------------------------------------------------------


def specs() -> list[tuple[str, Setting]]:
    """Each field's name and :class:`Setting`, in declaration order."""
    return [(f.name, f.metadata["setting"]) for f in dataclasses.fields(Settings)]


def _shown(f: dataclasses.Field[Any]) -> str:
    spec: Setting = f.metadata["setting"]
    if spec.shown is not None:
        return spec.shown
    factory = f.default_factory
    value = factory() if f.default is dataclasses.MISSING and callable(factory) else f.default
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def settings_table(prefix: str = ENV_PREFIX) -> str:
    """The Markdown table of every variable whose name starts with ``prefix``: variable, meaning, default."""
    rows = ["| Variable | Meaning | Default |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        spec: Setting = f.metadata["setting"]
        if spec.env.startswith(prefix):
            rows.append(f"| `{spec.env}` | {spec.doc} | {_shown(f)} |")
    return "\n".join(rows) + "\n"
