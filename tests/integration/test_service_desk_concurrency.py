"""Routing under concurrency across two nodes: many customers ask for a person at once, a
few agents with small capacities serve them. No agent is ever over capacity, customers are
served strictly in the order they joined (nobody skipped), and everyone is served."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from bankhub.models import Role

from ..conftest import Nodes
from ..support.desk import api, make_user, token_for
from ..support.wsclient import RawClient

CUSTOMERS = 24
AGENTS = {"agent.zhao": 1, "agent.k1": 2, "agent.k2": 2}


async def test_many_customers_few_agents_capacity_fifo_and_everyone_served(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    for name in AGENTS:
        if name != "agent.zhao":
            await make_user(a, name, Role.AGENT)
    customers = [f"c.load{i:02d}" for i in range(CUSTOMERS)]
    for name in customers:
        await make_user(a, name, Role.CUSTOMER, org="BJ", rm="rm.wang")
    admin = await token_for(a, "ho.admin")
    async with api(a, admin) as http:
        for name, capacity in AGENTS.items():
            r = await http.put(f"/v1/service/agents/{name}", json={"capacity": capacity, "queues": ["general"]})
            assert r.status_code == 200, r.text
    agent_tokens = {name: await token_for(a, name) for name in AGENTS}
    tokens = {name: await token_for(a, name) for name in customers}
    node_of = {name: (a, b)[i % 2] for i, name in enumerate([*customers, *AGENTS])}
    clients = {name: await RawClient.connect(node_of[name].ws_url, tokens[name]) for name in customers}
    sessions: dict[str, str] = {}
    for name in customers:
        async with api(node_of[name], tokens[name]) as http:
            sessions[name] = (await http.post("/v1/service/sessions", json={"queue": "general"})).json()["session_id"]
    for name in AGENTS:
        async with api(node_of[name], agent_tokens[name]) as http:
            assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200

    # a watcher samples the load while everything runs: never over capacity
    over: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            rows = await a.hub.db.pool.fetch(
                """SELECT a.user_id, a.capacity, a.active,
                          (SELECT count(*) FROM service_sessions s WHERE s.agent_id = a.user_id AND s.state = 'active') AS serving
                   FROM service_agents a"""
            )
            over.extend(f"{r['user_id']}: {r['serving']}/{r['capacity']}" for r in rows if max(r["active"], r["serving"]) > r["capacity"])
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())

    # everyone asks for a person at once, through both nodes
    async def ask(name: str) -> None:
        async with api(node_of[name], tokens[name]) as http:
            r = await http.post(f"/v1/service/sessions/{sessions[name]}/human")
            assert r.status_code == 200, r.text

    await asyncio.gather(*(ask(n) for n in customers))

    # agents close their oldest conversation, again and again, until everyone was served
    closed: set[str] = set()
    rng = random.Random(7)

    async def serve(agent: str) -> None:
        async with api(node_of[agent], agent_tokens[agent]) as http:
            while len(closed) < CUSTOMERS:
                r = await http.get("/v1/service/agents/me")
                if r.status_code == 429:  # the per-user API limit: poll more slowly
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                mine = r.json()
                assert mine["active"] <= mine["capacity"]
                if not mine["sessions"]:
                    await asyncio.sleep(0.1)
                    continue
                sid = mine["sessions"][0]["session_id"]
                await asyncio.sleep(rng.random() * 0.03)
                r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})
                assert r.status_code == 200, r.text
                closed.add(sid)

    await asyncio.wait_for(asyncio.gather(*(serve(n) for n in AGENTS)), 90)
    stop.set()
    await watcher
    assert not over, over

    rows = await a.hub.db.pool.fetch(
        """SELECT x.seq, x.ticket, x.assigned_at, x.ended_at, x.outcome, u.username AS agent, s.state
           FROM service_assignments x JOIN users u ON u.id = x.agent_id JOIN service_sessions s ON s.id = x.session_id
           ORDER BY x.seq"""
    )
    # everyone served exactly once, all closed by an agent
    assert len(rows) == CUSTOMERS and {r["state"] for r in rows} == {"closed"} and {r["outcome"] for r in rows} == {"closed"}
    # FIFO, nobody skipped: assignments were made in ticket order, tickets 1..N with no gap
    assert [r["ticket"] for r in rows] == list(range(1, CUSTOMERS + 1))
    # per agent, never more conversations at once than the capacity (from the recorded stints)
    events: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for r in rows:
        events[r["agent"]] += [(r["assigned_at"], 1), (r["ended_at"], -1)]
    for agent, points in events.items():
        load = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at the same instant
            load += step
            peak = max(peak, load)
        assert peak <= AGENTS[agent], (agent, peak)
    # every agent took part (routing spread the work), and every customer was told who serves them
    assert {r["agent"] for r in rows} == set(AGENTS)
    for name in customers:
        while True:
            m = (await clients[name].expect("message", timeout=10))["message"]
            if m["body"].get("event") == "agent_joined":
                break
    async with api(a, admin) as http:
        general = next(q for q in (await http.get("/v1/service/figures")).json()["queues"] if q["queue"] == "general")
        assert general["waiting"] == 0 and general["handled"] == CUSTOMERS
