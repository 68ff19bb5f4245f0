"""Signing requests to the hub's alert API, as a calling system (HMAC-SHA256). No I/O.

The scheme (``docs/alerts.md``): the signed string is these lines joined by ``\\n``::

    BANKHUB-HMAC-SHA256
    <METHOD>
    <path>[?<query>]
    <timestamp: Unix seconds>
    <nonce: 16-64 of A-Z a-z 0-9 _ ->
    <system name>
    <Idempotency-Key, or empty>
    <lower-case hex SHA-256 of the body>

and ``X-Bankhub-Signature: v1=<hex HMAC-SHA256(secret as UTF-8, signed string)>``.
A request is good for 300 seconds and only once (its nonce): sign each attempt anew,
keeping the same ``Idempotency-Key`` across retries of one alert.

    headers = signed_headers(secret, "core-banking", "POST", "https://hub/v1/notifications",
                             body, idempotency_key="txn-20260501-0001")
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

__all__ = ["SCHEME", "canonical_request", "signature", "signed_headers", "new_nonce"]

SCHEME = "BANKHUB-HMAC-SHA256"


def canonical_request(
    method: str, path: str, query: str, timestamp: str, nonce: str, system: str, idempotency_key: str | None, body: bytes
) -> bytes:
    """The exact bytes that are signed."""
    target = f"{path}?{query}" if query else path
    lines = [SCHEME, method.upper(), target, timestamp, nonce, system, idempotency_key or "", hashlib.sha256(body).hexdigest()]
    return "\n".join(lines).encode("utf-8")


def signature(secret: str, canonical: bytes) -> str:
    """The ``X-Bankhub-Signature`` header value."""
    return "v1=" + hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh random nonce (24 URL-safe characters)."""
    return secrets.token_urlsafe(18)


def signed_headers(
    secret: str,
    system: str,
    method: str,
    url: str,
    body: bytes = b"",
    *,
    idempotency_key: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request (``url`` is the full URL it goes to)."""
    parts = urlsplit(url)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    canonical = canonical_request(method, parts.path or "/", parts.query, ts, nonce, system, idempotency_key, body)
    headers = {
        "x-bankhub-system": system,
        "x-bankhub-timestamp": ts,
        "x-bankhub-nonce": nonce,
        "x-bankhub-signature": signature(secret, canonical),
    }
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    return headers
