"""Read receipts, typing and presence end to end: real sockets, Postgres, Valkey."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


def _http(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _group(node: RunningNode, token: str, members: list[str]) -> str:
    async with _http(node, token) as http:
        r = await http.post("/v1/conversations", json={"kind": "group", "title": "Desk", "members": members})
        assert r.status_code == 201, r.text
        cid: str = r.json()["conversation"]["id"]
        return cid


async def _sql(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _befriend(dsn: str, a: str, b: str) -> None:
    await _sql(
        dsn,
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1) ON CONFLICT DO NOTHING",
        uuid.UUID(a),
        uuid.UUID(b),
    )


async def _block(dsn: str, who: str, whom: str) -> None:
    await _sql(dsn, "INSERT INTO contact_blocks (user_id, blocked_id) VALUES ($1, $2)", uuid.UUID(who), uuid.UUID(whom))


async def _typing(c: RawClient, conv: str, active: bool, **extra: Any) -> None:
    await c.send_frame({"type": "typing", "conversation_id": conv, "active": active, **extra})


async def _receipts(c: RawClient, seconds: float = 0.4) -> list[dict[str, Any]]:
    """Every ``receipt`` that arrives within ``seconds`` (and those already buffered)."""
    out = []
    while True:
        try:
            out.append(await c.expect("receipt", timeout=seconds))
        except (TimeoutError, asyncio.TimeoutError):
            return out


# --- typing ------------------------------------------------------------------------


async def test_typing_reaches_the_other_member_debounced_and_is_never_stored(node: RunningNode, dsn: str) -> None:
    li_t, wang_t = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_t, "rm.wang")
    li, li2 = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, li_t)
    wang = await RawClient.connect(node.ws_url, wang_t)
    await _typing(li, conv, True)
    t = await wang.expect("typing")
    assert t == {
        "type": "typing",
        "conversation_id": conv,
        "user_id": li.hello["user_id"],
        "active": True,
        "ttl_ms": int(node.hub.settings.typing_ttl_seconds * 1000),
    }
    # a repeat within the interval is dropped; the typist's own devices never get it
    await _typing(li, conv, True)
    assert await wang.quiet("typing")
    assert await li2.quiet("typing") and await li.quiet("typing")
    await _typing(li, conv, False)
    assert (await wang.expect("typing"))["active"] is False
    # a stop with nothing to stop is not forwarded
    await _typing(li, conv, False)
    assert await wang.quiet("typing")
    # never stored: no message, no seq
    assert await _sql(dsn, "SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(conv)) == 0
    assert await _sql(dsn, "SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv)) == 0


async def test_typing_from_a_non_member_is_refused_every_time(node: RunningNode) -> None:
    li_t, zhou_t = await login(node, "c.li"), await login(node, "c.zhou")
    conv = await open_direct(node, li_t, "rm.wang")
    zhou = await RawClient.connect(node.ws_url, zhou_t)
    for _ in range(2):
        await _typing(zhou, conv, True, id="t1")
        err = await zhou.expect("error", frame_id="t1")
        assert err["code"] == "not_found"
    await _typing(zhou, "not-a-uuid", True, id="t2")
    assert (await zhou.expect("error", frame_id="t2"))["code"] == "not_found"
    assert len(node.hub.presence.typing) == 0  # nothing remembered for a non-member


async def test_typing_is_not_forwarded_above_the_member_cap(nodes: Nodes) -> None:
    node = await nodes.start(typing_max_members=2)
    wang_t, li_t, zhang_t = await login(node, "rm.wang"), await login(node, "c.li"), await login(node, "c.zhang")
    group = await _group(node, wang_t, ["c.li", "c.zhang"])
    small = await open_direct(node, li_t, "rm.wang")
    wang, li = await RawClient.connect(node.ws_url, wang_t), await RawClient.connect(node.ws_url, li_t)
    zhang = await RawClient.connect(node.ws_url, zhang_t)
    await _typing(wang, group, True)
    assert await li.quiet("typing", 0.5) and await zhang.quiet("typing", 0.1)
    await _typing(li, small, True)  # two members: at the cap, forwarded
    assert (await wang.expect("typing"))["conversation_id"] == small


async def test_typing_and_read_receipts_stop_at_a_block(node: RunningNode, dsn: str) -> None:
    li_t, zhang_t = await login(node, "c.li"), await login(node, "c.zhang")
    li, zhang = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, zhang_t)
    li_id, zhang_id = li.hello["user_id"], zhang.hello["user_id"]
    await _befriend(dsn, li_id, zhang_id)
    conv = await open_direct(node, li_t, "c.zhang")
    await zhang.expect("sent", frame_id=await zhang.send_text(conv, "Lunch on Friday?"))
    await li.messages(1)
    await _block(dsn, li_id, zhang_id)  # li blocks zhang: nothing live crosses either way
    for typist, other in ((li, zhang), (zhang, li)):
        await _typing(typist, conv, True, id="t1")
        err = await typist.expect("error", frame_id="t1")
        assert err["code"] == "forbidden" and "block" in err["message"]
        assert await other.quiet("typing", 0.4)
    # my read position still reaches my own devices, never the other member's
    li2 = await RawClient.connect(node.ws_url, li_t)
    await li.request({"type": "read", "conversation_id": conv, "seq": 1})
    assert (await li2.expect("receipt"))["read_seq"] == 1
    assert await zhang.quiet("receipt", 0.5)
    await zhang.request({"type": "read", "conversation_id": conv, "seq": 1})
    assert zhang_id not in {r["user_id"] for r in await _receipts(li)}
    for token, me in ((li_t, li_id), (zhang_t, zhang_id)):
        async with _http(node, token) as http:
            r = await http.get(f"/v1/conversations/{conv}/receipts")
            assert r.json()["receipts"] == [{"user_id": me, "read_seq": 1}]
    assert len(node.hub.presence.typing) == 0  # nothing remembered for a refused typist


# --- read receipts -------------------------------------------------------------------------


async def test_read_receipts_respect_the_opt_out_both_ways(node: RunningNode) -> None:
    li_t, wang_t = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_t, "rm.wang")
    li, li2 = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, li_t)
    wang = await RawClient.connect(node.ws_url, wang_t)
    await wang.expect("sent", frame_id=await wang.send_text(conv, "Your card is ready"))
    await li.messages(1)
    # shared by default: the peer sees my position
    await li.request({"type": "read", "conversation_id": conv, "seq": 1})
    assert (await wang.expect("receipt"))["read_seq"] == 1
    async with _http(node, li_t) as http:
        r = await http.get(f"/v1/conversations/{conv}/receipts")
        assert r.status_code == 200
        assert {x["user_id"]: x["read_seq"] for x in r.json()["receipts"]} == {li.hello["user_id"]: 1, wang.hello["user_id"]: 1}
        assert (await http.get("/v1/me/privacy")).json() == {"share_read_receipts": True, "last_seen": "everyone"}
        r = await http.put("/v1/me/privacy", json={"share_read_receipts": False})
        assert r.json() == {"share_read_receipts": False, "last_seen": "everyone"}
    await wang.expect("sent", frame_id=await wang.send_text(conv, "Come to the branch"))
    await li.messages(1)
    await li2.messages(1)
    await li2.expect("receipt")  # li's first read reached li's other device
    await li.request({"type": "read", "conversation_id": conv, "seq": 2})
    mine = await li2.expect("receipt")  # my own devices still get mine
    assert mine["read_seq"] == 2 and mine["unread"] == 0
    assert await wang.quiet("receipt")  # the peer no longer sees my position
    # and, opted out, I do not see theirs
    await wang.request({"type": "read", "conversation_id": conv, "seq": 2})
    assert wang.hello["user_id"] not in {r["user_id"] for r in await _receipts(li)}
    async with _http(node, li_t) as http:
        r = await http.get(f"/v1/conversations/{conv}/receipts")
        assert r.json()["receipts"] == [{"user_id": li.hello["user_id"], "read_seq": 2}]
    async with _http(node, wang_t) as http:
        r = await http.get(f"/v1/conversations/{conv}/receipts")
        assert r.json()["receipts"] == [{"user_id": wang.hello["user_id"], "read_seq": 2}]
    async with _http(node, await login(node, "c.zhou")) as http:  # not a member
        assert (await http.get(f"/v1/conversations/{conv}/receipts")).status_code == 404


async def test_read_receipts_stay_with_the_reader_above_the_member_cap(nodes: Nodes) -> None:
    node = await nodes.start(receipts_max_members=2)
    wang_t, li_t, zhang_t = await login(node, "rm.wang"), await login(node, "c.li"), await login(node, "c.zhang")
    group = await _group(node, wang_t, ["c.li", "c.zhang"])
    wang, li = await RawClient.connect(node.ws_url, wang_t), await RawClient.connect(node.ws_url, li_t)
    await wang.expect("sent", frame_id=await wang.send_text(group, "Rates change on Monday"))
    await li.messages(1)
    await li.request({"type": "read", "conversation_id": group, "seq": 1})
    assert await wang.quiet("receipt")
    async with _http(node, wang_t) as http:
        r = await http.get(f"/v1/conversations/{group}/receipts")
        assert r.json()["receipts"] == [{"user_id": wang.hello["user_id"], "read_seq": 1}]


async def test_concurrent_privacy_changes_of_different_fields_both_stick(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    # a slow read widens the window in which a read-merge-write would lose one of the changes
    store = node.hub.privacy
    plain_get = store.get

    async def slow_get(user_id: str) -> Any:
        got = await plain_get(user_id)
        await asyncio.sleep(0.3)
        return got

    monkeypatch.setattr(store, "get", slow_get)
    async with _http(node, await login(node, "c.li")) as http:
        a, b = await asyncio.gather(
            http.put("/v1/me/privacy", json={"share_read_receipts": False}),
            http.put("/v1/me/privacy", json={"last_seen": "nobody"}),
        )
        assert a.status_code == b.status_code == 200
        assert a.json()["share_read_receipts"] is False and b.json()["last_seen"] == "nobody"
        assert (await http.get("/v1/me/privacy")).json() == {"share_read_receipts": False, "last_seen": "nobody"}
        # a field left out keeps its value
        r = await http.put("/v1/me/privacy", json={"last_seen": "contacts"})
        assert r.json() == {"share_read_receipts": False, "last_seen": "contacts"}


async def test_privacy_settings_refuse_bad_values(node: RunningNode) -> None:
    async with _http(node, await login(node, "c.li")) as http:
        r = await http.put("/v1/me/privacy", json={"last_seen": "friends"})
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        r = await http.put("/v1/me/privacy", json={"last_seen": "contacts"})
        assert r.json() == {"share_read_receipts": True, "last_seen": "contacts"}


# --- presence ----------------------------------------------------------------------------


async def _watch(c: RawClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    answer = await c.request({"type": "watch_presence", "user_ids": ids})
    assert answer["type"] == "presence_list", answer
    return {u["user_id"]: u for u in answer["users"]}


async def test_presence_travels_only_to_related_watchers(node: RunningNode) -> None:
    li_t, wang_t, zhou_t = await login(node, "c.li"), await login(node, "rm.wang"), await login(node, "c.zhou")
    li, zhou = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, zhou_t)
    async with _http(node, wang_t) as http:
        wang_id = (await http.get("/v1/me")).json()["id"]
    seen = await _watch(li, [wang_id])  # my RM
    assert seen[wang_id]["online"] is False
    unrelated = await _watch(zhou, [wang_id, li.hello["user_id"], str(uuid.uuid4()), "junk"])
    assert all(u.get("online") is None for u in unrelated.values())  # unknown, same as hidden
    wang = await RawClient.connect(node.ws_url, wang_t)
    event = await li.expect("presence")
    assert event == {"type": "presence", "user_id": wang_id, "online": True}
    await wang.close()
    event = await li.expect("presence")
    assert event["online"] is False and event["last_seen"] > 0
    assert await zhou.quiet("presence")
    # the RM sees their customer, by HTTP too; an unrelated customer does not
    async with _http(node, wang_t) as http:
        r = await http.get("/v1/presence", params={"user_ids": f"{li.hello['user_id']},{zhou.hello['user_id']}"})
        assert r.status_code == 200
        assert r.json()["users"] == [{"user_id": li.hello["user_id"], "online": True}, {"user_id": zhou.hello["user_id"]}]
        too_many = ",".join(str(uuid.uuid4()) for _ in range(node.hub.settings.presence_max_watch + 1))
        assert (await http.get("/v1/presence", params={"user_ids": too_many})).status_code == 400


async def test_last_seen_follows_the_privacy_setting(node: RunningNode) -> None:
    li_t, wang_t = await login(node, "c.li"), await login(node, "rm.wang")
    wang = await RawClient.connect(node.ws_url, wang_t)
    li = await RawClient.connect(node.ws_url, li_t)
    li_id = li.hello["user_id"]
    await _watch(wang, [li_id])
    async with _http(node, li_t) as http:
        assert (await http.put("/v1/me/privacy", json={"last_seen": "contacts"})).status_code == 200
    await li.close()
    event = await wang.expect("presence")  # my customer went offline; not a contact: no last seen
    if event["online"] is True:  # li's arrival, announced after the watch began (a race of the setup)
        event = await wang.expect("presence")
    assert event == {"type": "presence", "user_id": li_id, "online": False}
    async with _http(node, wang_t) as http:
        (info,) = (await http.get("/v1/presence", params={"user_ids": li_id})).json()["users"]
        assert info == {"user_id": li_id, "online": False}
    async with _http(node, li_t) as http:
        assert (await http.put("/v1/me/privacy", json={"last_seen": "everyone"})).status_code == 200
    async with _http(node, wang_t) as http:
        (info,) = (await http.get("/v1/presence", params={"user_ids": li_id})).json()["users"]
        assert info["online"] is False and info["last_seen"] > 0


async def test_a_blocked_user_sees_no_presence(node: RunningNode, dsn: str) -> None:
    li_t, zhang_t = await login(node, "c.li"), await login(node, "c.zhang")
    li, zhang = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, zhang_t)
    li_id, zhang_id = li.hello["user_id"], zhang.hello["user_id"]
    await _befriend(dsn, li_id, zhang_id)
    assert (await _watch(zhang, [li_id]))[li_id]["online"] is True  # a contact
    await _block(dsn, li_id, zhang_id)  # after the watch: takes effect at once
    await li.close()
    assert await zhang.quiet("presence", 0.8)
    assert (await _watch(zhang, [li_id]))[li_id].get("online") is None
    li = await RawClient.connect(node.ws_url, li_t)
    assert await zhang.quiet("presence", 0.5)


async def test_a_former_rm_and_their_old_customers_see_no_presence(node: RunningNode, dsn: str) -> None:
    li_t, zhang_t, wang_t = await login(node, "c.li"), await login(node, "c.zhang"), await login(node, "rm.wang")
    li, zhang = await RawClient.connect(node.ws_url, li_t), await RawClient.connect(node.ws_url, zhang_t)
    wang = await RawClient.connect(node.ws_url, wang_t)
    li_id, zhang_id, wang_id = li.hello["user_id"], zhang.hello["user_id"], wang.hello["user_id"]
    await asyncio.sleep(0.3)  # the arrivals are announced before anyone watches
    assert (await _watch(zhang, [wang_id]))[wang_id]["online"] is True  # my RM
    assert (await _watch(wang, [li_id]))[li_id]["online"] is True  # my customer
    # rm.wang moves to another role; the customers' rm_id still points at them
    await _sql(dsn, "UPDATE users SET role = 'staff' WHERE id = $1", uuid.UUID(wang_id))
    assert await _sql(dsn, "SELECT count(*) FROM users WHERE rm_id = $1", uuid.UUID(wang_id)) >= 2
    # watches made before the change: no live presence either way from now on
    await li.close()
    assert await wang.quiet("presence", 0.8)
    await wang.close()
    assert await zhang.quiet("presence", 0.8)
    # asked afresh, by WebSocket or HTTP: hidden, as for anyone unrelated
    wang = await RawClient.connect(node.ws_url, wang_t)
    assert (await _watch(wang, [li_id, zhang_id]))[zhang_id].get("online") is None
    assert (await _watch(zhang, [wang_id]))[wang_id].get("online") is None
    async with _http(node, wang_t) as http:
        r = await http.get("/v1/presence", params={"user_ids": f"{li_id},{zhang_id}"})
        assert r.json()["users"] == [{"user_id": li_id}, {"user_id": zhang_id}]
    async with _http(node, zhang_t) as http:
        r = await http.get("/v1/presence", params={"user_ids": wang_id})
        assert r.json()["users"] == [{"user_id": wang_id}]
    # a disabled RM is no relationship either
    await _sql(dsn, "UPDATE users SET role = 'rm', disabled = true WHERE id = $1", uuid.UUID(wang_id))
    async with _http(node, zhang_t) as http:
        r = await http.get("/v1/presence", params={"user_ids": wang_id})
        assert r.json()["users"] == [{"user_id": wang_id}]
    await _sql(dsn, "UPDATE users SET disabled = false WHERE id = $1", uuid.UUID(wang_id))
    async with _http(node, zhang_t) as http:  # restored: visible again
        r = await http.get("/v1/presence", params={"user_ids": wang_id})
        assert r.json()["users"][0]["online"] is True


async def test_presence_crosses_nodes_without_postgres_per_heartbeat(nodes: Nodes, valkey_url: str, cluster_key: str, dsn: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_t, wang_t = await login(a, "c.li"), await login(b, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_t)
    async with _http(a, wang_t) as http:
        wang_id = (await http.get("/v1/me")).json()["id"]
    assert (await _watch(li, [wang_id]))[wang_id]["online"] is False
    wang_b = await RawClient.connect(b.ws_url, wang_t)
    assert (await li.expect("presence"))["online"] is True
    wang_a = await RawClient.connect(a.ws_url, wang_t)  # a second node: no change for anyone
    assert await li.quiet("presence", 0.5)
    assert (await _watch(li, [wang_id]))[wang_id]["online"] is True
    await wang_b.close()
    assert await li.quiet("presence", 0.5)  # still online on node a
    await wang_a.close()
    assert (await li.expect("presence"))["online"] is False
    await asyncio.sleep(0)


async def test_bad_typing_and_watch_frames_are_refused_clearly(node: RunningNode) -> None:
    li = await RawClient.connect(node.ws_url, await login(node, "c.li"))
    await li.send_frame({"type": "typing", "id": "t1", "conversation_id": str(uuid.uuid4())})
    assert (await li.expect("error", frame_id="t1"))["code"] == "invalid_frame"  # no ``active``
    await li.send_frame({"type": "typing", "id": "t2", "conversation_id": "x", "active": "yes"})
    assert (await li.expect("error", frame_id="t2"))["code"] == "invalid_frame"
    err = await li.request({"type": "watch_presence", "user_ids": [str(uuid.uuid4())] * (node.hub.settings.presence_max_watch + 1)})
    assert err["type"] == "error" and err["code"] == "invalid_frame"
    err = await li.request({"type": "watch_presence", "user_ids": ["x"] * 1001})
    assert err["type"] == "error" and err["code"] == "invalid_frame"
    assert (await li.request({"type": "ping"}))["type"] == "pong"  # the connection stays open


async def test_watches_leave_nothing_behind(node: RunningNode) -> None:
    li_t, wang_t = await login(node, "c.li"), await login(node, "rm.wang")
    wang = await RawClient.connect(node.ws_url, wang_t)
    plain = [await RawClient.connect(node.ws_url, li_t) for _ in range(3)]  # never watch: cost nothing
    presence = node.hub.presence
    assert presence.watched() == 0 and not presence._by_conn
    li = await RawClient.connect(node.ws_url, li_t)
    await _watch(li, [wang.hello["user_id"]])
    assert presence.watched() == 1
    await _watch(li, [])  # an empty list stops watching
    assert presence.watched() == 0 and not presence._by_conn
    await _watch(li, [wang.hello["user_id"]])
    await li.close()
    for c in plain:
        await c.close()
    for _ in range(50):
        if presence.watched() == 0 and not presence._by_conn:
            break
        await asyncio.sleep(0.05)
    assert presence.watched() == 0 and not presence._by_conn
