"""Two gateway nodes sharing one Postgres and one Valkey."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from bankhub.broker import user_channel

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


async def test_users_on_different_nodes_chat_through_valkey(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_token, wang_token = await login(a, "c.li"), await login(b, "rm.wang")
    conv = await open_direct(a, li_token, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_token)
    wang = await RawClient.connect(b.ws_url, wang_token)
    assert (li.hello["node"], wang.hello["node"]) == ("node-a", "node-b")
    for i in range(20):
        await li.expect("sent", frame_id=await li.send_text(conv, f"a->b {i}"))
    got = await wang.messages(20)
    assert [m["seq"] for m in got] == list(range(1, 21))
    reply = await wang.request({"type": "send", "conversation_id": conv, "client_msg_id": "r1", "body": {"kind": "text", "text": "b->a"}})
    assert reply["type"] == "sent"
    (back,) = await li.messages(1)
    assert back["message_id"] == reply["message_id"]
    # read receipts cross nodes too
    await wang.request({"type": "read", "conversation_id": conv, "seq": 21})
    assert (await li.expect("receipt"))["read_seq"] == 21


async def test_reconnecting_to_the_other_node_resumes_without_gap(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_token, wang_token = await login(a, "c.li"), await login(a, "rm.wang")
    conv = await open_direct(a, li_token, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_token)
    wang = await RawClient.connect(a.ws_url, wang_token)
    await li.send_text(conv, "one")
    (first,) = await wang.messages(1)
    await wang.close()
    for i in range(5):
        await li.expect("sent", frame_id=await li.send_text(conv, f"missed {i}"))
    wang = await RawClient.connect(b.ws_url, wang_token)
    synced = await wang.request({"type": "sync", "since": {conv: first["seq"]}})
    entry = next(c for c in synced["conversations"] if c["conversation_id"] == conv)
    assert [m["seq"] for m in entry["messages"]] == [2, 3, 4, 5, 6] and not entry["has_more"]
    await li.send_text(conv, "live again")
    assert (await wang.messages(1))[0]["seq"] == 7


async def test_logout_on_one_node_closes_the_socket_on_the_other(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    token = await login(a, "c.li")
    c = await RawClient.connect(b.ws_url, token)
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        assert (await http.delete("/v1/sessions/current")).status_code == 204
    with pytest.raises(ConnectionClosed) as info:
        await c.recv(timeout=2)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_message_text_never_crosses_valkey_in_plaintext(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_token, wang_token = await login(a, "c.li"), await login(b, "rm.wang")
    conv = await open_direct(a, li_token, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_token)
    wang = await RawClient.connect(b.ws_url, wang_token)
    spy = aioredis.from_url(valkey_url)
    pubsub = spy.pubsub()
    channel = user_channel(wang.hello["user_id"])
    sharded = b.hub.broker.sharded  # type: ignore[attr-defined]
    if sharded:
        await pubsub.ssubscribe(channel)
    else:
        await pubsub.subscribe(channel)
    secret = "card 6222 0212 3456 7890 PIN change"
    await li.send_text(conv, secret)
    assert (await wang.messages(1))[0]["body"]["text"] == secret
    seen: list[bytes] = []
    for _ in range(50):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg is not None:
            seen.append(msg["data"])
            break
    await pubsub.aclose()
    await spy.aclose()
    assert seen, "the spy saw the signal"
    assert all(secret.encode() not in data and b"6222" not in data for data in seen)
