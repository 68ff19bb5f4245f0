"""Messaging end to end over real sockets, a real Postgres and the in-process broker."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


async def _pair(node: RunningNode) -> tuple[RawClient, RawClient, str]:
    li, wang = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li, "rm.wang")
    return await RawClient.connect(node.ws_url, li), await RawClient.connect(node.ws_url, wang), conv


async def test_send_is_acknowledged_and_delivered(node: RunningNode) -> None:
    li, wang, conv = await _pair(node)
    assert li.hello["username"] == "c.li" and li.hello["protocol"] == 1
    frame_id = await li.send_text(conv, "Hello, my card was declined")
    sent = await li.expect("sent", frame_id=frame_id)
    assert sent["seq"] == 1 and sent["conversation_id"] == conv
    (msg,) = await wang.messages(1)
    assert msg["message_id"] == sent["message_id"]
    assert msg["body"] == {"kind": "text", "text": "Hello, my card was declined"}
    assert msg["sender_id"] == li.hello["user_id"]
    # the sender's own connection gets the ack, not a copy of its message
    assert await li.quiet("message")


async def test_seq_is_gap_free_and_per_sender_order_kept_under_concurrency(node: RunningNode, dsn: str) -> None:
    tokens = {u: await login(node, u) for u in ("rm.wang", "c.li", "c.zhang")}
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {tokens['rm.wang']}"}) as http:
        r = await http.post("/v1/conversations", json={"kind": "group", "title": "Card desk", "members": ["c.li", "c.zhang"]})
        assert r.status_code == 201, r.text
        conv = r.json()["conversation"]["id"]
    clients = {u: await RawClient.connect(node.ws_url, t) for u, t in tokens.items()}
    per_sender = 40

    async def burst(user: str) -> list[int]:
        c = clients[user]
        ids = [await c.send_text(conv, f"{user} #{i}") for i in range(per_sender)]
        return [(await c.expect("sent", frame_id=i, timeout=15))["seq"] for i in ids]

    results = await asyncio.gather(*(burst(u) for u in clients))
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(1, 3 * per_sender + 1))  # gap-free, no duplicate
    for seqs in results:
        assert seqs == sorted(seqs)  # one sender's messages keep their order
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(conv)) == 3 * per_sender
    finally:
        await conn.close()


async def test_resend_with_same_client_msg_id_is_stored_and_delivered_once(node: RunningNode, dsn: str) -> None:
    li, wang, conv = await _pair(node)
    first = await li.expect("sent", frame_id=await li.send_text(conv, "transfer ¥500", client_msg_id="dup-1"))
    again = await li.expect("sent", frame_id=await li.send_text(conv, "transfer ¥500", client_msg_id="dup-1"))
    assert again["message_id"] == first["message_id"] and again["seq"] == first["seq"]
    assert again.get("duplicate") is True and not first.get("duplicate")
    await wang.messages(1)
    assert await wang.quiet("message")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE client_msg_id = 'dup-1'") == 1
    finally:
        await conn.close()


async def test_ack_waits_for_the_commit(node: RunningNode, dsn: str) -> None:
    """While another transaction holds the conversation row, the send cannot commit: no ``sent``."""
    li, wang, conv = await _pair(node)
    blocker = await asyncpg.connect(dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(conv))
        frame_id = await li.send_text(conv, "waiting for commit")
        assert await li.quiet("sent", 0.7)
        assert await wang.quiet("message", 0.1)
        await tx.commit()
        sent = await li.expect("sent", frame_id=frame_id)
        # by the time the ack arrives, the row is visible to any other transaction
        assert await blocker.fetchval("SELECT count(*) FROM messages WHERE id = $1", uuid.UUID(sent["message_id"])) == 1
    finally:
        await blocker.close()


async def test_failed_commit_is_never_acknowledged(node: RunningNode, dsn: str) -> None:
    li, wang, conv = await _pair(node)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE FUNCTION reject_insert() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'storage refused'; END $$;
               CREATE TRIGGER reject BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION reject_insert();"""
        )
        answer = await li.request({"type": "send", "conversation_id": conv, "client_msg_id": "x1", "body": {"kind": "text", "text": "lost?"}})
        assert answer["type"] == "error" and answer["code"] == "internal"
        assert await wang.quiet("message")
        assert await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(conv)) == 0
        await conn.execute("DROP TRIGGER reject ON messages")
        ok = await li.request({"type": "send", "conversation_id": conv, "client_msg_id": "x1", "body": {"kind": "text", "text": "lost?"}})
        assert ok["type"] == "sent" and ok["seq"] == 1  # the rolled-back attempt allocated no seq
    finally:
        await conn.close()


async def test_send_to_a_foreign_conversation_is_refused(node: RunningNode) -> None:
    zhou = await login(node, "c.zhou")
    chen_conv = await open_direct(node, zhou, "rm.chen")
    li, _, _ = await _pair(node)
    answer = await li.request({"type": "send", "conversation_id": chen_conv, "client_msg_id": "a", "body": {"kind": "text", "text": "hi"}})
    assert answer == {"type": "error", "code": "not_found", "message": "no such conversation", "id": answer["id"]}
    bad = await li.request({"type": "send", "conversation_id": "not-a-uuid", "client_msg_id": "a", "body": {"kind": "text", "text": "hi"}})
    assert bad["code"] == "not_found"


async def test_sync_returns_what_was_missed_in_order_without_gaps(node: RunningNode) -> None:
    li, wang, conv = await _pair(node)
    first = await li.request({"type": "send", "conversation_id": conv, "client_msg_id": "s0", "body": {"kind": "text", "text": "m0"}})
    await wang.messages(1)
    await wang.close()  # RM goes offline
    for i in range(1, 26):
        await li.expect("sent", frame_id=await li.send_text(conv, f"m{i}"))
    wang_token = await login(node, "rm.wang")
    back = await RawClient.connect(node.ws_url, wang_token)
    got: list[dict] = []
    cursor = first["seq"]
    pages = 0
    while True:
        synced = await back.request({"type": "sync", "since": {conv: cursor}, "limit": 10})
        entry = next(c for c in synced["conversations"] if c["conversation_id"] == conv)
        got += entry["messages"]
        cursor = got[-1]["seq"]
        pages += 1
        if not entry["has_more"]:
            break
    assert pages == 3
    assert [m["seq"] for m in got] == list(range(2, 27))
    assert [m["body"]["text"] for m in got] == [f"m{i}" for i in range(1, 26)]
    assert entry["unread"] == 26 - entry["read_seq"]
    # new messages after the sync arrive live, continuing the sequence
    await li.send_text(conv, "live")
    (live,) = await back.messages(1)
    assert live["seq"] == 27


async def test_read_position_unread_counts_and_receipts(node: RunningNode) -> None:
    li, wang, conv = await _pair(node)
    for i in range(3):
        await li.expect("sent", frame_id=await li.send_text(conv, f"q{i}"))
    await wang.messages(3)
    token = await login(node, "rm.wang")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        convs = (await http.get("/v1/conversations")).json()["conversations"]
        assert next(c for c in convs if c["id"] == conv)["unread"] == 3
        receipt = await wang.request({"type": "read", "conversation_id": conv, "seq": 2})
        assert receipt["type"] == "receipt" and receipt["read_seq"] == 2 and receipt["unread"] == 1
        convs = (await http.get("/v1/conversations")).json()["conversations"]
        assert next(c for c in convs if c["id"] == conv)["unread"] == 1
        # the sender sees the RM's read receipt
        seen = await li.expect("receipt")
        assert seen["user_id"] == wang.hello["user_id"] and seen["read_seq"] == 2
        # read positions never move backwards and are clamped to the last seq
        assert (await wang.request({"type": "read", "conversation_id": conv, "seq": 1}))["read_seq"] == 2
        assert (await wang.request({"type": "read", "conversation_id": conv, "seq": 99}))["read_seq"] == 3
        # sending implies having read: li's own unread stays 0
        li_token = await login(node, "c.li")
        mine = (await http.get("/v1/conversations", headers={"authorization": f"Bearer {li_token}"})).json()
        assert next(c for c in mine["conversations"] if c["id"] == conv)["unread"] == 0


async def test_history_pages_backwards(node: RunningNode) -> None:
    li, _, conv = await _pair(node)
    for i in range(7):
        await li.expect("sent", frame_id=await li.send_text(conv, f"h{i}"))
    token = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        page = (await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 3})).json()
        assert [m["seq"] for m in page["messages"]] == [7, 6, 5] and page["has_more"] is True
        page = (await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 5, "before_seq": 5})).json()
        assert [m["seq"] for m in page["messages"]] == [4, 3, 2, 1] and page["has_more"] is False
        other = await login(node, "c.zhou")
        denied = await http.get(f"/v1/conversations/{conv}/messages", headers={"authorization": f"Bearer {other}"})
        assert denied.status_code == 404 and denied.headers["content-type"] == "application/problem+json"
        assert denied.json()["code"] == "not_found"
        bad = await http.get(f"/v1/conversations/{conv}/messages", params={"limit": "lots"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


async def test_receiver_connected_on_two_devices_gets_each_message_once_per_device(nodes: Nodes) -> None:
    node = await nodes.start()
    li, wang, conv = await _pair(node)
    second = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    li_phone2 = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    await li.send_text(conv, "to all devices")
    assert (await wang.messages(1))[0]["seq"] == 1
    assert (await second.messages(1))[0]["seq"] == 1
    # the sender's other device gets its own message too
    assert (await li_phone2.messages(1))[0]["body"]["text"] == "to all devices"


async def test_pipelined_sends_leave_the_sender_with_nothing_unread(node: RunningNode) -> None:
    """Several of one sender's messages in one commit batch: their read position is the highest."""
    li, _, conv = await _pair(node)
    ids = [await li.send_text(conv, f"p{i}") for i in range(30)]  # pipelined, not awaited one by one
    seqs = [(await li.expect("sent", frame_id=i))["seq"] for i in ids]
    assert sorted(seqs) == list(range(1, 31))
    token = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        mine = next(c for c in (await http.get("/v1/conversations")).json()["conversations"] if c["id"] == conv)
    assert (mine["read_seq"], mine["unread"]) == (30, 0)
