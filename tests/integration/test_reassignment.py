"""Reassigning a customer: the old RM loses access at once, the new RM gains the history."""

from __future__ import annotations

import httpx

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient


async def test_reassignment_moves_the_conversation_and_cuts_the_old_rm_off(node: RunningNode) -> None:
    li_token, wang_token, chen_token = await login(node, "c.li"), await login(node, "rm.wang"), await login(node, "rm.chen")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, wang_token)
    chen = await RawClient.connect(node.ws_url, chen_token)
    for text in ("my mortgage question", "and my card"):
        await li.expect("sent", frame_id=await li.send_text(conv, text))
    await wang.messages(2)

    admin = await login(node, "ho.admin")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {admin}"}) as http:
        r = await http.put("/v1/customers/c.li/rm", json={"rm": "rm.chen"})
        assert r.status_code == 200 and r.json()["rm_id"] == chen.hello["user_id"]
        assert (await http.put("/v1/customers/c.li/rm", json={"rm": "agent.zhao"})).json()["code"] == "invalid_request"

    # the old RM's sockets drop the conversation at once; the customer learns who took over
    assert (await wang.expect("conversation_removed")) == {"type": "conversation_removed", "conversation_id": conv, "reason": "handover"}
    assert (await chen.expect("conversation_added"))["conversation_id"] == conv
    changed = await li.expect("rm_changed")
    assert changed["rm"]["username"] == "rm.chen" and changed["conversation_id"] == conv
    # the old RM: no history, cannot post, gets nothing new
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {wang_token}"}) as http:
        assert (await http.get(f"/v1/conversations/{conv}/messages")).status_code == 404
        assert conv not in [c["id"] for c in (await http.get("/v1/conversations")).json()["conversations"]]
    refused = await wang.request({"type": "send", "conversation_id": conv, "client_msg_id": "w1", "body": {"kind": "text", "text": "still here?"}})
    assert refused["code"] == "not_found"
    # the new RM: the whole history, and live messages from now on
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {chen_token}"}) as http:
        page = (await http.get(f"/v1/conversations/{conv}/messages")).json()["messages"]
        notice, *history = page
        assert [m["body"]["text"] for m in history] == ["and my card", "my mortgage question"]
        # the customer is told in the conversation itself, durably (a system message)
        assert notice["body"]["kind"] == "system" and notice["body"]["event"] == "rm_changed"
        assert notice["body"]["data"]["rm"] == "rm.chen" and "Chen" in notice["body"]["text"]
        mine = next(c for c in (await http.get("/v1/conversations")).json()["conversations"] if c["id"] == conv)
        assert mine["unread"] == 1  # only the handover notice: the history comes read, not as a flood
    await li.send_text(conv, "hello Mr Chen")
    assert [m["body"]["kind"] for m in await chen.messages(2)] == ["system", "text"]  # the notice, then Li
    assert await wang.quiet("message")
    # the customer's "open my RM" now lands in the same conversation, with the new RM
    assert await open_direct(node, li_token, "rm.chen") == conv


async def test_branch_admin_reassigns_only_within_their_branch(node: RunningNode) -> None:
    admin = await login(node, "br.admin")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {admin}"}) as http:
        assert (await http.put("/v1/customers/c.zhou/rm", json={"rm": "rm.wang"})).json()["code"] == "not_found"
        assert (await http.put("/v1/customers/c.zhang/rm", json={"rm": "rm.chen"})).json()["code"] == "not_found"
        assert (await http.put("/v1/customers/c.zhang/rm", json={"rm": "rm.wang"})).status_code == 200  # no change needed
    rm = await login(node, "rm.wang")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {rm}"}) as http:
        assert (await http.put("/v1/customers/c.li/rm", json={"rm": "rm.chen"})).json()["code"] == "forbidden"
