"""The WebSocket gateway under attack: bounded per-connection state, socket caps, the
handshake and idle timeouts, hostile JSON, and answers before a policy close."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bankhub.broker import user_channel
from bankhub.delivery.connection import Connection
from bankhub.gateway import endpoint
from bankhub.policy import ALLOW
from bankhub.protocol.frames import CloseCode
from bankhub.protocol.session import Outcome, ServerSession, SessionLimits
from bankhub.runner import RunningNode
from bankhub.signals import MessageSignal, encode_signal
from bankhub.storage import NewMessage
from bankhub_client import Client, ClientOptions
from bankhub_client.state import CloseAction, classify_close

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


def _connection(node: RunningNode, user_id: str) -> Connection:
    conns = node.hub.registry.by_user[user_id]
    assert len(conns) == 1
    return next(iter(conns))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.exc_info or ''}" for r in self.records)


# --- defect 1: per-connection state holds only the user's own streams ------------------


async def test_sync_keys_of_streams_not_mine_are_never_kept(node: RunningNode) -> None:
    token = await login(node, "c.li")
    mine = await open_direct(node, token, "rm.wang")
    c = await RawClient.connect(node.ws_url, token)
    sent = await c.request(
        {"type": "send", "conversation_id": mine, "client_msg_id": "k1", "body": {"kind": "text", "text": "hello"}}
    )
    assert sent["type"] == "sent"
    conn = _connection(node, c.hello["user_id"])
    answered: set[str] = set()
    for round_ in range(12):  # 12 x 1200 = 14,400 random keys, each frame under 64 KiB
        since: dict[str, int] = {str(uuid.uuid4()): 7 for _ in range(1100)}
        since.update({f"x{round_}-{i}": 1 for i in range(100)})  # not even a conversation id
        if round_ == 0:
            since[mine] = 0
        accounts = {f"acc-{round_}-{i}": 3 for i in range(40)}
        synced = await c.request({"type": "sync", "since": since, "accounts": accounts, "limit": 1}, timeout=20)
        assert synced["type"] == "synced"
        answered |= {s["conversation_id"] for s in synced["conversations"]}
    cursors = conn.cursors.snapshot()
    # only conversations the hub itself answered for this user: nothing the client made up
    assert mine in cursors and set(cursors) <= answered and len(cursors) < 100
    assert set(conn.notice_seen) <= conn.follows
    assert not conn.messages.fills() and not conn.inflight()
    # the user's own conversation still resumes from the declared position
    later = await c.request({"type": "sync", "since": {mine: 1}})
    assert all(s["conversation_id"] != mine for s in later["conversations"])  # nothing new in it
    await c.close()


async def test_sync_keeps_the_declared_position_of_my_quiet_conversations(node: RunningNode) -> None:
    """A fresh connection tracks nothing yet: a ``sync`` of the user's own conversation with
    nothing new still sets its cursor, so a late duplicate signal is dropped and a lost
    signal's gap is filled from storage."""
    token, rm_token = await login(node, "c.li"), await login(node, "rm.wang")
    mine = await open_direct(node, token, "rm.wang")
    rm = await RawClient.connect(node.ws_url, rm_token)
    for i in (1, 2):
        assert (await rm.request({"type": "send", "conversation_id": mine, "client_msg_id": f"q{i}",
                                  "body": {"kind": "text", "text": f"m{i}"}}))["type"] == "sent"
    c = await RawClient.connect(node.ws_url, token)  # a reconnect: the client holds seq 2
    conn = _connection(node, c.hello["user_id"])
    synced = await c.request({"type": "sync", "since": {mine: 2, str(uuid.uuid4()): 0}})
    assert all(s["conversation_id"] != mine for s in synced["conversations"])  # nothing new in it
    assert conn.cursors.get(mine) == 2
    # a late duplicate of seq 2's signal: the client has it already
    old = await node.hub.messages.range(mine, 1, 2)
    await node.hub.broker.publish(user_channel(c.hello["user_id"]), encode_signal(MessageSignal(message=old[-1])))
    assert await c.quiet("message", 0.5)
    # seq 3's signal is lost (stored without one), seq 4's arrives: 3 is fetched, then 4
    rm_user = (await node.hub.users.by_ids([rm.hello["user_id"]]))[rm.hello["user_id"]]
    lost = NewMessage(sender=rm_user, conversation_id=mine, client_msg_id="q3", kind="text",
                      body=b'{"kind":"text","text":"m3"}')
    async with node.hub.db.transaction("test_append") as conn:  # no outbox: the signal is lost
        locked = await node.hub.messages.lock_txn(conn, [lost])
        assert (await node.hub.messages.append_txn(conn, [lost], locked, [ALLOW]))[0].status == "stored"
    assert (await rm.request({"type": "send", "conversation_id": mine, "client_msg_id": "q4",
                              "body": {"kind": "text", "text": "m4"}}))["type"] == "sent"
    assert [m["seq"] for m in await c.messages(2)] == [3, 4]
    assert await c.quiet("message", 0.3)
    await c.close()
    await rm.close()


async def test_sockets_per_user_and_per_address_are_capped_with_429(nodes: Nodes) -> None:
    node = await nodes.start(max_sockets_per_user=3, max_sockets_per_ip=5)
    li, zhang, zhou = await login(node, "c.li"), await login(node, "c.zhang"), await login(node, "c.zhou")
    held = [await RawClient.connect(node.ws_url, li) for _ in range(3)]

    async def refused(token: str) -> dict[str, Any]:
        with pytest.raises(InvalidStatus) as info:
            await RawClient.connect(node.ws_url, token)
        response = info.value.response
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        body: dict[str, Any] = json.loads(response.body)
        return body

    assert (await refused(li))["code"] == "too_many_connections"  # the user's 4th
    held += [await RawClient.connect(node.ws_url, zhang) for _ in range(2)]  # 5 from this address
    assert (await refused(zhou))["code"] == "too_many_connections"  # the address's 6th
    # a refused handshake holds no slot; a closed socket gives its slot back
    await held.pop(0).close()
    for _ in range(50):
        if sum(node.hub.registry.sockets.by_ip.values()) == 4:
            break
        await asyncio.sleep(0.02)
    extra = await RawClient.connect(node.ws_url, zhou)
    assert (await extra.request({"type": "ping"}))["type"] == "pong"
    for c in held + [extra]:
        await c.close()
    for _ in range(100):
        if not node.hub.registry.sockets.by_ip and not node.hub.registry.sockets.by_user:
            break
        await asyncio.sleep(0.02)
    assert node.hub.registry.sockets.by_ip == {} and node.hub.registry.sockets.by_user == {}


async def _slow_headers(port: int) -> tuple[float, bytes]:
    """Connect and dribble request headers forever; returns (seconds until closed, what came back)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    writer.write(b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    got = b""

    async def dribble() -> None:
        for i in range(200):
            writer.write(b"X-Slow-%d: 1\r\n" % i)
            await asyncio.sleep(0.2)

    dribbler = asyncio.create_task(dribble())
    try:
        while chunk := await asyncio.wait_for(reader.read(4096), 15):
            got += chunk
    except (ConnectionError, OSError):
        pass
    finally:
        dribbler.cancel()
        writer.close()
    return loop.time() - started, got


async def test_slow_header_and_idle_sockets_are_closed_in_time(nodes: Nodes) -> None:
    node = await nodes.start(handshake_timeout_seconds=1.0, ws_idle_timeout_seconds=1.5)
    token = await login(node, "c.li")
    # three sockets that never finish their request headers (and one that sends nothing)
    silent = socket.create_connection(("127.0.0.1", node.port))
    slow = await asyncio.gather(*(_slow_headers(node.port) for _ in range(3)))
    for took, got in slow:
        assert took < 3.0
        assert got.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in got
    silent.settimeout(3.0)
    assert silent.recv(4096).startswith(b"HTTP/1.1 408")
    silent.close()

    # three open WebSockets that send nothing (no frame, no ping) are closed with 4000
    loop = asyncio.get_running_loop()
    started = loop.time()
    idle = [await RawClient.connect(node.ws_url, token, ping_interval=None) for _ in range(3)]
    assert idle[0].hello["limits"]["idle_timeout"] == 1.5
    # a socket that only sends WebSocket pings, and one that sends frames, stay open
    pinging = await RawClient.connect(node.ws_url, token, ping_interval=0.3)
    talking = await RawClient.connect(node.ws_url, token, ping_interval=None)

    async def closed_code(c: RawClient) -> tuple[int, float]:
        with pytest.raises(ConnectionClosed) as info:
            await c.recv(timeout=6)
        assert info.value.rcvd is not None
        return info.value.rcvd.code, loop.time() - started

    async def talk() -> None:
        for _ in range(12):
            assert (await talking.request({"type": "ping"}))["type"] == "pong"
            await asyncio.sleep(0.25)

    closes, _ = await asyncio.gather(asyncio.gather(*(closed_code(c) for c in idle)), talk())
    assert [code for code, _ in closes] == [4000, 4000, 4000]
    assert all(1.5 <= after < 4.0 for _, after in closes), closes
    assert (await pinging.request({"type": "ping"}))["type"] == "pong"
    assert (await talking.request({"type": "ping"}))["type"] == "pong"
    await pinging.close()
    await talking.close()


def test_the_idle_timeout_comfortably_exceeds_the_sdk_keepalive() -> None:
    sdk_ping = ClientOptions().ping_interval
    assert isinstance(sdk_ping, float)
    assert SessionLimits().idle_timeout >= 3 * sdk_ping
    # and an SDK closed for idleness (its loop stalled) reconnects and syncs
    assert classify_close(CloseCode.IDLE_TIMEOUT) is CloseAction.RECONNECT


async def test_sdk_keepalive_keeps_a_quiet_client_connected(nodes: Nodes) -> None:
    node = await nodes.start(ws_idle_timeout_seconds=1.0)
    token = await login(node, "c.li")
    async with Client.connect(node.http_url, token=token, options=ClientOptions(ping_interval=0.25)) as client:
        assert client.hello.limits.idle_timeout == 1.0
        await asyncio.sleep(2.5)  # the SDK sends nothing but its keep-alive pings
        assert client.connected
        assert await client.ping() < 5


# --- defect 2: hostile JSON never escapes the read loop -------------------------------


async def test_deeply_nested_json_gets_malformed_over_a_real_socket(node: RunningNode) -> None:
    records = _Records()
    for name in ("uvicorn.error", "bankhub"):
        logging.getLogger(name).addHandler(records)
    try:
        c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
        for frame in ("[" * 30000, '{"a":' * 10000, '{"type":"ping","id":"n","x":' + "[" * 30000):
            await c.send_frame(frame)
            answer = await c.expect("error")
            assert answer["code"] == "malformed"
        # the connection lives on
        assert (await c.request({"type": "ping"}))["type"] == "pong"
        await c.close()
    finally:
        for name in ("uvicorn.error", "bankhub"):
            logging.getLogger(name).removeHandler(records)
    assert not [r for r in records.records if r.levelno >= logging.ERROR], records.text()


async def test_an_unexpected_fault_in_the_read_loop_closes_1011_and_logs_no_frame(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Faulty(ServerSession):
        def receive(self, data: str | bytes | None, *, binary: bool = False) -> Outcome:
            if isinstance(data, str) and "boom" in data:
                raise ValueError(data)  # the exception text carries the frame
            return super().receive(data, binary=binary)

    monkeypatch.setattr(endpoint, "ServerSession", Faulty)
    records = _Records()
    for name in ("uvicorn.error", "bankhub"):
        logging.getLogger(name).addHandler(records)
    try:
        c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
        assert (await c.request({"type": "ping", "id": "before"}))["type"] == "pong"
        await c.send_frame({"type": "ping", "id": "boom-secret-4111111111111111"})
        with pytest.raises(ConnectionClosed) as info:
            await c.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    finally:
        for name in ("uvicorn.error", "bankhub"):
            logging.getLogger(name).removeHandler(records)
    logged = records.text()
    assert "ValueError" in logged and "4111111111111111" not in logged and "boom" not in logged
    assert "Exception in ASGI application" not in logged


# --- defect 14: every accepted request is answered before a policy close --------------


async def test_a_burst_gets_every_accepted_answer_before_the_1008_close(node: RunningNode) -> None:
    token = await login(node, "c.li")
    conv = await open_direct(node, token, "rm.wang")
    c = await RawClient.connect(node.ws_url, token)
    limits = c.hello["limits"]
    assert (limits["max_strikes"], limits["strike_window"], limits["frame_burst"]) == (20, 10.0, 100)
    frames: list[dict[str, Any]] = []
    for i in range(130):
        if i % 10 == 3:
            frames.append({"type": "fly", "id": f"b{i}"})  # unknown type: a strike
        elif i % 10 == 7:
            frames.append({"type": "sync", "id": f"b{i}", "since": {conv: 0}})
        elif i % 10 == 9:
            frames.append({"type": "read", "id": f"b{i}", "conversation_id": conv, "seq": 0})
        else:
            frames.append({"type": "ping", "id": f"b{i}"})
    for f in frames:  # all at once: nothing is read in between
        await c.ws.send(json.dumps(f))
    answers: dict[str, list[dict[str, Any]]] = {}
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(400):
            a = await c.recv(timeout=10)
            answers.setdefault(a.get("id") or "", []).append(a)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    ids = [f["id"] for f in frames]
    answered = [i for i in ids if i in answers]
    assert all(len(answers[i]) == 1 for i in answered)  # exactly one answer each
    # the frames were read in order up to the one that broke the budget: each one before it
    # got its answer (accepted or rejected), nothing after it was read
    k = len(answered)
    assert answered == ids[:k] and k >= 100
    expected = {"ping": "pong", "sync": "synced", "read": "receipt"}
    accepted = 0
    for f in frames[:k]:
        a = answers[f["id"]][0]
        if a["type"] == "error" and a["code"] == "rate_limited":
            assert a["retry_after_ms"] > 0
            continue
        if f["type"] == "fly":
            assert a["type"] == "error" and a["code"] == "unknown_type"
        else:
            assert a["type"] == expected[f["type"]], (f, a)
            accepted += 1
    assert accepted >= 80  # the whole burst allowance was served, not just the first few
