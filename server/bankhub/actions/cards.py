"""Verified service cards and signed notices: the checks before a card is sent, the
signature of a published notice, and the public keys clients verify with.

A card is signed in the send's own commit (:meth:`bankhub.storage.messages.MessageStore`
calls :meth:`~bankhub.storage.signing_keys.SigningKeyStore.sign_card_body` as it gives the
message its id and time); :func:`prepare` runs before that, outside the transaction: the
card's links are on allow-listed domains and the signing key is loaded.

Account-class gates (``classes``) are not a delivery filter: a card goes to every member
of the conversation, its gate covered by the signature, and clients show its actions
disabled to a customer whose class is not listed. The links themselves are the bank's
own pages and deep links, which check eligibility again when they act.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgspec

from ..crypto.keyring import Keyring
from ..crypto.keys import KeyProvider
from ..crypto.signing import public_jwk
from .. import policy
from ..hub import Hub, Pending
from ..models import AlertSystem, NoticeRecord
from ..protocol.cards import card_problem
from ..protocol.frames import CardBody
from ..storage import NewMessage
from ..storage.db import Conn, Database
from ..text import Username
from ..storage.signing_keys import SigningKeyStore, SigningUnavailable
from . import audit
from .errors import ActionError, require

__all__ = ["prepare", "sign_published", "signing_keys", "rotate_signing_key", "SystemCardIn", "SystemCardOut", "send_from_system"]


async def prepare(hub: Hub, card: CardBody, *, code: str = "invalid_frame") -> None:
    """Refuse a card whose image or links are not allowed (``code``: ``invalid_frame`` on the
    WebSocket, ``invalid_request`` over HTTP); load the signing key (``unavailable`` when it
    cannot be had: nothing is stored)."""
    problem = card_problem(card.image_url, [a.url for a in card.actions], hub.settings.card_domains)
    if problem is not None:
        raise ActionError(code, problem)
    try:
        await hub.signing.ready()
    except SigningUnavailable:
        raise ActionError("unavailable", "the hub's signing key is unavailable: nothing was stored, retry") from None


async def sign_published(hub: Hub, conn: Conn, rec: NoticeRecord) -> NoticeRecord:
    """A notice that has just been published, with the hub's signature stored on it (in the
    publishing transaction; other records are returned as they are)."""
    if rec.status != "published" or rec.seq is None:
        return rec
    await hub.signing.ready()
    signature = hub.signing.sign_notice(rec.account_id, rec.id, rec.body)
    await hub.accounts.set_signature(conn, rec.id, signature)
    return msgspec.structs.replace(rec, signature=signature)


async def signing_keys(hub: Hub) -> dict[str, Any]:
    """``GET /v1/signing-keys``: every key that signed or signs cards and notices (JWK, RFC 8037),
    with ``status`` ``active`` or ``retired``, the active one first."""
    keys = await hub.signing.public_keys()
    return {
        "keys": [
            {**public_jwk(k.key_id, k.public_key), "status": k.state, "created_at": k.created_at_ms} for k in keys
        ]
    }


async def rotate_signing_key(db: Database, provider: KeyProvider, *, actor: audit.Actor = audit.SYSTEM) -> str:
    """``bankhub keys rotate-signing``: a new active signing key; the old one is retired (still
    listed, so what it signed still verifies). Running nodes pick it up within
    :data:`~bankhub.storage.signing_keys.REFRESH_SECONDS`. Audited. Returns the new key id."""
    key_id = await SigningKeyStore(db, Keyring(provider)).rotate()
    await audit.record(db, actor=actor, action=audit.KEYS_ROTATED, target=f"signing-key:{key_id}", details={"signing_key": key_id})
    return key_id


class SystemCardIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/cards``: a card from a bank system to a customer (``recipient``: username)."""

    recipient: Username
    card: CardBody


class SystemCardOut(msgspec.Struct):
    conversation_id: str
    message_id: str
    seq: int
    ts: int
    duplicate: bool


_encoder = msgspec.json.Encoder()


async def send_from_system(hub: Hub, system: AlertSystem, idempotency_key: str | None, item: SystemCardIn) -> SystemCardOut:
    """A bank system's card (``POST /v1/cards``, HMAC-signed like the alert API): posted by
    the hub's system user into the customer's direct conversation with their RM, signed at
    commit like any card. The system must be registered for the template's category
    (:data:`bankhub.policy.CARD_CATEGORIES`). ``Idempotency-Key``: a retry with the same key
    stores nothing new and answers the original (``duplicate``)."""
    if hub.draining:
        raise ActionError("unavailable", "this node is restarting: nothing was stored; retry")
    recipient = await hub.users.by_username(item.recipient)
    rm = (await hub.users.by_ids([recipient.rm_id])).get(recipient.rm_id) if recipient and recipient.rm_id else None
    require(policy.may_send_system_card(system, item.card.template, recipient, rm))
    assert recipient is not None and rm is not None
    await prepare(hub, item.card, code="invalid_request")
    conversation_id, _ = await hub.conversations.get_or_create_direct(rm.id, recipient.id)
    # one client_msg_id per (system, key): bounded to 64 characters whatever the key's length
    key = idempotency_key or str(uuid.uuid4())  # no key: every request is a new card
    cmid = "card:" + hashlib.sha256(f"{system.id}\x00{key}".encode()).hexdigest()[:40]
    new = NewMessage(
        sender=await hub.desk.system(),
        conversation_id=conversation_id,
        client_msg_id=cmid,
        kind="card",
        body=_encoder.encode(item.card),
    )
    result = await hub.committer.submit(Pending(new=new, origin=None))
    if result.status == "denied" or result.message is None:
        raise ActionError(result.code or "forbidden", result.reason or "not allowed")
    m = result.message
    return SystemCardOut(m.conversation_id, m.message_id, m.seq, m.ts, result.status == "duplicate")
