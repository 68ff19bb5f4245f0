"""A widget partner's origins: what may be registered, and what a hub honours. Pure code.

An origin is ``scheme://host[:port]`` exactly as a browser sends it in ``Origin`` and
``MessageEvent.origin``: lower case, no path, query, fragment or user info, no default
port. A partner registers ``https`` origins. Plain ``http`` is accepted only for a
loopback host (``127.0.0.1``, ``localhost``, ``[::1]``) — a developer's machine or a test —
and a hub honours such an origin only with ``BANKHUB_WIDGET_DEV_ORIGINS=loopback``; a
production hub leaves it out of ``frame-ancestors`` and of the origins the frame accepts
messages from.

Matching is exact string equality (:func:`matches`): no wildcards, no suffixes, so
``https://bank.example.evil.test`` is not ``https://bank.example``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_ORIGINS", "OriginError", "normalise", "is_loopback_http", "honoured", "matches"]

MAX_ORIGINS = 16

_HOST = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
_HTTPS = re.compile(rf"https://{_HOST}(?::(?P<port>[0-9]{{1,5}}))?")
_LOOPBACK = re.compile(r"http://(?:127\.0\.0\.1|localhost|\[::1\])(?::(?P<port>[0-9]{1,5}))?")


class OriginError(ValueError):
    """Not an origin a partner may register (the message says why)."""


def _port_ok(port: str | None, default: str) -> bool:
    return port is None or (port != default and not port.startswith("0") and 1 <= int(port) <= 65535)


def normalise(text: str) -> str:
    """``text`` as a registrable origin (lower-cased, a trailing ``/`` dropped); raises :class:`OriginError`."""
    origin = text.strip().lower()
    origin = origin[:-1] if origin.endswith("/") else origin
    if len(origin) > 255:
        raise OriginError("an origin has at most 255 characters")
    m = _HTTPS.fullmatch(origin)
    if m is not None and _port_ok(m.group("port"), "443"):
        return origin
    m = _LOOPBACK.fullmatch(origin)
    if m is not None and _port_ok(m.group("port"), "80"):
        return origin
    raise OriginError(
        f"{text.strip()[:80]!r} is not an origin: https://host[:port] with no path (plain http only for 127.0.0.1 or localhost)"
    )


def is_loopback_http(origin: str) -> bool:
    return _LOOPBACK.fullmatch(origin) is not None


def honoured(origins: Iterable[str], allow_loopback: bool) -> tuple[str, ...]:
    """The registered origins a hub acts on: all ``https`` ones, loopback ``http`` ones only
    when ``allow_loopback`` (``BANKHUB_WIDGET_DEV_ORIGINS=loopback``)."""
    return tuple(o for o in origins if _HTTPS.fullmatch(o) or (allow_loopback and is_loopback_http(o)))


def matches(origin: str | None, allowed: Iterable[str]) -> bool:
    """True if ``origin`` is exactly one of ``allowed`` (the browser's form: no trailing slash)."""
    return origin is not None and origin in tuple(allowed)
