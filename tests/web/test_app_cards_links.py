"""A card's links in real Chromium: none is live until the card's signature verifies.

rm.wang sends c.li a signed card; c.li's app is kept from learning the hub's signing keys
(the request is held), so the check cannot finish: the card's actions stay disabled buttons,
never links. Once the keys arrive and the signature verifies, the links go live. A forged
copy whose link hides another host behind a backslash never gets one.
"""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Route, expect

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient
from .conftest import PageErrors, new_phone, sign_in

expect.set_options(timeout=20_000)

TITLE = "账单提醒 Link check"
CARD: dict[str, Any] = {
    "kind": "card",
    "template": "bill_reminder",
    "title": TITLE,
    "fields": [{"label": "应还 Due", "value": "¥1,280.00"}],
    "actions": [{"label": "去还款", "url": "https://www.icbc.com.cn/pay"}],
}


async def test_card_links_are_live_only_once_the_signature_verifies(browser: Browser, hub: RunningNode, shots: Path) -> None:
    li_token, wang_token = await login(hub, "c.li"), await login(hub, "rm.wang")
    cid = await open_direct(hub, li_token, "rm.wang")
    wang = await RawClient.connect(hub.ws_url, wang_token)
    try:
        sent = await wang.request({"type": "send", "conversation_id": cid, "client_msg_id": "link-check-1", "body": CARD})
        assert sent["type"] == "sent", sent
    finally:
        await wang.close()

    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    li = await context.new_page()
    held: list[Route] = []
    release = asyncio.Event()

    async def hold_keys(route: Route) -> None:
        held.append(route)
        await release.wait()
        await route.continue_()

    # a forged copy whose link reads as www.icbc.com.cn to a naive parser and opens evil.example in a browser
    async def forge(route: Route) -> None:
        response = await route.fetch()
        page: dict[str, Any] = await response.json()
        real = next(m for m in page["messages"] if m["body"].get("kind") == "card" and m["body"]["title"] == TITLE)
        forged = copy.deepcopy(real)
        forged["body"]["title"] = TITLE + "（伪）"
        forged["body"]["actions"][0]["url"] = "https://evil.example\\.icbc.com.cn/pay"
        forged["seq"] = max(m["seq"] for m in page["messages"]) + 1
        forged["message_id"] = real["message_id"][:-12] + "000000000009"
        forged["client_msg_id"] = "forged-link"
        page["messages"] = [forged, *page["messages"]]
        await route.fulfill(response=response, json=page)

    await li.route(re.compile(r".*/v1/signing-keys.*"), hold_keys)
    await li.route(re.compile(r".*/v1/conversations/[^/]+/messages.*"), forge)
    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    log = li.get_by_role("log")
    card = log.locator(".svc-card", has_text=TITLE).filter(has_not_text="（伪）")
    forged_card = log.locator(".svc-card", has_text="（伪）")
    await expect(card).to_have_count(1)
    await expect(forged_card).to_have_count(1)
    for _ in range(200):  # the keys are on their way, and held
        if held:
            break
        await asyncio.sleep(0.05)
    assert held, "the app never asked for the signing keys"

    # not verified yet: no live link anywhere, the action a disabled button
    await expect(card.get_by_role("link")).to_have_count(0)
    await expect(card.get_by_role("button", name="去还款")).to_be_disabled()
    await expect(forged_card.get_by_role("link")).to_have_count(0)
    await li.screenshot(path=shots / "01-checking.png")

    release.set()
    await expect(card).to_have_attribute("data-verified", "true")
    link = card.get_by_role("link", name="去还款")
    await expect(link).to_have_attribute("href", "https://www.icbc.com.cn/pay")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    # the forged copy: not verified, and its backslash link is never made clickable
    await expect(forged_card).to_have_attribute("data-verified", "false")
    await expect(forged_card.get_by_role("link")).to_have_count(0)
    await expect(forged_card.get_by_role("button", name="去还款")).to_be_disabled()
    await li.screenshot(path=shots / "02-verified.png")
    await context.close()
    errors.assert_none()
