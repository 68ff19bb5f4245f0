"""Routing the service desk's queues, and telling everyone concerned what changed.

Routing itself is a Postgres transaction in storage (queue row, then agent rows). What
follows a committed routing or desk change is published here through the outbox
(:meth:`~bankhub.outbox.Outbox.publish`): live queue positions and estimated waits,
assignments, access granted or revoked (:class:`~bankhub.signals.AccessSignal` cuts a
conversation off on every node at once), agent states and RM availability. Every node
also routes the queues that have someone waiting on a timer (:func:`sweep`), the safety
net behind routing on every change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..broker import BROADCAST_CHANNEL, user_channel
from ..desk.routing import estimate_wait
from ..desk.system import SystemEvent
from ..hub import Hub
from ..models import User
from ..outbox import Emitted
from ..protocol.frames import AgentState, ConversationRemoved, ServiceAssigned, ServiceStatus, StaffCard, encode
from ..signals import AccessSignal, PushSignal, RmStatusSignal
from ..storage.keys import KeyUnavailable
from ..storage.service.rows import QueueSnapshot, RouteOutcome, SessionRow, is_retryable
from . import system_posts

__all__ = [
    "push",
    "access",
    "retrying",
    "publish",
    "publish_route",
    "assigned",
    "released",
    "route_for_agent",
    "agent_state",
    "waiting_statuses",
    "broadcast_rm_status",
    "sweep",
    "staff_card",
]

log = logging.getLogger("bankhub.desk")
T = TypeVar("T")


def staff_card(user: User) -> StaffCard:
    """How a member of staff (an RM, an agent) is shown to the customers they serve."""
    return StaffCard(user_id=user.id, username=user.username, display_name=user.display_name)


def push(user_id: str, frame: Any) -> Emitted:
    """Push one server frame to the user's sockets."""
    return user_channel(user_id), PushSignal(user_id=user_id, frame=encode(frame).decode())


def access(user_id: str, conversation_id: str, granted: bool, frame: Any) -> Emitted:
    """The user gains or loses a conversation on every node at once, then gets ``frame``."""
    signal = AccessSignal(user_id=user_id, conversation_id=conversation_id, granted=granted, frame=encode(frame).decode())
    return user_channel(user_id), signal


async def publish(hub: Hub, items: Sequence[Emitted]) -> None:
    """Publish committed desk changes (see :meth:`~bankhub.outbox.Outbox.publish`)."""
    await hub.outbox.publish(items, what="service desk")


async def retrying(op: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """Run a desk transaction again when Postgres chose it as a deadlock victim."""
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


def waiting_statuses(snapshot: QueueSnapshot) -> list[Emitted]:
    """A ``service_status`` for every customer waiting in the queue: position and estimate."""
    total = len(snapshot.waiting)
    return [
        push(
            w.customer_id,
            ServiceStatus(
                session_id=w.session_id,
                conversation_id=w.conversation_id,
                queue=snapshot.queue,
                state="waiting",
                revision=snapshot.revision,
                position=w.position,
                waiting=total,
                estimated_wait_s=estimate_wait(w.position, snapshot.slots, snapshot.avg_handle_seconds),
            ),
        )
        for w in snapshot.waiting
    ]


async def agent_state(hub: Hub, agent_id: str) -> list[Emitted]:
    agent = await hub.desk.store.agent(agent_id)
    if agent is None:
        return []
    return [push(agent_id, AgentState(state=agent.state, capacity=agent.capacity, active=agent.active))]


async def assigned(hub: Hub, session: SessionRow, via: str, revision: int = 0) -> list[Emitted]:
    """An agent got a session: they gain the conversation (with the customer's card and
    the notes), the customer learns who serves them, and the conversation says so."""
    assert session.agent_id is not None
    users = await hub.users.by_ids([session.agent_id])
    agent = users.get(session.agent_id)
    card = await hub.desk.rm.card(session.customer_id)
    items: list[Emitted] = []
    if card is not None:
        try:
            notes = await hub.desk.store.notes(session.id)
        except KeyUnavailable:
            # the assignment is committed: push it anyway; the notes are one GET away once the key provider is back
            log.warning("notes of service session %s not pushed: conversation key unavailable", session.id)
            notes = []
        frame = ServiceAssigned(
            session_id=session.id,
            conversation_id=session.conversation_id,
            queue=session.queue,
            via=via,
            start_seq=session.start_seq,
            customer=card,
            notes=notes,
        )
        items.append(access(session.agent_id, session.conversation_id, True, frame))
    items.append(
        push(
            session.customer_id,
            ServiceStatus(
                session_id=session.id,
                conversation_id=session.conversation_id,
                queue=session.queue,
                state="active",
                revision=revision,
                agent=None if agent is None else staff_card(agent),
            ),
        )
    )
    items += await agent_state(hub, session.agent_id)
    name = agent.display_name if agent else "An agent"
    text = f"{name} has joined and will help you from here." if via == "queue" else f"{name} has taken over your conversation."
    await system_posts.post(
        hub,
        session.conversation_id,
        SystemEvent.AGENT_JOINED,
        text,
        {"agent": agent.username if agent else "", "agent_name": name, "session": session.id},
        key=f"join:{session.id}:{int(session.assigned_at.timestamp() * 1000) if session.assigned_at else 0}",
    )
    return items


async def publish_route(hub: Hub, outcome: RouteOutcome | None) -> None:
    """Publish what a routing transaction did: assignments, then everyone's new position."""
    if outcome is None:
        return
    items: list[Emitted] = []
    revision = outcome.snapshot.revision if outcome.snapshot else 0
    for session in outcome.assigned:
        items += await assigned(hub, session, "queue", revision)
    if outcome.snapshot is not None:
        items += waiting_statuses(outcome.snapshot)
    await publish(hub, items)


async def released(hub: Hub, agent_id: str, conversation_id: str, reason: str) -> None:
    """An agent lost a session (closed, transferred): cut the conversation off on their
    devices, show their new load, and give their freed capacity to whoever waits."""
    await publish(
        hub,
        [access(agent_id, conversation_id, False, ConversationRemoved(conversation_id=conversation_id, reason=reason))]
        + await agent_state(hub, agent_id),
    )
    await route_for_agent(hub, agent_id)


async def route_for_agent(hub: Hub, agent_id: str) -> None:
    """Route the agent's queues, the one whose head waited longest first."""
    store = hub.desk.store
    agent = await store.agent(agent_id)
    if agent is None or agent.state != "available" or agent.active >= agent.capacity:
        return
    for queue in await store.queues_by_oldest_wait(agent.queues):
        await publish_route(hub, await retrying(lambda q=queue: store.route(q)))  # type: ignore[misc]


async def broadcast_rm_status(hub: Hub, user_id: str, status: str) -> None:
    """An RM's availability changed: this node at once, every node through the broadcast channel."""
    signal = RmStatusSignal(user_id=user_id, status=status)
    hub.desk.on_broadcast(signal)
    await hub.outbox.publish([(BROADCAST_CHANNEL, signal)], what="RM status")


async def sweep(hub: Hub) -> None:
    """Route every queue with customers waiting; refresh the unavailable RMs; seal any
    desk text left in plaintext if start-up could not (last: a key provider still down
    never holds routing up)."""
    await hub.desk.refresh()
    store = hub.desk.store
    for queue in await store.queues_with_waiting():
        await publish_route(hub, await retrying(lambda q=queue: store.route(q)))  # type: ignore[misc]
    await hub.desk.seal_legacy_text()
