"""Verified service cards and signed notices: check the hub's Ed25519 signatures. No I/O.

The hub signs every ``card`` message when it stores it and every official-account notice
when it publishes it. A signature ``{"key_id", "sig"}`` covers the canonical JSON (RFC 8785)
of::

    {"ctx": "bankhub.card.v1", "key_id", "conversation_id", "message_id", "sender_id", "ts", "body"}
    {"ctx": "bankhub.notice.v1", "key_id", "account_id", "notice_id", "body"}

with ``body`` the JSON object as received, minus its ``signature``. The public keys are at
``GET /v1/signing-keys`` (:meth:`bankhub_client.Client.signing_keys` fetches and caches
them; :func:`parse_signing_keys` reads the document). A card copied into another
conversation, re-dated, given another sender or altered in any field does not verify::

    keys = await client.signing_keys()
    if isinstance(message.body, CardBody) and verify_card(message, keys):
        show_verified_badge()

Verification uses the ``cryptography`` package (Ed25519); it is imported when first needed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from msgspec import Struct

if TYPE_CHECKING:
    from .models import Message, Notice

__all__ = [
    "CARD_CONTEXT",
    "NOTICE_CONTEXT",
    "Signature",
    "CardField",
    "CardAction",
    "CardBody",
    "NewCard",
    "canonical",
    "card_payload",
    "notice_payload",
    "parse_signing_keys",
    "verify_card",
    "verify_notice",
    "card_actions_allowed",
    "decode_card",
    "decode_signature",
]

CARD_CONTEXT = "bankhub.card.v1"
NOTICE_CONTEXT = "bankhub.notice.v1"


class Signature(Struct, frozen=True):
    """The hub's signature: ``key_id`` names a key of ``/v1/signing-keys``; ``sig`` is unpadded base64url."""

    key_id: str
    sig: str


class CardField(Struct, frozen=True):
    label: str
    value: str


class CardAction(Struct, frozen=True):
    """A card's button: a ``bankhub://`` deep link or an ``https://`` link."""

    label: str
    url: str


class CardBody(Struct, frozen=True):
    """A service card (``{"kind": "card", ...}``): an ``offer``, ``bill_reminder`` or
    ``appointment`` sent by staff or a bank system, signed by the hub.

    ``classes``: the account classes that may act on it (empty: everyone). ``data`` is the
    body's JSON object as received — what the signature covers. ``verified``: None until
    checked; :meth:`bankhub_client.Client.verified` returns the message with it set.
    """

    template: str
    title: str
    fields: list[CardField] = []
    image_url: str | None = None
    actions: list[CardAction] = []
    classes: list[str] = []
    signature: Signature | None = None
    data: dict[str, Any] = {}
    verified: bool | None = None

    @property
    def kind(self) -> str:
        return "card"


class NewCard(Struct, frozen=True, tag="card", tag_field="kind", omit_defaults=True):
    """A card to send (:meth:`bankhub_client.Client.send_card`; relationship managers and
    service-desk agents only — the hub refuses anyone else ``forbidden``). ``template``:
    ``offer``, ``bill_reminder`` or ``appointment``; at most 8 ``fields`` and 3 ``actions``
    (``bankhub://`` links, or ``https://`` on a domain the hub allows); ``classes``: the
    account classes (``I``, ``II``, ``III``) that may act on it, empty for everyone. Never a
    signature: the hub signs it."""

    template: Literal["offer", "bill_reminder", "appointment"]
    title: str
    fields: list[CardField] = []
    image_url: str | None = None
    actions: list[CardAction] = []
    classes: list[Literal["I", "II", "III"]] = []


def decode_signature(obj: Any) -> Signature | None:
    if isinstance(obj, dict) and isinstance(obj.get("key_id"), str) and isinstance(obj.get("sig"), str):
        return Signature(key_id=obj["key_id"], sig=obj["sig"])
    return None


def decode_card(obj: Mapping[str, Any]) -> CardBody | None:
    """A card body from its JSON object, or None when it is not a well-formed card."""
    template, title = obj.get("template"), obj.get("title")
    if not isinstance(template, str) or not isinstance(title, str):
        return None

    def pairs(key: str, a: str, b: str) -> list[tuple[str, str]] | None:
        items = obj.get(key, [])
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get(a), str) or not isinstance(item.get(b), str):
                return None
            out.append((item[a], item[b]))
        return out

    fields, actions, classes = pairs("fields", "label", "value"), pairs("actions", "label", "url"), obj.get("classes", [])
    image = obj.get("image_url")
    if fields is None or actions is None or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return None
    if image is not None and not isinstance(image, str):
        return None
    return CardBody(
        template=template,
        title=title,
        fields=[CardField(label=a, value=b) for a, b in fields],
        image_url=image,
        actions=[CardAction(label=a, url=b) for a, b in actions],
        classes=list(classes),
        signature=decode_signature(obj.get("signature")),
        data=dict(obj),
    )


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON for the values cards and notices hold (ASCII keys, integers)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _unsigned(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "signature"}


def card_payload(key_id: str, message: Message) -> bytes:
    """The bytes the signature of a card message covers."""
    body = message.body.data if isinstance(message.body, CardBody) else {}
    return canonical(
        {
            "ctx": CARD_CONTEXT,
            "key_id": key_id,
            "conversation_id": message.conversation_id,
            "message_id": message.message_id,
            "sender_id": message.sender_id,
            "ts": message.ts,
            "body": _unsigned(body),
        }
    )


def notice_payload(key_id: str, notice: Notice) -> bytes:
    """The bytes the signature of a notice covers."""
    return canonical(
        {
            "ctx": NOTICE_CONTEXT,
            "key_id": key_id,
            "account_id": notice.account_id,
            "notice_id": notice.notice_id,
            "body": _unsigned(notice.body_data or {}),
        }
    )


def _unb64url(text: str) -> bytes | None:
    if not isinstance(text, str) or "=" in text:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def parse_signing_keys(doc: Any) -> dict[str, bytes]:
    """``{key_id: raw 32-byte Ed25519 public key}`` from a ``/v1/signing-keys`` answer (JWKs)."""
    keys: dict[str, bytes] = {}
    items: Iterable[Any] = doc.get("keys", []) if isinstance(doc, dict) else []
    for jwk in items:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("kid"), str):
            continue
        raw = _unb64url(jwk.get("x", ""))
        if raw is not None and len(raw) == 32:
            keys[jwk["kid"]] = raw
    return keys


def _verify(keys: Mapping[str, bytes], signature: Signature | None, payload: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if signature is None or signature.key_id not in keys:
        return False
    raw = _unb64url(signature.sig)
    if raw is None or len(raw) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(keys[signature.key_id]).verify(raw, payload)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_card(message: Message, keys: Mapping[str, bytes]) -> bool:
    """Does this card message carry the hub's valid signature for exactly this conversation,
    message id, sender and time? (``keys``: :func:`parse_signing_keys`.) Never raises on bad input."""
    body = message.body
    if not isinstance(body, CardBody) or body.signature is None:
        return False
    return _verify(keys, body.signature, card_payload(body.signature.key_id, message))


def verify_notice(notice: Notice, keys: Mapping[str, bytes]) -> bool:
    """Does this notice carry the hub's valid signature for exactly this account, notice id and body?"""
    if notice.recalled or notice.signature is None or notice.body_data is None:
        return False
    return _verify(keys, notice.signature, notice_payload(notice.signature.key_id, notice))


def card_actions_allowed(card: CardBody, account_class: str | None) -> bool:
    """May a customer of ``account_class`` act on ``card``? No gate: everyone."""
    return not card.classes or (account_class is not None and account_class in card.classes)
