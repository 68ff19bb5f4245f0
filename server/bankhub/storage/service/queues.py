"""The desk's queues and their waiting lists (``service_queues``, ``service_tags``; the
waiting sessions of ``service_sessions``, read).

Queues are configured here; customers join, leave and are taken from a waiting list only
in the locked transactions of :mod:`.routing`. The reads here take no locks: a count or a
position may be a moment old, as any figure shown to a person.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...desk.hours import BusinessHours
from ..db import Conn
from .rows import HANDLE_SAMPLE, QueueRow, QueueSnapshot, SessionRow, StorePart, handle_estimate, queue_from_row, recent_handle_sql, uid

__all__ = ["ServiceQueues"]


class ServiceQueues(StorePart):
    """Queue configuration, the desk's tags, and what is waiting where."""

    async def queues(self, *, after: str | None = None, limit: int | None = None) -> list[QueueRow]:
        """The queues by code: all, or up to ``limit`` with a code after ``after`` (keyset paging)."""
        async with self.db.connection("service_queues") as conn:
            rows = await conn.fetch(
                "SELECT * FROM service_queues WHERE $1::text IS NULL OR code > $1 ORDER BY code LIMIT $2", after, limit
            )
        return [queue_from_row(r) for r in rows]

    async def queue(self, code: str) -> QueueRow | None:
        async with self.db.connection("service_queue") as conn:
            row = await conn.fetchrow("SELECT * FROM service_queues WHERE code = $1", code)
        return None if row is None else queue_from_row(row)

    async def put_queue(
        self, code: str, name: str, hours: BusinessHours, out_of_hours_text: str, conn: Conn | None = None
    ) -> QueueRow:
        """Create or reconfigure a queue (its tickets and revision carry on)."""
        sql = """INSERT INTO service_queues (code, name, timezone, days, open_minute, close_minute, out_of_hours_text)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, days = EXCLUDED.days,
                     open_minute = EXCLUDED.open_minute, close_minute = EXCLUDED.close_minute,
                     out_of_hours_text = EXCLUDED.out_of_hours_text
                 RETURNING *"""
        args = (code, name, hours.timezone, sorted(set(hours.days)), hours.open_minute, hours.close_minute, out_of_hours_text)
        if conn is not None:
            return queue_from_row(await conn.fetchrow(sql, *args))
        async with self.db.connection("service_put_queue") as c:
            return queue_from_row(await c.fetchrow(sql, *args))

    async def tags(self) -> dict[str, str]:
        async with self.db.connection("service_tags") as conn:
            rows = await conn.fetch("SELECT tag, label FROM service_tags ORDER BY tag")
        return {r["tag"]: r["label"] for r in rows}

    # --- waiting lists (read) --------------------------------------------------------------

    async def waiting_position(self, session: SessionRow) -> tuple[int, int, QueueSnapshot] | None:
        """For a waiting session: ``(position, waiting in all, estimate inputs)``; None if it
        is not waiting (any more)."""
        async with self.db.connection("service_position") as conn:
            row = await conn.fetchrow(
                f"""WITH w AS (SELECT id, row_number() OVER (ORDER BY priority DESC, ticket) AS position, count(*) OVER () AS total
                               FROM service_sessions WHERE queue = $1 AND state = 'waiting')
                    SELECT w.position, w.total, q.revision,
                           (SELECT COALESCE(sum(a.capacity), 0) FROM service_agents a
                              JOIN service_agent_queues s ON s.user_id = a.user_id AND s.queue = $1
                              JOIN users u ON u.id = a.user_id
                              WHERE a.state = 'available' AND NOT u.disabled AND u.role = 'agent') AS slots,
                           ({recent_handle_sql("$1", "$3")}) AS handle
                    FROM w JOIN service_queues q ON q.code = $1 WHERE w.id = $2""",
                session.queue,
                uid(session.id),
                HANDLE_SAMPLE,
            )
        if row is None:
            return None
        snapshot = QueueSnapshot(
            queue=session.queue,
            revision=row["revision"],
            waiting=[],
            slots=int(row["slots"]),
            avg_handle_seconds=handle_estimate(row["handle"]),
        )
        return int(row["position"]), int(row["total"]), snapshot

    async def queues_by_oldest_wait(self, queues: Sequence[str]) -> list[str]:
        """Of ``queues``, those with customers waiting, the longest-waiting head first (when an
        agent serving several queues frees up, the customer who waited longest goes first)."""
        async with self.db.connection("service_queue_heads") as conn:
            rows = await conn.fetch(
                """SELECT queue FROM service_sessions WHERE state = 'waiting' AND queue = ANY($1::text[])
                   GROUP BY queue ORDER BY max(priority) DESC, min(queued_at)""",
                list(queues),
            )
        return [r["queue"] for r in rows]

    async def waiting_in(self, queues: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Of ``queues``, those with customers waiting now: ``queue -> (waiting, longest
        wait in seconds)`` (an agent's view of their queues; no customer is named)."""
        async with self.db.connection("service_queue_waiting_counts") as conn:
            rows = await conn.fetch(
                """SELECT queue, count(*) AS waiting, extract(epoch FROM clock_timestamp() - min(queued_at)) AS longest
                   FROM service_sessions WHERE state = 'waiting' AND queue = ANY($1::text[]) GROUP BY queue""",
                list(queues),
            )
        return {r["queue"]: (int(r["waiting"]), max(0.0, float(r["longest"] or 0))) for r in rows}

    async def queues_with_waiting(self) -> list[str]:
        async with self.db.connection("service_queues_waiting") as conn:
            rows = await conn.fetch("SELECT DISTINCT queue FROM service_sessions WHERE state = 'waiting' ORDER BY queue")
        return [r["queue"] for r in rows]
