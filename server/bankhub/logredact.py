"""Keep credentials, hashes, database error detail and message text out of logs.

Two layers:

* Call sites log what is safe: the unhandled-error paths (``app.py``, the gateway) log an
  exception's *type*, a short reference and the code location, via :func:`describe` and
  :func:`safe_traceback`, never the exception's message.
* :func:`install` puts a record factory in front of every logger, so a future call site that
  gets this wrong still cannot leak. Each record's message is rewritten (:func:`redact`)
  before any filter or handler sees it, and an attached exception becomes a traceback of
  code locations and exception types (:func:`safe_traceback`): the messages of asyncpg
  exceptions — whose ``DETAIL`` holds row values, ``Failing row contains (...)`` with a
  password hash, ``Key (username)=(...)`` — are never formatted at all.

What :func:`redact` rewrites: ``ticket=``, ``token=``, ``access_token=``, ``password=``,
``secret=`` values (uvicorn logs a WebSocket handshake's query string, where a browser's
ticket travels); ``Bearer`` credentials; argon2 hashes (``$argon2id$...``); everything from
a Postgres ``DETAIL:``, ``HINT:``, ``CONTEXT:``, ``QUERY:`` or ``WHERE:`` field, or from
``Failing row contains (``, to the end of the message (row values may hold newlines);
``Key (...)=(...)`` values; asyncpg's echo of a rejected query argument.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["RedactSecrets", "install", "redact", "describe", "safe_traceback", "scrub_record"]

_SECRET = re.compile(r"((?:ticket|token|access_token|password|secret)=)[^&\s\"']+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
# the whole PHC string: $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>
_ARGON2 = re.compile(r"\$argon2(?:id|i|d)?\$[A-Za-z0-9+/=,.$-]*")
# Postgres' extra fields quote row values, which may hold newlines: cut to the end of the text
_PG_FIELD = re.compile(r"\b(?:DETAIL|HINT|CONTEXT|QUERY|WHERE):.*", re.S)
_FAILING_ROW = re.compile(r"Failing row contains \(.*", re.S)
_KEY_VALUE = re.compile(r"(Key \([^)]*\)=)\(.*?\)(?=[ .]|$)", re.S)
_QUERY_ARGUMENT = re.compile(r"(invalid input for query argument \$\d+:).*", re.S)

_REDACTED = "[redacted]"


def redact(message: str) -> str:
    """``message`` with every credential, hash and database value replaced by ``[redacted]``."""
    message = _SECRET.sub(rf"\1{_REDACTED}", message)
    message = _BEARER.sub(rf"\1{_REDACTED}", message)
    message = _ARGON2.sub(_REDACTED, message)
    message = _PG_FIELD.sub("[database error detail redacted]", message)
    message = _FAILING_ROW.sub("Failing row [redacted]", message)
    message = _KEY_VALUE.sub(rf"\1({_REDACTED})", message)
    return _QUERY_ARGUMENT.sub(rf"\1 {_REDACTED}", message)


def _is_database_error(exc: BaseException) -> bool:
    # asyncpg's messages quote row and argument values; ``detail`` is Postgres' DETAIL field
    return type(exc).__module__.startswith("asyncpg") or hasattr(exc, "detail")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, most recent first (at most 8, cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in chain) and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _one(exc: BaseException) -> str:
    name = type(exc).__qualname__
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        constraint = getattr(exc, "constraint_name", None)
        name += f" (sqlstate {sqlstate}" + (f", constraint {constraint}" if isinstance(constraint, str) else "") + ")"
    return name


def describe(exc: BaseException) -> str:
    """An exception's type (and, for Postgres errors, its SQLSTATE and constraint), never its message.

    The chain of causes follows: ``StorageUnavailable <- ConnectionResetError``.
    """
    return " <- ".join(_one(e) for e in _chain(exc))


def _message_of(exc: BaseException) -> str:
    if _is_database_error(exc):
        return ""  # the type says enough; the message carries row values
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        return ""
    return redact(text)[:500]


def safe_traceback(exc: BaseException, *, messages: bool = True) -> str:
    """A traceback of code locations and exception types, without local values.

    With ``messages``, an exception's message is kept (redacted, at most 500 characters)
    unless it is a database error; without, only types appear.
    """
    lines: list[str] = []
    chain = _chain(exc)
    for i, e in enumerate(reversed(chain)):
        if i:
            lines.append("During handling of the above exception, another exception occurred:")
        lines.append("Stack (most recent call last):")
        tb: TracebackType | None = e.__traceback__
        for frame in traceback.extract_tb(tb):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")  # source code, not values
        message = _message_of(e) if messages else ""
        lines.append(f"{type(e).__module__}.{_one(e)}: {message}" if message else f"{type(e).__module__}.{_one(e)}")
    return "\n".join(lines)


def scrub_record(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place: redacted message, a safe traceback instead of ``exc_info``."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed format string: log it unformatted, redacted
        message = str(record.msg)
    redacted = redact(message)
    if redacted != message or record.args:
        record.msg, record.args = redacted, None
    exc_info = record.exc_info
    if exc_info and exc_info[1] is not None:
        record.exc_text = safe_traceback(exc_info[1])
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecrets(logging.Filter):
    """The same rewriting as a :class:`logging.Filter`, for handlers configured elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_Factory = Callable[..., logging.LogRecord]


def _scrubbing(previous: _Factory) -> _Factory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub_record(record)
        return record

    factory.bankhub_scrubbing = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Scrub every log record of this process from now on (idempotent).

    A record factory sees each record as it is made, whatever logger or handler it goes
    to, so records of child loggers (``bankhub.http``, ``uvicorn.error``) and handlers
    added later (a deployment's, a test's capture) are covered alike. The filter on the
    request-line loggers stays for records made before :func:`install`.
    """
    current = logging.getLogRecordFactory()
    if not getattr(current, "bankhub_scrubbing", False):
        logging.setLogRecordFactory(_scrubbing(current))
    redact_filter = RedactSecrets()
    for name in ("uvicorn.error", "uvicorn.access", "bankhub"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(redact_filter)
