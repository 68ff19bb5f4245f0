"""Sending, reading and syncing messages.

:func:`send` hands the message to the group committer (``hub.committer``); :func:`commit`
is its flush: one transaction for the whole batch — storage locks the conversations and
reads the facts, the policy decides each send, storage writes what was allowed — and the
message signals are emitted into the outbox, which publishes them in one round trip only
after the commit. The ``sent`` acknowledgement is built from the committed row, so a
client is never told "sent" for a message that could still be rolled back. A publish
failure after commit is logged, not reported as a send failure: the message is durable
and reaches its recipients through gap filling and sync.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import msgspec

from .. import metrics, policy
from .. import tracing
from ..desk.system import SYSTEM_USER_ID
from ..hub import Hub, Pending
from ..models import Membership, User
from ..protocol.frames import CardBody, ImageBody, Read, Receipt, Send, Sent, SignedCardBody, Sync, VoiceBody
from ..signals import MessageSignal, ReceiptSignal
from ..storage import Appended, NewMessage
from ..storage.messages import Since
from ..storage.privacy import PrivacyStore
from ..storage.barriers import BARRIER_LOCK_KEY, BarrierStore
from ..storage.retention import link_media_txn
from . import cards, dlp, media, reactions, supervision
from .errors import ActionError, require

__all__ = ["send", "read", "sync", "commit"]

log = logging.getLogger("bankhub.actions.messages")

_body_encoder = msgspec.json.Encoder()


class _Event(msgspec.Struct):
    event: str = ""


_event_decoder = msgspec.json.Decoder(_Event)


def _decide(
    sender: User, membership: Membership | None, new: NewMessage | None = None, *, blocked: bool = False
) -> policy.Decision:
    if sender.id == SYSTEM_USER_ID:  # the hub's own notices (handover, bot, auto-reply, group events)
        event = None
        if new is not None and new.kind == "system" and membership is not None and membership.kind == "group":
            event = _event_decoder.decode(new.body).event  # the hub's own encoding: decodes
        return policy.may_post_system(sender, membership, event)
    decision = policy.may_send(sender, membership, blocked=blocked)  # blocked: a block between direct members
    if decision.allowed and new is not None and new.kind == "card":
        return policy.may_send_card(sender, membership)  # staff who serve customers only
    return decision


_NO_MEDIA = policy.Decision(False, "not_found", "no such media")


async def commit(hub: Hub, batch: Sequence[Pending]) -> list[Appended]:
    """The group committer's flush: commit the batch, publish its signals, then let the
    reactions (bot, auto-replies) see what was committed."""
    started = time.perf_counter()
    sends = [p.new for p in batch]
    scans = await dlp.prescan(hub, sends)  # data-loss prevention: what each text carries, the key loaded
    # the shared barrier lock comes with the BEGIN (no round trip of its own): a barrier change,
    # which holds it exclusively until it commits, applies to this batch exactly from its commit on
    async with hub.transaction("append_messages", shared_locks=(BARRIER_LOCK_KEY,)) as tx:
        locked = await hub.messages.lock_txn(tx.conn, sends)
        decisions = [_decide(n.sender, locked.membership(n), n, blocked=locked.blocked(n)) for n in sends]
        # information barriers: one query for the batch, when any policy exists (none can appear before
        # this commits); a sender a policy separates from any current member is refused
        if locked.barriers:
            barred = await BarrierStore.barred_txn(tx.conn, [(n.conversation_id, n.sender.id) for n in sends], locked=True)
            decisions = [
                policy.may_send_across(n.sender, d, barred=(n.conversation_id, n.sender.id) in barred)
                for n, d in zip(sends, decisions, strict=True)
            ]
        # pictures and voice: the items are locked against the unsent-upload sweep until commit,
        # and one it deleted since media.attach checked it is refused, not sent as a dangling id
        carried = [media.carried(n.kind, n.body) for n in sends]
        present = await hub.media.store.lock_for_send(tx.conn, sorted({m for m in carried if m is not None}))
        decisions = [
            _NO_MEDIA if m is not None and m not in present and d.allowed else d for d, m in zip(decisions, carried, strict=True)
        ]
        # data-loss prevention: the per-direction verdict; masked bodies replace the originals, refusals the decisions
        sends, decisions, verdicts = dlp.screen(hub.settings, sends, scans, locked, decisions)
        results = await hub.messages.append_txn(tx.conn, sends, locked, decisions)
        await dlp.record_txn(tx.conn, scans, verdicts, results)  # the masked values' keyed fingerprints, same transaction
        # a committed message carries them: no longer drafts (others may see them, the sweep keeps them)
        await hub.media.store.mark_attached(
            tx.conn, sorted({m for m, r in zip(carried, results, strict=True) if m is not None and r.status == "stored"})
        )
        # which message carries which item (the same item may be sent again): a purge keeps an item any message still carries
        await link_media_txn(
            tx.conn,
            [
                (r.message.conversation_id, r.message.message_id, m)
                for m, r in zip(carried, results, strict=True)
                if m and r.status == "stored" and r.message
            ],
        )
        # supervision: rules and sampling on the stored (masked) text; flags commit with the messages
        await supervision.flag_txn(hub, tx.conn, sends, results)
        for pending, result in zip(batch, results, strict=True):
            if result.message is not None:
                # a duplicate is published again: harmless (receivers drop seen seqs) and it repairs
                # a delivery lost when the first attempt's node died between commit and publish
                tx.emit_to_users(result.recipients, MessageSignal(message=result.message, origin=pending.origin))
    metrics.observe_commit(len(batch), sum(1 for r in results if r.status == "stored"), time.perf_counter() - started)
    try:
        # the bot and RM auto-replies react to committed customer messages (without blocking);
        # the batch is committed and published: nothing here may turn it into a failed send
        reactions.observe(hub, batch, results)
    except Exception:
        log.warning("message observers failed", exc_info=True)
    return results


async def send(hub: Hub, actor: User, frame: Send, origin: str | None = None) -> Sent:
    """Commit one message; returns the ``sent`` answer (raises :class:`ActionError` on refusal)."""
    if hub.draining:
        raise ActionError("unavailable", "this node is restarting: nothing was stored; reconnect and resend")
    try:
        uuid.UUID(frame.conversation_id)
    except ValueError:
        raise ActionError("not_found", "no such conversation") from None
    if isinstance(frame.body, CardBody):
        await cards.prepare(hub, frame.body)  # links on allow-listed domains; the signing key loaded
    body = frame.body
    if isinstance(body, (ImageBody, VoiceBody)):
        body = await media.attach(hub, actor, frame.conversation_id, body)  # mine, this conversation, ready; facts filled in
    new = NewMessage(
        sender=actor,
        conversation_id=frame.conversation_id,
        client_msg_id=frame.client_msg_id,
        kind=body.__struct_config__.tag,  # type: ignore[arg-type]
        body=_body_encoder.encode(body),
    )
    result = await hub.committer.submit(Pending(new=new, origin=origin, trace=tracing.current()))
    if result.status == "denied" or result.message is None:
        raise ActionError(result.code or "forbidden", result.reason or "not allowed")
    m = result.message
    return Sent(
        id=frame.id,
        conversation_id=m.conversation_id,
        client_msg_id=m.client_msg_id,
        message_id=m.message_id,
        seq=m.seq,
        ts=m.ts,
        duplicate=result.status == "duplicate",
        # the hub's signature travels back; so does a body data-loss prevention masked
        body=m.body if isinstance(m.body, SignedCardBody) or result.dlp else None,
        dlp=result.dlp,
    )


async def read(hub: Hub, actor: User, frame: Read) -> Receipt:
    """Raise my read position; my devices get a ``receipt``, and so do the other members'
    under the read-receipt rules (:func:`bankhub.policy.receipt_audience`)."""
    membership = await hub.conversations.membership(frame.conversation_id, actor.id)
    require(policy.may_read_conversation(actor, membership))
    async with hub.transaction("conversation_mark_read") as tx:
        marked = await hub.conversations.mark_read(tx.conn, frame.conversation_id, actor.id, frame.seq)
        if marked is None:
            raise ActionError("not_found", "no such conversation")
        read_seq, last_seq, members = marked
        # read receipts: my own devices always; the other members only in a conversation of
        # up to receipts_max_members where both of us share read receipts (policy)
        cap = hub.settings.receipts_max_members
        opted_out = await PrivacyStore.opted_out_in(tx.conn, members) if len(members) <= cap else set()
        # nor across a block between the two members of a direct conversation
        blocked = membership is not None and membership.kind == "direct" and await PrivacyStore.direct_blocked_in(
            tx.conn, frame.conversation_id
        )
        audience = policy.receipt_audience(actor.id, members, opted_out, cap, blocked=blocked)
        # no read receipt to a member an information barrier separates from me
        barred_from = await BarrierStore.separated_from_txn(tx.conn, actor.id, [m for m in audience if m != actor.id])
        tx.emit_to_users(
            [m for m in audience if m not in barred_from],
            ReceiptSignal(conversation_id=frame.conversation_id, user_id=actor.id, read_seq=read_seq, last_seq=last_seq),
        )
    return Receipt(
        id=frame.id, conversation_id=frame.conversation_id, user_id=actor.id, read_seq=read_seq, unread=last_seq - read_seq
    )


async def sync(hub: Hub, actor: User, frame: Sync) -> Since:
    """Everything the client missed after its cursors (one query), and which of the
    conversations it listed are its own (see :meth:`~bankhub.storage.MessageStore.since`)."""
    require(policy.may_read_conversation_list(actor))
    return await hub.messages.since(actor.id, frame.since, frame.limit, listed_only=frame.listed_only)
