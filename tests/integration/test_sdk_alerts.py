"""The SDK's alert surface on a real hub: SystemClient (signed), Alert events, inbox methods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bankhub.runner import RunningNode
from bankhub_client import Alert, Api, ApiError, Client, ClientOptions, InboxUpdate, SystemClient

from ..conftest import login
from ..support.alerts import register

pytestmark = pytest.mark.timeout(60)

VARS: dict[str, Any] = {
    "amount": {"amount": "88.00", "currency": "CNY"},
    "account": "6222021234567890",
    "merchant": "Book Store",
    "time": "2026-05-01T10:15:00+08:00",
}


async def next_of(client: Client, kind: type[Any], timeout: float = 5.0) -> Any:
    async def first() -> Any:
        async for event in client.events():
            if isinstance(event, kind):
                return event
        raise AssertionError("events ended")

    return await asyncio.wait_for(first(), timeout)


async def test_a_system_sends_and_the_customers_client_yields_the_alert(node: RunningNode) -> None:
    system = await register(node)
    token = await login(node, "c.li")
    async with SystemClient(node.http_url, system.name, system.secret) as core, Client.connect(node.http_url, token=token) as phone:
        assert phone.inbox_cursor == 0
        sent = await core.send("c.li", "card.debit", VARS, idempotency_key="txn-42")
        assert sent.status == "accepted" and not sent.replayed
        alert = await next_of(phone, Alert)
        assert alert.alert_id == sent.alert_id and alert.seq == 1 and "尾号7890" in alert.text
        assert phone.inbox_cursor == 1
        again = await core.send("c.li", "card.debit", VARS, idempotency_key="txn-42")
        assert again.replayed and again.alert_id == sent.alert_id
        status = await core.status(sent.alert_id)
        assert status.status in ("accepted", "delivered") and status.recipient == "c.li"
        update = await phone.read_alerts([alert.alert_id])
        assert isinstance(update, InboxUpdate) and update.unread == 0 and update.alert_ids == [alert.alert_id]
        assert (await core.status(sent.alert_id)).status == "read"
    bad = SystemClient(node.http_url, system.name, system.secret + "x")
    with pytest.raises(ApiError) as info:
        await bad.send("c.li", "card.debit", VARS)
    assert info.value.status == 401 and info.value.code == "invalid_signature"
    await bad.aclose()


async def test_alerts_sent_while_away_arrive_on_reconnect_once_and_in_order(node: RunningNode) -> None:
    system = await register(node)
    token = await login(node, "c.li")
    async with SystemClient(node.http_url, system.name, system.secret) as core:
        first = [await core.send("c.li", "card.debit", VARS) for _ in range(2)]
        # a fresh client without a cursor starts at the inbox's current position ...
        async with Client.connect(node.http_url, token=token) as phone:
            assert phone.inbox_cursor == 2
            live = await core.send("c.li", "card.debit", VARS)
            assert (await next_of(phone, Alert)).alert_id == live.alert_id
            saved = phone.inbox_cursor
        away = [await core.send("c.li", "card.debit", VARS) for _ in range(3)]
        # ... a client resuming from a saved cursor gets what it missed, then live ones
        async with Client.connect(node.http_url, token=token, options=ClientOptions(inbox_cursor=saved, sync_limit=2)) as phone:
            got = [await next_of(phone, Alert) for _ in range(3)]
            assert [a.alert_id for a in got] == [a.alert_id for a in away] and [a.seq for a in got] == [4, 5, 6]
            await core.send("c.li", "card.debit", VARS)
            assert (await next_of(phone, Alert)).seq == 7
        # and sync_on_connect with no cursor yields the whole inbox
        async with Client.connect(node.http_url, token=token, options=ClientOptions(sync_on_connect=True)) as phone:
            assert [(await next_of(phone, Alert)).alert_id for _ in range(2)] == [a.alert_id for a in first]


async def test_inbox_and_preferences_over_http_and_updates_across_devices(node: RunningNode) -> None:
    system = await register(node)
    token = await login(node, "c.li")
    async with SystemClient(node.http_url, system.name, system.secret) as core, Api(node.http_url, token) as api:
        with pytest.raises(ApiError) as info:
            await api.set_alert_preferences(muted=["security"])
        assert info.value.status == 400
        prefs = await api.set_alert_preferences(muted=["marketing"], quiet_hours=("23:00", "06:30"), locale="en", timezone="Asia/Hong_Kong")
        assert prefs.muted == ["marketing"] and prefs.quiet_hours is not None and prefs.quiet_hours.start == "23:00"
        assert (await api.alert_preferences()).locale == "en"
        offer = await core.send("c.li", "marketing.offer", {"headline": "Hi", "text": "Cashback"})
        assert offer.status == "suppressed"
        sent = [await core.send("c.li", "card.debit", VARS) for _ in range(3)]
        page = await api.inbox(limit=2)
        assert [a.alert_id for a in page.alerts] == [sent[2].alert_id, sent[1].alert_id] and page.has_more and page.unread == 3
        assert page.alerts[0].text.startswith("Your card ending 7890")
        rest = await api.inbox(before_seq=page.alerts[-1].seq)
        assert [a.alert_id for a in rest.alerts] == [sent[0].alert_id] and not rest.has_more
        async with Client.connect(node.http_url, token=token) as tablet:
            archived = await api.archive_alerts([sent[0].alert_id])
            assert archived.unread == 2
            assert (await next_of(tablet, InboxUpdate)).alert_ids == [sent[0].alert_id]
            read = await api.mark_alerts_read(up_to_seq=3)
            assert read.unread == 0 and (await api.unread_alerts()).unread == 0
        assert [a.alert_id for a in (await api.inbox("archived")).alerts] == [sent[0].alert_id]
        batch = await core.send_batch([{"recipient": "c.li", "template": "card.debit", "variables": VARS}] * 2)
        assert [n.status for n in batch] == ["accepted", "accepted"]
