"""Transactional alerts end to end: signed ingest, delivery, inbox, preferences, TTL, collapse."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from bankhub.actions.alert_systems import rotate_secret, set_disabled
from bankhub.runner import RunningNode

from ..conftest import Nodes, login
from ..support.alerts import System, card_debit, register, signed, start_alert_node, wait_for
from ..support.wsclient import RawClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def core(node: RunningNode) -> System:
    return await register(node)


async def _http(node: RunningNode, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        return await http.request(method, path, **kw)


async def _inbox(node: RunningNode, token: str, state: str = "inbox") -> dict[str, Any]:
    r = await _http(node, token, "GET", f"/v1/inbox?state={state}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _status(node: RunningNode, core: System, alert_id: str) -> dict[str, Any]:
    r = await signed(node, core, "GET", f"/v1/notifications/{alert_id}", key=None)
    assert r.status_code == 200, r.text
    n: dict[str, Any] = r.json()["notification"]
    return n


async def _send(node: RunningNode, core: System, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = await signed(node, core, "POST", "/v1/notifications", body, **kw)
    assert r.status_code == 201, r.text
    n: dict[str, Any] = r.json()["notification"]
    return n


# --- delivery --------------------------------------------------------------------------


async def test_an_alert_reaches_the_online_device_rendered_masked_and_lands_in_the_inbox(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    n = await _send(node, core, card_debit())
    # pushed at once: it is published before the answer, so it is there or on its way (the
    # bound leaves room for a loaded machine, far below any retry or sync a miss would need)
    started = time.monotonic()
    assert n["status"] == "accepted" and n["recipient"] == "c.li" and n["category"] == "transaction"
    frame = (await phone.expect("alert", timeout=2.0))["alert"]
    assert time.monotonic() - started < 2.0
    assert frame["alert_id"] == n["alert_id"] and frame["seq"] == 1 and frame["priority"] == "high"
    # rendered by the hub in the customer's default language and zone: only the last four digits
    assert frame["title"] == "消费提醒"
    assert frame["text"] == "您尾号7890的卡于2026年5月1日 10:15在Coffee Lab消费人民币128.50。"
    assert "6222" not in frame["text"]
    page = await _inbox(node, token)
    assert [a["alert_id"] for a in page["alerts"]] == [n["alert_id"]] and page["unread"] == 1 and page["last_seq"] == 1
    delivered = await wait_for(lambda: _delivered(node, core, n["alert_id"]))
    assert delivered["status"] == "delivered" and delivered["delivered_at"]
    await phone.close()


async def _delivered(node: RunningNode, core: System, alert_id: str) -> dict[str, Any] | None:
    n = await _status(node, core, alert_id)
    return n if n["status"] == "delivered" else None


async def test_english_and_the_customers_time_zone(node: RunningNode, core: System) -> None:
    token = await login(node, "c.zhou")
    r = await _http(node, token, "PUT", "/v1/me/alert-preferences", json={"locale": "en", "timezone": "Europe/London"})
    assert r.status_code == 200, r.text
    await _send(node, core, card_debit("c.zhou"))
    alert = (await _inbox(node, token))["alerts"][0]
    assert alert["title"] == "Card payment"
    assert alert["text"] == "Your card ending 7890 was charged CNY 128.50 at Coffee Lab on 1 May 2026, 03:15."


async def test_offline_customer_gets_alerts_through_sync_inbox_then_live_in_order(node: RunningNode, core: System) -> None:
    sent = [await _send(node, core, card_debit()) for _ in range(3)]
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    first = await phone.request({"type": "sync_inbox", "since": 0, "limit": 2})
    assert first["type"] == "inbox_synced" and first["has_more"] and first["cursor"] == 2 and first["last_seq"] == 3
    assert [a["alert_id"] for a in first["alerts"]] == [s["alert_id"] for s in sent[:2]] and first["unread"] == 3
    rest = await phone.request({"type": "sync_inbox", "since": first["cursor"]})
    assert [a["seq"] for a in rest["alerts"]] == [3] and not rest["has_more"] and rest["cursor"] == 3
    live = await _send(node, core, card_debit())
    frame = (await phone.expect("alert"))["alert"]
    assert frame["alert_id"] == live["alert_id"] and frame["seq"] == 4
    # every alert handed over by sync counts as delivered online
    for s in sent:
        assert (await wait_for(lambda s=s: _delivered(node, core, s["alert_id"])))["status"] == "delivered"
    await phone.close()


# --- signatures --------------------------------------------------------------------------


async def test_signature_failures_are_refused_with_clear_problems_and_store_nothing(node: RunningNode, core: System) -> None:
    body = card_debit()
    cases: dict[str, httpx.Response] = {}
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        cases["unsigned"] = await http.post("/v1/notifications", json=body, headers={"idempotency-key": "k1"})
    cases["wrong secret"] = await signed(node, core, "POST", "/v1/notifications", body, secret="bhs_" + "A" * 43)
    cases["unknown system"] = await signed(node, System("no-such-system", core.secret, ""), "POST", "/v1/notifications", body)
    cases["body changed"] = await signed(node, core, "POST", "/v1/notifications", body, send_body=b'{"recipient":"c.zhou","template":"card.debit"}')
    cases["stale"] = await signed(node, core, "POST", "/v1/notifications", body, timestamp=int(time.time()) - 302)
    cases["from the future"] = await signed(node, core, "POST", "/v1/notifications", body, timestamp=int(time.time()) + 303)
    cases["bad signature form"] = await signed(node, core, "POST", "/v1/notifications", body, headers={"x-bankhub-signature": "sha1=abc"})
    cases["short nonce"] = await signed(node, core, "POST", "/v1/notifications", body, nonce="abc")
    expected = {
        "unsigned": "signature_required",
        "wrong secret": "invalid_signature",
        "unknown system": "invalid_signature",
        "body changed": "invalid_signature",
        "stale": "stale_request",
        "from the future": "stale_request",
        "bad signature form": "invalid_signature",
        "short nonce": "invalid_signature",
    }
    for name, r in cases.items():
        assert r.status_code == 401, (name, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == expected[name], name
        assert r.headers["www-authenticate"] == "BANKHUB-HMAC-SHA256"
    token = await login(node, "c.li")
    assert (await _inbox(node, token, "all"))["last_seq"] == 0


async def test_a_replayed_request_is_refused(node: RunningNode, core: System) -> None:
    nonce = uuid.uuid4().hex
    ts = int(time.time())
    first = await signed(node, core, "POST", "/v1/notifications", card_debit(), key="k-1", nonce=nonce, timestamp=ts)
    again = await signed(node, core, "POST", "/v1/notifications", card_debit(), key="k-1", nonce=nonce, timestamp=ts)
    assert first.status_code == 201
    assert again.status_code == 401 and again.json()["code"] == "replayed_request"


async def test_an_idempotent_retry_returns_the_original_and_a_different_body_conflicts(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    first = await signed(node, core, "POST", "/v1/notifications", card_debit(), key="txn-0001")
    retry = await signed(node, core, "POST", "/v1/notifications", card_debit(), key="txn-0001")
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["notification"]["alert_id"] == first.json()["notification"]["alert_id"]
    other = await signed(node, core, "POST", "/v1/notifications", card_debit("c.zhou"), key="txn-0001")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    # concurrent retries of one request: still one alert
    results = await asyncio.gather(*(signed(node, core, "POST", "/v1/notifications", card_debit(), key="txn-0002") for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    assert len({r.json()["notification"]["alert_id"] for r in results}) == 1
    assert (await _inbox(node, token))["last_seq"] == 2
    # the device saw each alert once (a retry republishes; the connection drops the seq it holds)
    got = [(await phone.expect("alert"))["alert"]["seq"] for _ in range(2)]
    assert got == [1, 2] and await phone.quiet("alert", 0.3)
    missing = await signed(node, core, "POST", "/v1/notifications", card_debit(), key=None)
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_required"
    await phone.close()


async def test_rotation_keeps_the_old_secret_for_the_grace_period_and_disable_refuses(node: RunningNode, core: System) -> None:
    _, new_secret = await rotate_secret(node.hub.db, node.hub.keyring.provider, core.name)
    assert (await signed(node, core, "POST", "/v1/notifications", card_debit())).status_code == 201
    assert (await signed(node, core, "POST", "/v1/notifications", card_debit(), secret=new_secret)).status_code == 201
    import datetime as dt

    _, newest = await rotate_secret(node.hub.db, node.hub.keyring.provider, core.name, grace=dt.timedelta(0))
    old = await signed(node, core, "POST", "/v1/notifications", card_debit(), secret=new_secret)
    assert old.status_code == 401 and old.json()["code"] == "invalid_signature"
    assert (await signed(node, core, "POST", "/v1/notifications", card_debit(), secret=newest)).status_code == 201
    await set_disabled(node.hub.db, core.name, True)
    r = await signed(node, core, "POST", "/v1/notifications", card_debit(), secret=newest)
    assert r.status_code == 403 and r.json()["code"] == "system_disabled"


async def test_secrets_are_stored_wrapped_and_never_logged(node: RunningNode, core: System, caplog: pytest.LogCaptureFixture) -> None:
    async with node.hub.db.connection("t") as conn:
        row = await conn.fetchrow("SELECT kek_id, wrapped_secret FROM alert_systems WHERE name = $1", core.name)
    raw = core.secret.encode()
    assert row["kek_id"] == node.hub.keyring.provider.active_kek_id()
    assert raw not in row["wrapped_secret"] and len(row["wrapped_secret"]) == 40  # AES key wrap of 32 bytes
    caplog.set_level("DEBUG")
    bad = await signed(node, core, "POST", "/v1/notifications", card_debit(), secret=core.secret + "x")
    assert bad.status_code == 401
    signature = bad.request.headers["x-bankhub-signature"]
    assert core.secret not in caplog.text and signature[3:] not in caplog.text
    assert "invalid_signature" in caplog.text


async def test_kek_rotation_rewraps_system_secrets_and_retiring_waits_for_them(nodes: Nodes, tmp_path: Any) -> None:
    from bankhub.actions.keys import KekInUse, retire_kek, rotate
    from bankhub.crypto import LocalKeyFile

    key_file = LocalKeyFile.create(tmp_path / "keys.json")
    node = await start_alert_node(nodes, key_file=str(key_file.path))
    core = await register(node)
    before = await _send(node, core, card_debit())
    old = key_file.active_kek_id()
    key_file.add_key()  # a new active KEK; nothing re-wrapped yet
    with pytest.raises(KekInUse, match="calling system secret"):
        await retire_kek(node.hub.db, key_file, old)
    report = await rotate(node.hub.db, key_file, new_kek=False)
    assert report.failed == []
    await retire_kek(node.hub.db, key_file, old)
    assert old not in LocalKeyFile(key_file.path).kek_ids()
    # the secret itself is unchanged: the calling system notices nothing
    assert (await signed(node, core, "POST", "/v1/notifications", card_debit())).status_code == 201
    # and the alert stored before the rotation still reads, through its re-wrapped data key
    node.hub.keyring.forget_all()
    token = await login(node, "c.li")
    texts = {a["alert_id"]: a["text"] for a in (await _inbox(node, token))["alerts"]}
    assert texts[before["alert_id"]].startswith("您尾号7890的卡")
    async with node.hub.db.connection("t") as conn:
        assert await conn.fetchval("SELECT count(*) FROM alert_keys WHERE kek_id = $1", old) == 0


async def test_alert_texts_are_encrypted_at_rest_and_bound_to_their_row(node: RunningNode, core: System) -> None:
    first = await _send(node, core, card_debit())
    second = await _send(node, core, card_debit(variables={**card_debit()["variables"], "merchant": "Tea House"}))
    async with node.hub.db.connection("t") as conn:
        dump = "\n".join(r["t"] for r in await conn.fetch("SELECT a::text AS t FROM alerts a"))
        assert "Coffee Lab" not in dump and "Tea House" not in dump and "7890" not in dump
        # ciphertext copied onto another row does not open there: that alert shows empty, not the other's text
        await conn.execute(
            "UPDATE alerts SET content = (SELECT content FROM alerts WHERE id = $1) WHERE id = $2",
            uuid.UUID(first["alert_id"]),
            uuid.UUID(second["alert_id"]),
        )
    token = await login(node, "c.li")
    texts = {a["alert_id"]: a["text"] for a in (await _inbox(node, token))["alerts"]}
    assert "Coffee Lab" in texts[first["alert_id"]] and texts[second["alert_id"]] == ""


async def test_a_system_only_sends_its_categories_and_only_reads_its_own_alerts(node: RunningNode, core: System) -> None:
    cards = await register(node, "card-platform", ("transaction",))
    r = await signed(node, cards, "POST", "/v1/notifications", {"recipient": "c.li", "template": "security.password_changed", "variables": {"time": "2026-05-01T10:15:00+08:00"}})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    mine = await _send(node, core, card_debit())
    other = await signed(node, cards, "GET", f"/v1/notifications/{mine['alert_id']}", key=None)
    assert other.status_code == 404 and other.json()["code"] == "not_found"
    nobody = await signed(node, core, "POST", "/v1/notifications", card_debit("no.such.user"))
    assert nobody.status_code == 404 and nobody.json()["code"] == "recipient_not_found"


async def test_per_system_rate_limit(node: RunningNode) -> None:
    slow = await register(node, "batch-jobs", ("service",), rate_per_second=0.5, burst=2)
    body = {"recipient": "c.li", "template": "service.statement_ready", "variables": {"account": "1234", "period": "2026-04"}}
    codes = [(await signed(node, slow, "POST", "/v1/notifications", body)).status_code for _ in range(2)]
    limited = await signed(node, slow, "POST", "/v1/notifications", body)
    assert codes == [201, 201]
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1


async def test_bad_input_gets_problems_not_crashes(node: RunningNode, core: System) -> None:
    cases = {
        "not json": (b"{nope", "invalid_request", 400),
        "unknown field": ({**card_debit(), "colour": "red"}, "invalid_request", 400),
        "unknown template": ({**card_debit(), "template": "no.such"}, "invalid_alert", 422),
        "missing variable": ({"recipient": "c.li", "template": "card.debit", "variables": {}}, "invalid_alert", 422),
        "float amount": (card_debit(variables={**card_debit()["variables"], "amount": {"amount": 1.5, "currency": "CNY"}}), "invalid_alert", 422),
        "naive time": (card_debit(variables={**card_debit()["variables"], "time": "2026-05-01T10:15:00"}), "invalid_alert", 422),
        "wrong category": ({**card_debit(), "category": "marketing"}, "invalid_alert", 422),
        "ttl too long": ({**card_debit(), "ttl_seconds": 10**9}, "invalid_request", 400),
    }
    for name, (body, code, status) in cases.items():
        r = await signed(node, core, "POST", "/v1/notifications", body)
        assert (r.status_code, r.json()["code"]) == (status, code), (name, r.text)
    big = await signed(node, core, "POST", "/v1/notifications", {**card_debit(), "pad": "x" * 20000})
    assert big.status_code == 413


# --- the card-number guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    "merchant",
    [
        "4111111111111111",
        "Shop 4111 1111 1111 1111",
        "４１１１１１１１１１１１１１１１",  # full-width digits
        "4111\u200b1111\u200b1111\u200b1111",  # zero-width spaces between groups
        "Pay 5500-0000-0000-0004 now",
    ],
)
async def test_a_card_number_in_a_variable_is_refused(node: RunningNode, core: System, merchant: str) -> None:
    body = card_debit(variables={**card_debit()["variables"], "merchant": merchant})
    r = await signed(node, core, "POST", "/v1/notifications", body)
    assert r.status_code == 422 and r.json()["code"] == "card_number_detected", r.text
    assert "4111111111111111" not in r.text and "5500000000000004" not in r.text


# --- preferences, quiet hours, TTL, collapse -------------------------------------------------


async def test_mute_rules_security_cannot_be_muted_and_marketing_respects_the_opt_out(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    r = await _http(node, token, "PUT", "/v1/me/alert-preferences", json={"muted": ["security"]})
    assert r.status_code == 400 and "cannot be muted" in r.json()["detail"]
    r = await _http(node, token, "PUT", "/v1/me/alert-preferences", json={"muted": ["marketing", "transaction"]})
    assert r.status_code == 200 and r.json()["muted"] == ["marketing", "transaction"]
    assert (await _http(node, token, "GET", "/v1/me/alert-preferences")).json()["muted"] == ["marketing", "transaction"]
    phone = await RawClient.connect(node.ws_url, token)
    offer = await _send(node, core, {"recipient": "c.li", "template": "marketing.offer", "variables": {"headline": "Hi", "text": "3% cashback"}})
    debit = await _send(node, core, card_debit())
    assert offer["status"] == "suppressed" and offer["suppressed_reason"] == "muted"
    assert debit["status"] == "suppressed"
    security = await _send(node, core, {"recipient": "c.li", "template": "security.password_changed", "variables": {"time": "2026-05-01T10:15:00+08:00"}})
    assert security["status"] == "accepted"
    frame = (await phone.expect("alert"))["alert"]
    assert frame["alert_id"] == security["alert_id"] and frame["seq"] == 1  # suppressed alerts take no seq
    assert await phone.quiet("alert", 0.3)
    page = await _inbox(node, token, "all")
    assert [a["alert_id"] for a in page["alerts"]] == [security["alert_id"]] and page["unread"] == 1
    assert (await _status(node, core, offer["alert_id"]))["status"] == "suppressed"
    await phone.close()


async def test_quiet_hours_deliver_silently_except_security(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    now = time.gmtime()
    start = f"{now.tm_hour:02d}:{now.tm_min:02d}"
    end = f"{(now.tm_hour + 2) % 24:02d}:{now.tm_min:02d}"
    r = await _http(node, token, "PUT", "/v1/me/alert-preferences", json={"quiet_hours": {"start": start, "end": end}, "timezone": "UTC"})
    assert r.status_code == 200, r.text
    debit = await _send(node, core, card_debit())
    security = await _send(node, core, {"recipient": "c.li", "template": "security.new_device", "variables": {"device": "iPhone", "time": "2026-05-01T10:15:00+08:00"}})
    assert debit["silent"] is True and security["silent"] is False
    alerts = {a["alert_id"]: a for a in (await _inbox(node, token))["alerts"]}
    assert alerts[debit["alert_id"]]["silent"] is True and "silent" not in alerts[security["alert_id"]]


async def test_an_expired_alert_is_not_synced_and_its_status_says_expired(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    short = await _send(node, core, card_debit(ttl_seconds=3))
    keep = await _send(node, core, card_debit())
    assert (await _http(node, token, "GET", "/v1/inbox/unread")).json() == {"unread": 2, "last_seq": 2}
    await asyncio.sleep(3.2)
    page = await _inbox(node, token)
    assert [a["alert_id"] for a in page["alerts"]] == [keep["alert_id"]] and page["unread"] == 1
    phone = await RawClient.connect(node.ws_url, token)
    synced = await phone.request({"type": "sync_inbox", "since": 0})
    assert [a["alert_id"] for a in synced["alerts"]] == [keep["alert_id"]] and synced["cursor"] == 2 and synced["unread"] == 1
    status = await _status(node, core, short["alert_id"])
    assert status["status"] == "expired" and status["expired"] is True and status["delivered_at"] is None
    # the sweeper (every 10 s on every node; run here at once) takes it out of the stored
    # counter too, and the count stays exact
    assert await node.hub.alerting.store.sweep_expired() == 1
    assert await _swept(node, short["alert_id"])
    async with node.hub.db.connection("t") as conn:
        assert await conn.fetchval("SELECT unread FROM alert_inbox") == 1
    assert (await _http(node, token, "GET", "/v1/inbox/unread")).json() == {"unread": 1, "last_seq": 2}
    await phone.close()


async def _swept(node: RunningNode, alert_id: str) -> bool:
    async with node.hub.db.connection("t") as conn:
        return bool(await conn.fetchval("SELECT expired_at IS NOT NULL FROM alerts WHERE id = $1", uuid.UUID(alert_id)))


async def test_a_newer_alert_with_the_same_collapse_key_replaces_the_older(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    body = {"recipient": "c.li", "template": "service.statement_ready", "variables": {"account": "1234", "period": "April"}, "collapse_key": "statement:1234"}
    old = await _send(node, core, body)
    new = await _send(node, core, {**body, "variables": {"account": "1234", "period": "April (corrected)"}})
    frames = [(await phone.expect("alert"))["alert"] for _ in range(2)]
    assert frames[1]["alert_id"] == new["alert_id"] and frames[1]["replaces"] == old["alert_id"]
    page = await _inbox(node, token)
    assert [a["alert_id"] for a in page["alerts"]] == [new["alert_id"]] and page["unread"] == 1
    assert (await _status(node, core, old["alert_id"]))["status"] == "superseded"
    synced = await phone.request({"type": "sync_inbox", "since": 0})
    assert [a["alert_id"] for a in synced["alerts"]] == [new["alert_id"]]
    # in one batch only the last of a key stays
    r = await signed(node, core, "POST", "/v1/notifications/batch", {"notifications": [body, body, {**body, "variables": {"account": "1234", "period": "May"}}]})
    assert r.status_code == 201, r.text
    statuses = [n["status"] for n in r.json()["notifications"]]
    assert statuses == ["superseded", "superseded", "accepted"]
    page = await _inbox(node, token)
    assert len(page["alerts"]) == 1 and page["unread"] == 1 and "May" in page["alerts"][0]["text"]
    await phone.close()


# --- inbox state -------------------------------------------------------------------------------


async def test_inbox_read_archive_and_exact_unread_across_devices(node: RunningNode, core: System) -> None:
    token = await login(node, "c.li")
    phone = await RawClient.connect(node.ws_url, token)
    tablet = await RawClient.connect(node.ws_url, token)
    ids = [(await _send(node, core, card_debit()))["alert_id"] for _ in range(4)]
    answer = await phone.request({"type": "read_alerts", "alert_ids": [ids[0], ids[0], "not-an-id", str(uuid.uuid4())]})
    assert answer["type"] == "inbox_update" and answer["state"] == "read" and answer["alert_ids"] == [ids[0]] and answer["unread"] == 3
    other = await tablet.expect("inbox_update")
    assert other["alert_ids"] == [ids[0]] and other["unread"] == 3 and "id" not in other
    again = await phone.request({"type": "read_alerts", "alert_ids": [ids[0]]})
    assert again["alert_ids"] == [] and again["unread"] == 3
    r = await _http(node, token, "POST", "/v1/inbox/archive", json={"alert_ids": [ids[1]]})
    assert r.status_code == 200 and r.json()["unread"] == 2
    assert [a["alert_id"] for a in (await _inbox(node, token))["alerts"]] == [ids[3], ids[2], ids[0]]
    archived = (await _inbox(node, token, "archived"))["alerts"]
    assert [a["alert_id"] for a in archived] == [ids[1]] and archived[0]["state"] == "archived"
    assert [a["alert_id"] for a in (await _inbox(node, token, "unread"))["alerts"]] == [ids[3], ids[2]]
    r = await _http(node, token, "POST", "/v1/inbox/read", json={"up_to_seq": 4})
    assert r.json()["unread"] == 0 and sorted(r.json()["alert_ids"]) == sorted([ids[2], ids[3]])
    assert (await _status(node, core, ids[2]))["status"] == "read"
    # another customer cannot touch these
    zhou = await login(node, "c.zhou")
    r = await _http(node, zhou, "POST", "/v1/inbox/archive", json={"alert_ids": ids})
    assert r.status_code == 200 and r.json()["alert_ids"] == []
    assert (await _inbox(node, zhou, "all"))["alerts"] == []
    bad = await phone.request({"type": "read_alerts"})
    assert bad["type"] == "error" and bad["code"] == "invalid_frame"
    await phone.close()
    await tablet.close()


async def test_batch_is_all_or_nothing_and_names_the_bad_item(node: RunningNode, core: System) -> None:
    good = card_debit()
    bad = card_debit(variables={**card_debit()["variables"], "merchant": "4111111111111111"})
    r = await signed(node, core, "POST", "/v1/notifications/batch", {"notifications": [good, bad]})
    assert r.status_code == 422 and r.json()["code"] == "card_number_detected" and "notifications[1]" in r.json()["detail"]
    r = await signed(node, core, "POST", "/v1/notifications/batch", {"notifications": [good, card_debit("nobody.here")]})
    assert r.status_code == 404 and "notifications[1]" in r.json()["detail"]
    r = await signed(node, core, "POST", "/v1/notifications/batch", {"notifications": [good, card_debit("c.zhang"), card_debit()]})
    assert r.status_code == 201 and [n["recipient"] for n in r.json()["notifications"]] == ["c.li", "c.zhang", "c.li"]
    li = await login(node, "c.li")
    assert (await _inbox(node, li))["last_seq"] == 2  # the refused batches stored nothing
    r = await signed(node, core, "POST", "/v1/notifications/batch", {"notifications": [good] * 101})
    assert r.status_code == 400


async def test_operators_register_rotate_disable_and_notify_from_the_cli(node: RunningNode, dsn: str, key_file: str) -> None:
    import json
    import os
    import sys
    from pathlib import Path

    bankhub = str(Path(sys.executable).with_name("bankhub"))
    base_env = {**os.environ, "BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": key_file}

    async def run(*args: str, secret: str | None = None) -> tuple[int, str, str]:
        env = {**base_env, **({"BANKHUB_SYSTEM_SECRET": secret} if secret else {})}
        proc = await asyncio.create_subprocess_exec(bankhub, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, _ = await run("systems", "add", "cards-cli", "--categories", "transaction,security", "--rate", "20", "--description", "card platform")
    assert code == 0 and "categories transaction, security" in out
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("bhs_") and len(secret) == 47
    code, out, _ = await run("systems", "add", "cards-cli", "--categories", "transaction")
    assert code == 1
    code, out, _ = await run("systems", "list", "--json")
    listed = {s["name"]: s for s in json.loads(out)}
    assert listed["cards-cli"]["categories"] == ["transaction", "security"] and "bhs_" not in out
    notify = ["notify", "--hub", node.http_url, "--system", "cards-cli", "--to", "c.li", "--template", "card.debit"]
    notify += ["--var", "amount=12.50 CNY", "--var", "account=6222021234567890", "--var", "merchant=Tea House"]
    notify += ["--var", "time=2026-05-01T10:15:00+08:00", "--idempotency-key", "cli-1"]
    code, out, _ = await run(*notify, secret=secret)
    assert code == 0, out
    assert json.loads(out)["notification"]["status"] == "accepted"
    code, out, err = await run(*notify)
    assert code == 2 and "BANKHUB_SYSTEM_SECRET" in err
    code, out, _ = await run("systems", "rotate-secret", "cards-cli", "--grace-hours", "0")
    new_secret = out.strip().splitlines()[-1]
    assert code == 0 and new_secret.startswith("bhs_") and new_secret != secret
    code, out, _ = await run(*notify, secret=secret)
    assert code == 1 and json.loads(out)["code"] == "invalid_signature"
    code, out, _ = await run("systems", "disable", "cards-cli")
    assert code == 0
    code, out, _ = await run(*notify[:-1], "cli-2", secret=new_secret)
    assert code == 1 and json.loads(out)["code"] == "system_disabled"
    async with node.hub.db.connection("t") as conn:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log WHERE action LIKE 'alerts.%' ORDER BY seq")]
        details = await conn.fetch("SELECT details::text AS d FROM audit_log WHERE action LIKE 'alerts.%'")
    assert actions == ["alerts.system_added", "alerts.system_secret_rotated", "alerts.system_disabled"]
    assert all("bhs_" not in r["d"] for r in details)
