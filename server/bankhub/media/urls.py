"""The short-lived signed URLs media are served from.

``/v1/media/{media_id}/{variant}?exp=<ms>&sig=<base64url>``: ``sig`` is HMAC-SHA256 under
the node's media URL key of a fixed label, the *user* the URL was made for, the media id,
the variant and ``exp``. The URL is served only to a request authenticated as that same
user (bearer token or session cookie) before ``exp`` — a URL copied into another account's
session, another variant, or kept past its time is refused ``403`` — and serving re-checks
that the user is still a member of the media's conversation.

``exp`` is rounded to a quarter of the lifetime, so the URLs handed out for one item within
that quarter are identical and a browser's cache can serve the picture again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["sign", "verify", "expiry", "media_path"]

_LABEL = b"bankhub/media-url/v1\x00"


def _mac(key: bytes, user_id: str, media_id: str, variant: str, exp_ms: int) -> bytes:
    msg = _LABEL + "\x00".join([user_id, media_id, variant, str(exp_ms)]).encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).digest()


def sign(key: bytes, user_id: str, media_id: str, variant: str, exp_ms: int) -> str:
    return base64.urlsafe_b64encode(_mac(key, user_id, media_id, variant, exp_ms)).rstrip(b"=").decode("ascii")


def verify(keys: Iterable[bytes], user_id: str, media_id: str, variant: str, exp_ms: int, sig: str) -> bool:
    """Whether ``sig`` is the signature of these facts under one of ``keys`` (constant time).
    The expiry is the caller's to check."""
    try:
        given = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (ValueError, TypeError):
        return False
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, _mac(key, user_id, media_id, variant, exp_ms))
    return ok


def expiry(now_ms: int, ttl_seconds: int) -> int:
    """The ``exp`` of a URL made at ``now_ms``: between ¾ and all of the lifetime from now."""
    ttl_ms = ttl_seconds * 1000
    step = max(1000, ttl_ms // 4)
    return (now_ms // step) * step + ttl_ms


def media_path(media_id: str, variant: str, exp_ms: int, sig: str) -> str:
    return f"/v1/media/{media_id}/{variant}?exp={exp_ms}&sig={sig}"
