"""The Python SDK with verified service cards and signed notices: a card from rm.wang
arrives at c.li's client as a :class:`CardBody` that verifies with the published keys; a
moved or altered copy does not; an official-account notice verifies, a look-alike does not."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from bankhub.runner import RunningNode
from bankhub_client import (
    Api,
    ApiError,
    ArticleBody,
    CardAction,
    CardBody,
    CardField,
    Client,
    Message,
    NewCard,
    Notice,
    ProtocolError,
    card_actions_allowed,
    login,
    verify_card,
)

from ..support.ids import other_id


pytestmark = pytest.mark.asyncio


async def _next(c: Client, kind: type, timeout: float = 5.0) -> Any:
    async def first() -> Any:
        async for event in c.events():
            if isinstance(event, kind):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_sdk_verifies_a_card_and_rejects_moved_and_altered_copies(node: RunningNode) -> None:
    li = await login(node.http_url, "c.li", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c:
        conv = await c.open_direct("rm.wang")
        wang_session = await login(node.http_url, "rm.wang", "bankhub-demo")
        async with Client.connect(node.http_url, token=wang_session.token) as wang:
            card = NewCard(
                template="bill_reminder",
                title="信用卡账单 Card bill",
                fields=[CardField(label="应还 Due", value="¥1,280.00")],
                actions=[CardAction(label="Pay", url="bankhub://cards/pay")],
                classes=["I", "II"],
            )
            mine = await wang.send_card(conv, card)
            # the sender's own copy is the hub's signed body, and verifies
            assert isinstance(mine.body, CardBody) and mine.body.signature is not None
            checked_mine = (await wang.verified(mine)).body
            assert isinstance(checked_mine, CardBody) and checked_mine.verified is True
            with pytest.raises(ProtocolError) as refused:
                await c.send_card(conv, card)  # a customer's card
            assert refused.value.code == "forbidden"
            with pytest.raises(ProtocolError) as off_list:
                await wang.send_card(conv, NewCard(template="offer", title="x", actions=[CardAction(label="Go", url="https://evil.example/")]))
            assert off_list.value.code == "invalid_frame"
        got: Message = await _next(c, Message)
        assert isinstance(got.body, CardBody) and got.body.title == "信用卡账单 Card bill" and got.body.verified is None
        assert card_actions_allowed(got.body, "I") and not card_actions_allowed(got.body, "III")
        checked = await c.verified(got)
        assert isinstance(checked.body, CardBody) and checked.body.verified is True
        keys = await c.signing_keys()
        assert verify_card(got, keys)
        moved = msgspec.structs.replace(got, conversation_id=other_id(conv))
        altered = msgspec.structs.replace(
            got, body=msgspec.structs.replace(got.body, data={**got.body.data, "title": "信用卡账单 Card bi11"})
        )
        for forged in (moved, altered):
            result = await c.verified(forged)
            assert isinstance(result.body, CardBody) and result.body.verified is False
        # history over HTTP decodes the same card
        page = await c.api.history(conv)
        assert verify_card(page.messages[-1], keys)


async def test_sdk_verifies_a_notice_and_rejects_a_look_alike(node: RunningNode) -> None:
    li = await login(node.http_url, "c.li", "bankhub-demo")
    ho = await login(node.http_url, "ho.admin", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c:
        await c.sync()
        async with Api(node.http_url, token=ho.token) as admin:
            account = next(a for a in await admin.accounts("bank.service") if a.handle == "bank.service")
            await admin.publish_notice(account.id, ArticleBody(title="Fee change", summary="From May"))
        notice: Notice = await _next(c, Notice)
        assert notice.signature is not None and await c.verify_notice(notice)
        look_alike = msgspec.structs.replace(notice, account_id=other_id(notice.account_id))
        assert not await c.verify_notice(look_alike)
        assert not await c.verify_notice(msgspec.structs.replace(notice, body_data={**(notice.body_data or {}), "title": "Fee refund"}))


async def test_a_bank_system_sends_a_card_with_the_system_client(node: RunningNode) -> None:
    from bankhub_client import SystemClient

    from ..support.alerts import register

    system = await register(node, "appointments", ("service",))
    li = await login(node.http_url, "c.li", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c, SystemClient(node.http_url, system.name, system.secret) as sc:
        card = NewCard(template="appointment", title="网点预约 Branch visit", fields=[CardField(label="时间 Time", value="5月2日 10:00")])
        sent = await sc.send_card("c.li", card, idempotency_key="visit-1")
        assert not sent.duplicate and (await sc.send_card("c.li", card, idempotency_key="visit-1")).duplicate
        got: Message = await _next(c, Message)
        assert got.message_id == sent.message_id and isinstance(got.body, CardBody)
        checked = (await c.verified(got)).body
        assert isinstance(checked, CardBody) and checked.verified is True
        with pytest.raises(ApiError) as refused:  # not registered for marketing: no offers
            await sc.send_card("c.li", NewCard(template="offer", title="x"))
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
