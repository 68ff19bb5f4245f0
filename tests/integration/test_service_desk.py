"""The service desk end to end on a real hub: bot, queue, routing, transfer, close, CSAT,
business hours, live queue positions and the supervisor figures."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from bankhub.models import Role
from bankhub.runner import RunningNode

from ..support.desk import api, make_user, token_for
from ..support.wsclient import RawClient


async def _system(client: RawClient, event: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next system message with ``event`` (other messages stay buffered or are skipped)."""
    loop_deadline = 0
    while True:
        loop_deadline += 1
        message = (await client.expect("message", timeout=timeout))["message"]
        if message["body"]["kind"] == "system" and message["body"]["event"] == event:
            return message
        assert loop_deadline < 50, f"no {event} system message"


async def _until(client: RawClient, type_: str, check: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The first frame of ``type_`` for which ``check(frame)`` holds (earlier ones are dropped)."""
    for _ in range(50):
        frame = await client.expect(type_, timeout=timeout)
        if check(frame):
            return frame
    raise AssertionError(f"no matching {type_}")


async def _desk(node: RunningNode, agent: str = "agent.zhao", capacity: int = 3, queues: list[str] | None = None) -> str:
    """Configure ``agent`` (as the supervisor) and make them available; returns their token."""
    admin = await token_for(node, "ho.admin")
    async with api(node, admin) as http:
        r = await http.put(f"/v1/service/agents/{agent}", json={"capacity": capacity, "queues": queues or ["general", "cards"]})
        assert r.status_code == 200, r.text
    token = await token_for(node, agent)
    async with api(node, token) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).json()["state"] == "available"
    return token


async def test_bot_answers_then_hands_over_and_an_agent_serves_closes_and_is_rated(node: RunningNode) -> None:
    li_token, zhao_token = await token_for(node, "c.li"), await token_for(node, "agent.zhao")
    li = await RawClient.connect(node.ws_url, li_token)
    zhao = await RawClient.connect(node.ws_url, zhao_token)
    async with api(node, li_token) as http:
        r = await http.post("/v1/service/sessions", json={"queue": "cards"})
        assert r.status_code == 201, r.text
        session = r.json()
        assert session["state"] == "bot" and session["queue"] == "cards"
        assert (await http.post("/v1/service/sessions", json={"queue": "cards"})).status_code == 200  # the same, still open
    conv = session["conversation_id"]
    greeting = await _system(li, "bot_greeting")
    assert greeting["sender_id"] != li.hello["user_id"] and "assistant" in greeting["body"]["text"]

    # the bot answers from the FAQ
    await li.send_text(conv, "I lost my card yesterday, what do I do?")
    answer = await _system(li, "bot_answer")
    assert answer["body"]["data"]["faq"] == "card_loss" and "Report loss" in answer["body"]["text"]

    # asking for a person: nobody is available yet, so the customer waits, first in line
    await li.send_text(conv, "人工")
    queued = await _system(li, "queued")
    assert queued["body"]["data"]["position"] == "1"
    status = await li.expect("service_status")
    assert (status["state"], status["position"], status["waiting"]) == ("waiting", 1, 1)
    assert "estimated_wait_s" not in status  # nobody serving the queue: no estimate

    # the agent becomes available and is routed the customer at once
    await _desk(node, "agent.zhao", capacity=2)
    assigned = await zhao.expect("service_assigned")
    assert assigned["conversation_id"] == conv and assigned["via"] == "queue"
    assert assigned["customer"]["username"] == "c.li" and assigned["customer"]["account_class"] == "I"
    assert assigned["customer"]["branch"] == "BJ" and assigned["customer"]["segment"] == "wealth"
    active = await li.expect("service_status")
    assert active["state"] == "active" and active["agent"]["username"] == "agent.zhao"
    joined = await _system(li, "agent_joined")
    assert "Zhao" in joined["body"]["text"]
    assert (await _until(zhao, "agent_state", lambda f: f["active"] == 1))["capacity"] == 2

    # the agent reads the whole session (bot exchange included, unread) and replies
    async with api(node, zhao_token) as http:
        mine = next(c for c in (await http.get("/v1/conversations")).json()["conversations"] if c["id"] == conv)
        assert mine["kind"] == "service" and mine["unread"] >= 4
        page = (await http.get(f"/v1/conversations/{conv}/messages")).json()["messages"]
        assert "I lost my card yesterday, what do I do?" in [m["body"].get("text") for m in page]
        card = (await http.get("/v1/customers/c.li/card")).json()["customer"]  # serving them: the card is visible
        assert card["account_class"] == "I"
    await zhao.expect("sent", frame_id=await zhao.send_text(conv, "I have blocked the card for you."))
    assert (await li.messages(1))[0]["body"]["text"] == "I have blocked the card for you."

    async with api(node, zhao_token) as http:
        # closing needs known tags
        assert (await http.post(f"/v1/service/sessions/{session['session_id']}/close", json={"tags": []})).json()["code"] == "invalid_request"
        r = await http.post(f"/v1/service/sessions/{session['session_id']}/close", json={"tags": ["no_such_tag"]})
        assert r.json()["code"] == "invalid_request"
        assert "card_loss" in (await http.get("/v1/service/tags")).json()["tags"]
        r = await http.post(f"/v1/service/sessions/{session['session_id']}/close", json={"tags": ["card_loss", "resolved"], "note": "blocked"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "closed" and r.json()["tags"] == ["card_loss", "resolved"]
    # the agent is cut off from the conversation at once
    assert (await zhao.expect("conversation_removed")) == {"type": "conversation_removed", "conversation_id": conv, "reason": "closed"}
    refused = await zhao.request({"type": "send", "conversation_id": conv, "client_msg_id": "late", "body": {"kind": "text", "text": "one more thing"}})
    assert refused["code"] == "not_found"
    closed = await _system(li, "closed")
    assert closed["body"]["data"]["csat"] == "requested"
    assert (await li.expect("service_status"))["csat_pending"] is True

    # CSAT: the customer, once, 1 to 5
    sid = session["session_id"]
    async with api(node, zhao_token) as http:
        assert (await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 5})).json()["code"] == "not_found"
    async with api(node, li_token) as http:
        assert (await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 6})).json()["code"] == "invalid_request"
        r = await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 4, "comment": "quick"})
        assert r.status_code == 200 and r.json()["csat"] == 4 and "csat_pending" not in r.json()
        assert (await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 5})).json()["code"] == "conflict"
        assert (await http.get("/v1/service/sessions/current")).status_code == 404

    # writing again opens a new session with the bot
    await li.send_text(conv, "what is the annual fee?")
    assert (await _system(li, "bot_answer"))["body"]["data"]["faq"] == "fees"
    async with api(node, li_token) as http:
        again = (await http.get("/v1/service/sessions/current")).json()
        assert again["state"] == "bot" and again["session_id"] != sid and again["conversation_id"] == conv


async def test_a_question_the_bot_cannot_answer_goes_to_a_person(node: RunningNode) -> None:
    await _desk(node, "agent.zhao")
    token = await token_for(node, "c.zhang")
    zhang = await RawClient.connect(node.ws_url, token)
    async with api(node, token) as http:
        conv = (await http.post("/v1/service/sessions", json={})).json()["conversation_id"]
    await zhang.send_text(conv, "My neighbour's dog keeps barking at the ATM")
    unknown = await _system(zhang, "bot_unknown")
    assert "person" in unknown["body"]["text"]
    await _system(zhang, "agent_joined")
    async with api(node, token) as http:
        current = (await http.get("/v1/service/sessions/current")).json()
        assert current["state"] == "active" and current["agent"]["username"] == "agent.zhao"


async def test_out_of_hours_reply_instead_of_a_queue(node: RunningNode) -> None:
    await _desk(node, "agent.zhao", queues=["loans", "general"])
    sh = zoneinfo.ZoneInfo("Asia/Shanghai")
    # the demo's loans queue is open Mon-Fri 09:00-18:00 (Shanghai); it is Saturday evening
    node.hub.desk.clock = lambda: dt.datetime(2025, 3, 8, 19, 30, tzinfo=sh)
    admin = await token_for(node, "ho.admin")
    async with api(node, admin) as http:
        queues = {q["code"]: q for q in (await http.get("/v1/service/queues")).json()["queues"]}
        assert queues["loans"]["open_now"] is False and queues["general"]["open_now"] is True
        assert queues["loans"]["hours"] == "Mon-Fri 09:00-18:00 (Asia/Shanghai)"
        assert queues["loans"]["next_open"] == "2025-03-10T09:00+08:00"
    token = await token_for(node, "c.zhou")
    zhou = await RawClient.connect(node.ws_url, token)
    async with api(node, token) as http:
        session = (await http.post("/v1/service/sessions", json={"queue": "loans"})).json()
        r = await http.post(f"/v1/service/sessions/{session['session_id']}/human")
        assert r.json()["state"] == "bot"  # not queued: nobody to hand over to now
    reply = await _system(zhou, "out_of_hours")
    assert reply["body"]["data"] == {"queue": "loans", "next_open": "2025-03-10T09:00+08:00"}
    assert "Mon-Fri 09:00-18:00" in reply["body"]["text"] and "Mon 09:00" in reply["body"]["text"]
    # the bot still answers meanwhile
    await zhou.send_text(session["conversation_id"], "what is the mortgage rate?")
    assert (await _system(zhou, "bot_answer"))["body"]["data"]["faq"] == "loan_rate"
    # a custom out-of-hours text is used when set (a window past midnight, too)
    async with api(node, admin) as http:
        r = await http.put(
            "/v1/service/queues/loans",
            json={"name": "Loans", "days": [1, 2, 3, 4, 5], "open": "20:00", "close": "02:00", "out_of_hours_text": "Loan officers answer 8 pm to 2 am on weekdays."},
        )
        assert r.status_code == 200 and r.json()["open_now"] is False, r.text
        assert (await http.put("/v1/service/queues/loans", json={"name": "Loans", "open": "25:00"})).json()["code"] == "invalid_request"
        assert (await http.put("/v1/service/queues/loans", json={"name": "Loans", "timezone": "Mars/Base"})).json()["code"] == "invalid_request"
    await zhou.send_text(session["conversation_id"], "agent please")
    assert (await _system(zhou, "out_of_hours"))["body"]["text"] == "Loan officers answer 8 pm to 2 am on weekdays."
    # Friday 01:00 is still Thursday night's window: the customer is queued and served
    node.hub.desk.clock = lambda: dt.datetime(2025, 3, 7, 1, 0, tzinfo=sh)
    await zhou.send_text(session["conversation_id"], "人工")
    assert (await _system(zhou, "agent_joined"))["body"]["data"]["agent"] == "agent.zhao"
    async with api(node, await token_for(node, "agent.zhao")) as http:
        assert (await http.put("/v1/service/queues/loans", json={"name": "x"})).json()["code"] == "forbidden"


async def test_transfer_to_a_queue_and_to_an_agent_with_notes_for_agents_only(node: RunningNode) -> None:
    await make_user(node, "agent.qian", Role.AGENT)
    await make_user(node, "agent.sun", Role.AGENT)
    zhao_token = await _desk(node, "agent.zhao", capacity=2, queues=["cards"])
    qian_token = await _desk(node, "agent.qian", capacity=2, queues=["loans"])
    sun_token = await _desk(node, "agent.sun", capacity=2, queues=["general"])
    zhao, qian, sun = [await RawClient.connect(node.ws_url, t) for t in (zhao_token, qian_token, sun_token)]
    li_token = await token_for(node, "c.li")
    li = await RawClient.connect(node.ws_url, li_token)
    async with api(node, li_token) as http:
        session = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()
        sid, conv = session["session_id"], session["conversation_id"]
        await http.post(f"/v1/service/sessions/{sid}/human")
    assert (await zhao.expect("service_assigned"))["session_id"] == sid

    async with api(node, zhao_token) as http:
        bad = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"queue": "loans", "note": "  "})
        assert bad.json()["code"] == "invalid_request"  # a note is required
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"queue": "loans", "note": "wants a mortgage quote"})
        assert r.status_code == 200, r.text
    assert (await zhao.expect("conversation_removed"))["reason"] == "transferred"
    to_qian = await qian.expect("service_assigned")
    assert to_qian["session_id"] == sid and to_qian["queue"] == "loans"
    assert [(n["kind"], n["text"], n["to_queue"]) for n in to_qian["notes"]] == [("transfer", "wants a mortgage quote", "loans")]
    assert (await _system(li, "transferred"))["body"]["data"]["queue"] == "loans"
    assert (await _system(li, "agent_joined"))["body"]["data"]["agent"] == "agent.qian"

    # agent to agent
    async with api(node, qian_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.sun", "note": "general question left"})
        assert r.status_code == 200 and r.json()["agent"]["username"] == "agent.sun"
        # the session is no longer theirs
        assert (await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})).json()["code"] == "not_found"
    to_sun = await sun.expect("service_assigned")
    assert to_sun["via"] == "transfer" and [n["text"] for n in to_sun["notes"]] == ["wants a mortgage quote", "general question left"]
    assert (await qian.expect("conversation_removed"))["conversation_id"] == conv
    took_over = await _system(li, "agent_joined")
    assert "taken over" in took_over["body"]["text"]

    # notes are for agents and supervisors: the customer's view of the session has none
    async with api(node, li_token) as http:
        mine = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert "notes" not in mine and "customer" not in mine and mine["session"]["agent"]["username"] == "agent.sun"
        history = (await http.get(f"/v1/conversations/{conv}/messages")).json()["messages"]
        assert not any("mortgage quote" in (m["body"].get("text") or "") for m in history)
    async with api(node, sun_token) as http:
        detail = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert len(detail["notes"]) == 2 and detail["customer"]["username"] == "c.li"
        # transferring to an agent with no free capacity is refused
        assert (await http.put("/v1/service/agents/me/state", json={"state": "busy"})).status_code == 200
    async with api(node, await token_for(node, "ho.admin")) as http:
        # a supervisor may move it too; to a busy agent: refused
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.sun", "note": "x"})
        assert r.json()["code"] == "invalid_request"  # already with this agent
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.zhao", "note": "back to cards"})
        assert r.status_code == 200 and r.json()["agent"]["username"] == "agent.zhao"
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.sun", "note": "again"})
        assert r.json()["code"] == "conflict"  # sun is busy: takes no new customers


async def test_queue_positions_and_estimates_update_live(node: RunningNode) -> None:
    zhao_token = await _desk(node, "agent.zhao", capacity=1, queues=["general"])
    names = [f"c.q{i}" for i in range(4)]
    for name in names:
        await make_user(node, name, Role.CUSTOMER, org="BJ", rm="rm.wang")
    tokens = {n: await token_for(node, n) for n in names}
    clients = {n: await RawClient.connect(node.ws_url, tokens[n]) for n in names}
    sessions = {}
    for name in names:  # one after the other: FIFO order is this order
        async with api(node, tokens[name]) as http:
            s = (await http.post("/v1/service/sessions", json={"queue": "general"})).json()
            sessions[name] = s["session_id"]
            view = (await http.post(f"/v1/service/sessions/{s['session_id']}/human")).json()
            expected = 0 if name == "c.q0" else names.index(name)
            assert view.get("position", 0) == expected, view

    async def latest(name: str) -> dict[str, Any]:
        """Drain the customer's service_status frames; the one with the highest revision."""
        best: dict[str, Any] = {}
        while True:
            try:
                f = await clients[name].expect("service_status", timeout=0.5)
            except TimeoutError:
                return best
            if f.get("revision", 0) >= best.get("revision", 0):
                best = f

    first = {n: await latest(n) for n in names}
    assert first["c.q0"]["state"] == "active"
    assert [first[n]["position"] for n in names[1:]] == [1, 2, 3]
    assert all(first[n]["waiting"] == 3 for n in names[1:])
    # one agent with capacity 1 and the default handle time (300 s): position x 300 s
    assert [first[n]["estimated_wait_s"] for n in names[1:]] == [300, 600, 900]

    # q2 leaves; then the agent closes q0's session: everyone moves up, q1 is served
    async with api(node, tokens["c.q2"]) as http:
        assert (await http.post(f"/v1/service/sessions/{sessions['c.q2']}/cancel")).json()["state"] == "closed"
    moved = await latest("c.q3")
    assert moved["position"] == 2 and moved["waiting"] == 2 and moved["revision"] > first["c.q3"]["revision"]
    async with api(node, zhao_token) as http:
        assert (await http.post(f"/v1/service/sessions/{sessions['c.q0']}/close", json={"tags": ["resolved"]})).status_code == 200
    assert (await latest("c.q1"))["state"] == "active"
    last = await latest("c.q3")
    assert last["position"] == 1 and last["waiting"] == 1
    async with api(node, tokens["c.q3"]) as http:
        current = (await http.get("/v1/service/sessions/current")).json()
        assert current["position"] == 1 and current["waiting"] == 1 and current["estimated_wait_s"] > 0


async def test_supervisor_figures(node: RunningNode) -> None:
    zhao_token = await _desk(node, "agent.zhao", capacity=1, queues=["general"])
    for name in ("c.f1", "c.f2"):
        await make_user(node, name, Role.CUSTOMER, org="BJ", rm="rm.wang")
    sids = []
    for name in ("c.f1", "c.f2"):
        async with api(node, await token_for(node, name)) as http:
            s = (await http.post("/v1/service/sessions", json={})).json()
            await http.post(f"/v1/service/sessions/{s['session_id']}/human")
            sids.append((name, s["session_id"]))
    async with api(node, zhao_token) as http:
        await http.post(f"/v1/service/sessions/{sids[0][1]}/close", json={"tags": ["resolved"]})
    async with api(node, await token_for(node, "c.f1")) as http:
        assert (await http.post(f"/v1/service/sessions/{sids[0][1]}/csat", json={"score": 2})).status_code == 200
    async with api(node, zhao_token) as http:
        assert (await http.get("/v1/service/figures")).json()["code"] == "forbidden"
    async with api(node, await token_for(node, "ho.admin")) as http:
        r = await http.get("/v1/service/figures")
        assert r.status_code == 200, r.text
        figures = r.json()
        general = next(q for q in figures["queues"] if q["queue"] == "general")
        # c.f2 was served when c.f1 closed: nobody waits now
        assert general["waiting"] == 0 and general["longest_wait_s"] is None
        assert general["handled"] == 1 and general["avg_handle_s"] >= 0 and general["avg_wait_s"] >= 0
        assert (general["csat_avg"], general["csat_count"]) == (2.0, 1)
        zhao = next(a for a in figures["agents"] if a["username"] == "agent.zhao")
        assert (zhao["active"], zhao["capacity"], zhao["handled"], zhao["csat_avg"]) == (1, 1, 1, 2.0)
        assert (await http.get("/v1/service/figures", params={"since": "yesterday"})).json()["code"] == "invalid_request"


async def test_who_may_do_what_on_the_desk(node: RunningNode) -> None:
    await _desk(node, "agent.zhao")
    li_token = await token_for(node, "c.li")
    async with api(node, li_token) as http:
        session = (await http.post("/v1/service/sessions", json={})).json()
        sid = session["session_id"]
        await http.post(f"/v1/service/sessions/{sid}/human")
        # customers do not close or transfer, nor act as agents
        assert (await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})).json()["code"] == "not_found"
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).json()["code"] == "forbidden"
    async with api(node, await token_for(node, "c.zhang")) as http:
        assert (await http.get(f"/v1/service/sessions/{sid}")).json()["code"] == "not_found"  # someone else's
    async with api(node, await token_for(node, "rm.wang")) as http:
        assert (await http.post("/v1/service/sessions", json={})).json()["code"] == "forbidden"  # staff are not customers
        assert (await http.get(f"/v1/service/sessions/{sid}")).json()["code"] == "not_found"
    async with api(node, await token_for(node, "c.zhang")) as http:
        other = (await http.post("/v1/service/sessions", json={})).json()
        assert (await http.post(f"/v1/service/sessions/{other['session_id']}/human")).json()["state"] == "active"
    async with api(node, await token_for(node, "ho.admin")) as http:
        assert (await http.put("/v1/service/agents/rm.wang", json={"capacity": 2})).json()["code"] == "not_found"  # not an agent
        assert (await http.put("/v1/service/agents/agent.zhao", json={"queues": ["nope"]})).json()["code"] == "invalid_request"
        # the agent serves two customers now: lowering the capacity under the load is refused
        assert (await http.put("/v1/service/agents/agent.zhao", json={"capacity": 1})).json()["code"] == "conflict"
        assert (await http.put("/v1/service/agents/agent.zhao", json={"capacity": 2})).status_code == 200
    async with api(node, await token_for(node, "agent.zhao")) as http:
        me = (await http.get("/v1/service/agents/me")).json()
        assert (me["active"], me["capacity"]) == (2, 2) and len(me["sessions"]) == 2
    audit = await node.hub.db.pool.fetch("SELECT action, details FROM audit_log WHERE action = 'service.agent_configured'")
    assert len(audit) >= 2  # every configuration change is audited


async def test_an_agent_sees_how_many_wait_in_each_of_their_queues(node: RunningNode) -> None:
    # agent.zhao serves cards and general, away: c.li and c.zhang wait in cards, nobody in general
    zhao = await _desk(node, "agent.zhao", capacity=1, queues=["cards", "general"])
    async with api(node, zhao) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "away"})).status_code == 200
    for customer in ("c.li", "c.zhang"):
        async with api(node, await token_for(node, customer)) as http:
            sid = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()["session_id"]
            assert (await http.post(f"/v1/service/sessions/{sid}/human")).json()["state"] == "waiting"
    async with api(node, zhao) as http:
        me = (await http.get("/v1/service/agents/me")).json()
        by_queue = {q["queue"]: q for q in me["queue_waiting"]}
        assert set(by_queue) == {"cards", "general"}  # only my queues, each once
        assert by_queue["cards"]["waiting"] == 2 and by_queue["cards"]["longest_wait_s"] >= 0
        assert by_queue["general"] == {"queue": "general", "waiting": 0, "longest_wait_s": None}
        assert "customer" not in str(me["queue_waiting"])  # counts, no one named
        # available: one is routed to me (capacity 1), one still waits
        set_state = (await http.put("/v1/service/agents/me/state", json={"state": "available"})).json()
        assert set_state["queue_waiting"] is None  # only GET /v1/service/agents/me counts
        me = (await http.get("/v1/service/agents/me")).json()
        assert {q["queue"]: q["waiting"] for q in me["queue_waiting"]} == {"cards": 1, "general": 0}
        assert len(me["sessions"]) == 1
