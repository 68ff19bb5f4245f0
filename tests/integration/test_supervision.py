"""Supervision end to end: rules and sampling flag committed messages into the review queue;
officers read a flag only through the reason-coded, audited path and decide it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient

BASE = "/v1/compliance/supervision"


def _http(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _send(c: RawClient, conv: str, text: str) -> dict[str, Any]:
    sent: dict[str, Any] = await c.expect("sent", frame_id=await c.send_text(conv, text))
    return sent


async def _queue(http: httpx.AsyncClient, state: str = "open") -> list[dict[str, Any]]:
    r = await http.get(f"{BASE}/queue", params={"state": state})
    assert r.status_code == 200, r.text
    flags: list[dict[str, Any]] = r.json()["flags"]
    return flags


async def _audit(dsn: str, action: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch("SELECT seq, actor, target, reason, details FROM audit_log WHERE action = $1 ORDER BY seq", action)
    finally:
        await conn.close()


async def _pair(node: RunningNode) -> tuple[str, RawClient, RawClient]:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    return conv, li, wang


async def test_a_guarantee_is_flagged_read_with_a_reason_and_decided(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    conv, li, wang = await _pair(node)
    await _send(li, conv, "Is this fund safe for my savings?")
    promise = await _send(wang, conv, "this fund is 保本保收益")
    await _send(li, conv, "OK, thank you")
    async with _http(node, await login(node, "co.sun")) as http:
        [flag] = await _queue(http)
        assert flag["rule_name"] == "guarantee of returns" and flag["rule_id"]
        assert (flag["message_id"], flag["seq"], flag["conversation_id"]) == (promise["message_id"], promise["seq"], conv)
        assert flag["sender"]["username"] == "rm.wang" and flag["state"] == "open"
        queue_text = (await http.get(f"{BASE}/queue")).text
        assert "保本" not in queue_text and "body" not in queue_text  # metadata only

        url = f"{BASE}/flags/{flag['flag_id']}"
        missing = await http.get(url)
        assert missing.status_code == 400 and missing.headers["content-type"] == "application/problem+json"
        assert (await http.get(url, params={"reason": "curiosity"})).status_code == 400
        assert await _audit(dsn, "privileged_read") == []  # a refused read leaves nothing to audit and shows nothing
        r = await http.get(url, params={"reason": "internal_audit", "case_ref": "SUP-1"})
        assert r.status_code == 200, r.text
        read = r.json()
        assert read["message"]["body"]["text"] == "this fund is 保本保收益"
        assert [m["seq"] for m in read["context"]] == [promise["seq"] - 1, promise["seq"], promise["seq"] + 1]
        [audited] = await _audit(dsn, "privileged_read")
        assert read["revisions"] == []
        assert (audited["actor"], audited["target"], audited["reason"]) == ("co.sun", f"conversation:{conv}", "internal_audit")
        assert '"supervision_flag": "' + flag["flag_id"] in audited["details"]
        assert (await http.get(f"{BASE}/flags/{uuid.uuid4()}", params={"reason": "internal_audit"})).status_code == 404

        # recalled since: the reviewer still reads what was flagged (the kept body)
        recalled = await wang.request({"type": "recall", "conversation_id": conv, "message_id": promise["message_id"]})
        assert recalled["type"] == "sent"
        again_read = (await http.get(url, params={"reason": "internal_audit"})).json()
        assert again_read["message"]["body"]["kind"] == "recalled"
        assert [(r["message_id"], r["kind"], r["body"]["text"]) for r in again_read["revisions"]] == [
            (promise["message_id"], "recall", "this fund is 保本保收益")
        ]

        # open -> escalated -> closed; a closed flag is final, an escalated one is not escalated twice
        decide = f"{url}/decision"
        r = await http.post(decide, json={"decision": "escalate", "note": "refer to the branch head"})
        assert r.status_code == 200 and r.json()["state"] == "escalated" and r.json()["decided_by"] == "co.sun"
        again = await http.post(decide, json={"decision": "escalate"})
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        # four eyes: the officer who escalated does not close; a second officer does
        own = await http.post(decide, json={"decision": "close", "note": "RM retrained"})
        assert own.status_code == 403 and own.json()["code"] == "forbidden" and "second" in own.json()["detail"]
        async with _http(node, await login(node, "co.qian")) as qian:
            closed = await qian.post(decide, json={"decision": "close", "note": "RM retrained"})
        assert closed.status_code == 200, closed.text
        closed_flag = closed.json()
        assert (closed_flag["state"], closed_flag["decided_by"], closed_flag["note"]) == ("closed", "co.qian", "RM retrained")
        # the escalation stays on record
        assert (closed_flag["escalated_by"], closed_flag["escalation_note"]) == ("co.sun", "refer to the branch head")
        assert closed_flag["escalated_at"] is not None
        for decision in ("close", "escalate"):
            refused = await http.post(decide, json={"decision": decision})
            assert refused.status_code == 409 and "closed" in refused.json()["detail"]
        assert (await http.post(decide, json={"decision": "approve"})).status_code == 400
        assert await _queue(http) == [] and [f["flag_id"] for f in await _queue(http, "closed")] == [flag["flag_id"]]
        assert (await http.get(f"{BASE}/queue", params={"state": "pending"})).status_code == 400

        figures = (await http.get(f"{BASE}/figures")).json()
        by_name = {f["name"]: f for f in figures["rules"]}
        assert {k: by_name["guarantee of returns"][k] for k in ("flagged", "open", "escalated", "closed")} == {
            "flagged": 1, "open": 0, "escalated": 0, "closed": 1
        }
        assert by_name["off-channel"]["flagged"] == 0 and figures["sampling"]["rate"] == 0.0
    assert [(a["target"], a["details"]) for a in await _audit(dsn, "supervision.flag_escalated")][0][0] == f"supervision_flag:{flag['flag_id']}"
    assert len(await _audit(dsn, "supervision.flag_closed")) == 1

    # not an officer: refused everywhere, even the RM who is a member of the conversation
    async with _http(node, await login(node, "rm.wang")) as http:
        assert (await http.get(f"{BASE}/queue")).status_code == 403
        assert (await http.get(f"{BASE}/flags/{flag['flag_id']}", params={"reason": "internal_audit"})).status_code == 403
        assert (await http.post(f"{BASE}/flags/{flag['flag_id']}/decision", json={"decision": "close"})).status_code == 403
        assert (await http.get(f"{BASE}/figures")).status_code == 403
        assert (await http.post(f"{BASE}/rules", json={"name": "x", "kind": "lexicon", "terms": ["x"]})).status_code == 403

    # a purge of the message removes its flags (ON DELETE CASCADE)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM messages WHERE id = $1", uuid.UUID(promise["message_id"]))
        assert await conn.fetchval("SELECT count(*) FROM supervision_flags") == 0
    finally:
        await conn.close()


async def test_a_rule_added_by_api_applies_to_the_next_send_and_edits_are_supervised(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    conv, li, wang = await _pair(node)
    async with _http(node, await login(node, "co.sun")) as http:
        r = await http.post(f"{BASE}/rules", json={"name": "kickbacks", "kind": "pattern", "pattern": r"返点\d{1,2}个点"})
        assert r.status_code == 201, r.text
        rule = r.json()
        assert rule["created_by"] == "co.sun" and rule["enabled"] and rule["terms"] == []
        for bad in (
            # accepted by the old backtracking check, seconds per message: RE2 refuses them
            {"name": "redos", "kind": "pattern", "pattern": r"(?:a?a?){0,999}z"},
            {"name": "redos3", "kind": "pattern", "pattern": r"(?:a?a?a?){0,999}z"},
            {"name": "wide", "kind": "pattern", "pattern": r".{0,999}[^x]{2000}x"},
            {"name": "backref", "kind": "pattern", "pattern": r"(\w)\1"},
            {"name": "lookahead", "kind": "pattern", "pattern": r"返点(?=\d)"},
            {"name": "everything", "kind": "pattern", "pattern": r"."},
            {"name": "mixed", "kind": "lexicon", "pattern": "x"},
            {"name": "empty", "kind": "lexicon", "terms": ["!only an exception"]},
        ):
            refused = await http.post(f"{BASE}/rules", json=bad)
            assert refused.status_code == 400 and refused.json()["code"] == "invalid_rule", (bad, refused.text)
        taken = await http.post(f"{BASE}/rules", json={"name": "Kickbacks", "kind": "lexicon", "terms": ["回扣"]})
        assert taken.status_code == 409
        listed = (await http.get(f"{BASE}/rules")).json()
        assert [x["name"] for x in listed["rules"]] == ["guarantee of returns", "off-channel", "kickbacks"]

        bribe = await _send(wang, conv, "买这款给您返点3个点")
        await _send(wang, conv, "您好，周二下午三点见")
        [flag] = await _queue(http)
        assert (flag["rule_id"], flag["message_id"]) == (rule["rule_id"], bribe["message_id"])

        # an edit's new text meets the rules like a new message (flagged on the edit message)
        hello = await _send(li, conv, "see you on Tuesday")
        edited = await li.request(
            {
                "type": "edit",
                "conversation_id": conv,
                "message_id": hello["message_id"],
                "client_msg_id": f"e-{uuid.uuid4()}",
                "body": {"kind": "text", "text": "see you on Tuesday, add me on WeChat"},
            }
        )
        assert edited["type"] == "sent"
        flags = await _queue(http)
        assert [(f["rule_name"], f["message_id"], f["sender"]["username"]) for f in flags[1:]] == [
            ("off-channel", edited["message_id"], "c.li")
        ]

        # the queue and the rules page
        first = (await http.get(f"{BASE}/queue", params={"limit": 1})).json()
        assert len(first["flags"]) == 1 and first["next_cursor"]
        rest = (await http.get(f"{BASE}/queue", params={"limit": 1, "cursor": first["next_cursor"]})).json()
        assert [f["flag_id"] for f in first["flags"] + rest["flags"]] == [f["flag_id"] for f in flags]
        assert rest["next_cursor"] is None
        page = (await http.get(f"{BASE}/rules", params={"limit": 2})).json()
        more = (await http.get(f"{BASE}/rules", params={"limit": 2, "cursor": page["next_cursor"]})).json()
        assert [x["name"] for x in page["rules"] + more["rules"]] == ["guarantee of returns", "off-channel", "kickbacks"]
        assert (await http.get(f"{BASE}/queue", params={"cursor": "not-a-cursor"})).status_code == 400

        # switched off: flags nothing; removed: gone from the rules, its flags stay counted
        r = await http.patch(f"{BASE}/rules/{rule['rule_id']}", json={"enabled": False})
        assert r.status_code == 200 and not r.json()["enabled"]
        await _send(wang, conv, "再给您返点5个点")
        assert len(await _queue(http)) == 2
        assert (await http.patch(f"{BASE}/rules/{rule['rule_id']}", json={"terms": ["x"]})).status_code == 400
        assert (await http.delete(f"{BASE}/rules/{rule['rule_id']}")).status_code == 204
        assert (await http.delete(f"{BASE}/rules/{rule['rule_id']}")).status_code == 404
        assert [x["name"] for x in (await http.get(f"{BASE}/rules")).json()["rules"]] == ["guarantee of returns", "off-channel"]
        figures = {f["name"]: f for f in (await http.get(f"{BASE}/figures")).json()["rules"]}
        assert figures["kickbacks"]["removed"] and figures["kickbacks"]["flagged"] == 1
        assert figures["off-channel"]["flagged"] == 1 and figures["off-channel"]["open"] == 1
        assert (await _queue(http))[0]["rule_name"] == "kickbacks"  # the flag still names its rule
    actions = [a["target"] for a in await _audit(dsn, "supervision.rule_added")]
    assert actions == [f"supervision_rule:{rule['rule_id']}"]
    assert len(await _audit(dsn, "supervision.rule_changed")) == 1
    assert len(await _audit(dsn, "supervision.rule_removed")) == 1


async def test_sampling_picks_rm_messages_and_never_customers(nodes: Nodes) -> None:
    node = await nodes.start(supervision_sample_rate=1.0)
    conv, li, wang = await _pair(node)
    await _send(li, conv, "Good morning")
    await _send(li, conv, "When is my card due?")
    first = await _send(wang, conv, "Good morning, Mr Li")
    second = await _send(wang, conv, "On the 25th")
    async with _http(node, await login(node, "co.sun")) as http:
        flags = await _queue(http)
        assert [(f["rule_id"], f["rule_name"], f["sender"]["username"], f["message_id"]) for f in flags] == [
            (None, "sample", "rm.wang", first["message_id"]),
            (None, "sample", "rm.wang", second["message_id"]),
        ]
        sampling = (await http.get(f"{BASE}/figures")).json()["sampling"]
        assert sampling["rate"] == 1.0 and not sampling["truncated"]
        assert [(s["sender"]["username"], s["role"], s["sampled"], s["open"]) for s in sampling["by_sender"]] == [("rm.wang", "rm", 2, 2)]


async def test_no_sampling_at_rate_zero(nodes: Nodes) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    conv, _, wang = await _pair(node)
    for i in range(5):
        await _send(wang, conv, f"update {i}")
    async with _http(node, await login(node, "co.sun")) as http:
        assert await _queue(http) == []


async def test_another_node_applies_a_rule_change_within_its_reload_time(nodes: Nodes) -> None:
    a = await nodes.start("node-a", supervision_sample_rate=0.0)
    b = await nodes.start("node-b", supervision_sample_rate=0.0, supervision_reload_seconds=3.0)
    li_token = await login(b, "c.li")
    conv = await open_direct(b, li_token, "rm.wang")
    wang = await RawClient.connect(b.ws_url, await login(b, "rm.wang"))
    checked = time.monotonic()
    await _send(wang, conv, "hello")  # node b compiles its rules now
    async with _http(a, await login(a, "co.sun")) as http:
        assert (await http.post(f"{BASE}/rules", json={"name": "gifts", "kind": "lexicon", "terms": ["礼品卡"]})).status_code == 201
        # node b checks the rules' version at most every 3 s: no query per message in between
        stale = await _send(wang, conv, "送您一张礼品卡")
        stale_in_time = time.monotonic() - checked < 3.0  # a stall of 3 s on this machine would let b check again
        await asyncio.sleep(3.2)
        # the first send after the interval sees the version moved and starts a background
        # compile (the send itself is not held up by it); a send after that is flagged
        sent: list[str] = []
        deadline = time.monotonic() + 15
        while True:
            sent.append((await _send(wang, conv, "再送您一张礼品卡"))["message_id"])
            flagged = [f["message_id"] for f in await _queue(http)]
            if flagged or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert flagged and set(flagged) <= set(sent), flagged
        if stale_in_time:
            assert stale["message_id"] not in flagged


async def _read(http: httpx.AsyncClient, flag_id: str) -> dict[str, Any]:
    r = await http.get(f"{BASE}/flags/{flag_id}", params={"reason": "internal_audit"})
    assert r.status_code == 200, r.text
    read: dict[str, Any] = r.json()
    return read


async def test_hostile_patterns_are_refused_and_the_largest_accepted_stay_fast_through_the_hub(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    conv, li, wang = await _pair(node)
    async with _http(node, await login(node, "co.sun")) as http:
        # exponential or high-polynomial for a backtracking matcher, accepted before: now linear (RE2)
        for i, pattern in enumerate((r"(?:a?a?){0,99}z", r"(?:a?a?a?){0,60}z", r".{0,30}.{0,30}x", r"(?:.?){0,99}z")):
            r = await http.post(f"{BASE}/rules", json={"name": f"heavy {i}", "kind": "pattern", "pattern": pattern})
            assert r.status_code == 201, r.text
        start = time.monotonic()
        await _send(wang, conv, "a" * 4000)
        await _send(wang, conv, "加" * 4000)
        assert time.monotonic() - start < 2.0
        assert await _queue(http) == []
        # at most 20 pattern rules: the pattern work per text stays bounded
        for i in range(4, 20):
            assert (await http.post(f"{BASE}/rules", json={"name": f"p{i}", "kind": "pattern", "pattern": f"code{i}x"})).status_code == 201
        over = await http.post(f"{BASE}/rules", json={"name": "p20", "kind": "pattern", "pattern": "code20x"})
        assert over.status_code == 409 and over.json()["code"] == "conflict" and "20 pattern" in over.json()["detail"]


async def test_a_flag_on_an_edit_stays_readable_after_a_second_edit(nodes: Nodes) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    conv, li, wang = await _pair(node)
    first = await _send(wang, conv, "hello")
    for i in range(8):  # the edited message falls outside the flag's context window
        await _send(li, conv, f"filler {i}")

    async def edit(text: str) -> dict[str, Any]:
        edited: dict[str, Any] = await wang.request(
            {
                "type": "edit",
                "conversation_id": conv,
                "message_id": first["message_id"],
                "client_msg_id": f"e-{uuid.uuid4()}",
                "body": {"kind": "text", "text": text},
            }
        )
        assert edited["type"] == "sent", edited
        return edited

    flagged = await edit("this fund is 保本")
    await edit("hello again")
    async with _http(node, await login(node, "co.sun")) as http:
        [flag] = await _queue(http)
        assert flag["message_id"] == flagged["message_id"]
        read = await _read(http, flag["flag_id"])
        assert read["matched"] == "保本"
        texts = [r["body"].get("text") for r in read["revisions"] if r["message_id"] == first["message_id"]]
        assert "this fund is 保本" in texts, read["revisions"]


async def test_nobody_decides_a_flag_on_their_own_message(nodes: Nodes) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    sun_token, qian_token = await login(node, "co.sun"), await login(node, "co.qian")
    conv = await open_direct(node, sun_token, "co.qian")
    sun = await RawClient.connect(node.ws_url, sun_token)
    await _send(sun, conv, "这款产品保本")
    async with _http(node, sun_token) as http:
        [flag] = await _queue(http)
        assert flag["sender"]["username"] == "co.sun"
        for decision in ("close", "escalate"):
            own = await http.post(f"{BASE}/flags/{flag['flag_id']}/decision", json={"decision": decision})
            assert own.status_code == 403 and "own message" in own.json()["detail"], own.text
    async with _http(node, qian_token) as http:
        r = await http.post(f"{BASE}/flags/{flag['flag_id']}/decision", json={"decision": "close", "note": "a test by the officer"})
        assert r.status_code == 200 and r.json()["decided_by"] == "co.qian"


async def test_card_action_labels_group_titles_and_disguised_terms_are_supervised(nodes: Nodes, dsn: str) -> None:
    from .test_groups import befriend

    node = await nodes.start(supervision_sample_rate=0.0)
    conv, li, wang = await _pair(node)
    card = {
        "kind": "card",
        "template": "offer",
        "title": "Wealth product",
        "fields": [{"label": "Yield", "value": "2.35%"}],
        "actions": [{"label": "加我微信", "url": "bankhub://wealth/products/7d"}],
    }
    sent_card = await wang.request({"type": "send", "conversation_id": conv, "client_msg_id": f"c-{uuid.uuid4()}", "body": card})
    assert sent_card["type"] == "sent", sent_card
    disguised = await _send(li, conv, "加_我_微_信 or wеchat me")  # underscores; a Cyrillic е

    await befriend(node, "c.li", "c.zhang")
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, 'c.li')}"}) as li_http:
        r = await li_http.post("/v1/groups", json={"title": "稳赚群", "members": ["c.zhang"]})
        assert r.status_code == 201, r.text
        group = r.json()["conversation_id"]
        assert (await li_http.put(f"/v1/groups/{group}/title", json={"title": "加我 微信"})).status_code == 200

    async with _http(node, await login(node, "co.sun")) as http:
        flags = await _queue(http)
        got = [(f["rule_name"], f["subject"], f["message_id"], f["sender"]["username"]) for f in flags]
        assert got == [
            ("off-channel", "message", sent_card["message_id"], "rm.wang"),
            ("off-channel", "message", disguised["message_id"], "c.li"),
            ("guarantee of returns", "group_title", None, "c.li"),
            ("off-channel", "group_title", None, "c.li"),
        ], got
        assert all(f["conversation_id"] == group for f in flags[2:])
        read = await _read(http, flags[2]["flag_id"])
        assert read["title"] == "加我 微信" and read["matched"] == "稳赚" and read["message"] is None


async def test_a_rules_change_is_compiled_in_the_background_not_in_the_send(nodes: Nodes, monkeypatch: Any) -> None:
    from bankhub.compliance import supervision as pure

    a = await nodes.start("node-a", supervision_sample_rate=0.0)
    b = await nodes.start("node-b", supervision_sample_rate=0.0, supervision_reload_seconds=0.2)
    li_token = await login(b, "c.li")
    conv = await open_direct(b, li_token, "rm.wang")
    wang = await RawClient.connect(b.ws_url, await login(b, "rm.wang"))
    await _send(wang, conv, "hello")  # node b has its rules
    build = pure.RuleSet.build.__func__  # type: ignore[attr-defined]

    def slow_build(cls: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # a rule set that takes long to compile (many terms)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(pure.RuleSet, "build", classmethod(slow_build))
    async with _http(a, await login(a, "co.sun")) as http:
        assert (await http.post(f"{BASE}/rules", json={"name": "gifts", "kind": "lexicon", "terms": ["礼品卡"]})).status_code == 201
        await asyncio.sleep(0.3)
        start = time.monotonic()
        await _send(wang, conv, "送您一张礼品卡")  # b sees the version moved: it keeps its old rules meanwhile
        ticks = 0
        while time.monotonic() - start < 0.5:  # the event loop keeps running while b compiles
            await asyncio.sleep(0.05)
            ticks += 1
        # a compile on the loop would hold it for 1.5 s; a loaded machine may still stretch a tick
        assert time.monotonic() - start < 1.0 and ticks >= 3
        deadline = time.monotonic() + 10
        while not await _queue(http) and time.monotonic() < deadline:
            await _send(wang, conv, "再送您一张礼品卡")
            await asyncio.sleep(0.2)
        assert await _queue(http)  # then the new rules apply


async def test_the_audit_chain_keeps_every_version_of_a_rule(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(supervision_sample_rate=0.0)
    async with _http(node, await login(node, "co.sun")) as http:
        r = await http.post(f"{BASE}/rules", json={"name": "gifts", "kind": "lexicon", "terms": ["礼品卡", "购物卡"]})
        rule_id = r.json()["rule_id"]
        assert (await http.patch(f"{BASE}/rules/{rule_id}", json={"terms": ["加油卡"]})).status_code == 200
        assert (await http.delete(f"{BASE}/rules/{rule_id}")).status_code == 204
    import json

    [added] = await _audit(dsn, "supervision.rule_added")
    [changed] = await _audit(dsn, "supervision.rule_changed")
    [removed] = await _audit(dsn, "supervision.rule_removed")
    assert json.loads(added["details"])["terms"] == ["礼品卡", "购物卡"]
    details = json.loads(changed["details"])
    assert (details["terms"], details["was"]["terms"]) == (["加油卡"], ["礼品卡", "购物卡"])
    assert json.loads(removed["details"])["terms"] == ["加油卡"]


async def test_a_picture_caption_is_supervised(nodes: Nodes, tmp_path: Any) -> None:
    from ..support.media_files import png_bytes

    node = await nodes.start(supervision_sample_rate=0.0, media_dir=str(tmp_path / "media"))
    conv, li, wang = await _pair(node)
    async with _http(node, await login(node, "rm.wang")) as wang_http:
        r = await wang_http.post(f"/v1/conversations/{conv}/media", content=png_bytes(), headers={"content-type": "image/png"})
        assert r.status_code in (200, 201), r.text
        media_id = r.json()["media_id"]
    sent = await wang.request(
        {"type": "send", "conversation_id": conv, "client_msg_id": f"p-{uuid.uuid4()}", "body": {"kind": "image", "media_id": media_id, "caption": "年化8%，稳赚"}}
    )
    assert sent["type"] == "sent", sent
    async with _http(node, await login(node, "co.sun")) as http:
        [flag] = await _queue(http)
        assert (flag["rule_name"], flag["message_id"]) == ("guarantee of returns", sent["message_id"])
        assert (await _read(http, flag["flag_id"]))["matched"] == "稳赚"


async def test_the_sampling_key_is_stored_only_wrapped_and_follows_a_kek_rotation(nodes: Nodes, dsn: str, tmp_path: Any) -> None:
    from bankhub.actions.keys import retire_kek, rotate
    from bankhub.crypto import LocalKeyFile
    from bankhub.storage.wrapped_secrets import SAMPLING_KEY, kek_counts

    key_file = LocalKeyFile.create(tmp_path / "keys.json")
    nodes.key_file = str(key_file.path)  # this test's own KEK file: it rotates and retires KEKs
    node = await nodes.start(supervision_sample_rate=0.5)
    conv, li, wang = await _pair(node)
    sent = [(await _send(wang, conv, f"update {i}"))["message_id"] for i in range(12)]
    key = node.hub.supervision.rules.sample_key
    assert len(key) == 32
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM supervision_state")
        assert row is not None
        assert "sample_key" not in row.keys() and row["wrapped_sample_key"] is not None
        assert key not in bytes(row["wrapped_sample_key"])  # the dump holds only the wrapped key
    finally:
        await conn.close()
    old = key_file.active_kek_id()
    assert await kek_counts(node.hub.db, SAMPLING_KEY) == {old: 1}
    key_file.add_key()
    report = await rotate(node.hub.db, key_file, new_kek=False)
    assert report.failed == []
    assert await kek_counts(node.hub.db, SAMPLING_KEY) == {key_file.active_kek_id(): 1}
    await retire_kek(node.hub.db, key_file, old)
    # the same key after the rotation: the same messages are sampled
    from bankhub.compliance.supervision import sampled
    from bankhub.crypto.keyring import Keyring
    from bankhub.storage.supervision import SupervisionStore

    fresh = SupervisionStore(node.hub.db, 5.0, Keyring(LocalKeyFile(key_file.path)))
    rules = await fresh.reload()
    assert rules.sample_key == key
    async with _http(node, await login(node, "co.sun")) as http:
        picked = [f["message_id"] for f in await _queue(http)]
    assert picked == [m for m in sent if sampled(key, m, 0.5)] and picked
