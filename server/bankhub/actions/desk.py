"""The node's part of the RM and service-desk features: what reacts and what is published.

:class:`Desk` (``hub.desk``) is the one place that

* reacts to committed customer messages (:meth:`Desk.observe`, called by the group-commit
  flush after publishing, never blocking it): the service bot answers in a ``service``
  conversation; an away or off-duty RM's auto-reply goes into a ``direct`` conversation;
* posts the bank's own messages — ``system`` bodies sent by the system user
  (:mod:`bankhub.desk.system`) through the ordinary group-commit path, so they are
  stored, numbered, signalled and synced like any message. State changes commit first;
  their notices follow, with idempotency keys so a retry never posts twice;
* publishes, after commit, what changed to whom: live queue positions and estimated
  waits, assignments, access granted or revoked (:class:`~bankhub.signals.AccessSignal`
  cuts a conversation off on every node at once), new RMs;
* routes every queue that has someone waiting on a timer (``sweep_seconds``) — the
  safety net behind routing on every change — and keeps the node's set of unavailable
  RMs current (broadcast signals, plus the same timer).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ..broker import BROADCAST_CHANNEL, user_channel
from ..desk.faq import DEFAULT_FAQ, FaqEntry
from ..desk.routing import estimate_wait
from ..desk.system import system_user
from ..models import Role, User
from ..protocol.frames import (
    AgentState,
    ConversationRemoved,
    Message,
    ServiceAssigned,
    ServiceStatus,
    StaffCard,
    SystemBody,
    encode,
)
from ..signals import AccessSignal, PushSignal, RmStatusSignal, Signal, encode_signal
from ..storage import Appended, NewMessage
from ..storage.keys import KeyUnavailable
from ..storage.rm import RmStore
from ..storage.service import QueueSnapshot, RouteOutcome, ServiceStore, SessionRow, is_retryable

if TYPE_CHECKING:
    from ..hub import Hub
    from .messages import Pending

__all__ = ["Desk", "SystemEvent"]

log = logging.getLogger("bankhub.desk")
T = TypeVar("T")
_body = msgspec.json.Encoder()


class SystemEvent:
    """Stable ``event`` codes of ``system`` message bodies."""

    RM_CHANGED = "rm_changed"  # the customer's RM changed (handover)
    RM_AUTO_REPLY = "rm_auto_reply"  # the RM is away or off duty
    BOT_GREETING = "bot_greeting"
    BOT_ANSWER = "bot_answer"  # an FAQ answer
    BOT_UNKNOWN = "bot_unknown"  # the bot cannot answer: a person takes over
    QUEUED = "queued"  # waiting for an agent (position and estimate at that moment)
    OUT_OF_HOURS = "out_of_hours"  # nobody to hand over to now
    AGENT_JOINED = "agent_joined"
    TRANSFERRED = "transferred"
    CLOSED = "closed"  # closed by the agent; the customer may rate it
    CANCELLED = "cancelled"  # the customer left before being served


def _staff(user: User | None) -> StaffCard | None:
    return None if user is None else StaffCard(user_id=user.id, username=user.username, display_name=user.display_name)


class Desk:
    """``hub.desk``: see the module docstring. ``store`` and ``rm`` are the desk's and the
    RMs' storage; ``faq`` and ``clock`` may be replaced (tests, a bank's own FAQ)."""

    sweep_seconds = 5.0
    """How often each node routes the queues that have customers waiting (a safety net:
    routing also runs on every change) and re-reads which RMs are unavailable."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.store = ServiceStore(hub.db, hub.keyring)
        self.rm = RmStore(hub.db)
        self.faq: Sequence[FaqEntry] = DEFAULT_FAQ
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
        self.unavailable_rms: set[str] = set()
        self._system: User | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per conversation, with its users
        self._loop: asyncio.Task[None] | None = None
        self._stopped = False
        self._legacy_sealed = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.hub.registry.broadcast_handlers.append(self._on_broadcast)
        try:
            await self.system()
            self.unavailable_rms = await self.rm.unavailable_rms()
        except Exception:
            log.warning("service desk start-up reads failed; the sweep retries", exc_info=True)
        try:
            await self.seal_legacy_text()
        except Exception:
            log.warning("sealing service-desk texts stored in plaintext failed; the sweep retries", exc_info=True)
        self._loop = asyncio.create_task(self._sweep_loop(), name="service-desk-sweep")

    async def stop(self) -> None:
        self._stopped = True  # commits still flushing during the drain get no reactions
        if self._loop is not None:
            self._loop.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *([self._loop] if self._loop else []), return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("service desk task failed", exc_info=task.exception())

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            if self.hub.draining:
                return
            try:
                await self.sweep()
            except Exception:
                log.warning("service desk sweep failed", exc_info=True)

    async def sweep(self) -> None:
        """Route every queue with customers waiting; refresh the unavailable RMs; seal any
        desk text left in plaintext if start-up could not."""
        self.unavailable_rms = await self.rm.unavailable_rms()
        for queue in await self.store.queues_with_waiting():
            await self.publish_route(await self.retrying(lambda q=queue: self.store.route(q)))  # type: ignore[misc]
        await self.seal_legacy_text()  # last: a key provider still down never holds routing up

    async def seal_legacy_text(self) -> None:
        """Seal the notes and CSAT comments stored in plaintext before delta 0010 (see
        :meth:`ServiceStore.seal_legacy_text`); once per node, until it succeeded."""
        if self._legacy_sealed:
            return
        count = await self.store.seal_legacy_text()
        self._legacy_sealed = True
        if count:
            log.info("sealed %d service-desk texts stored in plaintext before encryption at rest", count)

    def _on_broadcast(self, signal: Signal) -> None:
        if isinstance(signal, RmStatusSignal):
            if signal.status == "online":
                self.unavailable_rms.discard(signal.user_id)
            else:
                self.unavailable_rms.add(signal.user_id)

    @staticmethod
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

    # --- reacting to committed messages ---------------------------------------------------

    def observe(self, batch: Sequence[Pending], results: Sequence[Appended]) -> None:
        """Called by the commit flush: schedule the bot and auto-replies (cheap checks only)."""
        if self._stopped:
            return
        for pending, result in zip(batch, results, strict=True):
            if result.status != "stored" or result.message is None:
                continue
            sender = pending.new.sender
            if sender.role is not Role.CUSTOMER:
                continue
            if result.kind == "service":
                message = result.message
                self.spawn(self._serialised(message.conversation_id, lambda m=message, s=sender: self._bot(m, s)))  # type: ignore[misc]
            elif result.kind == "direct" and self.unavailable_rms:
                for uid in result.recipients:
                    if uid in self.unavailable_rms:
                        self.spawn(self._auto_reply(result.message.conversation_id, sender, uid))

    async def _serialised(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        """One conversation's reactions run one at a time on this node, in commit order."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                await job()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _bot(self, message: Message, customer: User) -> None:
        from . import service

        await service.on_customer_message(self.hub, customer, message)

    async def _auto_reply(self, conversation_id: str, customer: User, rm_id: str) -> None:
        from . import rm

        await rm.auto_reply(self.hub, conversation_id, customer, rm_id)

    # --- posting and publishing ---------------------------------------------------------

    async def system(self) -> User:
        """The system user (its row is created on first use)."""
        if self._system is None:
            org = await self.store.ensure_system_user()
            if org is None:
                raise RuntimeError("no head office org yet: the system user cannot be created")
            self._system = system_user(org)
        return self._system

    async def post(
        self, conversation_id: str, event: str, text: str, data: dict[str, str] | None = None, *, key: str | None = None
    ) -> Message | None:
        """Post a ``system`` message through group commit; ``key`` makes it idempotent.
        Returns the committed message (None if the node is draining or it was refused)."""
        body = SystemBody(event=event, text=text, data=data or {})
        new = NewMessage(
            sender=await self.system(),
            conversation_id=conversation_id,
            client_msg_id=key or f"sys:{uuid.uuid4()}",
            kind="system",
            body=_body.encode(body),
        )
        from .messages import Pending

        try:
            result = await self.hub.committer.submit(Pending(new=new, origin=None))
        except RuntimeError:
            log.warning("system message %s not posted: the node is draining", event)
            return None
        if result.message is None:
            log.warning("system message %s refused: %s %s", event, result.code, result.reason)
        return result.message

    async def publish(self, items: Sequence[tuple[str, Signal]]) -> None:
        """Publish signals on user channels after a commit (a failure is logged: the
        state is committed and clients catch up with their next read)."""
        if not items:
            return
        try:
            await self.hub.broker.publish_many([(user_channel(uid), encode_signal(sig)) for uid, sig in items])
        except Exception:
            log.warning("service desk publish failed", exc_info=True)

    async def broadcast_rm_status(self, user_id: str, status: str) -> None:
        self._on_broadcast(RmStatusSignal(user_id=user_id, status=status))  # this node at once
        try:
            await self.hub.broker.publish(BROADCAST_CHANNEL, encode_signal(RmStatusSignal(user_id=user_id, status=status)))
        except Exception:
            log.warning("RM status broadcast failed; other nodes pick it up within %.0f s", self.sweep_seconds, exc_info=True)

    @staticmethod
    def push(user_id: str, frame: Any) -> tuple[str, Signal]:
        return user_id, PushSignal(user_id=user_id, frame=encode(frame).decode())

    @staticmethod
    def access(user_id: str, conversation_id: str, granted: bool, frame: Any) -> tuple[str, Signal]:
        return user_id, AccessSignal(user_id=user_id, conversation_id=conversation_id, granted=granted, frame=encode(frame).decode())

    def waiting_statuses(self, snapshot: QueueSnapshot) -> list[tuple[str, Signal]]:
        """A ``service_status`` for every customer waiting in the queue: position and estimate."""
        total = len(snapshot.waiting)
        return [
            self.push(
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

    async def agent_state(self, agent_id: str) -> list[tuple[str, Signal]]:
        agent = await self.store.agent(agent_id)
        if agent is None:
            return []
        return [self.push(agent_id, AgentState(state=agent.state, capacity=agent.capacity, active=agent.active))]

    async def assigned(self, session: SessionRow, via: str, revision: int = 0) -> list[tuple[str, Signal]]:
        """An agent got a session: they gain the conversation (with the customer's card and
        the notes), the customer learns who serves them, and the conversation says so."""
        assert session.agent_id is not None
        users = await self.hub.users.by_ids([session.agent_id])
        agent = users.get(session.agent_id)
        card = await self.rm.card(session.customer_id)
        items: list[tuple[str, Signal]] = []
        if card is not None:
            try:
                notes = await self.store.notes(session.id)
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
            items.append(self.access(session.agent_id, session.conversation_id, True, frame))
        items.append(
            self.push(
                session.customer_id,
                ServiceStatus(
                    session_id=session.id,
                    conversation_id=session.conversation_id,
                    queue=session.queue,
                    state="active",
                    revision=revision,
                    agent=_staff(agent),
                ),
            )
        )
        items += await self.agent_state(session.agent_id)
        name = agent.display_name if agent else "An agent"
        text = f"{name} has joined and will help you from here." if via == "queue" else f"{name} has taken over your conversation."
        await self.post(
            session.conversation_id,
            SystemEvent.AGENT_JOINED,
            text,
            {"agent": agent.username if agent else "", "agent_name": name, "session": session.id},
            key=f"join:{session.id}:{int(session.assigned_at.timestamp() * 1000) if session.assigned_at else 0}",
        )
        return items

    async def publish_route(self, outcome: RouteOutcome | None) -> None:
        """Publish what a routing transaction did: assignments, then everyone's new position."""
        if outcome is None:
            return
        items: list[tuple[str, Signal]] = []
        revision = outcome.snapshot.revision if outcome.snapshot else 0
        for session in outcome.assigned:
            items += await self.assigned(session, "queue", revision)
        if outcome.snapshot is not None:
            items += self.waiting_statuses(outcome.snapshot)
        await self.publish(items)

    async def released(self, agent_id: str, conversation_id: str, reason: str) -> None:
        """An agent lost a session (closed, transferred): cut the conversation off on their
        devices, show their new load, and give their freed capacity to whoever waits."""
        await self.publish(
            [self.access(agent_id, conversation_id, False, ConversationRemoved(conversation_id=conversation_id, reason=reason))]
            + await self.agent_state(agent_id)
        )
        await self.route_for_agent(agent_id)

    async def route_for_agent(self, agent_id: str) -> None:
        """Route the agent's queues, the one whose head waited longest first."""
        agent = await self.store.agent(agent_id)
        if agent is None or agent.state != "available" or agent.active >= agent.capacity:
            return
        for queue in await self.store.queues_by_oldest_wait(agent.queues):
            await self.publish_route(await self.retrying(lambda q=queue: self.store.route(q)))  # type: ignore[misc]
