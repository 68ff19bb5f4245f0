"""Verified service cards and signed notices: what is signed, and which links a card may carry. No I/O.

The hub signs every ``card`` message at commit, and every official-account notice at
publication, with its Ed25519 key (:mod:`bankhub.crypto.signing`). The signed bytes are
the canonical JSON (:func:`canonical`) of one object that binds the body to where it
was sent, so a card copied into another conversation, given another message id, sender
or time, or altered in any field no longer verifies:

* card: ``{"ctx": "bankhub.card.v1", "key_id", "conversation_id", "message_id",
  "sender_id", "ts", "body"}``;
* notice: ``{"ctx": "bankhub.notice.v1", "key_id", "account_id", "notice_id", "body"}``;

where ``body`` is the body exactly as clients receive it, without its ``signature``
member. Canonical JSON is RFC 8785 (JCS) for the values these objects hold (every key is
ASCII, every number an integer): members sorted by key, no whitespace, strings as
ECMAScript's ``JSON.stringify`` writes them (UTF-8, only ``"``, ``\\`` and C0 controls
escaped). Both SDKs compute the same bytes (``docs/protocol.md``, "Verified cards").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "CARD_CONTEXT",
    "NOTICE_CONTEXT",
    "canonical",
    "card_payload",
    "notice_payload",
    "link_allowed",
    "link_host",
    "MAX_LINK_CHARS",
    "card_problem",
    "class_allowed",
]

CARD_CONTEXT = "bankhub.card.v1"
NOTICE_CONTEXT = "bankhub.notice.v1"


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (ASCII keys, integer numbers only)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _unsigned(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "signature"}


def card_payload(
    key_id: str, conversation_id: str, message_id: str, sender_id: str, ts: int, body: Mapping[str, Any]
) -> bytes:
    """The bytes a card's signature covers (``body``: the wire JSON object of the card)."""
    return canonical(
        {
            "ctx": CARD_CONTEXT,
            "key_id": key_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "sender_id": sender_id,
            "ts": ts,
            "body": _unsigned(body),
        }
    )


def notice_payload(key_id: str, account_id: str, notice_id: str, body: Mapping[str, Any]) -> bytes:
    """The bytes a notice's signature covers (``body``: the wire JSON object of the notice body)."""
    return canonical(
        {"ctx": NOTICE_CONTEXT, "key_id": key_id, "account_id": account_id, "notice_id": notice_id, "body": _unsigned(body)}
    )


MAX_LINK_CHARS = 2048
"""Longest card link or image URL (the frame schema says the same)."""

# a DNS label as browsers and the allow-list compare it: lowercase ASCII letters, digits, inner hyphens
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# where a browser (WHATWG URL) ends the authority of a special URL: "\\" counts as "/"
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")
_AUTHORITY_END = re.compile(r"[/?#\\]")


def _plain_host(authority: str) -> str | None:
    """``authority`` when it is a plain DNS name (lowercase ``[a-z0-9-]`` labels joined by
    single dots, no trailing dot, not an IPv4 number), else None. Everything else a browser
    would read differently from a naive parser is refused here: userinfo (``@``), ports
    (``:``), percent-escapes, IPv6 literals, uppercase and non-ASCII (IDN hosts are accepted
    only in their ``xn--`` form, compared as written)."""
    if not authority or len(authority) > 253:
        return None
    labels = authority.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if _NUMERIC.fullmatch(labels[-1]):  # WHATWG reads a numeric last label (decimal or 0x hex) as an IPv4 address
        return None
    return authority


def link_host(url: str, scheme: str = "https") -> str | None:
    """The host a browser opens for ``url`` when it is a plain ``<scheme>://host/...`` URL
    (see :func:`_plain_host`), else None. The URL must be printable ASCII with no ``\\`` at
    all (browsers read it as ``/``, and strip tabs and newlines), at most
    :data:`MAX_LINK_CHARS` long, and begin with exactly ``<scheme>://`` in lowercase."""
    if len(url) > MAX_LINK_CHARS or not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        return None
    prefix = scheme + "://"
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix):]
    end = _AUTHORITY_END.search(rest)
    return _plain_host(rest[: end.start()] if end else rest)


def _host_allowed(host: str, domains: Iterable[str]) -> bool:
    """The exact host is one of ``domains`` or a subdomain of one (both compared lowercase)."""
    return any(host == d or host.endswith("." + d) for d in (d.lower().strip(".") for d in domains) if d)


def link_allowed(url: str, domains: Iterable[str], *, deep_links: bool = True) -> bool:
    """A card's link: the app's own ``bankhub://`` deep link (when ``deep_links``), or
    ``https://`` to a host that is one of ``domains`` or a subdomain of one, the host read as
    a browser reads it (:func:`link_host`): no userinfo (``https://bank.com@evil.example``),
    no port, no ``\\`` (``https://evil.example\\.bank.com`` opens evil.example), no
    percent-escape, no uppercase, trailing dot or non-ASCII in the host."""
    if url.startswith("bankhub://"):
        return deep_links and link_host(url, "bankhub") is not None
    host = link_host(url)
    return host is not None and _host_allowed(host, domains)


def card_problem(image_url: str | None, action_urls: Iterable[str], domains: Iterable[str]) -> str | None:
    """Why a card may not be sent as it is (None: it may): an image not on ``https://`` to an
    allow-listed domain, or an action link that is neither a ``bankhub://`` deep link nor
    ``https://`` to an allow-listed domain."""
    domains = tuple(domains)
    if image_url is not None and not link_allowed(image_url, domains, deep_links=False):
        return "the card's image must be an https:// URL on an allow-listed domain (BANKHUB_CARD_DOMAINS)"
    for url in action_urls:
        if not link_allowed(url, domains):
            return "a card's action links are bankhub:// links or https:// links to an allow-listed domain (BANKHUB_CARD_DOMAINS)"
    return None


def class_allowed(classes: Iterable[str], account_class: str | None) -> bool:
    """May a customer of ``account_class`` act on a card gated to ``classes``? An empty gate: everyone."""
    gate = list(classes)
    return not gate or (account_class is not None and account_class in gate)
