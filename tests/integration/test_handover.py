"""Handing an RM's book over: the new RM gains the conversations with their history, the
old RM loses them at once on every node, every customer is told and audited."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bankhub.broker import user_channel
from bankhub.models import Role
from bankhub.protocol.frames import Message, TextBody
from bankhub.protocol.session import SessionLimits
from bankhub.signals import MessageSignal, encode_signal

from ..conftest import Nodes, open_direct
from ..support.desk import api, make_user, token_for
from ..support.wsclient import RawClient


async def test_a_whole_book_passes_to_another_rm_and_the_old_rm_is_cut_off_on_every_node(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li_token, zhang_token = await token_for(a, "c.li"), await token_for(a, "c.zhang")
    wang_token, chen_token = await token_for(a, "rm.wang"), await token_for(a, "rm.chen")
    li_conv, zhang_conv = await open_direct(a, li_token, "rm.wang"), await open_direct(a, zhang_token, "rm.wang")
    li = await RawClient.connect(a.ws_url, li_token)
    zhang = await RawClient.connect(b.ws_url, zhang_token)
    wang = await RawClient.connect(b.ws_url, wang_token)  # the old RM on the other node
    chen = await RawClient.connect(a.ws_url, chen_token)
    for text in ("my mortgage", "and my card"):
        await li.expect("sent", frame_id=await li.send_text(li_conv, text))
    await zhang.expect("sent", frame_id=await zhang.send_text(zhang_conv, "a question"))
    assert len(await wang.messages(3)) == 3

    async with api(a, await token_for(a, "ho.admin")) as http:
        r = await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.chen"})
        assert r.status_code == 200, r.text
        result = r.json()
    assert sorted(result["customers"]) == ["c.li", "c.zhang"] and sorted(result["conversations"]) == sorted([li_conv, zhang_conv])

    # the old RM's sockets on node b drop both conversations at once
    removed = {(await wang.expect("conversation_removed"))["conversation_id"] for _ in range(2)}
    assert removed == {li_conv, zhang_conv}
    # a signal for the conversation that reaches node b late is dropped, never delivered
    wang_id, chen_id = wang.hello["user_id"], chen.hello["user_id"]
    late = Message(conversation_id=li_conv, message_id="00000000-0000-7000-8000-000000000099", seq=3, sender_id=li.hello["user_id"],
                   client_msg_id="late", body=TextBody(text="stale"), ts=0)  # fmt: skip
    await a.hub.broker.publish(user_channel(wang_id), encode_signal(MessageSignal(message=late)))
    # the customer writes right after: the new RM gets it (after the notice), the old one nothing
    await li.expect("sent", frame_id=await li.send_text(li_conv, "hello Mr Chen"))
    got = [m for m in await chen.messages(3) if m["conversation_id"] == li_conv]
    assert [m["body"]["kind"] for m in got][-2:] == ["system", "text"] and got[-1]["body"]["text"] == "hello Mr Chen"
    assert await wang.quiet("message", 0.5)
    added = {(await chen.expect("conversation_added"))["conversation_id"] for _ in range(2)}
    assert added == {li_conv, zhang_conv}

    # every customer is told: an event and a durable message in the conversation
    for client, conv in ((li, li_conv), (zhang, zhang_conv)):
        changed = await client.expect("rm_changed")
        assert changed["rm"] == {"user_id": chen_id, "username": "rm.chen", "display_name": "Chen (Relationship Manager)"}
        assert changed["conversation_id"] == conv and changed["previous_rm_id"] == wang_id
    async with api(a, chen_token) as http:
        page = (await http.get(f"/v1/conversations/{li_conv}/messages")).json()["messages"]
        texts = [m["body"]["text"] for m in page]
        assert texts[-2:] == ["and my card", "my mortgage"]  # the whole history
        assert any(m["body"]["kind"] == "system" and m["body"]["event"] == "rm_changed" for m in page)
        book = (await http.get("/v1/rm/book")).json()["customers"]
        assert sorted(c["customer"]["username"] for c in book) == ["c.li", "c.zhang", "c.zhou"]
    async with api(b, wang_token) as http:
        assert (await http.get("/v1/rm/book")).json()["customers"] == []
        assert (await http.get(f"/v1/conversations/{li_conv}/messages")).status_code == 404
    synced = await wang.request({"type": "sync", "since": {}})
    assert {c["conversation_id"] for c in synced["conversations"]}.isdisjoint({li_conv, zhang_conv})
    refused = await wang.request({"type": "send", "conversation_id": zhang_conv, "client_msg_id": "w", "body": {"kind": "text", "text": "hi"}})
    assert refused["code"] == "not_found"

    # audited: one row per customer and one for the handover, tied together
    rows = await a.hub.db.pool.fetch(
        "SELECT action, target, details FROM audit_log WHERE action IN ('customer.reassigned', 'rm.book_handed_over') ORDER BY seq"
    )
    details = [json.loads(r["details"]) if isinstance(r["details"], str) else r["details"] for r in rows]
    assert [r["action"] for r in rows] == ["customer.reassigned", "customer.reassigned", "rm.book_handed_over"]
    assert len({d["handover"] for d in details}) == 1
    assert {d["conversation"] for d in details[:2]} == {li_conv, zhang_conv}
    assert all(d["from_rm"] == wang_id and d["to_rm"] == chen_id for d in details[:2])
    assert details[2]["customers"] == 2 and details[2]["whole_book"] is True


async def test_handover_while_customers_keep_writing_cuts_the_old_rm_off_at_the_handover(nodes: Nodes) -> None:
    """Customers send without pause while their book changes hands: every send is committed,
    and the old RM receives nothing that was committed after the handover."""
    node = await nodes.start(limits=SessionLimits(frames_per_second=10_000, frame_burst=10_000))
    names = [f"c.busy{i}" for i in range(12)]
    for name in names:
        await make_user(node, name, Role.CUSTOMER, org="BJ", rm="rm.wang")
    tokens = {n: await token_for(node, n) for n in names}
    convs = {n: await open_direct(node, tokens[n], "rm.wang") for n in names}
    customers = {n: await RawClient.connect(node.ws_url, tokens[n]) for n in names}
    wang = await RawClient.connect(node.ws_url, await token_for(node, "rm.wang"))
    stop = asyncio.Event()
    acked: dict[str, int] = {n: 0 for n in names}

    async def chatter(name: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            answer = await customers[name].expect(None, frame_id=await customers[name].send_text(convs[name], f"message {i}"))
            assert answer["type"] == "sent", answer
            acked[name] += 1

    tasks = [asyncio.create_task(chatter(n)) for n in names]
    await asyncio.sleep(0.3)
    async with api(node, await token_for(node, "ho.admin")) as http:
        r = await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.chen", "customers": names})
        assert r.status_code == 200, r.text
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert all(n > 1 for n in acked.values())

    # where each conversation changed hands: the seq of its handover notice
    async with api(node, await token_for(node, "rm.chen")) as http:
        notice_seq = {}
        for name in names:
            # the whole history, page by page (a fast machine stores more than one page of sends)
            page: list[dict[str, Any]] = []
            before: int | None = None
            for _ in range(100):
                params = {"limit": 200} if before is None else {"limit": 200, "before_seq": before}
                got = (await http.get(f"/v1/conversations/{convs[name]}/messages", params=params)).json()
                page += got["messages"]  # newest first
                if not got["has_more"]:
                    break
                before = got["messages"][-1]["seq"]
            notice_seq[convs[name]] = next(m["seq"] for m in page if m["body"]["kind"] == "system")
            assert sum(1 for m in page if m["body"]["kind"] == "text") == acked[name]  # every acknowledged send is there
    received: list[tuple[str, int]] = []
    while True:
        try:
            frame = await wang.expect("message", timeout=0.5)
        except TimeoutError:
            break
        received.append((frame["message"]["conversation_id"], frame["message"]["seq"]))
    assert received and all(seq < notice_seq[conv] for conv, seq in received)


async def test_handover_is_all_or_nothing_and_only_within_the_administrators_reach(nodes: Nodes) -> None:
    node = await nodes.start()
    await make_user(node, "rm.liu", Role.RM, org="BJ")
    li_token = await token_for(node, "c.li")
    li_conv = await open_direct(node, li_token, "rm.wang")

    async def rm_of(customer: str) -> str | None:
        user = await node.hub.users.by_username(customer)
        assert user is not None
        if user.rm_id is None:
            return None
        return (await node.hub.users.by_ids([user.rm_id]))[user.rm_id].username

    async with api(node, await token_for(node, "br.admin")) as http:
        # rm.chen is in Shanghai: outside the Beijing admin's reach
        assert (await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.chen"})).json()["code"] == "not_found"
        assert (await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.wang"})).json()["code"] == "invalid_request"
        assert (await http.post("/v1/rm/rm.wang/handover", json={"to": "agent.zhao"})).json()["code"] == "not_found"
        # naming a customer who is not in the book refuses the whole handover
        r = await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.liu", "customers": ["c.li", "c.zhou"]})
        assert r.json()["code"] == "not_found"
        assert await rm_of("c.li") == "rm.wang"
        # part of a book
        r = await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.liu", "customers": ["c.zhang"]})
        assert r.status_code == 200 and r.json()["customers"] == ["c.zhang"] and r.json()["conversations"] == []
    assert await rm_of("c.zhang") == "rm.liu" and await rm_of("c.li") == "rm.wang"
    async with api(node, await token_for(node, "rm.wang")) as http:
        assert (await http.post("/v1/rm/rm.wang/handover", json={"to": "rm.liu"})).json()["code"] == "forbidden"
    # a customer without a conversation is still told who their RM is
    async with api(node, await token_for(node, "c.zhang")) as http:
        assert (await http.get("/v1/me/rm")).json()["rm"]["username"] == "rm.liu"
    # and back: the single-customer endpoint hands the conversation on the same way
    async with api(node, await token_for(node, "ho.admin")) as http:
        assert (await http.put("/v1/customers/c.li/rm", json={"rm": "rm.liu"})).status_code == 200
    async with api(node, await token_for(node, "rm.liu")) as http:
        book = {c["customer"]["username"]: c for c in (await http.get("/v1/rm/book")).json()["customers"]}
        assert set(book) == {"c.li", "c.zhang"} and book["c.li"]["conversation_id"] == li_conv
