"""The desk's agents (``service_agents``, ``service_agent_queues``): their state, capacity,
load and the queues they serve.

An agent's load (``active``) changes only in the locked transactions of :mod:`.routing`;
here it is read, and guarded when the capacity is lowered.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..db import Conn
from .rows import AgentRow, ServiceError, StorePart, agent_fields, uid

__all__ = ["ServiceAgents"]


class ServiceAgents(StorePart):
    """Putting users on the desk, their state, and reading them."""

    async def agent(self, user_id: str) -> AgentRow | None:
        agents = await self.agents([user_id])
        return agents[0] if agents else None

    async def agents(self, user_ids: Sequence[str] | None = None) -> list[AgentRow]:
        """Desk agents (all, or those of ``user_ids``) with their queues."""
        async with self.db.connection("service_agents") as conn:
            rows = await conn.fetch(
                """SELECT a.*, u.username, u.display_name,
                          ARRAY(SELECT queue FROM service_agent_queues q WHERE q.user_id = a.user_id ORDER BY queue) AS queues
                   FROM service_agents a JOIN users u ON u.id = a.user_id
                   WHERE $1::uuid[] IS NULL OR a.user_id = ANY($1::uuid[])
                   ORDER BY u.username""",
                None if user_ids is None else [uid(u) for u in user_ids],
            )
        return [AgentRow(**agent_fields(r), last_assigned_at=r["last_assigned_at"]) for r in rows]

    async def put_agent(self, user_id: str, capacity: int | None, queues: Sequence[str] | None, conn: Conn | None = None) -> None:
        """Put a user on the desk (or reconfigure them): capacity and the queues they serve.
        Lowering the capacity under the current load is refused (``conflict``)."""
        if conn is None:
            async with self.db.transaction("service_put_agent") as c:
                return await self.put_agent(user_id, capacity, queues, c)
        key = uid(user_id)
        await conn.execute("INSERT INTO service_agents (user_id) VALUES ($1) ON CONFLICT DO NOTHING", key)
        active = await conn.fetchval("SELECT active FROM service_agents WHERE user_id = $1 FOR NO KEY UPDATE", key)
        if capacity is not None:
            if capacity < active:
                raise ServiceError("conflict", f"the agent has {active} conversations now: finish some before lowering the capacity")
            await conn.execute("UPDATE service_agents SET capacity = $2 WHERE user_id = $1", key, capacity)
        if queues is not None:
            known = {r["code"] for r in await conn.fetch("SELECT code FROM service_queues WHERE code = ANY($1::text[])", list(queues))}
            if missing := sorted(set(queues) - known):
                raise ServiceError("invalid_request", f"no such queue: {', '.join(missing)}")
            await conn.execute("DELETE FROM service_agent_queues WHERE user_id = $1", key)
            await conn.executemany(
                "INSERT INTO service_agent_queues (user_id, queue) VALUES ($1, $2)", [(key, q) for q in sorted(set(queues))]
            )

    async def set_agent_state(self, user_id: str, state: str) -> AgentRow | None:
        async with self.db.connection("service_agent_state") as conn:
            done = await conn.fetchval(
                """UPDATE service_agents SET state = $2, state_since = CASE WHEN state <> $2 THEN now() ELSE state_since END
                   WHERE user_id = $1 RETURNING 1""",
                uid(user_id),
                state,
            )
        return await self.agent(user_id) if done else None
