"""The SDK's WebSocket client against real hubs under real faults.

Every fault here is produced by real parts: TCP connections cut or held back by a
proxy (:class:`~tests.support.proxy.CuttableProxy`), a stalled reader overflowing the
hub's outbound queue, a node drained, a session signed out, a conversation row locked
or inserts refused in Postgres, a broker publish lost on its way to Valkey. What
crossed the wire is read back from the proxy, what was stored from Postgres.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from bankhub.delivery.connection import Connection
from bankhub.protocol.session import SessionLimits
from bankhub.runner import RunningNode
from bankhub_client import (
    AuthError,
    Client,
    ClientOptions,
    ConnectionLost,
    Disconnected,
    Event,
    Message,
    ProtocolError,
    Receipt,
    Reconnected,
    ReconnectPolicy,
    SendTimeout,
)

from ..conftest import Nodes, login, open_direct
from ..support.proxy import CuttableProxy

FAST = ClientOptions(reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.05, max_elapsed=15.0))
WAIT = 10.0  # seconds: the bound on any single wait in these tests


@pytest.fixture
async def proxy(node: RunningNode) -> AsyncIterator[CuttableProxy]:
    p = await CuttableProxy(node.port).start()
    yield p
    await p.close()


# --- helpers -----------------------------------------------------------------------------


async def take(c: Client, n: int, kinds: tuple[type, ...] = (Message,), timeout: float = WAIT) -> list[Event]:
    """The next ``n`` events of the given kinds (others are skipped)."""
    out: list[Event] = []

    async def run() -> None:
        async for event in c.events():
            if isinstance(event, kinds):
                out.append(event)
                if len(out) >= n:
                    return
        raise AssertionError(f"event stream ended after {out}")

    await asyncio.wait_for(run(), timeout)
    return out


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events if isinstance(e, Message)]


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` (sync or async) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stored(dsn: str, conv: str) -> list[tuple[int, str]]:
    """``(seq, client_msg_id)`` of every message stored in ``conv``, in seq order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT seq, client_msg_id FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(conv)
        )
    finally:
        await conn.close()
    return [(r["seq"], r["client_msg_id"]) for r in rows]


async def stored_ids(dsn: str, conv: str) -> dict[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT seq, id FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
    finally:
        await conn.close()
    return {r["seq"]: str(r["id"]) for r in rows}


async def count_stored(dsn: str, conv: str, n: int) -> None:
    async def enough() -> bool:
        return len(await stored(dsn, conv)) >= n

    await until(enough, f"{n} messages stored")


def server_conns(node: RunningNode, username: str) -> list[Connection]:
    return [c for c in node.hub.registry.connections() if c.user.username == username]


async def logout(node: RunningNode, token: str) -> None:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.delete("/v1/sessions/current")
        assert r.status_code == 204, r.text


def sends(frames: list[dict[str, Any]]) -> list[str]:
    """The client_msg_ids of the ``send`` frames among ``frames``."""
    return [f["client_msg_id"] for f in frames if f["type"] == "send"]


async def lock_conversation(dsn: str, conv: str) -> tuple[asyncpg.Connection, Any]:
    """Hold the conversation row: no send to it can commit until the returned transaction ends."""
    blocker = await asyncpg.connect(dsn)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(conv))
    return blocker, tx


# --- sending and receiving -----------------------------------------------------------------


async def test_send_returns_committed_message_and_peer_receives_it(node: RunningNode) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=li, options=FAST) as customer:
        history = await customer.send(conv, "history before the RM connects")
        assert history.seq == 1
        async with Client.connect(node.ws_url, token=wang, options=FAST) as rm:
            assert rm.cursors[conv] == 1  # the snapshot: history is not yielded
            sent = await customer.send(conv, "hi, RM")
            assert (sent.seq, sent.text, sent.sender_id, sent.conversation_id) == (2, "hi, RM", customer.user_id, conv)
            (got,) = await take(rm, 1)
            assert isinstance(got, Message)
            assert (got.message_id, got.seq, got.text, got.sender_id) == (sent.message_id, 2, "hi, RM", customer.user_id)
            receipt = await rm.read(conv, 2)
            assert (receipt.conversation_id, receipt.user_id, receipt.read_seq, receipt.unread) == (conv, rm.user_id, 2, 0)
            (seen,) = await take(customer, 1, kinds=(Receipt,))  # the RM's read position reaches the customer
            assert isinstance(seen, Receipt) and (seen.user_id, seen.read_seq) == (rm.user_id, 2)
            assert await customer.ping() >= 0
            with pytest.raises(ValueError):
                await customer.send(conv, "x" * (customer.hello.limits.max_text_chars + 1))
            with pytest.raises(ValueError):
                await customer.send(conv, "")
        assert customer.cursors[conv] == 2 and customer.pending_sends == 0


async def test_send_survives_cut_after_commit_without_duplicate(node: RunningNode, proxy: CuttableProxy, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        proxy.hold(down=True)  # the hub's answers get stuck on the way back
        task = asyncio.create_task(c.send(conv, "once", client_msg_id="once-1"))
        await count_stored(dsn, conv, 1)
        await proxy.wait_held(up=False)
        first = proxy.ws_links[0]
        assert [f["type"] for f in first.held_server_frames()] == ["sent"]  # committed, answer lost
        assert proxy.cut() >= 1
        sent = await asyncio.wait_for(task, WAIT)
        assert (sent.seq, sent.client_msg_id, sent.text) == (1, "once-1", "once")
        assert sent.message_id == (await stored_ids(dsn, conv))[1]
        notices = await take(c, 2, kinds=(Disconnected, Reconnected))
        assert notices[0] == Disconnected(code=1006, reason="", will_reconnect=True)
        assert isinstance(notices[1], Reconnected) and notices[1].attempts >= 1
        # the sync after the reconnect found the committed message: it was not sent again
        second = await proxy.wait_ws_links(2)
        assert sends(first.client_frames()) == ["once-1"] and sends(second.client_frames()) == []
    assert await stored(dsn, conv) == [(1, "once-1")]


async def test_send_survives_cut_before_commit(node: RunningNode, proxy: CuttableProxy, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        proxy.hold(up=True)  # the send never reaches the hub
        task = asyncio.create_task(c.send(conv, "resent", client_msg_id="resent-1"))
        await proxy.wait_held(up=True)
        assert sends(proxy.ws_links[0].held_client_frames()) == ["resent-1"]
        assert await stored(dsn, conv) == []
        proxy.cut()
        sent = await asyncio.wait_for(task, WAIT)
        assert (sent.seq, sent.client_msg_id) == (1, "resent-1")
        first, second = proxy.ws_links
        assert sends(first.client_frames()) == [] and sends(second.client_frames()) == ["resent-1"]
        answers = [f for f in second.server_frames() if f["type"] == "sent"]
        assert [(a["client_msg_id"], a["seq"], a.get("duplicate", False)) for a in answers] == [("resent-1", 1, False)]
    assert await stored(dsn, conv) == [(1, "resent-1")]


async def test_concurrent_sends_across_cuts_are_stored_once_and_delivered_in_order(
    node: RunningNode, proxy: CuttableProxy, dsn: str
) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c, Client.connect(
        node.http_url, token=wang, options=FAST
    ) as rm:

        def send_all(ids: range) -> list[asyncio.Task[Message]]:
            return [asyncio.create_task(c.send(conv, f"n{i}", client_msg_id=f"k{i}")) for i in ids]

        # cut 1: ten sends committed with their answers lost, ten more lost before the hub
        proxy.hold(down=True)
        tasks = send_all(range(10))
        await count_stored(dsn, conv, 10)
        proxy.hold(up=True)
        tasks += send_all(range(10, 20))
        link = proxy.ws_links[0]
        await until(lambda: len(sends(link.held_client_frames())) == 10, "ten sends held")
        assert proxy.cut() >= 1
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        # cut 2: ten more committed with their answers lost
        await proxy.wait_ws_links(2)
        proxy.hold(down=True)
        tasks += send_all(range(20, 30))
        await count_stored(dsn, conv, 30)
        assert proxy.cut() >= 1
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert [r.seq for r in results] == list(range(1, 31))  # one sender's sends keep their order
        got = await take(rm, 30)
        assert seqs(got) == list(range(1, 31))
        assert [m.message_id for m in got if isinstance(m, Message)] == [r.message_id for r in results]
        assert c.pending_sends == 0
        # every resend carried its original client_msg_id: k10..k19 once more after cut 1
        wire = [sends(link.client_frames()) for link in proxy.ws_links]
        assert wire[0] == [f"k{i}" for i in range(10)]
        assert wire[1][:10] == [f"k{i}" for i in range(10, 20)]
    assert await stored(dsn, conv) == [(i + 1, f"k{i}") for i in range(30)]


async def test_requests_in_flight_are_retried_on_the_next_connection(node: RunningNode, proxy: CuttableProxy) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=wang, options=FAST) as rm:
        await rm.send(conv, "one")
        await rm.send(conv, "two")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        proxy.hold(up=True)
        read = asyncio.create_task(c.read(conv, 2))
        ping = asyncio.create_task(c.ping())
        await until(lambda: len(proxy.ws_links[0].held_client_frames()) == 2, "read and ping held")
        proxy.cut()
        receipt = await asyncio.wait_for(read, WAIT)
        assert (receipt.read_seq, receipt.unread, receipt.user_id) == (2, 0, c.user_id)
        assert await asyncio.wait_for(ping, WAIT) >= 0
        first, second = proxy.ws_links
        assert first.client_frames() == []
        # (the alert inbox catches up on its own frame, alongside: left out here)
        types = [f["type"] for f in second.client_frames() if f["type"] != "sync_inbox"]
        assert types[0] == "sync" and sorted(types[1:]) == ["ping", "read"]  # caught up first, then retried
        assert c.cursors[conv] == 2


# --- reconnect and sync -------------------------------------------------------------------


async def test_reconnect_syncs_missed_backlog_in_pages_then_goes_live(node: RunningNode, proxy: CuttableProxy) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=li, options=FAST) as customer, Client.connect(
        proxy.http_url, token=wang, options=replace(FAST, sync_limit=2)
    ) as rm:
        await customer.send(conv, "before")
        assert seqs(await take(rm, 1)) == [1]
        proxy.refusing = True  # the RM cannot come back yet
        (conn,) = server_conns(node, "rm.wang")
        conn.close(4008, "slow consumer")
        (gone,) = await take(rm, 1, kinds=(Disconnected,))
        assert gone == Disconnected(code=4008, reason="slow consumer", will_reconnect=True)
        for i in range(5):
            await customer.send(conv, f"while away {i}")
        reply = asyncio.create_task(rm.send(conv, "written while away", client_msg_id="away-1"))
        await asyncio.sleep(0.1)  # a few refused reconnect attempts
        assert not reply.done() and rm.pending_sends == 1
        proxy.refusing = False
        events = await take(rm, 6, kinds=(Message, Reconnected))
        assert isinstance(events[0], Reconnected)
        assert [(m.seq, m.text) for m in events[1:] if isinstance(m, Message)] == [(i + 2, f"while away {i}") for i in range(5)]
        # the send made while away went out after the sync, so it follows the backlog
        assert (await asyncio.wait_for(reply, WAIT)).seq == 7
        # the backlog came in pages of 2, following has_more, before anything live was sent
        link = proxy.ws_links[-1]
        frames = [f for f in link.client_frames() if f["type"] != "sync_inbox"]  # the alert inbox syncs alongside
        assert [f["type"] for f in frames] == ["sync", "sync", "sync", "send"]
        assert [(f["since"], f["limit"]) for f in frames[:3]] == [({conv: 1}, 2), ({conv: 3}, 2), ({conv: 5}, 2)]
        more = [next(x["has_more"] for x in f["conversations"] if x["conversation_id"] == conv)
                for f in link.server_frames() if f["type"] == "synced"]
        assert more == [True, True, False]
        live = await customer.send(conv, "live")
        (got,) = await take(rm, 1)
        assert isinstance(got, Message) and (got.seq, got.message_id) == (8, live.message_id)
        assert rm.cursors[conv] == 8


async def test_slow_consumer_is_closed_4008_then_reconnects_and_loses_nothing(nodes: Nodes) -> None:
    """A reader that stops reading overflows its outbound queue on the hub: 4008, then sync."""
    node = await nodes.start(limits=SessionLimits(outbound_queue=8, frames_per_second=1000, frame_burst=1000))
    proxy = await CuttableProxy(node.port).start()
    try:
        li, wang = await login(node, "c.li"), await login(node, "rm.wang")
        conv = await open_direct(node, li, "rm.wang")
        async with Client.connect(node.http_url, token=li, options=FAST) as customer, Client.connect(
            proxy.http_url, token=wang, options=FAST
        ) as rm:
            (conn,) = server_conns(node, "rm.wang")
            proxy.stall()  # the RM's side stops reading: TCP backpressure reaches the hub
            acked: list[Message] = []
            while conn.close_code is None:  # socket buffers take a few MB before the queue fills
                assert len(acked) < 5000, "the hub never closed the slow consumer"
                acked.append(await customer.send(conv, f"{len(acked):05d}" + "x" * 3990))
            assert (conn.close_code, conn.close_reason) == (4008, "outbound queue overflow: reconnect and sync")
            for i in range(3):  # committed while the RM is away
                acked.append(await customer.send(conv, f"away {i}"))
            proxy.release()
            total = len(acked)
            events = await take(rm, total + 2, kinds=(Message, Disconnected, Reconnected), timeout=30)
            notices = [e for e in events if not isinstance(e, Message)]
            assert notices[0] == Disconnected(code=4008, reason="outbound queue overflow: reconnect and sync", will_reconnect=True)
            assert isinstance(notices[1], Reconnected)
            got = [e for e in events if isinstance(e, Message)]
            assert [m.seq for m in got] == list(range(1, total + 1))
            assert [m.message_id for m in got] == [a.message_id for a in acked]
            assert 0 < events.index(notices[0]) < total - 3  # some came live before the close, the rest by sync
            assert proxy.ws_links[0].server_close_code() == 4008
    finally:
        await proxy.close()


@pytest.mark.parametrize("code", [1001, 1011, 4008])
async def test_server_close_leads_to_reconnect_and_sync(node: RunningNode, code: int) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=li, options=FAST) as customer, Client.connect(
        node.http_url, token=wang, options=FAST
    ) as rm:
        await customer.send(conv, "m1")
        assert seqs(await take(rm, 1)) == [1]
        for conn in server_conns(node, "rm.wang"):
            conn.close(code, "forced")
        pending = [asyncio.create_task(customer.send(conv, f"m{i}")) for i in range(2, 6)]
        events = await take(rm, 6, kinds=(Message, Disconnected, Reconnected))
        assert events[0] == Disconnected(code=code, reason="forced", will_reconnect=True)
        assert isinstance(events[1], Reconnected)
        assert seqs(events) == [2, 3, 4, 5]
        assert [m.seq for m in await asyncio.gather(*pending)] == [2, 3, 4, 5]


async def test_node_drain_1012_moves_clients_to_another_node_and_sync_delivers_everything(nodes: Nodes, dsn: str) -> None:
    """Node A drains (1012); the proxy now leads to node B (same database, separate broker)."""
    a = await nodes.start("a")
    b = await nodes.start("b")
    proxy = await CuttableProxy(a.port).start()
    try:
        li, wang = await login(a, "c.li"), await login(a, "rm.wang")
        conv = await open_direct(a, li, "rm.wang")
        async with Client.connect(b.http_url, token=li, options=FAST) as customer, Client.connect(
            proxy.http_url, token=wang, options=FAST
        ) as rm:
            assert rm.hello.node == "a"
            # committed on B while the RM is on A: no signal crosses between the two brokers
            early = [await customer.send(conv, f"early {i}") for i in range(3)]
            proxy.target_port = b.port
            in_flight = asyncio.create_task(rm.send(conv, "in flight during the drain", client_msg_id="drain-1"))
            draining = asyncio.create_task(a.stop())
            events = await take(rm, 5, kinds=(Message, Disconnected, Reconnected))
            assert isinstance(events[0], Disconnected) and (events[0].code, events[0].will_reconnect) == (1012, True)
            assert isinstance(events[1], Reconnected) and events[1].hello.node == "b"
            assert [(m.seq, m.message_id) for m in events[2:] if isinstance(m, Message)] == [
                (s.seq, s.message_id) for s in early
            ]
            await asyncio.wait_for(draining, WAIT)
            assert (await asyncio.wait_for(in_flight, WAIT)).seq == 4  # on A before the drain, or resent to B
            live = await customer.send(conv, "live on B")
            assert seqs(await take(rm, 1)) == [live.seq] == [5]
            reply = await rm.send(conv, "answered from B")
            assert reply.seq == 6
        assert await stored(dsn, conv) == [(i + 1, cmid) for i, cmid in enumerate(
            [m.client_msg_id for m in early] + ["drain-1", live.client_msg_id, reply.client_msg_id])]
    finally:
        await proxy.close()


async def test_resume_from_saved_cursors_with_ticket_auth(node: RunningNode, proxy: CuttableProxy) -> None:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=wang, options=FAST) as rm:
        for i in range(4):
            await rm.send(conv, f"m{i}")
    async with Client.connect(proxy.http_url, token=li, options=replace(FAST, cursors={conv: 2}, use_ticket=True)) as c:
        got = await take(c, 2)
        assert [(m.seq, m.text) for m in got if isinstance(m, Message)] == [(3, "m2"), (4, "m3")]
        for conn in server_conns(node, "c.li"):
            conn.close(1001, "going away")
        (back,) = await take(c, 1, kinds=(Reconnected,))
        assert isinstance(back, Reconnected)
        await c.ping()
        assert c.cursors[conv] == 4
    # each connection used a fresh single-use ticket, and never the bearer token
    heads = [link.request_head for link in proxy.ws_links]
    assert len(heads) == 2
    tickets = [h.split("\r\n", 1)[0].split("?ticket=", 1)[1].split(" ", 1)[0] for h in heads]
    assert len(set(tickets)) == 2 and all(tickets)
    assert not any("authorization:" in h.lower() for h in heads)
    posts = sum(bytes(link.up).count(b"POST /v1/ws-tickets ") for link in proxy.links if not link.is_websocket)
    assert posts == 2


# --- the end of a client ---------------------------------------------------------------


async def test_logout_close_1008_ends_with_auth_error_and_no_reconnect(node: RunningNode, proxy: CuttableProxy) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        await logout(node, li)
        with pytest.raises(AuthError) as info:
            await take(c, 1, kinds=(Message,))
        assert info.value.close_code == 1008
        with pytest.raises(AuthError):
            await c.send(conv, "too late")
        assert not c.connected
        await asyncio.sleep(0.3)  # several reconnect delays of FAST
        assert len(proxy.ws_links) == 1
        assert proxy.ws_links[0].server_close_code() == 1008


async def test_logout_is_reported_as_a_disconnect_before_the_auth_error(node: RunningNode) -> None:
    li = await login(node, "c.li")
    async with Client.connect(node.http_url, token=li, options=FAST) as c:
        await logout(node, li)
        seen: list[Event] = []
        with pytest.raises(AuthError):
            async with asyncio.timeout(WAIT):
                async for event in c.events():
                    seen.append(event)
        assert seen == [Disconnected(code=1008, reason="signed out", will_reconnect=False)]


async def test_refused_reconnect_handshake_ends_with_auth_error(node: RunningNode, proxy: CuttableProxy, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        proxy.refusing = True
        proxy.cut()
        (gone,) = await take(c, 1, kinds=(Disconnected,))
        assert gone == Disconnected(code=1006, reason="", will_reconnect=True)
        pending = asyncio.create_task(c.send(conv, "never sent", client_msg_id="x"))
        await logout(node, li)  # the session is revoked while the client is away
        proxy.refusing = False
        with pytest.raises(AuthError) as info:
            await take(c, 1)
        assert (info.value.status, info.value.close_code) == (401, None)
        with pytest.raises(AuthError):
            await asyncio.wait_for(pending, WAIT)  # the pending send fails with the client
        assert bytes(proxy.ws_links[-1].down).startswith(b"HTTP/1.1 401")
    assert await stored(dsn, conv) == []


async def test_bad_token_fails_connect(node: RunningNode) -> None:
    with pytest.raises(AuthError) as info:
        await Client.connect(node.http_url, token="nope", options=FAST)
    assert info.value.status == 401
    with pytest.raises(AuthError) as info:
        await Client.connect(node.http_url, token="nope", options=replace(FAST, use_ticket=True))
    assert info.value.status == 401
    revoked = await login(node, "c.li")
    await logout(node, revoked)
    with pytest.raises(AuthError):
        await Client.connect(node.ws_url, token=revoked, options=FAST)


async def test_gives_up_after_bounded_attempts_when_the_node_is_gone(node: RunningNode) -> None:
    li = await login(node, "c.li")
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=2)
    async with Client.connect(node.http_url, token=li, options=ClientOptions(reconnect=policy)) as c:
        await node.stop()  # drains with 1012, then nothing listens on the port
        with pytest.raises(ConnectionLost) as info:
            await take(c, 1)
        assert info.value.close_code == 1012
        assert "after 2 attempt(s)" in str(info.value)
        with pytest.raises(ConnectionLost):
            await c.ping()
        with pytest.raises(ConnectionLost):
            await c.send(str(uuid.uuid4()), "too late")
        assert not c.connected


async def test_gives_up_after_bounded_time_when_nothing_answers(node: RunningNode, proxy: CuttableProxy) -> None:
    li = await login(node, "c.li")
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, max_elapsed=0.5)
    async with Client.connect(proxy.http_url, token=li, options=ClientOptions(reconnect=policy)) as c:
        proxy.refusing = True
        proxy.cut()
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionLost) as info:
            await take(c, 1)
        assert info.value.close_code == 1006
        assert 0.4 < asyncio.get_running_loop().time() - started < 5
        assert len(proxy.ws_links) == 1  # every attempt was refused


# --- refused and unanswered sends -----------------------------------------------------------


async def test_rate_limited_send_is_retried(nodes: Nodes, dsn: str) -> None:
    """The client paces itself under hello.limits, but the network bunches two frames together."""
    node = await nodes.start(limits=SessionLimits(frames_per_second=5, frame_burst=1))
    proxy = await CuttableProxy(node.port).start()
    try:
        li = await login(node, "c.li")
        conv = await open_direct(node, li, "rm.wang")
        async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
            proxy.hold(up=True)
            first = asyncio.create_task(c.send(conv, "a", client_msg_id="rl-1"))
            second = asyncio.create_task(c.send(conv, "b", client_msg_id="rl-2"))
            (link,) = proxy.ws_links
            await until(lambda: len(sends(link.held_client_frames())) == 2, "both sends held")
            proxy.release()  # both arrive at once: the second exceeds the hub's burst of 1
            a, b = await asyncio.wait_for(asyncio.gather(first, second), WAIT)
            assert (a.seq, b.seq) == (1, 2)
            frames = link.client_frames()
            assert sends(frames) == ["rl-1", "rl-2", "rl-2"]  # the refused one went again
            refused = [f for f in link.server_frames() if f["type"] == "error"]
            assert [(f["code"], f["id"]) for f in refused] == [("rate_limited", frames[1]["id"])]
            assert 0 < refused[0]["retry_after_ms"] <= 200
            assert c.pending_sends == 0
        assert await stored(dsn, conv) == [(1, "rl-1"), (2, "rl-2")]
    finally:
        await proxy.close()


async def test_refused_send_raises_protocol_error(node: RunningNode) -> None:
    li, zhou = await login(node, "c.li"), await login(node, "c.zhou")
    foreign = await open_direct(node, zhou, "rm.chen")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=li, options=FAST) as c:
        with pytest.raises(ProtocolError) as info:
            await c.send(foreign, "not my conversation")
        assert info.value.code == "not_found"
        with pytest.raises(ProtocolError) as info:
            await c.send(str(uuid.uuid4()), "no such conversation")
        assert info.value.code == "not_found"
        with pytest.raises(ProtocolError) as info:
            await c.read(foreign, 1)
        assert info.value.code == "not_found"
        assert c.pending_sends == 0
        assert (await c.send(conv, "still usable")).seq == 1


async def test_storage_unavailable_is_retried_and_a_failed_commit_raises(node: RunningNode, proxy: CuttableProxy, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    db = await asyncpg.connect(dsn)
    try:
        # Postgres answers inserts with "cannot connect now" (57P03): the hub says `unavailable`
        await db.execute(
            """CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'storage refused' USING ERRCODE = TG_ARGV[0]; END $$;
               CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_insert('57P03');"""
        )
        async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
            task = asyncio.create_task(c.send(conv, "retried", client_msg_id="u-1"))
            (link,) = proxy.ws_links

            def errors() -> list[str]:
                return [f["code"] for f in link.server_frames() if f["type"] == "error"]

            await until(lambda: len(errors()) >= 2, "two `unavailable` answers")
            assert not task.done()
            await db.execute("DROP TRIGGER refuse ON messages")
            sent = await asyncio.wait_for(task, WAIT)
            assert sent.seq == 1
            assert set(errors()) == {"unavailable"}
            assert set(sends(link.client_frames())) == {"u-1"} and len(sends(link.client_frames())) == len(errors()) + 1
            # any other storage failure is final: `internal`, nothing stored, not retried
            await db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_insert('P0001')"
            )
            with pytest.raises(ProtocolError) as info:
                await c.send(conv, "failed", client_msg_id="u-2")
            assert info.value.code == "internal"
            assert c.pending_sends == 0
            assert sends(link.client_frames()).count("u-2") == 1
            await db.execute("DROP TRIGGER refuse ON messages")
            assert (await c.send(conv, "failed", client_msg_id="u-2")).seq == 2  # the failed one allocated no seq
        assert await stored(dsn, conv) == [(1, "u-1"), (2, "u-2")]
    finally:
        await db.close()


async def test_send_timeout_gives_up_and_a_retry_with_the_same_id_finds_the_commit(node: RunningNode, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(node.http_url, token=li, options=FAST) as c:
        blocker, tx = await lock_conversation(dsn, conv)
        try:
            with pytest.raises(SendTimeout) as info:
                await c.send(conv, "no answer", client_msg_id="k1", timeout=0.2)
            assert info.value.client_msg_id == "k1"
            assert c.pending_sends == 0
        finally:
            await tx.commit()
            await blocker.close()
        await count_stored(dsn, conv, 1)  # the hub committed it after all, once the row was free
        again = await c.send(conv, "no answer", client_msg_id="k1")
        assert again.seq == 1 and again.message_id == (await stored_ids(dsn, conv))[1]
    assert await stored(dsn, conv) == [(1, "k1")]


async def test_joined_sends_share_one_transmission_and_one_giving_up_keeps_the_other(
    node: RunningNode, proxy: CuttableProxy, dsn: str
) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    async with Client.connect(proxy.http_url, token=li, options=FAST) as c:
        blocker, tx = await lock_conversation(dsn, conv)
        try:
            impatient = asyncio.create_task(c.send(conv, "same", client_msg_id="k", timeout=0.2))
            patient = asyncio.create_task(c.send(conv, "same", client_msg_id="k", timeout=WAIT))
            with pytest.raises(SendTimeout):
                await impatient
            assert c.pending_sends == 1 and not patient.done()
            # a restart close while the commit waits: the pending send goes again on the new connection
            for conn in server_conns(node, "c.li"):
                conn.close(1012, "restart")
            second = await proxy.wait_ws_links(2)
            await until(lambda: sends(second.client_frames()) == ["k"], "the resend")
        finally:
            await tx.commit()
            await blocker.close()
        sent = await asyncio.wait_for(patient, WAIT)
        assert sent.seq == 1 and c.pending_sends == 0
        first = proxy.ws_links[0]
        assert sends(first.client_frames()) == ["k"]  # the two sends were one transmission
    assert await stored(dsn, conv) == [(1, "k")]


# --- lost and late broker signals (two nodes on a real Valkey) -------------------------------


async def _two_nodes_with_a_lossy_broker(nodes: Nodes, valkey_url: str, cluster_key: str) -> tuple[RunningNode, RunningNode, CuttableProxy]:
    """Node A reaches Valkey through a proxy (its publishes can be held and lost), node B directly."""
    port = urlsplit(valkey_url).port
    assert port is not None
    broker_proxy = await CuttableProxy(port).start()
    a = await nodes.start("a", redis_url=f"redis://127.0.0.1:{broker_proxy.port}", cluster_key=cluster_key)
    b = await nodes.start("b", redis_url=valkey_url, cluster_key=cluster_key)
    return a, b, broker_proxy


async def test_lost_broker_signal_is_detected_as_a_gap_and_synced(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    a, b, broker_proxy = await _two_nodes_with_a_lossy_broker(nodes, valkey_url, cluster_key)
    try:
        li, wang = await login(a, "c.li"), await login(a, "rm.wang")
        conv = await open_direct(a, li, "rm.wang")
        async with Client.connect(a.http_url, token=wang, options=FAST) as rm, Client.connect(
            b.http_url, token=li, options=FAST
        ) as customer:
            broker_proxy.hold(up=True)  # A's publish never reaches Valkey...
            lost = await rm.send(conv, "lost")  # ...committed and acknowledged all the same
            broker_proxy.cut()
            nxt = await rm.send(conv, "next")
            got = await take(customer, 2)
            assert [(m.seq, m.message_id, m.text) for m in got if isinstance(m, Message)] == [
                (1, lost.message_id, "lost"),
                (2, nxt.message_id, "next"),
            ]
            assert customer.cursors[conv] == 2
    finally:
        await broker_proxy.close()


async def test_hole_before_own_send_is_filled_after_grace(nodes: Nodes, valkey_url: str, cluster_key: str, dsn: str) -> None:
    a, b, broker_proxy = await _two_nodes_with_a_lossy_broker(nodes, valkey_url, cluster_key)
    try:
        li, wang = await login(a, "c.li"), await login(a, "rm.wang")
        conv = await open_direct(a, li, "rm.wang")
        async with Client.connect(a.http_url, token=wang, options=FAST) as rm, Client.connect(
            b.http_url, token=li, options=replace(FAST, gap_grace=0.05)
        ) as customer:
            broker_proxy.hold(up=True)  # the RM's message will be committed but its signal held
            theirs = asyncio.create_task(rm.send(conv, "theirs"))
            await count_stored(dsn, conv, 1)
            mine = await customer.send(conv, "mine")
            assert mine.seq == 2  # acknowledged beyond a hole: seq 1 never came live
            (got,) = await take(customer, 1)
            assert isinstance(got, Message) and (got.seq, got.text) == (1, "theirs")
            assert customer.cursors[conv] == 2
            assert (await asyncio.wait_for(theirs, WAIT)).seq == 1
            broker_proxy.cut()
    finally:
        await broker_proxy.close()
