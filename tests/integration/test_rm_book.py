"""The RM's workbench: book, profile cards, unread state, availability and auto-replies."""

from __future__ import annotations

from typing import Any

from bankhub.runner import RunningNode

from ..conftest import open_direct
from ..support.desk import api, token_for
from ..support.wsclient import RawClient


async def _auto_replies(client: RawClient, seconds: float = 0.5) -> list[dict[str, Any]]:
    """The auto-reply messages that arrive within ``seconds`` (other frames are dropped)."""
    found = []
    while True:
        try:
            m = (await client.expect("message", timeout=seconds))["message"]
        except TimeoutError:
            return found
        if m["body"]["kind"] == "system" and m["body"]["event"] == "rm_auto_reply":
            found.append(m)


async def test_the_book_lists_customers_with_card_unread_and_last_message(node: RunningNode) -> None:
    wang_token, li_token, zhang_token = [await token_for(node, n) for n in ("rm.wang", "c.li", "c.zhang")]
    li_conv = await open_direct(node, li_token, "rm.wang")
    zhang_conv = await open_direct(node, zhang_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    zhang = await RawClient.connect(node.ws_url, zhang_token)
    await li.expect("sent", frame_id=await li.send_text(li_conv, "first from Li"))
    await zhang.expect("sent", frame_id=await zhang.send_text(zhang_conv, "Zhang here"))
    await zhang.expect("sent", frame_id=await zhang.send_text(zhang_conv, "are you there?"))

    async with api(node, wang_token) as http:
        book = (await http.get("/v1/rm/book")).json()
    assert book["rm"]["username"] == "rm.wang" and book["availability"]["status"] == "online"
    rows = {c["customer"]["username"]: c for c in book["customers"]}
    assert list(rows) == ["c.zhang", "c.li"]  # the most recent conversation first
    zhang_row = rows["c.zhang"]
    assert zhang_row["conversation_id"] == zhang_conv and zhang_row["unread"] == 2
    assert zhang_row["last_message"]["body"]["text"] == "are you there?" and zhang_row["last_message_ts"] > 0
    card = zhang_row["customer"]
    assert (card["display_name"], card["branch"], card["org_name"]) == ("Zhang Wei", "BJ-HD", "Haidian Sub-branch")
    assert (card["segment"], card["account_class"], card["rm"]["username"]) == ("mass", "II", "rm.wang")
    assert rows["c.li"]["customer"]["account_class"] == "I" and rows["c.li"]["unread"] == 1

    # reading moves the unread count on the workbench
    wang = await RawClient.connect(node.ws_url, wang_token)
    await wang.request({"type": "read", "conversation_id": zhang_conv, "seq": 2})
    async with api(node, wang_token) as http:
        rows = {c["customer"]["username"]: c for c in (await http.get("/v1/rm/book")).json()["customers"]}
        assert rows["c.zhang"]["unread"] == 0
        # the card endpoint: the RM's own customer, with the RM's conversation and unread
        card = (await http.get("/v1/customers/c.li/card")).json()
        assert card["customer"]["account_class"] == "I" and card["conversation_id"] == li_conv and card["unread"] == 1
        # another RM's customer does not exist for wang; neither does another RM's book
        assert (await http.get("/v1/customers/c.zhou/card")).json()["code"] == "not_found"
        assert (await http.get("/v1/rm/book", params={"rm": "rm.chen"})).json()["code"] == "forbidden"

    async with api(node, await token_for(node, "br.admin")) as http:
        assert [c["customer"]["username"] for c in (await http.get("/v1/rm/book", params={"rm": "rm.wang"})).json()["customers"]] == [
            "c.zhang",
            "c.li",
        ]
        assert (await http.get("/v1/rm/book", params={"rm": "rm.chen"})).json()["code"] == "not_found"  # another branch
        assert (await http.get("/v1/customers/c.zhang/card")).status_code == 200  # a sub-branch of BJ
        assert (await http.get("/v1/customers/c.zhou/card")).json()["code"] == "not_found"
    async with api(node, await token_for(node, "ho.admin")) as http:
        assert len((await http.get("/v1/rm/book", params={"rm": "rm.chen"})).json()["customers"]) == 1
    async with api(node, li_token) as http:
        assert (await http.get("/v1/rm/book")).json()["code"] == "forbidden"
        assert (await http.get("/v1/customers/c.li/card")).json()["customer"]["username"] == "c.li"  # my own
        assert (await http.get("/v1/customers/c.zhang/card")).json()["code"] == "not_found"
        mine = (await http.get("/v1/me/rm")).json()
        assert mine["rm"]["username"] == "rm.wang" and mine["conversation_id"] == li_conv
        assert mine["availability"]["status"] == "online"
    async with api(node, await token_for(node, "agent.zhao")) as http:
        # an agent sees a card only while serving that customer
        assert (await http.get("/v1/customers/c.li/card")).json()["code"] == "not_found"


async def test_an_away_rm_auto_replies_once_per_away_period_per_customer(node: RunningNode) -> None:
    wang_token, li_token, zhang_token = await token_for(node, "rm.wang"), await token_for(node, "c.li"), await token_for(node, "c.zhang")
    li_conv, zhang_conv = await open_direct(node, li_token, "rm.wang"), await open_direct(node, zhang_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    zhang = await RawClient.connect(node.ws_url, zhang_token)

    # online: no auto-reply
    await li.send_text(li_conv, "hello")
    assert await _auto_replies(li, 0.3) == []

    async with api(node, wang_token) as http:
        r = await http.put("/v1/rm/availability", json={"status": "away", "message": "In a client meeting until 3 pm."})
        assert r.status_code == 200 and r.json()["status"] == "away"
        assert (await http.put("/v1/rm/availability", json={"status": "gone"})).json()["code"] == "invalid_request"
    async with api(node, li_token) as http:
        assert (await http.get("/v1/me/rm")).json()["availability"]["status"] == "away"
        assert (await http.put("/v1/rm/availability", json={"status": "away"})).json()["code"] == "forbidden"

    for text in ("are you there?", "it is about my card", "hello?"):
        await li.send_text(li_conv, text)
    replies = await _auto_replies(li)
    assert len(replies) == 1  # once per away period, not on every message
    assert replies[0]["body"]["text"] == "In a client meeting until 3 pm."
    assert replies[0]["body"]["data"] == {"rm": "rm.wang", "status": "away"}
    await zhang.send_text(zhang_conv, "hi")
    assert len(await _auto_replies(zhang)) == 1  # each customer gets their own

    # off duty starts a new period; the default text names the RM and the service desk
    async with api(node, wang_token) as http:
        await http.put("/v1/rm/availability", json={"status": "off_duty"})
    await li.send_text(li_conv, "evening question")
    off = await _auto_replies(li)
    assert len(off) == 1 and "off duty" in off[0]["body"]["text"] and "95588" in off[0]["body"]["text"]

    # back online: no more auto-replies; away again: one more
    async with api(node, wang_token) as http:
        await http.put("/v1/rm/availability", json={"status": "online"})
    await li.send_text(li_conv, "morning")
    assert await _auto_replies(li, 0.3) == []
    async with api(node, wang_token) as http:
        await http.put("/v1/rm/availability", json={"status": "away"})
    await li.send_text(li_conv, "one more")
    await li.send_text(li_conv, "and another")
    again = await _auto_replies(li)
    assert len(again) == 1 and "away" in again[0]["body"]["text"]  # the default text this time
    # the RM sees the auto-replies too: they are part of the conversation
    async with api(node, wang_token) as http:
        page = (await http.get(f"/v1/conversations/{li_conv}/messages", params={"limit": 200})).json()["messages"]
        assert sum(1 for m in page if m["body"].get("event") == "rm_auto_reply") == 3


async def test_administrators_list_the_rms_they_may_hand_books_between(node: RunningNode) -> None:
    # a second Beijing RM (in the Haidian sub-branch), and one disabled: listed / not listed
    async with api(node, await token_for(node, "br.admin")) as http:
        for username in ("rm.liu", "rm.gone"):
            r = await http.post(
                "/v1/users",
                json={"username": username, "display_name": username, "role": "rm", "org": "BJ-HD", "password": "bankhub-demo"},
            )
            assert r.status_code == 201, r.text
    await node.hub.db.pool.execute("UPDATE users SET disabled = true WHERE username = 'rm.gone'")

    async with api(node, await token_for(node, "ho.admin")) as http:
        everyone = (await http.get("/v1/rm/managers")).json()
        assert [m["username"] for m in everyone["managers"]] == ["rm.chen", "rm.liu", "rm.wang"]
        assert everyone["next_cursor"] is None
        wang = everyone["managers"][2]
        assert (wang["branch"], wang["org_name"], wang["customers"], wang["status"]) == ("BJ", "Beijing Branch", 2, "online")
        # paged by username
        first = (await http.get("/v1/rm/managers?limit=2")).json()
        assert [m["username"] for m in first["managers"]] == ["rm.chen", "rm.liu"] and first["next_cursor"]
        rest = (await http.get(f"/v1/rm/managers?limit=2&cursor={first['next_cursor']}")).json()
        assert [m["username"] for m in rest["managers"]] == ["rm.wang"] and rest["next_cursor"] is None
        assert (await http.get("/v1/rm/managers?cursor=not-a-cursor")).json()["code"] == "invalid_request"

    # a branch admin: only the RMs of their subtree (rm.chen of Shanghai is not even named)
    async with api(node, await token_for(node, "br.admin")) as http:
        mine = (await http.get("/v1/rm/managers")).json()
        assert [(m["username"], m["branch"]) for m in mine["managers"]] == [("rm.liu", "BJ-HD"), ("rm.wang", "BJ")]
        assert "rm.chen" not in str(mine)

    for who in ("rm.wang", "agent.zhao", "c.li", "co.sun"):
        async with api(node, await token_for(node, who)) as http:
            r = await http.get("/v1/rm/managers")
            assert r.status_code == 403 and r.json()["code"] == "forbidden", (who, r.text)
