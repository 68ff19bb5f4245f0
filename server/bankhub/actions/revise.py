"""Recall and edit of one's own message (client frames ``recall`` and ``edit``).

A change is itself a message, appended to the conversation's seq stream (body
``{"kind": "edit", "message_id": X, "body": {...}}`` or ``{"kind": "recall", "message_id":
X}``), so live delivery and ``sync`` carry it with no cursor of its own. One transaction,
holding the conversation's row lock as the group committer's batches do
(:meth:`~bankhub.storage.MessageStore.lock_txn`), reads the target, asks
:func:`bankhub.policy.may_revise`, appends the change message
(:meth:`~bankhub.storage.MessageStore.append_txn`: gap-free seqs) and updates the target
row, keeping the replaced body for compliance (:mod:`bankhub.storage.revisions`). The
message signal leaves through the outbox after commit, and ``sent`` is built from the
committed row.

Idempotent like ``send``: an ``edit`` resent with a stored ``client_msg_id`` answers the
stored message (``duplicate``); a ``recall`` of a message its sender already recalled
answers the recall message (``duplicate``) — a message is never recalled twice. Both are
answered so even after the window.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import msgspec

from .. import policy
from ..crypto.keyring import DataKey
from ..hub import Hub
from ..ids import uuid7
from ..models import User
from ..protocol.frames import Edit, EditBody, Message, Recall, RecallBody, Sent
from ..signals import MessageSignal
from ..storage import NewMessage
from ..storage.barriers import BarrierStore
from ..storage.db import Conn
from ..storage.revisions import TargetRow
from . import dlp, supervision
from .errors import ActionError, require

__all__ = ["edit", "recall"]

log = logging.getLogger("bankhub.actions.revise")

_encoder = msgspec.json.Encoder()


async def edit(hub: Hub, actor: User, frame: Edit, origin: str | None = None) -> Sent:
    """Replace the text of the actor's own text message, within ``message_edit_seconds``."""
    return await _revise(hub, actor, frame.id, frame.conversation_id, frame.message_id, "edit", frame, origin)


async def recall(hub: Hub, actor: User, frame: Recall, origin: str | None = None) -> Sent:
    """Withdraw the actor's own text message, within ``message_recall_seconds``."""
    return await _revise(hub, actor, frame.id, frame.conversation_id, frame.message_id, "recall", frame, origin)


def _sent(frame_id: str, m: Message, duplicate: bool) -> Sent:
    return Sent(
        id=frame_id,
        conversation_id=m.conversation_id,
        client_msg_id=m.client_msg_id,
        message_id=m.message_id,
        seq=m.seq,
        ts=m.ts,
        duplicate=duplicate,
    )


async def _revise(
    hub: Hub, actor: User, frame_id: str, conversation_id: str, message_id: str, change: str, frame: Edit | Recall, origin: str | None
) -> Sent:
    if hub.draining:
        raise ActionError("unavailable", "this node is restarting: nothing was stored; reconnect and resend")
    try:
        cid = str(uuid.UUID(conversation_id))
    except ValueError:
        raise ActionError("not_found", "no such conversation") from None
    try:
        mid = str(uuid.UUID(message_id))
    except ValueError:
        raise ActionError("not_found", "no such message in this conversation") from None
    settings = hub.settings
    if isinstance(frame, Edit):
        body = _encoder.encode(EditBody(message_id=mid, body=frame.body))
        client_msg_id = frame.client_msg_id
        window = settings.message_edit_seconds
    else:
        body = _encoder.encode(RecallBody(message_id=mid))
        # server-made and unguessable: a client's own ids can never collide with it
        client_msg_id = f"recall.{uuid7()}"
        window = settings.message_recall_seconds
    new = NewMessage(sender=actor, conversation_id=cid, client_msg_id=client_msg_id, kind=change, body=body)
    scans = await dlp.prescan(hub, [new])  # data-loss prevention: an edit's new text, the key loaded
    async with hub.transaction("revise_message") as tx:
        locked = await hub.messages.lock_txn(tx.conn, [new])
        membership = locked.membership(new)
        require(policy.may_send(actor, membership))
        if isinstance(frame, Edit):  # new text reaches the members: an information barrier refuses it as it refuses a send
            barred = await BarrierStore.barred_txn(tx.conn, [(cid, actor.id)])
            require(policy.may_send_across(actor, policy.ALLOW, barred=bool(barred)))
        keys = await hub.revisions.data_key_txn(tx.conn, cid, locked.known_keys)
        if cid in keys.shredded:
            raise ActionError("gone", "this conversation was erased; its messages can no longer be changed")
        if cid not in keys.keys:
            raise ActionError("unavailable", "conversation key unavailable; nothing was changed, retry")
        key = keys.keys[cid]
        recipients = list(locked.members.get(cid, {}))
        if isinstance(frame, Edit):
            stored = await hub.revisions.resent_txn(tx.conn, key, cid, actor.id, client_msg_id)
            if stored is not None:
                # published again: harmless (receivers drop seen seqs), repairs a lost delivery
                tx.emit_to_users(recipients, MessageSignal(message=stored, origin=origin))
                resent = _sent(frame_id, stored, True)
                if scans[0].findings and _encoder.encode(stored.body) != new.body:
                    # stored masked the first time: the sender again holds what the members see
                    resent = msgspec.structs.replace(resent, body=stored.body, dlp=dlp.notices(scans[0].findings))
                return resent
        target = await hub.revisions.target_txn(tx.conn, key, cid, mid)
        if change == "recall" and (dup := await _recalled_before(hub, tx.conn, key, actor, target)) is not None:
            tx.emit_to_users(recipients, MessageSignal(message=dup, origin=origin))
            return _sent(frame_id, dup, True)
        facts = target.facts if target is not None else None
        # the database's clock at both ends of the window (target_txn): never the node's
        elapsed = target.elapsed_seconds if target is not None else 0.0
        blocked = locked.blocked(new)
        require(policy.may_revise(actor, membership, facts, change, elapsed, window, settings.message_max_edits, blocked=blocked))
        assert target is not None
        # data-loss prevention, as for a send: the new text masked, or the edit refused
        [new], [verdict], verdicts = dlp.screen(settings, [new], scans, locked, [policy.ALLOW])
        require(verdict)
        [result] = await hub.messages.append_txn(tx.conn, [new], locked, [policy.ALLOW])
        if result.status == "denied" or result.message is None:
            raise ActionError(result.code or "forbidden", result.reason or "not allowed")
        await dlp.record_txn(tx.conn, scans, verdicts, [result])
        message = result.message
        new_text = _encoder.encode(message.body.body) if isinstance(message.body, EditBody) else None
        # the change's time is its message's: a target's edited_ts equals its edit message's ts
        changed_at = dt.datetime.fromtimestamp(message.ts / 1000, dt.timezone.utc)
        await hub.revisions.apply_txn(tx.conn, key, target, change, message.seq, new_text, changed_at)
        # supervision: an edit's new text (as stored) meets the rules like a new message
        await supervision.flag_txn(hub, tx.conn, [new], [result])
        tx.emit_to_users(result.recipients, MessageSignal(message=message, origin=origin))
    sent = _sent(frame_id, message, result.status == "duplicate")
    if result.dlp:  # masked: the sender holds what the members see
        sent = msgspec.structs.replace(sent, body=message.body, dlp=result.dlp)
    return sent


async def _recalled_before(hub: Hub, conn: Conn, key: DataKey, actor: User, target: TargetRow | None) -> Message | None:
    """The message that recalled ``target`` already, when the actor is its sender (a resent recall)."""
    if target is None or target.recall_seq is None or target.facts.sender_id != actor.id:
        return None
    return await hub.revisions.message_at_txn(conn, key, target.facts.conversation_id, target.recall_seq)
