"""Visitor tokens of the service widget: minted by a partner's backend, verified by the hub. Pure code.

A partner's page must never be trusted to say who its visitor is (anyone can edit a page):
the partner's *backend*, which knows its signed-in user, signs a short-lived token, and the
hub believes a visitor id only with a valid signature. The compact format is three parts
joined by ``.``::

    bhw1.<payload>.<signature>

* ``payload`` — base64url (no padding) of a UTF-8 JSON object with exactly these members:
  ``p`` the partner id (UUID), ``v`` the partner's own id for the visitor (1-128 of
  ``A-Z a-z 0-9 _ - . : @``), ``n`` the display name (1-64 characters, one line), ``iat``
  and ``exp`` issued-at and expiry (Unix seconds), ``nonce`` (16-64 of ``A-Z a-z 0-9 _ -``,
  new per token);
* ``signature`` — base64url (no padding) of HMAC-SHA256 over the ASCII bytes ``bhw1.<payload>``,
  keyed with the UTF-8 bytes of the partner's secret exactly as ``bankhub widget add-partner``
  printed it.

The hub refuses a token whose signature does not match (compared in constant time), that
names another partner, whose ``exp - iat`` is over the hub's maximum lifetime, that
expired more than :data:`MAX_SKEW_SECONDS` ago or was issued more than that in the future,
or whose nonce was exchanged before. ``bankhub_client.widget.mint_visitor_token`` (the
Python SDK) builds the same token; a test keeps the two in agreement.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PREFIX",
    "MAX_SKEW_SECONDS",
    "MAX_TOKEN_CHARS",
    "TokenError",
    "Claims",
    "mint",
    "parse",
    "signature_ok",
    "check_times",
]

PREFIX = "bhw1"
MAX_SKEW_SECONDS = 30
"""How far the partner's clock may be from the hub's, in seconds, either way."""
MAX_TOKEN_CHARS = 2048

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_VISITOR = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
# one line: no control characters (C0, DEL, C1), no line or paragraph separators
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MEMBERS = frozenset({"p", "v", "n", "iat", "exp", "nonce"})


class TokenError(Exception):
    """A token the hub refuses. ``code`` is the problem code the API answers with
    (``invalid_visitor_token``, ``visitor_token_expired``); ``reason`` a short stable word
    for logs and tests (``malformed``, ``signature``, ``partner``, ``expired``, ``future``,
    ``lifetime``)."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Claims:
    """What a well-formed token says (believed only once :func:`signature_ok` agreed)."""

    partner_id: str
    visitor_id: str
    name: str
    issued_at: int
    expires_at: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, signed: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), signed.encode("ascii"), hashlib.sha256).digest()


def mint(
    secret: str, partner_id: str, visitor_id: str, name: str, *, now: int, ttl: int = 120, nonce: str | None = None
) -> str:
    """A token for ``visitor_id`` of ``partner_id``, valid ``ttl`` seconds from ``now`` (tests, demo)."""
    payload = {
        "p": partner_id,
        "v": visitor_id,
        "n": name,
        "iat": now,
        "exp": now + ttl,
        "nonce": nonce or secrets.token_urlsafe(18),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_b64(_mac(secret, signed))}"


def _malformed(message: str) -> TokenError:
    return TokenError("invalid_visitor_token", "malformed", message)


def parse(token: str) -> tuple[Claims, str, bytes]:
    """The claims of a well-formed token, the string that was signed and the signature
    bytes; raises :class:`TokenError` (``malformed``). Nothing is believed yet."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise _malformed(f"a visitor token has at most {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not all(_B64.fullmatch(p) for p in parts[1:]):
        raise _malformed(f"a visitor token is {PREFIX}.<payload>.<signature> (base64url)")
    try:
        raw = json.loads(_unb64(parts[1]).decode("utf-8"))
        sig = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise _malformed("the token's payload is not base64url JSON") from None
    if not isinstance(raw, dict) or set(raw) != _MEMBERS:
        raise _malformed("the token's payload has exactly p, v, n, iat, exp and nonce")
    p, v, n, iat, exp, nonce = raw["p"], raw["v"], raw["n"], raw["iat"], raw["exp"], raw["nonce"]
    if not (isinstance(p, str) and _UUID.fullmatch(p)):
        raise _malformed("p is the partner id (a lower-case UUID)")
    if not (isinstance(v, str) and _VISITOR.fullmatch(v)):
        raise _malformed("v is 1-128 of A-Z a-z 0-9 _ - . : @")
    if not (isinstance(n, str) and 1 <= len(n.strip()) and len(n) <= 64 and not _NAME_BAD.search(n)):
        raise _malformed("n is a display name of 1-64 characters on one line")
    if not all(type(t) is int and 0 <= t < 2**40 for t in (iat, exp)):
        raise _malformed("iat and exp are Unix seconds")
    if not (isinstance(nonce, str) and _NONCE.fullmatch(nonce)):
        raise _malformed("nonce is 16-64 of A-Z a-z 0-9 _ -")
    if len(sig) != hashlib.sha256().digest_size:
        raise _malformed("the signature is a base64url HMAC-SHA256")
    return Claims(p, v, n.strip(), iat, exp, nonce), f"{parts[0]}.{parts[1]}", sig


def signature_ok(secrets_: Iterable[str], signed: str, sig: bytes) -> bool:
    """True if ``sig`` is the HMAC of ``signed`` under any of ``secrets_``. Every secret is
    tried and each comparison is constant-time (``hmac.compare_digest``)."""
    ok = False
    for secret in secrets_:
        ok |= hmac.compare_digest(_mac(secret, signed), sig)
    return ok


def check_times(claims: Claims, now: float, max_lifetime: int, skew: int = MAX_SKEW_SECONDS) -> None:
    """Refuse a token issued in the future, expired, or living longer than ``max_lifetime`` s."""
    if claims.expires_at <= claims.issued_at or claims.expires_at - claims.issued_at > max_lifetime:
        raise TokenError(
            "invalid_visitor_token", "lifetime", f"a visitor token lives at most {max_lifetime} s (exp - iat), and exp > iat"
        )
    if claims.issued_at > now + skew:
        raise TokenError("visitor_token_expired", "future", "the token was issued in the future: check the partner's clock")
    if claims.expires_at + skew < now:
        raise TokenError("visitor_token_expired", "expired", "the visitor token has expired: mint a fresh one")
