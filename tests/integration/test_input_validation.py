"""Hostile text at every boundary: control characters, NUL, trailing newlines, bidi overrides.

Every text a client sends is checked once, where it enters (HTTP body, query parameter,
path segment, WebSocket frame), against the types of :mod:`bankhub.text`. A violation is
answered 400 ``invalid_request`` (HTTP) or an ``invalid_frame`` error frame (WebSocket),
never 500, and nothing about it — no database error detail, hash, token or message text —
reaches the hub's log.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from bankhub.actions import messages as message_actions
from bankhub.actions import users as user_actions
from bankhub.app import create_app
from bankhub.models import Role
from bankhub.passwords import hash_password
from bankhub.protocol.session import SessionLimits
from bankhub.ratelimit import MemoryRateLimiter
from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD, Nodes
from ..support.desk import api, org_id, token_for
from ..support.wsclient import RawClient

pytestmark = pytest.mark.asyncio

NUL = "\x00"
# every kind of character a single-line field refuses
HOSTILE = [NUL, "\x07", "\x1b[31m", "\x7f", "\x85", "\n", "\r", "\t", "\u202e", "\u2066", "\u2028"]
# a multi-line field (a message or notice text) allows \n, \r and \t but never these
HOSTILE_TEXT = [NUL, "\x07", "\x1b[31m", "\x7f", "\x85"]
SECRET_TEXT = "card 4111 1111 1111 1111 cvv 737"  # what a customer typed: never in a log
_CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client", "hpack")


async def _world(node: RunningNode) -> dict[str, str]:
    return {u: await token_for(node, u) for u in ("c.li", "ho.admin", "br.admin", "agent.zhao", "rm.wang")}


async def _account_id(http: httpx.AsyncClient, handle: str) -> str:
    r = await http.get("/v1/accounts", params={"q": handle})
    assert r.status_code == 200, r.text
    return str(next(a["id"] for a in r.json()["accounts"] if a["handle"] == handle))


async def _published_notice(http: httpx.AsyncClient, account: str) -> str:
    r = await http.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "maintenance tonight"}})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "published", r.json()
    return str(r.json()["id"])


async def _closed_service_session(node: RunningNode, tokens: dict[str, str]) -> str:
    async with api(node, tokens["ho.admin"]) as http:
        r = await http.put("/v1/service/agents/agent.zhao", json={"capacity": 2, "queues": ["general"]})
        assert r.status_code == 200, r.text
    async with api(node, tokens["agent.zhao"]) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
    async with api(node, tokens["c.li"]) as http:
        r = await http.post("/v1/service/sessions", json={"queue": "general"})
        assert r.status_code == 201, r.text
        sid = str(r.json()["session_id"])
        assert (await http.post(f"/v1/service/sessions/{sid}/human")).json()["state"] == "active"
    async with api(node, tokens["agent.zhao"]) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})
        assert r.status_code == 200, r.text
    return sid


def _text_cases(bad: str, ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(who, method, path, request kwargs)`` for every multi-line text field, with ``bad`` spliced in."""
    return [
        ("c.li", "POST", f"/v1/service/sessions/{ids['session']}/csat", {"json": {"score": 4, "comment": f"{SECRET_TEXT}{bad}"}}),
        ("rm.wang", "PUT", "/v1/rm/availability", {"json": {"status": "away", "message": f"back soon{bad}"}}),
        ("ho.admin", "POST", f"/v1/accounts/{ids['account']}/notices", {"json": {"body": {"kind": "text", "text": f"{SECRET_TEXT}{bad}"}}}),
        ("ho.admin", "POST", f"/v1/accounts/{ids['account']}/notices", {"json": {"body": {"kind": "article", "title": "Hi", "body": f"x{bad}"}}}),
        ("ho.admin", "POST", "/v1/accounts", {"json": {"handle": "bank.new", "name": "New", "description": f"d{bad}"}}),
        ("ho.admin", "PUT", "/v1/service/queues/general", {"json": {"name": "General", "out_of_hours_text": f"closed{bad}"}}),
        ("agent.zhao", "POST", f"/v1/service/sessions/{ids['session']}/transfer", {"json": {"note": f"{SECRET_TEXT}{bad}", "queue": "general"}}),
        ("agent.zhao", "POST", f"/v1/service/sessions/{ids['session']}/close", {"json": {"tags": ["resolved"], "note": f"n{bad}"}}),
    ]


def _cases(bad: str, ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(who, method, path, request kwargs)`` for every single-line text field, with ``bad`` spliced in."""
    seg = quote(f"c.li{bad}", safe="")
    user = {"username": f"new.user{bad}", "display_name": "New User", "role": "customer", "org": "BJ", "password": "long-enough-pw"}
    return [
        ("anon", "POST", "/v1/sessions", {"json": {"username": f"c.li{bad}", "password": "wrong-password"}}),
        ("anon", "POST", "/v1/sessions", {"json": {"username": f"{bad}nobody", "password": "wrong-password"}}),
        ("c.li", "GET", "/v1/accounts", {"params": {"q": f"bank{bad}"}}),
        ("br.admin", "GET", "/v1/rm/book", {"params": {"rm": f"rm.wang{bad}"}}),
        ("c.li", "POST", "/v1/conversations", {"json": {"kind": "direct", "peer": f"rm.wang{bad}"}}),
        ("rm.wang", "POST", "/v1/conversations", {"json": {"kind": "group", "title": f"team{bad}", "members": ["c.li"]}}),
        ("rm.wang", "POST", "/v1/conversations", {"json": {"kind": "group", "title": "team", "members": [f"c.li{bad}"]}}),
        ("c.li", "POST", "/v1/service/sessions", {"json": {"queue": f"general{bad}"}}),
        ("ho.admin", "PUT", "/v1/service/queues/general", {"json": {"name": f"General{bad}"}}),
        ("ho.admin", "PUT", f"/v1/service/queues/{quote('gen' + bad, safe='')}", {"json": {"name": "General"}}),
        ("ho.admin", "PUT", "/v1/service/agents/agent.zhao", {"json": {"queues": [f"general{bad}"]}}),
        ("ho.admin", "POST", "/v1/users", {"json": user}),
        ("ho.admin", "POST", "/v1/users", {"json": {**user, "username": "new.user", "display_name": f"New{bad}User"}}),
        ("ho.admin", "POST", "/v1/users", {"json": {**user, "username": "new.user", "rm": f"rm.wang{bad}"}}),
        ("ho.admin", "POST", "/v1/users", {"json": {**user, "username": "new.user", "org": f"BJ{bad}"}}),
        ("ho.admin", "POST", "/v1/users", {"json": {**user, "username": "new.user", "tags": [f"vip{bad}"]}}),
        ("ho.admin", "POST", f"/v1/accounts/{ids['account']}/notices", {"json": {"body": {"kind": "article", "title": f"Hi{bad}", "body": "x"}}}),
        ("ho.admin", "POST", f"/v1/accounts/{ids['account']}/notices", {"json": {"body": {"kind": "text", "text": "x"}, "target": {"tags": [f"vip{bad}"]}}}),
        ("ho.admin", "POST", "/v1/accounts", {"json": {"handle": f"bank.new{bad}", "name": "New"}}),
        ("ho.admin", "POST", "/v1/accounts", {"json": {"handle": "bank.new", "name": f"New{bad}"}}),
        ("ho.admin", "GET", f"/v1/accounts/{ids['account']}/outbox", {"params": {"status": f"published{bad}"}}),
        ("ho.admin", "POST", f"/v1/notices/{ids['notice']}/recall", {"json": {"reason": f"wrong{bad}"}}),
        ("ho.admin", "PUT", f"/v1/users/{seg}/role", {"json": {"role": "customer"}}),
        ("ho.admin", "PUT", "/v1/users/c.li/role", {"json": {"role": f"customer{bad}"}}),
        ("ho.admin", "PUT", f"/v1/customers/{seg}/rm", {"json": {"rm": "rm.wang"}}),
        ("ho.admin", "PUT", "/v1/customers/c.li/rm", {"json": {"rm": f"rm.wang{bad}"}}),
        ("ho.admin", "GET", f"/v1/customers/{seg}/card", {}),
        ("ho.admin", "POST", f"/v1/rm/{quote('rm.wang' + bad, safe='')}/handover", {"json": {"to": "rm.chen"}}),
        ("ho.admin", "POST", "/v1/rm/rm.wang/handover", {"json": {"to": "rm.chen", "customers": [f"c.li{bad}"]}}),
        ("ho.admin", "PUT", f"/v1/service/agents/{quote('agent.zhao' + bad, safe='')}", {"json": {"capacity": 2}}),
        # id segments are UUIDs: anything else, a trailing newline too, matches no route (404)
        # and reaches no handler; nor does a known path with a trailing newline
        ("c.li", "GET", f"/v1/accounts/{quote(ids['account'] + bad, safe='')}", {"expect": 404}),
        ("c.li", "GET", f"/v1/conversations/{quote(ids['conversation'] + bad, safe='')}/messages", {"expect": 404}),
        ("c.li", "GET", f"/v1/me{quote(bad, safe='')}", {"expect": 404}),
        ("c.li", "PUT", "/v1/me/alert-preferences", {"json": {"timezone": f"Asia/Shanghai{bad}"}}),
        ("co.sun", "GET", f"/v1/compliance/conversations/{ids['conversation']}/messages", {"params": {"reason": "fraud_investigation", "case_ref": f"CASE-1{bad}"}}),
    ]


async def test_hostile_text_gets_400_everywhere_and_nothing_leaks_to_the_log(
    nodes: Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # every hostile frame is a strike; this test sends far more than the abuse budget on purpose.
    # Nor is the API budget what it checks: a limiter clock that moves 10 s per request keeps
    # every bucket full, so a fast machine is never answered 429 instead of 400
    node = await nodes.start(limits=SessionLimits(max_strikes=10_000), limiter=MemoryRateLimiter(clock=itertools.count(0, 10).__next__))
    tokens = await _world(node)
    tokens["co.sun"] = await token_for(node, "co.sun")
    async with api(node, tokens["ho.admin"]) as http:
        account = await _account_id(http, "bank.service")
        notice = await _published_notice(http, account)
    async with api(node, tokens["c.li"]) as http:
        r = await http.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"})
        conversation = str(r.json()["conversation"]["id"])
    ids = {"account": account, "notice": notice, "session": await _closed_service_session(node, tokens), "conversation": conversation}

    answers: list[tuple[str, str, str, int, str]] = []
    wrong: list[tuple[str, str, str, int, str]] = []
    cases = [(bad, case) for bad in HOSTILE for case in _cases(bad, ids)]
    cases += [(bad, case) for bad in HOSTILE_TEXT for case in _text_cases(bad, ids)]
    for bad, (who, method, path, kwargs) in cases:
        expect = kwargs.pop("expect", 400)
        headers = {} if who == "anon" else {"authorization": f"Bearer {tokens[who]}"}
        async with httpx.AsyncClient(base_url=node.http_url, headers=headers, timeout=30) as http:
            r = await http.request(method, path, **kwargs)
        code = r.json().get("code", "") if r.headers.get("content-type", "").startswith("application/problem+json") else ""
        answers.append((repr(bad), method, path, r.status_code, code))
        if (r.status_code, code) != ((404, "not_found") if expect == 404 else (400, "invalid_request")):
            wrong.append(answers[-1])
    assert wrong == [], wrong
    # nothing was changed by any of them
    async with node.hub.db.connection("test") as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE username LIKE 'new.user%'") == 0

    # the same over the WebSocket
    li = await RawClient.connect(node.ws_url, tokens["c.li"])
    for bad in HOSTILE:
        frames: list[dict[str, Any]] = [
            {"type": "send", "id": "s1", "conversation_id": conversation + bad, "client_msg_id": "m1", "body": {"kind": "text", "text": "hi"}},
            {"type": "send", "id": "s2", "conversation_id": conversation, "client_msg_id": f"m{bad}", "body": {"kind": "text", "text": "hi"}},
            {"type": "read", "id": "r1", "conversation_id": f"c{bad}", "seq": 1},
            {"type": "sync", "id": "y1", "since": {f"c{bad}": 1}},
            {"type": "sync", "id": "y2", "accounts": {f"a{bad}": 1}},
            {"type": "read_notices", "id": "n1", "account_id": f"a{bad}", "seq": 1},
            {"type": "read_alerts", "id": "a1", "alert_ids": [f"x{bad}"]},
        ]
        for frame in frames:
            answer = await li.request(frame)
            assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), (repr(bad), frame, answer)
    for bad in HOSTILE_TEXT:
        answer = await li.request({"type": "send", "conversation_id": conversation, "client_msg_id": "t1", "body": {"kind": "text", "text": f"{SECRET_TEXT}{bad}"}})
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), (repr(bad), answer)
    # the other hostile frames of the issue: nested JSON, invalid UTF-8 inside a JSON string
    for raw in ("[" * 30000, '{"type":"ping","id":' * 3000, '{"type":"send","id":"u1","text":"\\ud800"}'):
        await li.send_frame(raw)
        answer = await li.expect("error")
        assert answer["code"] == "malformed", answer
    # multi-line text keeps its newlines and tabs
    sent = await li.request({"type": "send", "conversation_id": conversation, "client_msg_id": "ok1", "body": {"kind": "text", "text": "line 1\n\tline 2\r\n"}})
    assert sent["type"] == "sent", sent
    await li.ws.close()

    # the hub's log (everything but this test's own HTTP and WebSocket clients) holds no
    # database detail, hash, token or message text
    hub_records = [r for r in caplog.records if not r.name.startswith(_CLIENT_LOGGERS)]
    assert hub_records, "nothing was logged: the capture is not working"
    text = "\n".join(caplog.handler.format(r) for r in hub_records)
    for needle in ["DETAIL", "$argon2", "Traceback", SECRET_TEXT, DEMO_PASSWORD, "long-enough-pw", *tokens.values()]:
        assert needle not in text, (needle, text[-3000:])


async def _failing_insert(node: RunningNode) -> None:
    """What the bug did: a row Postgres refuses, whose DETAIL quotes a fresh argon2 hash."""
    async with node.hub.db.transaction("test_failing_insert") as conn:
        await node.hub.users.create_user(
            conn,
            username="rm.wang\n",
            display_name="Wang",
            role=Role.CUSTOMER,
            org_id=await org_id(node, "BJ"),
            password_hash=hash_password("a-password-nobody-logs"),
        )


def _hub_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(caplog.handler.format(r) for r in caplog.records if not r.name.startswith(_CLIENT_LOGGERS))


async def test_a_database_error_is_answered_500_with_a_reference_and_logged_once_without_its_detail(
    nodes: Nodes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a bad value ever to reach Postgres again, its DETAIL (the row,
    password hash and all) must still not reach the log, over HTTP or the WebSocket."""
    caplog.set_level(logging.DEBUG)
    node = await nodes.start()
    # the real asyncpg error, as the bug produced it
    with pytest.raises(asyncpg.exceptions.CheckViolationError) as raised:
        await _failing_insert(node)
    assert "DETAIL" in str(raised.value) and "$argon2" in str(raised.value)  # what must never be logged
    caplog.clear()

    async def broken_create_user(hub: Any, actor: Any, **kwargs: Any) -> Any:
        await _failing_insert(node)

    async def broken_send(hub: Any, user: Any, frame: Any, **kwargs: Any) -> Any:
        await _failing_insert(node)

    monkeypatch.setattr(user_actions, "create_user", broken_create_user)
    monkeypatch.setattr(message_actions, "send", broken_send)
    admin, li = await token_for(node, "ho.admin"), await token_for(node, "c.li")
    body = {"username": "new.user", "display_name": "New", "role": "customer", "org": "BJ", "password": "long-enough-pw"}
    async with api(node, admin) as http:
        r = await http.post("/v1/users", json=body)
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "internal"
    ref = re.search(r"reference ([0-9a-f]{8})", r.json()["detail"])
    assert ref is not None, r.json()

    client = await RawClient.connect(node.ws_url, li)
    answer = await client.request({"type": "send", "conversation_id": str(uuid.uuid4()), "client_msg_id": "m1", "body": {"kind": "text", "text": SECRET_TEXT}})
    assert (answer["type"], answer["code"]) == ("error", "internal"), answer
    ws_ref = re.search(r"reference ([0-9a-f]{8})", answer["message"])
    assert ws_ref is not None, answer
    await client.ws.close()

    text = _hub_log(caplog)
    # each failure is logged once, with its reference, the exception type and where it was raised
    http_lines = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert len(http_lines) == 1 and "CheckViolationError" in http_lines[0].getMessage(), text
    assert "POST /v1/users" in http_lines[0].getMessage() and "_failing_insert" in http_lines[0].getMessage()
    assert any(ws_ref.group(1) in r.getMessage() and "CheckViolationError" in r.getMessage() for r in caplog.records), text
    assert "Exception in ASGI application" not in text
    for needle in ["DETAIL", "Failing row", "$argon2", "Traceback", "a-password-nobody-logs", SECRET_TEXT, admin, li]:
        assert needle not in text, (needle, text[-3000:])
    # the one 500 provoked on purpose is not a contract violation of the hub
    nodes.contract.violations[:] = [v for v in nodes.contract.violations if (v.method, v.path, v.status) != ("POST", "/v1/users", 500)]


async def test_a_leaking_log_call_is_scrubbed_at_the_logging_layer(node: RunningNode, caplog: pytest.LogCaptureFixture) -> None:
    """A future ``log.exception`` of an asyncpg error, or a hash or token in a message, still leaks nothing."""
    caplog.set_level(logging.DEBUG)
    try:
        await _failing_insert(node)
    except asyncpg.exceptions.CheckViolationError as exc:
        logging.getLogger("bankhub.some.future.module").exception("insert failed: %s", exc)
        logging.getLogger("uvicorn.error").error("failed", exc_info=True)
    h = hash_password("another-password")
    logging.getLogger("bankhub.storage").warning("row %s with Authorization: Bearer abc.def and password=hunter2", h)
    text = _hub_log(caplog)
    assert "CheckViolationError" in text and "insert failed" in text
    for needle in ["DETAIL", "Failing row", "$argon2", h, "abc.def", "hunter2", "Traceback", "rm.wang\n"]:
        assert needle not in text, (needle, text)


async def test_no_path_segment_or_query_parameter_can_cause_a_server_error(node: RunningNode) -> None:
    """Every route of the app, every ``{param}`` replaced by text with a NUL, every known
    query parameter too: answered with a problem, never 500."""
    admin = await token_for(node, "ho.admin")
    query = {name: "x\x00" for name in ("q", "rm", "state", "status", "reason", "case_ref", "since", "cursor", "keep_current")}
    seen = 0
    async with api(node, admin) as http:
        for route in create_app(node.hub, manage_hub=False).routes:
            path = getattr(route, "path", "")
            if "{" not in path or path == "/v1/ws":
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                if method == "HEAD":
                    continue
                url = re.sub(r"\{[^}]+\}", quote("x\x00y", safe=""), path)
                body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
                r = await http.request(method, url, params=query, **body)
                seen += 1
                assert r.status_code < 500, (method, path, r.status_code, r.text)
                assert r.headers["content-type"] == "application/problem+json", (method, path, r.text)
    assert seen > 25


async def test_a_user_agent_is_kept_as_a_bounded_single_line(node: RunningNode) -> None:
    """Headers are not refused for their text, but what the hub keeps of one (the session's
    User-Agent, shown in the device list) is a single line: C1 controls become U+FFFD."""
    agent = b"Mozilla/5.0 \x85\x9b31m" + b"x" * 400  # NEL and CSI as obs-text bytes, then too long
    async with httpx.AsyncClient(base_url=node.http_url, headers={"user-agent": agent}) as http:
        r = await http.post("/v1/sessions", json={"username": "c.li", "password": DEMO_PASSWORD})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        listed = await http.get("/v1/sessions", headers={"authorization": f"Bearer {token}"})
    mine = next(s for s in listed.json()["sessions"] if s["current"])
    assert mine["user_agent"] == ("Mozilla/5.0 \ufffd\ufffd31m" + "x" * 400)[:256]


def _cursor_of(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).rstrip(b"=").decode("ascii")


async def test_an_edited_cursor_with_an_instant_out_of_range_or_without_an_offset_is_400_on_every_list(
    node: RunningNode,
) -> None:
    """Every datetime-keyed cursor: a well-formed ISO datetime whose UTC instant lies before
    year 1 or after 9999, or one without an offset, is ``400 invalid_request``, never 500."""
    admin, rm = await token_for(node, "ho.admin"), await token_for(node, "rm.wang")
    async with api(node, admin) as http:
        account = await _account_id(http, "bank.service")
    some = str(uuid.uuid4())
    lists: list[tuple[str, str, Any]] = [  # who, path, the key around a given datetime
        ("ho.admin", "/v1/sessions", lambda t: [t, some]),
        ("ho.admin", "/v1/conversations", lambda t: [None, t, some]),
        ("ho.admin", "/v1/conversations", lambda t: [t, "2024-01-01T00:00:00+00:00", some]),
        ("ho.admin", f"/v1/accounts/{account}/outbox", lambda t: [t, some]),
        ("ho.admin", "/v1/admin/alerts/dead-letters", lambda t: [t, some]),
        ("rm.wang", "/v1/rm/book", lambda t: [t, "c.li", some]),
        ("ho.admin", "/v1/admin-requests", lambda t: [t, some]),
    ]
    tokens = {"ho.admin": admin, "rm.wang": rm}
    for who, path, key in lists:
        async with api(node, tokens[who]) as http:
            ok = await http.get(path, params={"cursor": _cursor_of(key("2024-01-01T00:00:00+00:00"))})
            assert ok.status_code == 200, (path, ok.text)  # a sound key of this shape pages
            for instant in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00", "2024-01-01T00:00:00"):
                r = await http.get(path, params={"cursor": _cursor_of(key(instant))})
                assert r.status_code == 400, (path, instant, r.status_code, r.text)
                assert r.json()["code"] == "invalid_request", (path, instant, r.text)
