"""The fallback channel against a real local HTTP gateway: retries, backoff, dead letters, replay."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bankhub.alerts.signing import canonical_request, verify
from bankhub.runner import RunningNode

from ..conftest import Nodes, login
from ..support.alerts import System, WebhookGateway, card_debit, register, signed, start_alert_node, wait_for
from ..support.wsclient import RawClient

pytestmark = pytest.mark.timeout(90)

WEBHOOK_SECRET = "whsec-for-tests-only"


@pytest.fixture
async def gateway() -> AsyncIterator[WebhookGateway]:
    gw = await WebhookGateway(fail_first=0).start()
    yield gw
    await gw.stop()


async def _node(nodes: Nodes, gw: WebhookGateway, **kw: Any) -> RunningNode:
    settings: dict[str, Any] = dict(
        alert_webhook_url=gw.url,
        alert_webhook_secret=WEBHOOK_SECRET,
        alert_fallback_after_seconds=0.3,
        alert_retry_base_seconds=0.05,
        alert_retry_cap_seconds=0.2,
        alert_retry_max_attempts=3,
        alert_worker_seconds=0.05,
    )
    settings.update(kw)
    return await start_alert_node(nodes, **settings)


async def _send(node: RunningNode, core: System, body: dict[str, Any]) -> str:
    r = await signed(node, core, "POST", "/v1/notifications", body)
    assert r.status_code == 201, r.text
    alert_id: str = r.json()["notification"]["alert_id"]
    return alert_id


async def _status(node: RunningNode, core: System, alert_id: str) -> dict[str, Any]:
    r = await signed(node, core, "GET", f"/v1/notifications/{alert_id}", key=None)
    assert r.status_code == 200, r.text
    n: dict[str, Any] = r.json()["notification"]
    return n


async def _reaches(node: RunningNode, core: System, alert_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        n = await _status(node, core, alert_id)
        return n if n["status"] == status else None

    result: dict[str, Any] = await wait_for(check, timeout)
    return result


async def test_an_offline_customer_gets_the_alert_through_the_fallback_after_retries(nodes: Nodes, gateway: WebhookGateway) -> None:
    gateway.fail_first = 2
    node = await _node(nodes, gateway)
    core = await register(node)
    started = time.monotonic()
    alert_id = await _send(node, core, card_debit())
    n = await _reaches(node, core, alert_id, "delivered_fallback")
    assert time.monotonic() - started >= 0.3  # it waited for a device first
    assert n["fallback"]["state"] == "sent" and n["fallback"]["attempts"] == 3 and n["fallback"]["sent_at"]
    assert len(gateway.requests) == 3
    for headers, body, query in gateway.requests:
        # every attempt carries the alert id as its idempotency key and is signed by the hub
        assert headers["idempotency-key"] == alert_id and headers["x-bankhub-system"] == "bankhub"
        canonical = canonical_request(
            "POST", "/sms", query, headers["x-bankhub-timestamp"], headers["x-bankhub-nonce"], "bankhub", alert_id, body
        )
        assert verify([WEBHOOK_SECRET], canonical, headers["x-bankhub-signature"][3:])
    payload = json.loads(gateway.requests[-1][1])
    assert payload["username"] == "c.li" and payload["alert_id"] == alert_id and payload["attempt"] == 3
    assert payload["text"] == "您尾号7890的卡于2026年5月1日 10:15在Coffee Lab消费人民币128.50。"
    # a later sync still shows it in the inbox: the fallback is in addition, not instead
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    synced = await phone.request({"type": "sync_inbox", "since": 0})
    assert [a["alert_id"] for a in synced["alerts"]] == [alert_id]
    await phone.close()


async def test_an_alert_delivered_online_never_goes_to_the_fallback(nodes: Nodes, gateway: WebhookGateway) -> None:
    # the delivered mark is written by a loop every 0.2 s: the fallback waits well past it
    node = await _node(nodes, gateway, alert_fallback_after_seconds=2.0)
    core = await register(node)
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    alert_id = await _send(node, core, card_debit())
    assert (await phone.expect("alert"))["alert"]["alert_id"] == alert_id
    n = await wait_for(lambda: _cancelled(node, core, alert_id))
    assert n["status"] == "delivered" and n["fallback"]["cancel_reason"] == "delivered_online"
    assert gateway.requests == []
    await phone.close()


async def _cancelled(node: RunningNode, core: System, alert_id: str) -> dict[str, Any] | None:
    n = await _status(node, core, alert_id)
    return n if n["fallback"] and n["fallback"]["state"] == "cancelled" else None


async def test_exhausted_retries_dead_letter_and_an_operator_replays(nodes: Nodes, gateway: WebhookGateway) -> None:
    gateway.fail_first = None  # the gateway is down
    node = await _node(nodes, gateway)
    core = await register(node)
    alert_id = await _send(node, core, card_debit())
    n = await _reaches(node, core, alert_id, "dead_lettered")
    assert n["fallback"]["attempts"] == 3 and "gave up after 3 attempts" in n["fallback"]["last_error"]
    assert "HTTP 503" in n["fallback"]["last_error"] and len(gateway.requests) == 3
    admin = await login(node, "ho.admin")
    customer = await login(node, "c.li")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        listed = await http.get("/v1/admin/alerts/dead-letters", headers={"authorization": f"Bearer {admin}"})
        assert listed.status_code == 200 and [d["alert_id"] for d in listed.json()["notifications"]] == [alert_id]
        assert listed.json()["notifications"][0]["recipient"] == "c.li"
        denied = await http.get("/v1/admin/alerts/dead-letters", headers={"authorization": f"Bearer {customer}"})
        assert denied.status_code == 403
        denied = await http.post("/v1/admin/alerts/dead-letters/replay", json={"all": True}, headers={"authorization": f"Bearer {customer}"})
        assert denied.status_code == 403
        gateway.fail_first = 3  # back up
        replay = await http.post(
            "/v1/admin/alerts/dead-letters/replay", json={"alert_ids": [alert_id]}, headers={"authorization": f"Bearer {admin}"}
        )
        assert replay.status_code == 200 and replay.json() == {"replayed": [alert_id]}
    n = await _reaches(node, core, alert_id, "delivered_fallback")
    assert n["fallback"]["attempts"] == 1 and len(gateway.requests) == 4
    async with node.hub.db.connection("t") as conn:
        row = await conn.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'alerts.dead_letters_replayed'")
    assert row["actor"] == "ho.admin" and json.loads(row["details"])["alert_ids"] == [alert_id]


async def test_a_permanent_refusal_dead_letters_at_once(nodes: Nodes) -> None:
    gw = await WebhookGateway(fail_first=None, fail_status=400).start()
    try:
        node = await _node(nodes, gw)
        core = await register(node)
        alert_id = await _send(node, core, card_debit())
        n = await _reaches(node, core, alert_id, "dead_lettered")
        assert n["fallback"]["attempts"] == 1 and "refused permanently" in n["fallback"]["last_error"]
        assert len(gw.requests) == 1
    finally:
        await gw.stop()


async def test_low_priority_never_and_quiet_hours_later(nodes: Nodes, gateway: WebhookGateway) -> None:
    node = await _node(nodes, gateway)
    core = await register(node)
    offer = await _send(node, core, {"recipient": "c.li", "template": "marketing.offer", "variables": {"headline": "Hi", "text": "Cashback"}})
    assert (await _status(node, core, offer))["fallback"] is None
    token = await login(node, "c.zhou")
    now = time.gmtime()
    quiet = {"start": f"{now.tm_hour:02d}:{now.tm_min:02d}", "end": f"{(now.tm_hour + 2) % 24:02d}:{now.tm_min:02d}"}
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.put("/v1/me/alert-preferences", json={"quiet_hours": quiet, "timezone": "UTC"})
        assert r.status_code == 200
    debit = await _send(node, core, card_debit("c.zhou"))
    security = await _send(node, core, {"recipient": "c.zhou", "template": "security.password_changed", "variables": {"time": "2026-05-01T10:15:00+08:00"}})
    n = await _status(node, core, debit)
    import datetime as dt

    next_at = dt.datetime.fromisoformat(n["fallback"]["next_at"])
    assert next_at - dt.datetime.now(dt.timezone.utc) > dt.timedelta(minutes=100)  # at the end of the quiet hours
    # security alerts ignore quiet hours: the SMS goes out as usual
    await _reaches(node, core, security, "delivered_fallback")
    await asyncio.sleep(0.5)
    assert [json.loads(b)["alert_id"] for _, b, _ in gateway.requests] == [security]


async def test_operators_cli_lists_and_replays_dead_letters(nodes: Nodes, gateway: WebhookGateway, dsn: str) -> None:
    gateway.fail_first = None
    node = await _node(nodes, gateway)
    core = await register(node)
    alert_id = await _send(node, core, card_debit())
    await _reaches(node, core, alert_id, "dead_lettered")
    bankhub = str(Path(sys.executable).with_name("bankhub"))
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn}

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(bankhub, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    code, out = await run("alerts", "dead-letters", "--json")
    assert code == 0 and [d["alert_id"] for d in json.loads(out)] == [alert_id]
    gateway.fail_first = 3
    code, out = await run("alerts", "replay", "--all")
    assert code == 0 and "requeued 1 alert" in out
    await _reaches(node, core, alert_id, "delivered_fallback")
    code, out = await run("alerts", "replay", alert_id)
    assert code == 1  # nothing dead any more
