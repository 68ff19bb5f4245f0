"""Request signatures of calling systems: HMAC-SHA256 over a canonical request. Pure code.

A calling system (core banking, the card platform, ...) signs every request to the alert
API with its secret. The signed string is, lines joined by ``\\n`` (no trailing newline)::

    BANKHUB-HMAC-SHA256
    <METHOD>                 upper case: POST, GET
    <path>[?<query>]         exactly as sent, e.g. /v1/notifications
    <timestamp>              the X-Bankhub-Timestamp header: Unix seconds, decimal
    <nonce>                  the X-Bankhub-Nonce header: 16-64 of [A-Za-z0-9_-], new per request
    <system>                 the X-Bankhub-System header: the system's name
    <idempotency key>        the Idempotency-Key header, or empty
    <hex SHA-256 of body>    lower-case hex of the raw body bytes (of b"" for a GET)

and the ``X-Bankhub-Signature`` header is ``v1=`` followed by the lower-case hex
HMAC-SHA256 of that string, keyed with the UTF-8 bytes of the secret exactly as
``bankhub systems add`` printed it. A request is refused when its timestamp is more than
:data:`MAX_SKEW_SECONDS` away from the hub's clock (either way), or when its nonce was
seen before for that system. The SDK's ``bankhub_client.signing`` builds the same string;
a test keeps the two in agreement.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "SCHEME",
    "HEADER_SYSTEM",
    "HEADER_TIMESTAMP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_IDEMPOTENCY",
    "MAX_SKEW_SECONDS",
    "SignatureError",
    "SignedHeaders",
    "canonical_request",
    "signature",
    "parse_headers",
    "check_timestamp",
    "verify",
    "verify_which",
]

SCHEME = "BANKHUB-HMAC-SHA256"
HEADER_SYSTEM = "x-bankhub-system"
HEADER_TIMESTAMP = "x-bankhub-timestamp"
HEADER_NONCE = "x-bankhub-nonce"
HEADER_SIGNATURE = "x-bankhub-signature"
HEADER_IDEMPOTENCY = "idempotency-key"
MAX_SKEW_SECONDS = 300
"""How far a request's timestamp may be from the hub's clock, in seconds, either way."""

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SYSTEM = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_IDEMPOTENCY = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, no spaces
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v1=([0-9a-f]{64})$")


class SignatureError(Exception):
    """A request that does not authenticate. ``code`` is the problem code the API answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The authentication headers of one request, syntactically valid."""

    system: str
    timestamp: str
    nonce: str
    signature: str  # the 64 hex digits after "v1="
    idempotency_key: str | None


def canonical_request(
    method: str, path: str, query: str, timestamp: str, nonce: str, system: str, idempotency_key: str | None, body: bytes
) -> bytes:
    """The exact bytes that are signed (see the module docstring)."""
    target = f"{path}?{query}" if query else path
    lines = [SCHEME, method.upper(), target, timestamp, nonce, system, idempotency_key or "", hashlib.sha256(body).hexdigest()]
    return "\n".join(lines).encode("utf-8")


def signature(secret: str, canonical: bytes) -> str:
    """The ``X-Bankhub-Signature`` value for ``canonical`` under ``secret``."""
    return "v1=" + hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The signature headers (names compared lower-case); raises :class:`SignatureError`."""
    system = headers.get(HEADER_SYSTEM)
    timestamp = headers.get(HEADER_TIMESTAMP)
    nonce = headers.get(HEADER_NONCE)
    sig = headers.get(HEADER_SIGNATURE)
    if not (system and timestamp and nonce and sig):
        raise SignatureError(
            "signature_required",
            "sign the request: X-Bankhub-System, X-Bankhub-Timestamp, X-Bankhub-Nonce and X-Bankhub-Signature are required",
        )
    if not _SYSTEM.fullmatch(system):
        raise SignatureError("invalid_signature", "X-Bankhub-System is not a system name")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("invalid_signature", "X-Bankhub-Timestamp must be Unix seconds")
    if not _NONCE.fullmatch(nonce):
        raise SignatureError("invalid_signature", "X-Bankhub-Nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    m = _SIGNATURE.fullmatch(sig)
    if m is None:
        raise SignatureError("invalid_signature", "X-Bankhub-Signature must be v1=<64 lower-case hex digits>")
    key = headers.get(HEADER_IDEMPOTENCY)
    if key is not None and not _IDEMPOTENCY.fullmatch(key):
        raise SignatureError("invalid_request", "Idempotency-Key must be 1-128 visible ASCII characters")
    return SignedHeaders(system=system, timestamp=timestamp, nonce=nonce, signature=m.group(1), idempotency_key=key)


def check_timestamp(timestamp: str, now: float, max_skew: int = MAX_SKEW_SECONDS) -> None:
    """Refuse a timestamp more than ``max_skew`` seconds from ``now`` (Unix seconds)."""
    if abs(int(timestamp) - now) > max_skew:
        raise SignatureError(
            "stale_request", f"X-Bankhub-Timestamp is more than {max_skew} s from the hub's clock; sign a fresh request"
        )


def verify_which(secrets: Sequence[str], canonical: bytes, hex_signature: str) -> int | None:
    """The index of the secret under which ``hex_signature`` is the HMAC of ``canonical``,
    or None. Like :func:`verify`, every secret is tried with a constant-time comparison."""
    found: int | None = None
    for i, secret in enumerate(secrets):
        expected = hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, hex_signature) and found is None:
            found = i
    return found


def verify(secrets: Iterable[str], canonical: bytes, hex_signature: str) -> bool:
    """True if ``hex_signature`` is the HMAC of ``canonical`` under any of ``secrets``.

    Every secret is tried (a rotated system has two for a while) and each comparison is
    constant-time, so timing tells nothing about which secret, if any, came close.
    """
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), canonical, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(expected, hex_signature)
    return ok
