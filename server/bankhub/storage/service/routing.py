"""Routing: the transactions that move customers through a queue's waiting list and
change agents' load (``service_sessions``, ``service_assignments``, the locked rows of
``service_queues`` and ``service_agents``).

Every transaction here takes its locks in one order — **queue row → agent rows (by id)
→ session rows** — (see :mod:`bankhub.storage.service`); the in-transaction steps are the
``_lock_*`` methods and the static helpers below, each run on the caller's connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgspec

from ...desk.routing import AgentLoad, Assignment, plan
from ..barriers import BarrierStore
from ..db import Conn
from .rows import (
    CHANGED_MEANWHILE,
    HANDLE_SAMPLE,
    NO_SESSION,
    SESSION_COLS,
    Change,
    QueueRow,
    QueueSnapshot,
    RouteOutcome,
    ServiceError,
    SessionRow,
    WaitingEntry,
    handle_estimate,
    queue_from_row,
    recent_handle_sql,
    session_from_row,
    uid,
)
from .texts import ServiceTexts

__all__ = ["ServiceRouting"]


class _Locked(msgspec.Struct):
    load: AgentLoad
    skilled: bool


class ServiceRouting(ServiceTexts):
    """Joining, routing, leaving, transfers and closes."""

    # --- steps inside a transaction (lock order: queue -> agents -> sessions) ------------------

    @staticmethod
    async def _lock_queue(conn: Conn, code: str) -> QueueRow:
        row = await conn.fetchrow("SELECT * FROM service_queues WHERE code = $1 FOR NO KEY UPDATE", code)
        if row is None:
            raise ServiceError("not_found", f"no service queue {code!r}")
        return queue_from_row(row)

    @staticmethod
    async def _lock_agents(conn: Conn, queue: str | None, extra: Sequence[str]) -> dict[str, _Locked]:
        """Lock (in id order) the agents serving ``queue`` and those in ``extra``."""
        rows = await conn.fetch(
            """SELECT a.user_id, a.state, a.capacity, a.active, a.last_assigned_at, u.disabled OR u.role <> 'agent' AS off_desk,
                      EXISTS (SELECT 1 FROM service_agent_queues q WHERE q.user_id = a.user_id AND q.queue = $1) AS skilled
               FROM service_agents a JOIN users u ON u.id = a.user_id
               WHERE a.user_id IN (SELECT user_id FROM service_agent_queues WHERE queue = $1) OR a.user_id = ANY($2::uuid[])
               ORDER BY a.user_id FOR NO KEY UPDATE OF a""",
            queue,
            [uid(e) for e in extra],
        )
        return {
            str(r["user_id"]): _Locked(
                AgentLoad(
                    user_id=str(r["user_id"]),
                    state="away" if r["off_desk"] else r["state"],  # a disabled account, or no longer an agent: nobody
                    capacity=r["capacity"],
                    active=r["active"],
                    last_assigned=None if r["last_assigned_at"] is None else r["last_assigned_at"].timestamp(),
                ),
                bool(r["skilled"]),
            )
            for r in rows
        }

    async def _lock_queue_and_agents(self, conn: Conn, queue: str, extra: Sequence[str] = ()) -> dict[str, _Locked]:
        """Lock ``queue``'s row, then its agents and those in ``extra``: the first locks of
        every transaction that changes the queue's waiting list."""
        await self._lock_queue(conn, queue)
        return await self._lock_agents(conn, queue, extra)

    @staticmethod
    async def _lock_session(conn: Conn, session_id: str) -> SessionRow:
        row = await conn.fetchrow(f"SELECT {SESSION_COLS} FROM service_sessions WHERE id = $1 FOR NO KEY UPDATE", uid(session_id))
        if row is None:
            raise ServiceError("not_found", NO_SESSION)
        return session_from_row(row)

    @staticmethod
    async def _wait_in(conn: Conn, session_id: str, queue: str, priority: int) -> None:
        """The session (its queue row locked) takes the queue's next ticket and waits in it."""
        ticket = int(await conn.fetchval("UPDATE service_queues SET last_ticket = last_ticket + 1 WHERE code = $1 RETURNING last_ticket", queue))
        await conn.execute(
            """UPDATE service_sessions SET state = 'waiting', queue = $2, ticket = $3, priority = $4, queued_at = clock_timestamp()
               WHERE id = $1""",
            uid(session_id),
            queue,
            ticket,
            priority,
        )

    async def _route_locked(self, conn: Conn, queue: str, agents: dict[str, _Locked], changed: bool) -> RouteOutcome:
        """Assign waiting customers of ``queue`` (its row and ``agents`` are locked)."""
        skilled = [a.load for a in agents.values() if a.skilled]
        free = sum(max(0, a.capacity - a.active) for a in skilled if a.state == "available")
        assigned: list[SessionRow] = []
        if free:
            rows = await conn.fetch(
                f"""SELECT {SESSION_COLS} FROM service_sessions WHERE queue = $1 AND state = 'waiting'
                    ORDER BY priority DESC, ticket LIMIT $2 FOR NO KEY UPDATE""",
                queue,
                free,
            )
            waiting = [session_from_row(r) for r in rows]
            avoid = {s.id: s.agent_id for s in waiting if s.agent_id is not None}  # transferred away from them
            # information barriers: no session to an agent a policy separates from its customer,
            # its earlier agents or its notes' authors (the agent reads them all)
            barred = await BarrierStore.agents_barred_txn(conn, [(s.id, s.customer_id) for s in waiting], [a.user_id for a in skilled])
            decided = plan(skilled, [s.id for s in waiting], avoid=avoid, barred=barred)
            if decided:
                assigned = await self._apply(conn, queue, {s.id: s for s in waiting}, decided)
        if not assigned and not changed:
            return RouteOutcome(assigned=[], snapshot=None)
        return RouteOutcome(assigned=assigned, snapshot=await self._snapshot(conn, queue, agents))

    @staticmethod
    async def _apply(conn: Conn, queue: str, sessions: dict[str, SessionRow], decided: Sequence[Assignment]) -> list[SessionRow]:
        sids = [uid(a.session_id) for a in decided]
        aids = [uid(a.agent_id) for a in decided]
        ticks = list(range(len(decided)))
        # one statement per table; ``tick`` keeps the assignment order in last_assigned_at
        rows = await conn.fetch(
            f"""UPDATE service_sessions s SET state = 'active', agent_id = v.agent, ticket = NULL, assigned_at = clock_timestamp()
                FROM unnest($1::uuid[], $2::uuid[]) AS v(id, agent) WHERE s.id = v.id
                RETURNING {", ".join(f"s.{c}" for c in SessionRow.__struct_fields__)}""",
            sids,
            aids,
        )
        await conn.execute(
            """UPDATE service_agents a SET active = a.active + v.n, last_assigned_at = clock_timestamp() + v.tick * interval '1 microsecond'
               FROM (SELECT agent, count(*) AS n, max(tick) AS tick FROM unnest($1::uuid[], $2::int[]) AS t(agent, tick)
                     GROUP BY agent) AS v
               WHERE a.user_id = v.agent""",
            aids,
            ticks,
        )
        await conn.execute(
            """INSERT INTO service_assignments (session_id, agent_id, queue, via, ticket, queued_at, assigned_at)
               SELECT v.id, v.agent, $3, 'queue', v.ticket, v.queued_at, clock_timestamp()
               FROM unnest($1::uuid[], $2::uuid[], $4::bigint[], $5::timestamptz[], $6::int[]) AS v(id, agent, ticket, queued_at, tick)
               ORDER BY v.tick""",
            sids,
            aids,
            queue,
            [sessions[a.session_id].ticket for a in decided],
            [sessions[a.session_id].queued_at for a in decided],
            ticks,
        )
        # the agent joins the conversation; the session's messages (bot exchange included) are unread
        await conn.execute(
            """INSERT INTO conversation_members (conversation_id, user_id, role, read_seq)
               SELECT s.conversation_id, v.agent, 'member', s.start_seq
               FROM unnest($1::uuid[], $2::uuid[]) AS v(id, agent) JOIN service_sessions s ON s.id = v.id
               ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_seq = GREATEST(conversation_members.read_seq, EXCLUDED.read_seq)""",
            sids,
            aids,
        )
        by_id = {str(r["id"]): session_from_row(r) for r in rows}
        return [by_id[a.session_id] for a in decided]

    @staticmethod
    async def _snapshot(conn: Conn, queue: str, agents: dict[str, _Locked]) -> QueueSnapshot:
        revision = await conn.fetchval("UPDATE service_queues SET revision = revision + 1 WHERE code = $1 RETURNING revision", queue)
        rows = await conn.fetch(
            """SELECT id, customer_id, conversation_id, row_number() OVER (ORDER BY priority DESC, ticket) AS position
               FROM service_sessions WHERE queue = $1 AND state = 'waiting' ORDER BY position""",
            queue,
        )
        handle = await conn.fetchval(recent_handle_sql("$1", "$2"), queue, HANDLE_SAMPLE)
        slots = sum(a.load.capacity for a in agents.values() if a.skilled and a.load.state == "available")
        return QueueSnapshot(
            queue=queue,
            revision=int(revision),
            waiting=[
                WaitingEntry(str(r["id"]), str(r["customer_id"]), str(r["conversation_id"]), int(r["position"])) for r in rows
            ],
            slots=slots,
            avg_handle_seconds=handle_estimate(handle),
        )

    async def _end_stint(self, conn: Conn, session: SessionRow, outcome: str) -> None:
        """The serving agent's stint ends: their load drops, they leave the conversation."""
        assert session.agent_id is not None
        agent = uid(session.agent_id)
        await conn.execute("UPDATE service_agents SET active = active - 1 WHERE user_id = $1", agent)
        await conn.execute(
            "UPDATE service_assignments SET ended_at = clock_timestamp(), outcome = $2 WHERE session_id = $1 AND ended_at IS NULL",
            uid(session.id),
            outcome,
        )
        await conn.execute(
            "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", uid(session.conversation_id), agent
        )

    # --- checks before a transaction, repeated under its locks ----------------------------------

    async def _served(self, session_id: str, expected_agent: str) -> SessionRow:
        """The session, being served by ``expected_agent`` (else ``not_found`` or ``conflict``)."""
        current = await self._existing(session_id)
        if current.state != "active" or current.agent_id is None:
            raise ServiceError("conflict", f"the session is {current.state}, not being served")
        if current.agent_id != expected_agent:
            raise ServiceError("conflict", CHANGED_MEANWHILE)
        return current

    @staticmethod
    def _same(session: SessionRow, expected: SessionRow) -> None:
        if session.state != "active" or session.agent_id != expected.agent_id:
            raise ServiceError("conflict", CHANGED_MEANWHILE)

    # --- the transactions ----------------------------------------------------------------------

    async def route(self, queue: str) -> RouteOutcome:
        """Assign as many waiting customers of ``queue`` as its available agents can take."""
        async with self.db.transaction("service_route") as conn:
            agents = await self._lock_queue_and_agents(conn, queue)
            return await self._route_locked(conn, queue, agents, changed=False)

    async def enqueue(self, session_id: str) -> tuple[SessionRow, RouteOutcome | None]:
        """A customer asks for a person: their session (state ``bot``) takes the next ticket of
        its queue and routing runs at once. A session already waiting or served is returned as is."""
        current = await self._existing(session_id)
        if current.state != "bot":
            return current, None
        async with self.db.transaction("service_enqueue") as conn:
            agents = await self._lock_queue_and_agents(conn, current.queue)
            session = await self._lock_session(conn, session_id)
            if session.state != "bot" or session.queue != current.queue:
                return session, None
            await self._wait_in(conn, session_id, session.queue, priority=0)
            outcome = await self._route_locked(conn, session.queue, agents, changed=True)
            after = await self._reread(conn, session_id)
        return after, outcome

    async def cancel(self, session_id: str, customer_id: str) -> Change:
        """The customer leaves (state ``bot`` or ``waiting``): the session closes; a waiting
        list it leaves moves up."""
        current = await self.session(session_id)
        if current is None or current.customer_id != customer_id:
            raise ServiceError("not_found", NO_SESSION)
        if current.state not in ("bot", "waiting"):
            raise ServiceError("conflict", f"the session is {current.state}: only a session not yet served can be left")
        async with self.db.transaction("service_cancel") as conn:
            agents: dict[str, _Locked] = {}
            if current.state == "waiting":
                agents = await self._lock_queue_and_agents(conn, current.queue)
            session = await self._lock_session(conn, session_id)
            if session.state != current.state or session.queue != current.queue:
                raise ServiceError("conflict", "the session changed meanwhile; look again")
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET state = 'closed', ticket = NULL, closed_at = clock_timestamp(), closed_by = customer_id
                    WHERE id = $1 RETURNING {SESSION_COLS}""",
                uid(session_id),
            )
            routed = None
            if session.state == "waiting":
                routed = RouteOutcome(assigned=[], snapshot=await self._snapshot(conn, session.queue, agents))
        return Change(session=session_from_row(row), routed=routed)

    async def close(self, session_id: str, actor_id: str, tags: Sequence[str], note: str | None, expected_agent: str) -> Change:
        """Close a served session with its tags (already validated)."""
        current = await self._served(session_id, expected_agent)
        key = await self._sealing_key(current.conversation_id) if note else None
        async with self.db.transaction("service_close") as conn:
            await self._lock_agents(conn, None, [expected_agent])
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            await self._end_stint(conn, session, "closed")
            if note and key is not None:
                await self._note(conn, key, session, actor_id, "close", note)
            row = await conn.fetchrow(
                f"""UPDATE service_sessions SET state = 'closed', closed_at = clock_timestamp(), closed_by = $2, tags = $3
                    WHERE id = $1 RETURNING {SESSION_COLS}""",
                uid(session_id),
                uid(actor_id),
                sorted(set(tags)),
            )
        return Change(session=session_from_row(row), released_agent=expected_agent)

    async def transfer_to_queue(self, session_id: str, actor_id: str, queue: str, note: str, expected_agent: str) -> Change:
        """Send a served session back to waiting, in ``queue``, ahead of new arrivals
        (priority 1); routing runs at once, preferring another agent than the one leaving."""
        current = await self._served(session_id, expected_agent)
        key = await self._sealing_key(current.conversation_id)
        async with self.db.transaction("service_transfer_queue") as conn:
            agents = await self._lock_queue_and_agents(conn, queue, [expected_agent])
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            await self._end_stint(conn, session, "transferred")
            mine = agents[expected_agent]
            agents[expected_agent] = _Locked(dataclasses.replace(mine.load, active=mine.load.active - 1), mine.skilled)
            await self._note(conn, key, session, actor_id, "transfer", note, to_queue=queue)
            await self._wait_in(conn, session_id, queue, priority=1)
            routed = await self._route_locked(conn, queue, agents, changed=True)
            after = await self._reread(conn, session_id)
        return Change(session=after, released_agent=expected_agent, routed=routed)

    async def transfer_to_agent(self, session_id: str, actor_id: str, agent_id: str, note: str, expected_agent: str) -> Change:
        """Hand a served session straight to another agent, who must be available with free capacity."""
        current = await self._served(session_id, expected_agent)
        if agent_id == expected_agent:
            raise ServiceError("invalid_request", "the session is already with this agent")
        key = await self._sealing_key(current.conversation_id)
        async with self.db.transaction("service_transfer_agent") as conn:
            agents = await self._lock_agents(conn, None, sorted({expected_agent, agent_id}))
            target = agents.get(agent_id)
            if target is None:
                raise ServiceError("not_found", "no such agent on the service desk")
            if target.load.state != "available" or target.load.active >= target.load.capacity:
                raise ServiceError("conflict", "that agent is not available or has no free capacity")
            session = await self._lock_session(conn, session_id)
            self._same(session, current)
            # information barriers: the new agent reads the customer, the earlier agents' words and
            # every note (this one's author included), so none of them may be separated from the agent
            if await BarrierStore.agents_barred_txn(conn, [(session.id, session.customer_id)], [agent_id], also=[actor_id]):
                raise ServiceError("forbidden", "an information barrier forbids transferring this session to that agent")
            await self._end_stint(conn, session, "transferred")
            await self._note(conn, key, session, actor_id, "transfer", note, to_agent=agent_id)
            await conn.execute(
                "UPDATE service_agents SET active = active + 1, last_assigned_at = clock_timestamp() WHERE user_id = $1", uid(agent_id)
            )
            await conn.execute(
                """INSERT INTO service_assignments (session_id, agent_id, queue, via, queued_at, assigned_at)
                   VALUES ($1, $2, $3, 'transfer', clock_timestamp(), clock_timestamp())""",
                uid(session_id),
                uid(agent_id),
                session.queue,
            )
            await conn.execute(
                """INSERT INTO conversation_members (conversation_id, user_id, role, read_seq) VALUES ($1, $2, 'member', $3)
                   ON CONFLICT (conversation_id, user_id) DO NOTHING""",
                uid(session.conversation_id),
                uid(agent_id),
                session.start_seq,
            )
            row = await conn.fetchrow(
                f"UPDATE service_sessions SET agent_id = $2, assigned_at = clock_timestamp() WHERE id = $1 RETURNING {SESSION_COLS}",
                uid(session_id),
                uid(agent_id),
            )
        return Change(session=session_from_row(row), released_agent=expected_agent)
