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

import dataclasses
import math
import os
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
        "disabled (with 1008; the safety net behind revocation signals)",
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
        doc="frames a node buffers for a slow reader before closing its connection with 4008; "
        "`hello.limits.outbound_queue`",
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

    def session_limits(self) -> SessionLimits:
        """The per-connection limits the gateway enforces and ``hello`` announces."""
        return SessionLimits(**{limit: getattr(self, name) for limit, name in SESSION_LIMITS.items()})


# --- parsing and checking ---------------------------------------------------------------------


def _shown_value(spec: Setting, value: object) -> str:
    if spec.secret:
        return "a value that is not shown (it is secret)"
    text = repr(value)
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
