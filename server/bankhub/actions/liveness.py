"""Read positions, typing, presence and the privacy settings behind them.

All three are live-only signals: ``typing`` and ``presence`` are never stored, a read
position is the member's ``read_seq`` (stored by ``read``, :mod:`bankhub.actions.messages`).
What is stored here is each user's privacy (``GET``/``PUT /v1/me/privacy``); who sees
what is decided in :mod:`bankhub.policy` (``receipt_audience``, ``visible_read_positions``,
``may_type``, ``may_see_presence``, ``last_seen_visible``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import policy
from ..broker import user_channel
from ..hub import Hub
from ..models import User
from ..protocol.frames import PresenceInfo, PresenceList, Typing, TypingEvent, WatchPresence, encode
from ..protocol.liveness import DROP, FULL
from ..signals import PushSignal
from ..storage.privacy import LAST_SEEN_CHOICES, Privacy
from .errors import ActionError, require

if TYPE_CHECKING:
    from ..delivery.connection import Connection

__all__ = ["typing", "watch_presence", "presence", "read_positions", "get_privacy", "set_privacy"]


def _conversation_uuid(conversation_id: str) -> None:
    try:
        uuid.UUID(conversation_id)
    except ValueError:
        raise ActionError("not_found", "no such conversation") from None


async def typing(hub: Hub, actor: User, frame: Typing) -> None:
    """Forward a member's ``typing`` to the other members' devices (debounced, never stored).

    Returns without forwarding when the gate drops it (a repeat within the interval, a stop
    with nothing to stop) or the conversation is over ``typing_max_members``. Raises
    ``not_found`` for a non-member (every time: nothing is remembered for them),
    ``forbidden`` in a direct conversation whose members block one another (as sending
    does), and ``rate_limited`` when the node tracks its maximum of typing states.
    """
    _conversation_uuid(frame.conversation_id)
    gate = hub.presence.typing
    key = (frame.conversation_id, actor.id)
    verdict = gate.offer(key, frame.active, hub.presence.typing_now())
    if verdict == FULL:
        raise ActionError("rate_limited", "too many typing indicators on this node; retry later", retry_after=1.0)
    if verdict == DROP:
        return
    cap = hub.settings.typing_max_members
    membership, members, blocked = await hub.privacy.audience(frame.conversation_id, actor.id, cap + 1)
    decision = policy.may_type(actor, membership, blocked=blocked)
    if not decision.allowed:
        gate.forget(key)
        require(decision)
    if len(members) > cap:
        return  # a large conversation: typing is not shown there (as peers do)
    # nor to a member an information barrier separates from me (my sends are refused there too)
    barred = await hub.barriers.separated_from(actor.id, [m for m in members if m != actor.id])
    ttl_ms = int(gate.ttl * 1000)
    text = encode(
        TypingEvent(conversation_id=frame.conversation_id, user_id=actor.id, active=frame.active, ttl_ms=ttl_ms)
    ).decode()
    await hub.outbox.publish(
        [(user_channel(m), PushSignal(user_id=m, frame=text)) for m in members if m != actor.id and m not in barred], what="typing"
    )


def _check_ids(hub: Hub, user_ids: Sequence[str], code: str) -> None:
    cap = hub.settings.presence_max_watch
    if len(user_ids) > cap:
        raise ActionError(code, f"at most {cap} user ids at once")


async def watch_presence(hub: Hub, conn: Connection, frame: WatchPresence) -> PresenceList:
    """Replace the connection's watch list; the watched users' presence as it may see it."""
    _check_ids(hub, frame.user_ids, "invalid_frame")
    require(policy.may_read_conversation_list(conn.user))
    users = await hub.presence.watch(conn, frame.user_ids)
    return PresenceList(id=frame.id, users=users)


async def presence(hub: Hub, actor: User, user_ids: Sequence[str]) -> list[PresenceInfo]:
    """One-off presence query (``GET /v1/presence``): nothing is watched."""
    _check_ids(hub, user_ids, "invalid_request")
    require(policy.may_read_conversation_list(actor))
    return await hub.presence.query(actor, user_ids)


async def read_positions(hub: Hub, actor: User, conversation_id: str) -> list[tuple[str, int]]:
    """The members' read positions ``actor`` (a member) sees when opening a conversation."""
    _conversation_uuid(conversation_id)
    membership = await hub.conversations.membership(conversation_id, actor.id)
    require(policy.may_read_conversation(actor, membership))
    assert membership is not None  # allowed above
    cap = hub.settings.receipts_max_members
    positions = await hub.privacy.read_positions(conversation_id, cap + 1)
    if len(positions) > cap:
        return [(actor.id, membership.read_seq)]
    blocked = membership.kind == "direct" and await hub.privacy.direct_blocked(conversation_id)
    visible = policy.visible_read_positions(actor.id, positions, len(positions), cap, blocked=blocked)
    # nor the position of a member an information barrier separates from me (as the live receipts)
    barred = await hub.barriers.separated_from(actor.id, [u for u, _ in visible if u != actor.id])
    return [(u, seq) for u, seq in visible if u not in barred]


async def get_privacy(hub: Hub, actor: User) -> Privacy:
    require(policy.may_set_privacy(actor))
    return await hub.privacy.get(actor.id)


async def set_privacy(hub: Hub, actor: User, share_read_receipts: bool | None, last_seen: str | None) -> Privacy:
    """Change my privacy; a field left out (None) keeps its value. Only the fields sent are
    written (one upsert, no read first): concurrent changes of different fields all stick."""
    require(policy.may_set_privacy(actor))
    if last_seen is not None and last_seen not in LAST_SEEN_CHOICES:
        raise ActionError("invalid_request", f"last_seen must be one of {', '.join(LAST_SEEN_CHOICES)}")
    return await hub.privacy.put(actor.id, share_read_receipts, last_seen)
