"""Sending, reading and syncing messages.

:func:`send` hands the message to the group-commit batcher; :func:`commit_and_publish`
is the batcher's flush: one transaction for the whole batch, then — only after the
commit — one pipelined publish of the signals. The ``sent`` acknowledgement is built
from the committed row, so a client is never told "sent" for a message that could
still be rolled back. A publish failure after commit is logged, not reported as a send
failure: the message is durable and reaches its recipients through gap filling and sync.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from .. import policy
from ..broker import user_channel
from ..desk.system import SYSTEM_USER_ID
from ..models import User
from ..protocol.frames import Read, Receipt, Send, Sent, Sync
from ..signals import MessageSignal, ReceiptSignal, encode_signal
from ..storage import Appended, NewMessage
from ..storage.messages import Since
from .errors import ActionError, require

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["send", "read", "sync", "commit_and_publish", "Pending"]

log = logging.getLogger("bankhub.actions.messages")
_body_encoder = msgspec.json.Encoder()


class Pending(msgspec.Struct, gc=False):
    """A send on its way through the batcher, and the connection it came from."""

    new: NewMessage
    origin: str | None


def _authorize(sender: User, membership: object) -> tuple[bool, str | None, str]:
    if sender.id == SYSTEM_USER_ID:  # the hub's own notices (handover, bot, auto-reply)
        return policy.may_post_system(sender, membership).as_tuple()  # type: ignore[arg-type]
    return policy.may_send(sender, membership).as_tuple()  # type: ignore[arg-type]


async def commit_and_publish(hub: Hub, batch: Sequence[Pending]) -> list[Appended]:
    """The batcher's flush: commit the batch, then publish its signals."""
    results = await hub.messages.append_batch([p.new for p in batch], _authorize)
    out: list[tuple[str, bytes]] = []
    for pending, result in zip(batch, results, strict=True):
        if result.message is None:
            continue
        # a duplicate is published again: harmless (receivers drop seen seqs) and it repairs
        # a delivery lost when the first attempt's node died between commit and publish
        payload = encode_signal(MessageSignal(message=result.message, origin=pending.origin))
        out.extend((user_channel(uid), payload) for uid in result.recipients)
    if out:
        try:
            await hub.broker.publish_many(out)
        except Exception:
            log.warning("publish after commit failed; receivers will catch up from storage", exc_info=True)
    try:
        # the bot and RM auto-replies react to committed customer messages (without blocking)
        hub.desk.observe(batch, results)
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
    new = NewMessage(
        sender=actor,
        conversation_id=frame.conversation_id,
        client_msg_id=frame.client_msg_id,
        kind=frame.body.__struct_config__.tag,  # type: ignore[arg-type]
        body=_body_encoder.encode(frame.body),
    )
    result = await hub.committer.submit(Pending(new=new, origin=origin))
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
    )


async def read(hub: Hub, actor: User, frame: Read) -> Receipt:
    """Raise my read position; every member's devices get a ``receipt``."""
    membership = await hub.conversations.membership(frame.conversation_id, actor.id)
    require(policy.may_read_conversation(actor, membership))
    marked = await hub.conversations.mark_read(frame.conversation_id, actor.id, frame.seq)
    if marked is None:
        raise ActionError("not_found", "no such conversation")
    read_seq, last_seq, members = marked
    payload = encode_signal(
        ReceiptSignal(conversation_id=frame.conversation_id, user_id=actor.id, read_seq=read_seq, last_seq=last_seq)
    )
    try:
        await hub.broker.publish_many([(user_channel(uid), payload) for uid in members])
    except Exception:
        log.warning("receipt publish failed", exc_info=True)
    return Receipt(
        id=frame.id, conversation_id=frame.conversation_id, user_id=actor.id, read_seq=read_seq, unread=last_seq - read_seq
    )


async def sync(hub: Hub, actor: User, frame: Sync) -> Since:
    """Everything the client missed after its cursors (one query), and which of the
    conversations it listed are its own (see :meth:`~bankhub.storage.MessageStore.since`)."""
    require(policy.may_read_conversation_list(actor))
    return await hub.messages.since(actor.id, frame.since, frame.limit, listed_only=frame.listed_only)
