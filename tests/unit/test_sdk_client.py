"""The SDK's network code against a small in-process fake hub (loopback only).

The fake speaks just enough of protocol v1 (hello, send/sent with client_msg_id
dedup, message fan-out, sync with has_more paging, read, ping) and can be told to
misbehave: drop the connection before or after committing a send, lose fan-out
signals, rate-limit, close with a given code. The real hub is tested by the
integration suite; this checks reconnect, resend, dedup and ordering logic end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from bankhub_client import (
    Api,
    ApiError,
    AuthError,
    Client,
    ConnectionLost,
    Disconnected,
    Event,
    Message,
    ProtocolError,
    Reconnected,
    ReconnectPolicy,
    SendTimeout,
    login,
)

FAST = ReconnectPolicy(initial_delay=0.01, max_delay=0.05, max_elapsed=5.0)
TOKENS = {"tok-alice": "u-alice", "tok-bob": "u-bob"}
LIMITS = {
    "max_frame_bytes": 65536,
    "max_text_chars": 100,
    "max_sync_limit": 500,
    "frames_per_second": 1000.0,
    "frame_burst": 1000,
    "outbound_queue": 1024,
}


class FakeHub:
    def __init__(self) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = {"c1": []}
        self.members = {"c1": ["u-alice", "u-bob"]}
        self.conns: dict[str, set[ServerConnection]] = {}
        self.users: dict[ServerConnection, str] = {}
        self.revoked: set[str] = set()
        self.tickets: dict[str, str] = {}  # single-use ticket -> token
        self.tasks: set[asyncio.Task[None]] = set()
        # what to do with the next sends, one entry each: "ok", "after" (commit, then
        # close 1011 before answering `sent`) or "before" (close 1012, commit nothing)
        self.plan: list[str] = []
        self.lose_fanout = 0  # drop the next N message frames
        self.rate_limit = 0  # answer the next N sends with rate_limited
        self.refuse = 0  # answer the next N sends with forbidden
        self.ignore_sends = False  # never answer sends
        self.page = 2  # sync page size cap
        self.sync_requests: list[dict[str, Any]] = []
        self.server: Server | None = None
        self.port = 0

    def store(self, conv: str, sender: str, cmid: str, text: str) -> tuple[dict[str, Any], bool]:
        for m in self.messages[conv]:
            if m["sender_id"] == sender and m["client_msg_id"] == cmid:
                return m, True
        m = {
            "conversation_id": conv,
            "message_id": str(uuid.uuid4()),
            "seq": len(self.messages[conv]) + 1,
            "sender_id": sender,
            "client_msg_id": cmid,
            "body": {"kind": "text", "text": text},
            "ts": int(time.time() * 1000),
        }
        self.messages[conv].append(m)
        return m, False

    async def fanout(self, m: dict[str, Any]) -> None:
        for uid in self.members[m["conversation_id"]]:
            for ws in list(self.conns.get(uid, ())):
                if ws.state is not State.OPEN:
                    continue  # sending on a closing connection waits for the close to finish
                if self.lose_fanout > 0:
                    self.lose_fanout -= 1
                    continue
                try:
                    await ws.send(json.dumps({"type": "message", "message": m}))
                except Exception:
                    pass

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if "?ticket=" in request.path:
            token = self.tickets.pop(request.path.split("?ticket=", 1)[1], "")
        if request.path.startswith("/v1/ws"):
            if token not in TOKENS or token in self.revoked:
                return conn.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
            self.users[conn] = TOKENS[token]
            return None
        if request.path == "/v1/conversations" and token in TOKENS:
            uid = TOKENS[token]
            convs = [
                {"id": c, "kind": "direct", "title": None, "last_seq": len(ms), "read_seq": 0, "unread": 0,
                 "members": self.members[c], "last_message_ts": None}
                for c, ms in self.messages.items()
                if uid in self.members[c]
            ]
            body = json.dumps({"conversations": convs}).encode()
            return Response(200, "OK", Headers([("Content-Type", "application/json")]), body)
        return Response(404, "Not Found", Headers([]), b"")

    async def handler(self, ws: ServerConnection) -> None:
        uid = self.users.pop(ws)
        self.conns.setdefault(uid, set()).add(ws)
        try:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "session_id": "s", "user_id": uid,
                                      "username": uid, "role": "rm", "node": "n1", "server_time": 1,
                                      "limits": LIMITS}))
            async for raw in ws:
                try:
                    await self.on_frame(ws, uid, json.loads(raw))
                except Exception:
                    pass  # keep reading: a stalled reader would stall the closing handshake
        except Exception:
            pass
        finally:
            self.conns[uid].discard(ws)

    async def on_frame(self, ws: ServerConnection, uid: str, f: dict[str, Any]) -> None:
        if ws.state is not State.OPEN:
            return  # a frame read after the close began: the client will resend
        kind = f["type"]
        if kind == "send":
            if self.ignore_sends:
                return
            if self.rate_limit > 0:
                self.rate_limit -= 1
                await ws.send(json.dumps({"type": "error", "code": "rate_limited", "message": "slow down",
                                          "id": f["id"], "retry_after_ms": 20}))
                return
            if self.refuse > 0:
                self.refuse -= 1
                await ws.send(json.dumps({"type": "error", "code": "forbidden", "message": "no", "id": f["id"]}))
                return
            action = self.plan.pop(0) if self.plan else "ok"
            if action == "before":
                self.close_soon(ws, 1012, "service restart")
                return
            m, dup = self.store(f["conversation_id"], uid, f["client_msg_id"], f["body"]["text"])
            if action == "after":
                self.close_soon(ws, 1011, "internal")
                if not dup:
                    await self.fanout(m)
                return
            await ws.send(json.dumps({"type": "sent", "id": f["id"], "conversation_id": m["conversation_id"],
                                      "client_msg_id": m["client_msg_id"], "message_id": m["message_id"],
                                      "seq": m["seq"], "ts": m["ts"], "duplicate": dup}))
            if not dup:
                await self.fanout(m)
        elif kind == "sync":
            self.sync_requests.append(f)
            out = []
            limit = min(f.get("limit", 100), self.page)
            for c, ms in self.messages.items():
                if uid not in self.members[c]:
                    continue
                since = f["since"].get(c)
                newer = [m for m in ms if m["seq"] > (since or 0)]
                if since is not None and not newer:
                    continue
                out.append({"conversation_id": c, "last_seq": len(ms), "read_seq": 0, "unread": 0,
                            "messages": newer[:limit], "has_more": len(newer) > limit})
            await ws.send(json.dumps({"type": "synced", "id": f["id"], "conversations": out}))
        elif kind == "read":
            await ws.send(json.dumps({"type": "receipt", "id": f["id"], "conversation_id": f["conversation_id"],
                                      "user_id": uid, "read_seq": f["seq"], "unread": 0}))
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong", "id": f.get("id"), "server_time": 1}))

    def close_soon(self, ws: ServerConnection, code: int, reason: str) -> None:
        # not awaited here: the handler must keep reading or the closing handshake stalls
        task = asyncio.create_task(ws.close(code, reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def kick(self, uid: str, code: int, reason: str = "") -> None:
        for ws in list(self.conns.get(uid, ())):
            await ws.close(code, reason)

    def texts(self, conv: str = "c1") -> list[str]:
        return [m["body"]["text"] for m in self.messages[conv]]


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    fake = FakeHub()
    fake.server = await serve(fake.handler, "127.0.0.1", 0, subprotocols=["bankhub.v1"],  # type: ignore[list-item]
                              process_request=fake.process_request)
    fake.port = fake.server.sockets[0].getsockname()[1]
    yield fake
    fake.server.close()
    await fake.server.wait_closed()


def url_of(hub: FakeHub) -> str:
    return f"http://127.0.0.1:{hub.port}"


async def take(c: Client, n: int, kinds: tuple[type, ...] = (Message,), timeout: float = 5.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for event in c.events():
            if isinstance(event, kinds):
                out.append(event)
                if len(out) >= n:
                    return

    await asyncio.wait_for(run(), timeout)
    return out


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events if isinstance(e, Message)]


async def test_send_returns_committed_message_and_peer_receives_it(hub: FakeHub) -> None:
    hub.store("c1", "u-bob", "old", "history before connect")
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice, \
            Client.connect(f"ws://127.0.0.1:{hub.port}/v1/ws", token="tok-bob", reconnect=FAST) as bob:
        assert alice.user_id == "u-alice"
        assert alice.cursors == {"c1": 1}  # the snapshot: history is not yielded
        sent = await alice.send("c1", "hi bob")
        assert (sent.seq, sent.text, sent.sender_id) == (2, "hi bob", "u-alice")
        (got,) = await take(bob, 1)
        assert isinstance(got, Message) and got.message_id == sent.message_id
        receipt = await alice.read("c1", 2)
        assert receipt.read_seq == 2
        assert await alice.ping() >= 0
        with pytest.raises(ValueError):
            await alice.send("c1", "x" * 101)  # over hello.limits.max_text_chars
        with pytest.raises(ValueError):
            await alice.send("c1", "")


async def test_send_survives_drop_after_commit_without_duplicate(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.plan = ["after"]
        sent = await alice.send("c1", "once")
        assert hub.texts() == ["once"]
        assert sent.seq == 1
        notices = await take(alice, 2, kinds=(Disconnected, Reconnected))
        assert isinstance(notices[0], Disconnected) and notices[0].code == 1011 and notices[0].will_reconnect
        assert isinstance(notices[1], Reconnected)


async def test_send_survives_drop_before_commit(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.plan = ["before"]
        sent = await alice.send("c1", "resent")
        assert hub.texts() == ["resent"] and sent.seq == 1


async def test_concurrent_sends_across_drops_are_stored_once_and_delivered_in_order(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice, \
            Client.connect(url_of(hub), token="tok-bob", reconnect=FAST) as bob:
        hub.plan = ["ok"] * 5 + ["after"] + ["ok"] * 5 + ["before"] + ["ok"] * 3 + ["after"]
        results = await asyncio.gather(*(alice.send("c1", f"n{i}") for i in range(30)))
        assert hub.plan == []  # every planned drop happened
        assert sorted(hub.texts()) == sorted(f"n{i}" for i in range(30))  # each stored exactly once
        assert len({r.seq for r in results}) == 30
        got = await take(bob, 30)
        assert seqs(got) == list(range(1, 31))


async def test_lost_signal_is_detected_as_gap_and_synced(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice, \
            Client.connect(url_of(hub), token="tok-bob", reconnect=FAST) as bob:
        hub.lose_fanout = 1  # alice misses bob's first message (fan-out order: alice first)
        await bob.send("c1", "lost")
        await bob.send("c1", "next")
        got = await take(alice, 2)
        assert [(m.seq, m.text) for m in got if isinstance(m, Message)] == [(1, "lost"), (2, "next")]


async def test_hole_before_own_send_is_filled_after_grace(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST, gap_grace=0.05) as alice, \
            Client.connect(url_of(hub), token="tok-bob", reconnect=FAST) as bob:
        hub.lose_fanout = 1
        await bob.send("c1", "lost")
        mine = await alice.send("c1", "mine")
        assert mine.seq == 2
        (got,) = await take(alice, 1)
        assert isinstance(got, Message) and got.seq == 1
        assert alice.cursors == {"c1": 2}


async def test_reconnect_syncs_missed_backlog_in_pages_then_live(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice, \
            Client.connect(url_of(hub), token="tok-bob", reconnect=FAST) as bob:
        await alice.send("c1", "before")
        assert seqs(await take(bob, 1)) == [1]
        await hub.kick("u-bob", 4008, "slow consumer")
        for i in range(5):
            await alice.send("c1", f"while away {i}")
        events = await take(bob, 7, kinds=(Message, Disconnected, Reconnected))
        assert isinstance(events[0], Disconnected) and events[0].code == 4008
        assert isinstance(events[1], Reconnected)
        assert seqs(events) == [2, 3, 4, 5, 6]
        assert hub.sync_requests[0]["since"] == {"c1": 1}
        assert len(hub.sync_requests) >= 3  # pages of 2: has_more was followed
        await alice.send("c1", "live")
        assert seqs(await take(bob, 1)) == [7]


async def test_policy_close_ends_with_auth_error_and_no_reconnect(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        await hub.kick("u-alice", 1008, "session revoked")
        with pytest.raises(AuthError) as info:
            await take(alice, 1, kinds=(Message,))
        assert info.value.close_code == 1008
        with pytest.raises(AuthError):
            await alice.send("c1", "too late")


async def test_refused_reconnect_handshake_ends_with_auth_error(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.revoked.add("tok-alice")
        await hub.kick("u-alice", 1012, "restart")
        with pytest.raises(AuthError) as info:
            await take(alice, 1)
        assert info.value.status == 401


async def test_bad_token_fails_connect(hub: FakeHub) -> None:
    with pytest.raises(AuthError):
        await Client.connect(url_of(hub), token="nope")


async def test_gives_up_after_bounded_attempts(hub: FakeHub) -> None:
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=2)
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=policy) as alice:
        assert hub.server is not None
        hub.server.close()
        await hub.server.wait_closed()
        with pytest.raises(ConnectionLost):
            await take(alice, 1)


async def test_rate_limited_send_is_retried_and_forbidden_raises(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.rate_limit = 2
        assert (await alice.send("c1", "eventually")).seq == 1
        hub.refuse = 1
        with pytest.raises(ProtocolError) as info:
            await alice.send("c1", "denied")
        assert info.value.code == "forbidden"
        assert alice.pending_sends == 0


async def test_send_timeout_gives_up(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.ignore_sends = True
        with pytest.raises(SendTimeout):
            await alice.send("c1", "no answer", client_msg_id="k1", timeout=0.1)
        assert alice.pending_sends == 0
        hub.ignore_sends = False
        assert (await alice.send("c1", "no answer", client_msg_id="k1")).seq == 1


async def test_resume_from_cursors_with_ticket_auth(hub: FakeHub) -> None:
    for i in range(4):
        hub.store("c1", "u-bob", f"k{i}", f"m{i}")
    issued: list[str] = []

    def tickets(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/ws-tickets"
        assert request.headers["authorization"] == "Bearer tok-alice"
        ticket = f"t{len(issued)}"
        issued.append(ticket)
        hub.tickets[ticket] = "tok-alice"
        return httpx.Response(201, json={"ticket": ticket, "expires_in": 30})

    api = Api(url_of(hub), "tok-alice", transport=httpx.MockTransport(tickets))
    async with Client.connect(url_of(hub), token="tok-alice", cursors={"c1": 2}, api=api, use_ticket=True,
                              reconnect=FAST) as alice:
        assert seqs(await take(alice, 2)) == [3, 4]  # resumed: synced from the given cursors
        await hub.kick("u-alice", 1001, "going away")
        await take(alice, 1, kinds=(Reconnected,))
        assert issued == ["t0", "t1"]  # a fresh single-use ticket per connection
        assert alice.cursors == {"c1": 4}


async def test_joined_sends_share_one_transmission_and_one_giving_up_keeps_the_other(hub: FakeHub) -> None:
    async with Client.connect(url_of(hub), token="tok-alice", reconnect=FAST) as alice:
        hub.ignore_sends = True
        impatient = asyncio.create_task(alice.send("c1", "same", client_msg_id="k", timeout=0.05))
        patient = asyncio.create_task(alice.send("c1", "same", client_msg_id="k", timeout=5))
        with pytest.raises(SendTimeout):
            await impatient
        assert alice.pending_sends == 1
        hub.ignore_sends = False
        await hub.kick("u-alice", 1012, "restart")  # the resend after the reconnect is answered
        sent = await patient
        assert sent.seq == 1 and hub.texts() == ["same"]
        assert alice.pending_sends == 0


# --- HTTP API (httpx.MockTransport) -------------------------------------------------


def _http(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


async def test_login_and_api_calls() -> None:
    seen: list[tuple[str, str, str | None]] = []
    conv = {"id": "c1", "kind": "direct", "title": None, "last_seq": 3, "read_seq": 1, "unread": 2,
            "members": ["u-alice", "u-bob"], "last_message_ts": 5}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        path = request.url.path
        if path == "/v1/sessions":
            assert json.loads(request.content) == {"username": "alice", "password": "pw"}
            return httpx.Response(201, json={"token": "tok", "session_id": "s1", "expires_at": "2030-01-01T00:00:00Z",
                                             "user": {"id": "u-alice", "username": "alice",
                                                      "display_name": "Alice", "role": "rm"}})
        if path == "/v1/conversations" and request.method == "POST":
            body = json.loads(request.content)
            assert body in ({"kind": "direct", "peer": "bob"},
                            {"kind": "group", "title": "Desk", "members": ["bob", "carol"]})
            return httpx.Response(201, json={"conversation": conv})
        if path == "/v1/conversations":
            return httpx.Response(200, json={"conversations": [conv]})
        if path == "/v1/conversations/c1/messages":
            assert request.url.params["limit"] == "2" and request.url.params["before_seq"] == "3"
            return httpx.Response(200, json={"has_more": True, "messages": [
                {"conversation_id": "c1", "message_id": "m2", "seq": 2, "sender_id": "u-bob", "client_msg_id": "k2",
                 "body": {"kind": "text", "text": "two"}, "ts": 2},
                {"conversation_id": "c1", "message_id": "m1", "seq": 1, "sender_id": "u-bob", "client_msg_id": "k1",
                 "body": {"kind": "text", "text": "one"}, "ts": 1}]})
        if path == "/v1/me":
            return httpx.Response(200, json={"id": "u-alice", "username": "alice", "display_name": "Alice",
                                             "role": "rm", "org_id": "o1", "rm_id": None})
        if path == "/v1/sessions/current":
            return httpx.Response(204)
        return httpx.Response(404)

    session = await login("ws://hub.test/v1/ws", "alice", "pw", transport=_http(handler))
    assert session.token == "tok" and session.user.display_name == "Alice"
    async with Api("http://hub.test", session.token, transport=_http(handler)) as api:
        assert (await api.me()).org_id == "o1"
        assert [c.id for c in await api.conversations()] == ["c1"]
        assert (await api.open_direct("bob")).unread == 2
        assert (await api.create_group("Desk", ["bob", "carol"])).id == "c1"
        page = await api.history("c1", before_seq=3, limit=2)
        assert [m.seq for m in page.messages] == [2, 1] and page.has_more and page.messages[0].text == "two"
        await api.logout()
    assert seen[0] == ("POST", "/v1/sessions", None)
    assert all(auth == "Bearer tok" for _, _, auth in seen[1:])


async def test_api_errors_carry_problem_details() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/me":
            return httpx.Response(401, headers={"content-type": "application/problem+json"},
                                  json={"type": "about:blank", "title": "Unauthorized", "status": 401,
                                        "code": "unauthenticated", "detail": "session expired"})
        return httpx.Response(502, text="bad gateway")

    async with Api("http://hub.test", "tok", transport=_http(handler)) as api:
        with pytest.raises(ApiError) as info:
            await api.me()
        assert (info.value.status, info.value.code, info.value.detail) == (401, "unauthenticated", "session expired")
        with pytest.raises(ApiError) as info:
            await api.conversations()
        assert (info.value.status, info.value.code) == (502, "http_502")
    async with Api("http://hub.test", transport=_http(handler)) as anonymous:
        with pytest.raises(ApiError) as info:
            await anonymous.me()
        assert info.value.status == 401
