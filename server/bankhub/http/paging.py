"""Query parameters of the HTTP API: bounded integers and opaque page cursors.

Every integer query parameter is declared once as an :class:`IntParam`; the handler reads
it with :meth:`IntParam.read` and ``/openapi.json`` describes it with
:meth:`IntParam.openapi`, so the bounds a client is told are the bounds it gets. A value
that is not an integer, or lies outside ``minimum..maximum``, is answered
``400 invalid_request`` (never clamped, never ignored).

List endpoints page with a cursor: the answer carries ``next_cursor`` (``null`` on the last
page) and the client passes it back unchanged as ``?cursor=``. A cursor is the sort key of
the last entry of the page (base64url JSON). It is opaque to clients and need not be
secret: every query that reads it is still filtered to what the caller may see, so an
edited cursor can only move the caller within their own list. One that does not decode to
the key the endpoint expects is ``400 invalid_request``, checked once in :meth:`Cursor.read`
for every endpoint: a string with a NUL, a datetime without an offset or whose UTC instant
lies outside years 1..9999 (the driver cannot encode it) are refused too.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import msgspec
from starlette.requests import Request

from ..actions.errors import ActionError

__all__ = [
    "IntParam",
    "CURSOR_PARAM",
    "MAX_CURSOR_CHARS",
    "PAGE_LIMIT",
    "BEFORE_SEQ",
    "encode_cursor",
    "next_page",
    "cursor_page",
    "Cursor",
]

K = TypeVar("K")
T = TypeVar("T")

MAX_CURSOR_CHARS = 512


@dataclass(frozen=True)
class IntParam:
    """An integer query parameter with inclusive bounds and an optional default."""

    name: str
    minimum: int
    maximum: int
    default: int | None = None
    description: str = ""

    def read(self, request: Request) -> int | None:
        """The value sent, or the default when absent; 400 when empty, malformed or out of range."""
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        # int() accepts "١٢", "1_000" and surrounding blanks; the document promises plain ASCII digits
        text = raw[1:] if raw[:1] == "-" else raw
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise ActionError("invalid_request", f"{self.name} must be an integer")
        value = int(raw)
        if not self.minimum <= value <= self.maximum:
            raise ActionError("invalid_request", f"{self.name} must be within {self.minimum}..{self.maximum}")
        return value

    def read_default(self, request: Request) -> int:
        """:meth:`read` for parameters that have a default."""
        value = self.read(request)
        assert value is not None, f"{self.name} has no default"
        return value

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        if self.default is not None:
            schema["default"] = self.default
        out: dict[str, Any] = {"name": self.name, "in": "query", "required": False, "schema": schema}
        if self.description:
            out["description"] = self.description
        return out


# one page size for every list, whether it pages with a cursor or with before_seq
PAGE_LIMIT = IntParam("limit", 1, 200, 50, "page size")
BEFORE_SEQ = IntParam("before_seq", 0, 2**62, None, "only entries with a smaller seq (the oldest seq of the previous page)")

CURSOR_PARAM: dict[str, Any] = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "next_cursor of the previous page, unchanged; absent for the first page",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CURSOR_CHARS, "pattern": "^[A-Za-z0-9_-]+$"},
}


def encode_cursor(key: Any) -> str:
    """The opaque cursor of sort key ``key`` (strings, integers, booleans, datetimes)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).rstrip(b"=").decode("ascii")


def next_page(rows: Sequence[T], limit: int, key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """A page from what a list query fetched with ``limit + 1`` (one more row than the page
    tells whether another page follows): the first ``limit`` rows, and ``next_cursor`` — the
    cursor of the sort key ``key`` of the page's last row, or None on the last page."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None


async def cursor_page(
    request: Request,
    cursor: Cursor[K],
    fetch: Callable[[K | None, int], Awaitable[Sequence[T]]],
    key: Callable[[T], K],
) -> tuple[list[T], str | None]:
    """One page of a list paged with a cursor, and ``next_cursor``: reads ``?limit=`` (then
    ``?cursor=``, as ``cursor``'s key), calls ``fetch(after, limit + 1)`` and cuts the rows
    as :func:`next_page` does, with ``key`` the sort key of a row."""
    limit = PAGE_LIMIT.read_default(request)
    return next_page(await fetch(cursor.read(request), limit + 1), limit, key)


class Cursor(Generic[K]):
    """The cursor of one list endpoint: its sort key type ``K`` (a tuple type)."""

    def __init__(self, key_type: Any) -> None:
        self.key_type = key_type

    def read(self, request: Request) -> K | None:
        """The ``cursor`` query parameter decoded as this endpoint's key; None when absent."""
        raw = request.query_params.get("cursor")
        if raw is None:
            return None
        if not 0 < len(raw) <= MAX_CURSOR_CHARS or not raw.isascii():
            raise _bad_cursor()
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            key: K = msgspec.json.decode(data, type=self.key_type)
            if isinstance(key, tuple):
                key = cast(K, tuple(_checked(v) for v in key))
        except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError, msgspec.ValidationError):
            raise _bad_cursor() from None
        return key

    def encode(self, key: K) -> str:
        return encode_cursor(key)


def _checked(value: Any) -> Any:
    """One field of a decoded cursor, as the query may take it (else ``ValueError`` /
    ``OverflowError``). A cursor is client input: no string may carry what Postgres text
    refuses, and a datetime must have an offset and lie in range once moved to UTC —
    ``0001-01-01T00:00:00+01:00`` is a valid ISO string, but its UTC instant is before
    year 1, which the driver cannot encode."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL in a cursor string")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a cursor datetime without an offset")
        return value.astimezone(dt.timezone.utc)
    return value


def _bad_cursor() -> ActionError:
    return ActionError("invalid_request", "cursor is not valid: pass next_cursor of the previous page unchanged")
