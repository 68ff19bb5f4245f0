"""The embeddable service widget against a real node: partners, the visitor-token exchange,
the frame's per-partner frame-ancestors, and a visitor who can do nothing but the service desk."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bankhub.actions import keys as key_actions
from bankhub.actions import widget as widget_actions
from bankhub.crypto import LocalKeyFile
from bankhub.runner import RunningNode
from bankhub.storage.widget import WidgetPartner
from bankhub.storage.wrapped_secrets import WIDGET_SECRETS, kek_counts
from bankhub.widget import tokens
from bankhub_client.widget import mint_visitor_token

from ..conftest import Nodes, login
from ..support import alerts as alert_support
from ..support.wsclient import RawClient

SHOP = ["https://shop.example", "http://127.0.0.1:9999"]
OTHER = ["https://other.example"]


async def _partner(node: RunningNode, name: str, origins: list[str]) -> tuple[WidgetPartner, str]:
    return await widget_actions.add_partner(node.hub.db, node.hub.keyring.provider, name, origins)


async def _enter(node: RunningNode, partner_id: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        return await http.post("/v1/widget/sessions", json={"partner_id": partner_id, "token": token})


async def _visitor(node: RunningNode, visitor_id: str = "member-1001", name: str = "Visitor Li") -> tuple[WidgetPartner, str]:
    partner, secret = await _partner(node, "shop", SHOP)
    r = await _enter(node, partner.id, mint_visitor_token(secret, partner.id, visitor_id, name))
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store" and "set-cookie" not in r.headers
    return partner, r.json()["token"]


async def test_a_signed_token_opens_a_visitor_session_once(node: RunningNode) -> None:
    partner, secret = await _partner(node, "shop", SHOP)
    token = mint_visitor_token(secret, partner.id, "member-1001", "Visitor Li")
    first = await _enter(node, partner.id, token)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["partner"] == "shop" and body["user"]["display_name"] == "Visitor Li" and body["user"]["role"] == "customer"
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {body['token']}"}) as http:
        assert (await http.get("/v1/me")).json()["id"] == body["user"]["id"]
    again = await _enter(node, partner.id, token)
    assert (again.status_code, again.json()["code"]) == (401, "visitor_token_replayed")
    # the same visitor later: the same hub user, with the name of the newest token
    later = await _enter(node, partner.id, mint_visitor_token(secret, partner.id, "member-1001", "Li (VIP)"))
    assert later.json()["user"]["id"] == body["user"]["id"] and later.json()["user"]["display_name"] == "Li (VIP)"


async def test_bad_tokens_are_refused_with_401(node: RunningNode) -> None:
    partner, secret = await _partner(node, "shop", SHOP)
    other, other_secret = await _partner(node, "other", OTHER)
    now = int(time.time())
    cases = [
        (partner.id, mint_visitor_token(secret, partner.id, "v1", "V", now=now - 1000, ttl=60), "visitor_token_expired"),
        (partner.id, mint_visitor_token(secret, partner.id, "v1", "V", now=now + 600, ttl=60), "visitor_token_expired"),
        (partner.id, mint_visitor_token(secret, partner.id, "v1", "V", ttl=3600), "invalid_visitor_token"),  # lives too long
        (partner.id, mint_visitor_token(other_secret, other.id, "v1", "V"), "invalid_visitor_token"),  # another partner's
        (partner.id, mint_visitor_token(secret, other.id, "v1", "V"), "invalid_visitor_token"),  # names another partner
        (partner.id, mint_visitor_token("bhw_guessed", partner.id, "v1", "V"), "invalid_visitor_token"),
        (str(uuid.uuid4()), mint_visitor_token(secret, partner.id, "v1", "V"), "invalid_visitor_token"),  # unknown partner
        (partner.id, "bhw1.e30.AAAA", "invalid_visitor_token"),
    ]
    for partner_id, token, code in cases:
        r = await _enter(node, partner_id, token)
        assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (401, "application/problem+json", code), r.text
        assert token not in r.text


async def test_a_disabled_partner_is_refused_and_not_framed(node: RunningNode) -> None:
    partner, secret = await _partner(node, "shop", SHOP)
    entered = await _enter(node, partner.id, mint_visitor_token(secret, partner.id, "v0", "V"))
    await widget_actions.set_enabled(node.hub.db, "shop", False)
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {entered.json()['token']}"}) as http:
        assert (await http.get("/v1/me")).status_code == 401  # its visitors' sessions ended with it
    r = await _enter(node, partner.id, mint_visitor_token(secret, partner.id, "v1", "V"))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        frame = await http.get("/widget/frame", params={"partner": partner.id})
    assert frame.status_code == 404 and "frame-ancestors 'none'" in frame.headers["content-security-policy"]


async def test_the_frame_may_be_framed_only_by_its_partners_origins(node: RunningNode) -> None:
    shop, _ = await _partner(node, "shop", SHOP)
    other, _ = await _partner(node, "other", OTHER)
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        a = await http.get("/widget/frame", params={"partner": shop.id})
        b = await http.get("/widget/frame", params={"partner": other.id})
        unknown = await http.get("/widget/frame", params={"partner": str(uuid.uuid4())})
        malformed = await http.get("/widget/frame", params={"partner": "../x"})
        loader = await http.get("/widget/loader.js")
    assert a.status_code == 200 and a.headers["content-type"].startswith("text/html")
    csp = a.headers["content-security-policy"]
    # a production hub (BANKHUB_WIDGET_DEV_ORIGINS=off) leaves the loopback http origin out
    assert csp.endswith("frame-ancestors https://shop.example") and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "x-frame-options" not in a.headers and a.headers["x-content-type-options"] == "nosniff"
    assert f'data-partner="{shop.id}"' in a.text and 'data-origins="https://shop.example"' in a.text and "<script>" not in a.text
    assert b.headers["content-security-policy"].endswith("frame-ancestors https://other.example")
    for refused in (unknown, malformed):
        assert refused.status_code == 404 and refused.headers["content-type"] == "application/problem+json"
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
    assert loader.status_code == 200 and loader.headers["content-type"].startswith("text/javascript")


async def test_loopback_origins_are_framed_only_on_a_development_hub(nodes: Nodes) -> None:
    node = await nodes.start(widget_dev_origins="loopback")
    shop, _ = await _partner(node, "shop", SHOP)
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        a = await http.get("/widget/frame", params={"partner": shop.id})
    assert a.headers["content-security-policy"].endswith("frame-ancestors https://shop.example http://127.0.0.1:9999")


async def test_a_visitor_can_only_use_the_service_desk(node: RunningNode) -> None:
    _, token = await _visitor(node)
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=node.http_url, headers=auth) as http:
        opened = await http.post("/v1/service/sessions")
        assert opened.status_code == 201, opened.text
        cid = opened.json()["conversation_id"]
        history = await http.get(f"/v1/conversations/{cid}/messages")
        assert history.status_code == 200 and history.json()["messages"][0]["body"]["kind"] == "system"
        li = {"authorization": f"Bearer {await login(node, 'c.li')}"}
        account_id = (await http.get("/v1/me/accounts", headers=li)).json()["accounts"][0]["account"]["id"]
        refused = [
            await http.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"}),
            await http.post("/v1/conversations", json={"kind": "group", "title": "g", "members": ["c.li"]}),
            await http.get("/v1/conversations"),
            await http.put(f"/v1/accounts/{account_id}/follow"),
            await http.get("/v1/me/accounts"),
            await http.get("/v1/inbox"),
            await http.get("/v1/me/rm"),
            await http.post("/v1/sessions/refresh"),
            await http.post("/v1/me/password", json={"current_password": "x" * 12, "new_password": "y" * 12}),
            await http.get("/v1/service/queues"),
        ]
        for r in refused:
            assert (r.status_code, r.json()["code"]) == (403, "forbidden"), (r.request.method, r.request.url, r.text)
        assert (await http.post("/v1/ws-tickets")).status_code == 201

    ws = await RawClient.connect(node.ws_url, token)
    try:
        sent = await ws.request({"type": "send", "conversation_id": cid, "client_msg_id": "c-1", "body": {"kind": "text", "text": "lost card"}})
        assert sent["type"] == "sent", sent
        for frame in ({"type": "sync_inbox", "since": 0}, {"type": "read_notices", "account_id": account_id, "seq": 1}):
            answer = await ws.request(frame)
            assert (answer["type"], answer["code"]) == ("error", "forbidden"), answer
        # the bot answers the visitor's question in the service conversation
        for _ in range(10):
            m = await ws.expect("message", timeout=10)
            if m["message"]["body"]["kind"] == "system" and "95588" in m["message"]["body"]["text"]:
                break
        else:
            pytest.fail("no bot answer")
    finally:
        await ws.ws.close()


async def test_nobody_reaches_a_visitor_and_it_has_no_password(node: RunningNode) -> None:
    partner, token = await _visitor(node)
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        username = (await http.get("/v1/me")).json()["username"]
    wang = await login(node, "rm.wang")
    admin = await login(node, "ho.admin")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/conversations", json={"kind": "direct", "peer": username}, headers={"authorization": f"Bearer {wang}"})
        assert r.status_code == 403, r.text
        r = await http.put(f"/v1/customers/{username}/rm", json={"rm": "rm.wang"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 400, r.text
        r = await http.put(f"/v1/users/{username}/role", json={"role": "staff"}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 403, r.text
        r = await http.post("/v1/sessions", json={"username": username, "password": "!widget-visitor: no password sign-in"})
        assert r.status_code == 401


async def test_head_office_registers_partners_over_the_api(node: RunningNode) -> None:
    admin = await login(node, "ho.admin")
    customer = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/widget/partners", json={"name": "shop", "origins": ["https://Shop.example/"]}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["origins"] == ["https://shop.example"] and created["secret"].startswith("bhw_")
        bad = await http.post("/v1/widget/partners", json={"name": "evil", "origins": ["http://evil.example"]}, headers={"authorization": f"Bearer {admin}"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
        listed = await http.get("/v1/widget/partners", headers={"authorization": f"Bearer {admin}"})
        assert [p["name"] for p in listed.json()["partners"]] == ["shop"] and "secret" not in listed.json()["partners"][0]
        assert (await http.get("/v1/widget/partners", headers={"authorization": f"Bearer {customer}"})).status_code == 403
    r = await _enter(node, created["id"], mint_visitor_token(created["secret"], created["id"], "v-9", "Nine"))
    assert r.status_code == 201, r.text


def test_the_token_module_and_sdk_agree_on_the_prefix() -> None:
    assert tokens.PREFIX == "bhw1"


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("bankhub")), *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_registers_a_partner_and_prints_its_secret_once(node: RunningNode, dsn: str, key_file: str) -> None:
    env = {"BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": key_file, "BANKHUB_WIDGET_DEV_ORIGINS": ""}
    code, out, err = await _cli("widget", "add-partner", "--name", "shop", "--origin", "https://shop.example", env=env)
    assert code == 0, err
    partner_id = re.search(r"data-partner\): ([0-9a-f-]{36})", out)
    secret = re.search(r"^(bhw_[A-Za-z0-9_-]+)$", out, re.M)
    assert partner_id and secret, out
    r = await _enter(node, partner_id.group(1), mint_visitor_token(secret.group(1), partner_id.group(1), "v-1", "One"))
    assert r.status_code == 201, r.text
    code, listed, _ = await _cli("widget", "list", env=env)
    assert code == 0 and "shop" in listed and secret.group(1) not in listed
    # plain http is for development hubs only; a path is no origin at all
    code, _, err = await _cli("widget", "add-partner", "--name", "dev", "--origin", "http://127.0.0.1:8765", env=env)
    assert code == 2 and "BANKHUB_WIDGET_DEV_ORIGINS=loopback" in err
    code, _, err = await _cli("widget", "add-partner", "--name", "bad", "--origin", "https://shop.example/page", env=env)
    assert code == 1 and "not an origin" in err
    code, _, _ = await _cli("widget", "disable", "shop", env=env)
    assert code == 0
    r = await _enter(node, partner_id.group(1), mint_visitor_token(secret.group(1), partner_id.group(1), "v-1", "One"))
    assert r.status_code == 403


async def test_key_rotation_rewraps_partner_secrets(dsn: str, tmp_path: Path, nodes: Nodes) -> None:
    provider = LocalKeyFile.create(tmp_path / "keys.json")
    node = await nodes.start(key_provider=provider)
    partner, secret = await widget_actions.add_partner(node.hub.db, provider, "shop", SHOP)
    old_kek = provider.active_kek_id()
    await key_actions.rotate(node.hub.db, provider)
    assert await kek_counts(node.hub.db, WIDGET_SECRETS) == {provider.active_kek_id(): 1}
    await key_actions.retire_kek(node.hub.db, provider, old_kek)  # no partner secret left under it
    # the same secret, now under the new KEK: partners notice nothing
    r = await _enter(node, partner.id, mint_visitor_token(secret, partner.id, "v-2", "Two"))
    assert r.status_code == 201, r.text


async def test_no_calling_system_can_alert_a_visitor(node: RunningNode) -> None:
    _, token = await _visitor(node)
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        username = (await http.get("/v1/me")).json()["username"]
    system = await alert_support.register(node)
    r = await alert_support.signed(node, system, "POST", "/v1/notifications", alert_support.card_debit(username))
    assert (r.status_code, r.json()["code"]) == (404, "recipient_not_found"), r.text
