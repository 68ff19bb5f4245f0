"""The node's log lines: plain text, or one JSON object per line, with the ids of the work.

The hub logs with the standard library everywhere (``logging.getLogger(__name__)``);
this module decides how those records are written. :func:`configure` with ``"json"``
(``BANKHUB_LOG_FORMAT=json``) renders every record of the process — uvicorn's included —
through :class:`structlog.stdlib.ProcessorFormatter` as one JSON object per line::

    {"timestamp": "2026-12-07T09:30:00.123456Z", "level": "info", "logger": "bankhub.access",
     "node": "hub-a", "event": "GET /v1/me 200 1.2 ms", "request_id": "4f0c..."}

Keys: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (the message),
``node`` (the node name), and, when the work has them, ``request_id`` (an HTTP request),
``connection_id`` and ``user_id`` (a WebSocket connection); ``exception`` holds an
attached traceback as one string. No other key is written. ``"text"`` (the default) keeps the standard library's
lines as they are.

Ids are bound with :func:`bind` into context variables, so they follow the work: the
HTTP request's task (:class:`RequestIds`), a connection's reader, writer and request
tasks (bound before they are created). Only ids may be bound — never a body, token,
password, hash or SQL error detail — and every line, in either format, has passed
:mod:`bankhub.logredact`: the record factory scrubs the message and turns an exception
into a traceback of code locations and types, and the JSON renderer redacts the event
and exception text once more (for records made before the factory was installed).

HTTP requests carry an id: a valid incoming ``X-Request-Id`` (``[A-Za-z0-9._-]{1,64}``,
the whole value) is kept, anything else is replaced by a new one; the response carries it
in ``X-Request-Id``, and the request's log lines carry it as ``request_id``.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from . import logredact

__all__ = [
    "LOG_FORMATS",
    "ID_KEYS",
    "REQUEST_ID_HEADER",
    "HANDLER_NAME",
    "bind",
    "unbind",
    "valid_request_id",
    "request_id",
    "json_formatter",
    "configure",
    "reset",
    "RequestIds",
]

LOG_FORMATS: Final = ("text", "json")
"""What ``BANKHUB_LOG_FORMAT`` accepts."""

ID_KEYS: Final = frozenset({"request_id", "connection_id", "node", "user_id"})
"""The keys :func:`bind` accepts: ids of the work, nothing a client wrote."""

REQUEST_ID_HEADER: Final = "X-Request-Id"
HANDLER_NAME: Final = "bankhub"
"""The name of the root handler :func:`configure` installs (a test swaps its stream)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_node = ""  # the process's node name: lines without a bound ``node`` carry it

log = logging.getLogger("bankhub.access")


_IDS: Final = {key: ContextVar[str | None](f"bankhub_log_{key}", default=None) for key in sorted(ID_KEYS)}


def bind(**ids: str) -> dict[str, Token[str | None]]:
    """Bind ids (``request_id``, ``connection_id``, ``node``, ``user_id``) to the current
    context: every line logged from it, and from tasks created in it afterwards, carries
    them. Returns the tokens :func:`unbind` takes to restore what was bound before.
    Any other key is a ``ValueError``: a log line never holds what a client wrote."""
    unknown = ids.keys() - ID_KEYS
    if unknown:
        raise ValueError(f"not an id key: {sorted(unknown)}")
    return {key: _IDS[key].set(value) for key, value in ids.items()}


def unbind(tokens: Mapping[str, Token[str | None]]) -> None:
    """Restore the ids :func:`bind` replaced."""
    for key, token in tokens.items():
        _IDS[key].reset(token)


def valid_request_id(value: str | None) -> bool:
    """``value`` is a request id the hub echoes: 1 to 64 of ``A-Za-z0-9._-``, nothing else."""
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


def request_id(incoming: str | None = None) -> str:
    """The id of a request: ``incoming`` when it is valid (a load balancer's or client's
    id, so one request is followed through every hop), else a new random one."""
    return incoming if incoming is not None and _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)


# --- rendering ----------------------------------------------------------------------------


def _add_ids(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """The bound ids (context variables of this module: cheaper to bind per request than
    structlog's own), and the process's node name when none is bound."""
    for key, var in _IDS.items():
        value = var.get()
        if value is not None:
            event[key] = value
    event.setdefault("node", _node)
    return event


def _exception(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """``exception``: the attached traceback as one safe string (code locations and types,
    messages redacted; never a database error's message)."""
    record = event.get("_record")
    exc_info = event.pop("exc_info", None)
    text: str | None = None
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1] if isinstance(exc_info, tuple) else None
        if exc is not None:
            text = logredact.safe_traceback(exc)
    elif isinstance(record, logging.LogRecord) and record.exc_text:
        text = logredact.redact(record.exc_text)  # the record factory already made it safe
    if text:
        event["exception"] = text
    stack = event.pop("stack_info", None)
    if isinstance(stack, str):
        event["stack"] = logredact.redact(stack)
    return event


_KEYS = ("timestamp", "level", "logger", "node", "event", "request_id", "connection_id", "user_id", "exception", "stack")


def _only_known(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """The line's keys in a fixed order, and no other: a structlog call's own key-value
    pairs (``password=...``) never reach a line. The event is redacted once more."""
    message = event.get("event")
    event["event"] = logredact.redact(message if isinstance(message, str) else str(message))
    return {k: event[k] for k in _KEYS if k in event}


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")

# what a standard-library record goes through before rendering (structlog's own events
# get the same from structlog.configure below)
_PRE_CHAIN: list[Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _TIMESTAMP,
    _add_ids,
    _exception,
]


def json_formatter() -> logging.Formatter:
    """The formatter of ``"json"`` lines (see the module docstring)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _only_known,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )


_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure(log_format: str, *, node: str, level: str = "info", stream: TextIO | None = None) -> bool:
    """Set how this process writes log lines; True when they are JSON.

    ``"json"``: one root handler (named :data:`HANDLER_NAME`, writing to ``stream``,
    default stderr) renders every record as JSON — it replaces the plain stderr handlers
    ``logging.basicConfig`` put there, and uvicorn's loggers lose their own handlers and
    propagate to it (pass ``log_config=None`` to uvicorn then, so it leaves them so).
    ``"text"``: the standard library's lines, as configured elsewhere (uvicorn's own
    configuration, the command line's ``basicConfig``); a JSON handler of an earlier call
    is removed. ``node`` is the node name lines carry when none is bound.
    """
    global _node
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    _node = node
    logredact.install()
    root = logging.getLogger()
    reset()
    if log_format == "text":
        return False
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.name = HANDLER_NAME
    handler.setFormatter(json_formatter())
    for existing in list(root.handlers):
        if type(existing) is logging.StreamHandler:  # basicConfig's: one line per record, not two
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(_level(level))
    for name in _UVICORN:
        uv = logging.getLogger(name)
        for h in list(uv.handlers):
            uv.removeHandler(h)
        uv.propagate = True
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_PRE_CHAIN, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return True


def reset() -> None:
    """Remove the JSON handler :func:`configure` installed (tests; ``"text"``)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.name == HANDLER_NAME:
            root.removeHandler(h)


def _level(level: str) -> int:
    # uvicorn's extra level below debug
    return 5 if level.lower() == "trace" else logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


# --- HTTP request ids -----------------------------------------------------------------------

_Scope = MutableMapping[str, Any]
_HEADER = REQUEST_ID_HEADER.lower().encode("ascii")  # ASGI header names are lower case
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTOR = re.compile(r":\w+}")  # "{conversation_id:uuidtext}" is "{conversation_id}" in the document


class RequestIds:
    """ASGI middleware: each HTTP request gets an id (:func:`request_id` of its
    ``X-Request-Id``), bound for its log lines and returned in the ``X-Request-Id``
    response header; one ``bankhub.access`` line per request says method, route template
    (never the path: it carries client text), status and time."""

    def __init__(self, app: Any, node: str = "") -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == _HEADER:
                incoming = value.decode("latin-1")
                break
        rid = request_id(incoming)
        header = (_HEADER, rid.encode("ascii"))
        status = 0

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*(h for h in message.get("headers", ()) if h[0].lower() != _HEADER), header]
            await send(message)

        tokens = bind(request_id=rid, node=self.node) if self.node else bind(request_id=rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                route = _CONVERTOR.sub("}", getattr(scope.get("route"), "path", "?"))
                method = scope.get("method", "?")
                method = method if method in _METHODS else "other"  # a client may send any token
                log.info("%s %s %d %.1f ms", method, route, status, (time.perf_counter() - started) * 1000)
            unbind(tokens)
