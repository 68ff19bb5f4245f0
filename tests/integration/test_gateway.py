"""The gateway's documented answers: handshake refusals, error frames and close codes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bankhub.protocol.session import SessionLimits
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


async def _refused(url: str, **kwargs: object) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = info.value.response
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, json.loads(response.body)


async def test_unauthenticated_upgrades_are_refused_before_accept(node: RunningNode) -> None:
    status, body = await _refused(node.ws_url, subprotocols=["bankhub.v1"])
    assert (status, body["code"]) == (401, "unauthorized")
    status, body = await _refused(node.ws_url, subprotocols=["bankhub.v1"], additional_headers={"Authorization": "Bearer nope"})
    assert (status, body["code"]) == (401, "unauthorized")
    token = await login(node, "c.li")
    status, body = await _refused(node.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    assert (status, body["code"]) == (400, "subprotocol_required")
    status, body = await _refused(f"{node.ws_url}?token={token}", subprotocols=["bankhub.v1"])
    assert (status, body["code"]) == (400, "token_in_url")
    status, body = await _refused(
        node.ws_url,
        subprotocols=["bankhub.v1"],
        additional_headers={"Authorization": f"Bearer {token}"},
        origin="https://evil.example",  # type: ignore[arg-type]
    )
    assert (status, body["code"]) == (403, "origin_not_allowed")


async def test_browser_ticket_is_single_use_and_never_logged(node: RunningNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    token = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.post("/v1/ws-tickets")
        assert r.status_code == 201 and r.json()["expires_in"] == 30
        ticket = r.json()["ticket"]
    same_origin = f"http://127.0.0.1:{node.port}"
    async with connect(f"{node.ws_url}?ticket={ticket}", subprotocols=["bankhub.v1"], origin=same_origin) as ws:  # type: ignore[arg-type]
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["username"] == "c.li"
    status, body = await _refused(f"{node.ws_url}?ticket={ticket}", subprotocols=["bankhub.v1"])
    assert (status, body["code"]) == (401, "unauthorized")
    assert "WebSocket /v1/ws?ticket=[redacted]" in caplog.text
    assert ticket not in caplog.text and token not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a refusal is not an error


async def test_bad_frames_get_error_frames_and_the_connection_lives(node: RunningNode) -> None:
    c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    await c.send_frame("not json")
    assert (await c.recv())["code"] == "malformed"
    await c.send_frame("[1, 2]")
    assert (await c.recv())["code"] == "malformed"
    await c.send_frame({"type": "teleport", "id": "t1"})
    assert await c.recv() == {"type": "error", "code": "unknown_type", "message": "unknown frame type 'teleport'", "id": "t1"}
    await c.send_frame({"type": "send", "id": "s1", "conversation_id": "x"})
    err = await c.recv()
    assert (err["code"], err["id"]) == ("invalid_frame", "s1")
    await c.send_frame({"type": "send", "id": "s2", "conversation_id": "x", "client_msg_id": "m", "body": {"kind": "text", "text": "y" * 4001}})
    assert (await c.recv())["code"] == "invalid_frame"
    await c.ws.send(b"\x00\x01")
    assert (await c.recv())["code"] == "malformed"
    pong = await c.request({"type": "ping"})
    assert pong["type"] == "pong" and pong["server_time"] > 0


async def test_oversize_frame_closes_with_1009(node: RunningNode) -> None:
    c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    await c.send_frame(json.dumps({"type": "ping", "id": "x" * (64 * 1024)}))
    with pytest.raises(ConnectionClosed) as info:
        await c.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_sustained_abuse_closes_with_1008(nodes: Nodes) -> None:
    node = await nodes.start(limits=SessionLimits(frames_per_second=5, frame_burst=5, max_strikes=10))
    c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    for _ in range(40):
        try:
            await c.send_frame({"type": "ping", "id": "p"})
        except ConnectionClosed:
            break
    codes = []
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(60):
            codes.append((await c.recv())["type"])
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "error" in codes  # rate-limited frames were answered before the close


async def test_rate_limited_frames_say_when_to_retry(nodes: Nodes) -> None:
    node = await nodes.start(limits=SessionLimits(frames_per_second=2, frame_burst=2))
    c = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    answers = [await c.request({"type": "ping"}) for _ in range(3)]
    assert [a["type"] for a in answers] == ["pong", "pong", "error"]
    assert answers[2]["code"] == "rate_limited" and answers[2]["retry_after_ms"] > 0


async def test_logout_closes_that_sessions_sockets_with_1008(node: RunningNode) -> None:
    token, other = await login(node, "c.li"), await login(node, "c.li")
    c, keep = await RawClient.connect(node.ws_url, token), await RawClient.connect(node.ws_url, other)
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        assert (await http.delete("/v1/sessions/current")).status_code == 204
        assert (await http.get("/v1/me")).status_code == 401
    with pytest.raises(ConnectionClosed) as info:
        await c.recv(timeout=2)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert (await keep.request({"type": "ping"}))["type"] == "pong"  # the other session is untouched


async def test_a_client_that_stops_reading_is_cut_off_and_others_are_not_slowed(nodes: Nodes) -> None:
    node = await nodes.start(limits=SessionLimits(outbound_queue=16, frames_per_second=1000, frame_burst=1000))
    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_token, "rm.wang")
    # the stalled reader: a raw socket with a tiny receive buffer that never reads after the handshake
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", node.port))
    await loop.sock_sendall(
        sock,
        (
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: bankhub.v1\r\nAuthorization: Bearer {wang_token}\r\n\r\n"
        ).encode(),
    )
    assert b"101" in await asyncio.wait_for(loop.sock_recv(sock, 200), 5)
    healthy = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    sender = await RawClient.connect(node.ws_url, li_token)
    hub = node.hub
    stalled = next(
        c for c in hub.registry.connections() if c.user.username == "rm.wang" and c.session.id != healthy.hello["session_id"]
    )
    text = "x" * 3900
    received: list[int] = []

    async def read_healthy() -> None:
        while True:
            received.append((await healthy.expect("message", timeout=30))["message"]["seq"])

    reader = asyncio.create_task(read_healthy())
    sent = 0
    for i in range(3000):  # loopback socket buffers hold megabytes before the stall shows
        answer = await sender.request(
            {"type": "send", "conversation_id": conv, "client_msg_id": f"s{i}", "body": {"kind": "text", "text": f"{i} {text}"}}
        )
        assert answer["type"] == "sent"
        sent += 1
        assert stalled.queued <= 16  # the stalled connection's queue stays bounded
        if stalled.close_code is not None:
            break
    assert stalled.close_code == 4008
    # the healthy device of the same user receives every message, in order, without waiting on the stalled one
    for _ in range(200):
        if len(received) >= sent:
            break
        await asyncio.sleep(0.05)
    reader.cancel()
    assert received == list(range(1, sent + 1))
    await asyncio.wait_for(stalled.closed.wait(), 10)
    sock.close()


async def test_drain_answers_committed_sends_then_closes_with_1012(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(limits=SessionLimits(frames_per_second=1000, frame_burst=1000))
    token = await login(node, "c.li")
    conv = await open_direct(node, token, "rm.wang")
    c = await RawClient.connect(node.ws_url, token)
    for i in range(60):  # pipelined: many in flight when the drain starts
        await c.send_text(conv, f"d{i}", client_msg_id=f"d{i}")
    stopping = asyncio.create_task(node.stop())
    answers: list[dict] = []
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(200):
            answers.append(await c.recv(timeout=10))
    await stopping
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert info.value.rcvd.reason == "node restarting: reconnect and sync"
    acked = {a["client_msg_id"] for a in answers if a["type"] == "sent"}
    refused = [a for a in answers if a["type"] == "error"]
    assert acked and all(e["code"] == "unavailable" for e in refused)
    conn = await asyncpg.connect(dsn)
    try:
        stored = {r["client_msg_id"] for r in await conn.fetch("SELECT client_msg_id FROM messages")}
    finally:
        await conn.close()
    assert acked <= stored  # nothing acknowledged is lost
