"""Chaos tests of ``bankhub serve --workers 2`` (:mod:`bankhub.cli.workers`): real processes, real faults.

One supervisor runs two worker nodes (``hub-w1``, ``hub-w2``) on one port, on one Postgres and
one Valkey; clients are placed on a given worker (they land by a hash of their address pair,
so a test connects until the ``hello`` names the worker it wants). Then:

1. ``kill -9`` of worker 1 under steady traffic: the supervisor restarts it, the clients it
   served reconnect (through the same port) and sync, and nothing acknowledged is lost or
   shown twice; the clients of worker 2 are not disturbed;
2. SIGTERM to the supervisor under traffic on both workers, with commits in flight (the
   conversation's row is held a moment): each worker drains as a single node does (the
   commits in flight are finished and answered, every ``sent`` answer is stored, nothing
   unanswered is stored, sockets close with 1012) and the supervisor exits 0.

Delivery is checked as in :mod:`tests.chaos.test_chaos`: against the acknowledgements and
against what Postgres holds, message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import asyncpg
import pytest

from bankhub_client import Disconnected, Message, Reconnected, ReconnectPolicy

from ..support.nodeproc import NodeProcess, NodeProcesses
from ..support.traffic import Member, RawWitness, create_group, eventually, login_all, stored
from ..support.workers import member_on_worker, raw_on_worker, worker_process, worker_processes
from .test_chaos import RESUME_BOUND, acked_of, check_delivery, report, steady

pytestmark = pytest.mark.timeout(180)

RECONNECT = ReconnectPolicy(initial_delay=0.1, max_delay=1.0, max_elapsed=30.0)
MEMBERS = ("c.li", "c.zhang", "agent.zhao", "rm.chen", "ho.admin", "br.admin")
USERS = ("rm.wang", *MEMBERS)
PLACES = {"c.li": "hub-w1", "c.zhang": "hub-w2", "agent.zhao": "hub-w1", "rm.chen": "hub-w2", "rm.wang": "hub-w1"}


async def start_workers(procs: NodeProcesses, dsn: str) -> tuple[NodeProcess, dict[str, str], str]:
    """``bankhub serve --workers 2``, every user signed in once, and a group of all of them."""
    hub = procs.spawn("hub", env={"DATABASE_URL": dsn}, args=["--workers", "2"])
    await hub.wait_ready()
    tokens = await login_all(hub.http_url, USERS)
    conv = await create_group(hub.http_url, tokens["rm.wang"], "workers", MEMBERS)
    return hub, tokens, conv


async def test_kill_9_of_a_worker_under_traffic_is_restarted_and_loses_nothing(
    dsn: str, procs: NodeProcesses, record_property: Any
) -> None:
    """Three senders and two more members on both workers, plus a raw witness on worker 2;
    worker 1 is killed with ``kill -9`` a third of the way through 300 messages. The supervisor
    starts a new worker 1; the clients of the old one reconnect on the same port and sync;
    every acknowledged message is stored once and shown once to every member; the clients of
    worker 2 are not disturbed."""
    hub, tokens, conv = await start_workers(procs, dsn)
    members: list[Member] = []
    witnesses: list[RawWitness] = []
    try:
        for name, worker in PLACES.items():
            members.append(await member_on_worker(hub, name, tokens[name], worker, reconnect=RECONNECT))
        by = {m.username: m for m in members}
        witnesses.append(await raw_on_worker(hub, "ho.admin", tokens["ho.admin"], "hub-w2"))
        victim = worker_process(hub, 1)
        senders = [by["c.li"], by["c.zhang"], by["rm.wang"]]
        per_sender = 100
        t_kill = 0.0

        async def kill_w1_after_a_third() -> list[Message]:
            nonlocal t_kill
            await eventually(lambda: sum(len(s.acks) for s in senders) >= per_sender, "a third of the traffic", 30)
            t_kill = time.monotonic()
            victim.kill()  # SIGKILL
            return []

        results = await asyncio.wait_for(
            asyncio.gather(kill_w1_after_a_third(), *(steady(s, conv, count=per_sender) for s in senders)), 60
        )
        acked = acked_of([m for sent in results[1:] for m in sent])
        assert len(acked) == 3 * per_sender

        await check_delivery(dsn, conv, acked, members, witnesses)

        assert all(w.open for w in witnesses), "a connection to the surviving worker dropped"
        resume: dict[str, float] = {}
        for m in members:
            if m.first_node == "hub-w2":
                assert m.notices() == [], f"{m.username} on the surviving worker was disturbed: {m.notices()}"
                continue
            notices = [e for t, e in m.notices() if t >= t_kill]
            drops = [e for e in notices if isinstance(e, Disconnected)]
            backs = [e for e in notices if isinstance(e, Reconnected)]
            assert drops and backs, f"{m.username} did not drop and reconnect: {m.notices()}"
            assert (drops[0].code, drops[0].will_reconnect) == (1006, True), drops[0]
            t_back = next(t for t, e in m.notices() if t >= t_kill and isinstance(e, Reconnected))
            first = next((t for t, _ in m.messages(conv) if t >= t_back), None)
            if first is not None:  # a member that sent last may have nothing left to receive
                resume[m.username] = first - t_kill

        # the supervisor saw the kill and started worker 1 again, which serves on the same port
        log = hub.log_path.read_text()
        assert f"worker 1 (pid {victim.pid}) exited with signal SIGKILL; restarting it in 0.5 s" in log, hub.log_tail()
        again = await raw_on_worker(hub, "br.admin", tokens["br.admin"], "hub-w1")
        await again.close()
        assert victim.pid not in [p.pid for p in worker_processes(hub)] and len(worker_processes(hub)) == 2
        report(
            record_property,
            "worker-kill-9",
            messages=len(acked),
            resume_max_s=max(resume.values()),
            reconnect_downtime_max_s=max(e.downtime for m in members for _, e in m.notices() if isinstance(e, Reconnected)),
        )
        assert max(resume.values()) <= RESUME_BOUND, f"delivery resumed only after {resume} s"

        hub.terminate()
        assert await hub.wait_exit(40) == 0, hub.log_tail()
    finally:
        for m in members:
            await m.close()
        for w in witnesses:
            await w.close()


async def test_sigterm_to_the_supervisor_drains_every_worker_under_traffic(
    dsn: str, procs: NodeProcesses, record_property: Any
) -> None:
    """Raw senders pipeline sends into both workers; the supervisor gets SIGTERM in the middle,
    while the conversation's row is held (commits in flight wait for it through the drain).
    Every send answered ``sent`` is stored, with its seq; nothing is stored twice or without a
    sender's client_msg_id; every socket closes with 1012 after its answers; the supervisor
    exits 0 and no worker is left."""
    hub, tokens, conv = await start_workers(procs, dsn)
    senders = [
        await raw_on_worker(hub, "c.li", tokens["c.li"], "hub-w1"),
        await raw_on_worker(hub, "c.zhang", tokens["c.zhang"], "hub-w2"),
    ]
    workers = worker_processes(hub)
    t: dict[str, float] = {}
    sent: dict[str, set[str]] = {s.name: set() for s in senders}
    stop = asyncio.Event()
    try:

        async def pipeline(w: RawWitness) -> None:
            # sends until the stop is over (not a fixed count: on a loaded machine the answers
            # may lag far behind), 50 frames/s: within the hub's per-connection rate
            i = 0
            while w.open and not stop.is_set():
                with contextlib.suppress(Exception):
                    await w.send_text(conv, f"{w.name} #{i}", f"{w.node}-{i}")
                    sent[w.name].add(f"{w.node}-{i}")
                i += 1
                await asyncio.sleep(0.02)

        def pending(w: RawWitness) -> int:
            return len(sent[w.name] - w.answers.keys())

        async def terminate_midway() -> None:
            try:
                await eventually(lambda: sum(len(s.answers) for s in senders) >= 40, "some answers", 30)
                # hold the conversation's row first: the commits in flight on both workers wait
                # for it while they drain; SIGTERM only once sends are held on both workers
                blocker = await asyncpg.connect(dsn)
                try:
                    tx = blocker.transaction()
                    await tx.start()
                    await blocker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(conv))
                    await eventually(lambda: all(pending(s) >= 3 for s in senders), "sends held in both workers' commits", 30)
                    t["term"] = time.monotonic()
                    hub.terminate()
                    await asyncio.sleep(0.5)
                    assert all(p.is_running() for p in workers), "a worker exited before its commits in flight were done"
                finally:
                    t["release"] = time.monotonic()
                    await blocker.close()  # ends the transaction: the held commits go through
            finally:
                stop.set()

        await asyncio.wait_for(asyncio.gather(terminate_midway(), *(pipeline(s) for s in senders)), 90)
        code = await hub.wait_exit(40)
        t["exit"] = time.monotonic()
        assert code == 0, hub.log_tail()
        assert not any(p.is_running() for p in workers), "a worker outlived the supervisor"
        await eventually(lambda: not any(s.open for s in senders), "the sockets to close", 5)
        assert [s.close_code for s in senders] == [1012, 1012]

        rows = await stored(dsn, conv)
        held = {r.client_msg_id: r.seq for r in rows}
        assert len(held) == len(rows), "a client_msg_id was stored twice"
        acked = 0
        for s in senders:
            for fid, (_, answer) in s.answers.items():
                if answer["type"] == "sent":
                    acked += 1
                    assert held.get(fid) == answer["seq"], f"{fid} was acknowledged but not stored as answered"
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), "stored seqs have gaps or repeats"
        unacked_stored = len(rows) - acked
        finished_by_drain = [
            fid for s in senders for fid, (when, a) in s.answers.items() if a["type"] == "sent" and when > t["release"]
        ]
        report(
            record_property,
            "workers-sigterm",
            acknowledged=acked,
            stored=len(rows),
            finished_by_drain=len(finished_by_drain),
            sigterm_to_exit_s=t["exit"] - t["term"],
        )
        assert acked >= 40
        assert finished_by_drain, "no commit in flight was finished and answered by the drain"
        # a send the hub read before it drained is answered before the 1012; one it never read is not stored
        assert unacked_stored == 0, f"{unacked_stored} message(s) stored without an answer"
        assert "SIGTERM: stopping 2 worker(s)" in hub.log_path.read_text()
    finally:
        for s in senders:
            await s.close()
