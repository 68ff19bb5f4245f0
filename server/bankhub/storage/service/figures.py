"""The supervisor's figures of the desk, per queue and per agent (read from
``service_queues``, ``service_agents``, ``service_sessions`` and ``service_assignments``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...models import AgentFigures, QueueFigures
from .rows import StorePart, agent_fields

__all__ = ["ServiceFigures"]


def _rounded(v: Any) -> float | None:
    """A figure to the millisecond (None: nothing to average yet)."""
    return None if v is None else round(float(v), 3)


class ServiceFigures(StorePart):
    """Waiting, wait and handle times, conversations handled and CSAT."""

    async def figures(self, since: dt.datetime) -> tuple[list[QueueFigures], list[AgentFigures]]:
        """Supervisor figures: waiting now and longest wait (live); average wait, average handle
        time, conversations handled and CSAT since ``since``; per queue and per agent."""
        async with self.db.connection("service_figures") as conn:
            queues = await conn.fetch(
                """SELECT q.code, q.name,
                          (SELECT count(*) FROM service_sessions s WHERE s.queue = q.code AND s.state = 'waiting') AS waiting,
                          (SELECT extract(epoch FROM now() - min(s.queued_at)) FROM service_sessions s
                             WHERE s.queue = q.code AND s.state = 'waiting') AS longest,
                          (SELECT avg(extract(epoch FROM a.assigned_at - a.queued_at)) FROM service_assignments a
                             WHERE a.queue = q.code AND a.via = 'queue' AND a.assigned_at >= $1) AS avg_wait,
                          (SELECT avg(extract(epoch FROM a.ended_at - a.assigned_at)) FROM service_assignments a
                             WHERE a.queue = q.code AND a.ended_at >= $1) AS avg_handle,
                          (SELECT count(*) FROM service_sessions s WHERE s.queue = q.code AND s.closed_at >= $1
                             AND s.agent_id IS NOT NULL AND s.closed_by IS DISTINCT FROM s.customer_id) AS handled,
                          c.avg AS csat_avg, COALESCE(c.n, 0) AS csat_count
                   FROM service_queues q
                   LEFT JOIN LATERAL (SELECT avg(csat)::float8 AS avg, count(*) AS n FROM service_sessions s
                                      WHERE s.queue = q.code AND s.csat_at >= $1) c ON true
                   ORDER BY q.code""",
                since,
            )
            agents = await conn.fetch(
                """SELECT a.user_id, u.username, u.display_name, a.state, a.capacity, a.active,
                          ARRAY(SELECT queue FROM service_agent_queues q WHERE q.user_id = a.user_id ORDER BY queue) AS queues,
                          (SELECT count(*) FROM service_assignments x WHERE x.agent_id = a.user_id AND x.ended_at >= $1) AS handled,
                          (SELECT avg(extract(epoch FROM x.ended_at - x.assigned_at)) FROM service_assignments x
                             WHERE x.agent_id = a.user_id AND x.ended_at >= $1) AS avg_handle,
                          c.avg AS csat_avg, COALESCE(c.n, 0) AS csat_count
                   FROM service_agents a JOIN users u ON u.id = a.user_id
                   LEFT JOIN LATERAL (SELECT avg(csat)::float8 AS avg, count(*) AS n FROM service_sessions s
                                      WHERE s.agent_id = a.user_id AND s.csat_at >= $1) c ON true
                   ORDER BY u.username""",
                since,
            )
        return (
            [
                QueueFigures(
                    queue=r["code"],
                    name=r["name"],
                    waiting=r["waiting"],
                    longest_wait_s=_rounded(r["longest"]),
                    avg_wait_s=_rounded(r["avg_wait"]),
                    avg_handle_s=_rounded(r["avg_handle"]),
                    handled=r["handled"],
                    csat_avg=_rounded(r["csat_avg"]),
                    csat_count=r["csat_count"],
                )
                for r in queues
            ],
            [
                AgentFigures(
                    **agent_fields(r),
                    handled=r["handled"],
                    avg_handle_s=_rounded(r["avg_handle"]),
                    csat_avg=_rounded(r["csat_avg"]),
                    csat_count=r["csat_count"],
                )
                for r in agents
            ],
        )
