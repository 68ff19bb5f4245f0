"""Verified service cards in real Chromium: rm.wang sends c.li a card from the workbench's
form; c.li's app shows it with the "已验证 · 工商银行" badge (the hub's Ed25519 signature,
checked in the browser with WebCrypto), a gated card's action disabled with the reason, and
a `bankhub://` action handled in the app. A forged copy of the card — injected into the
history the app loads, altered or moved to another message — shows no badge and says it is
not verified. An official-account notice shows the badge too."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, Route, expect

from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)

TITLE = "七日理财 7-day wealth"
GATED = "房贷预约 Mortgage appointment"


async def _send_card(wang: Page, title: str, *, value: str, url: str, classes: list[str], template: str = "offer") -> None:
    chat = wang.locator("section.chat")
    compose = chat.locator("details.card-compose")
    if await compose.get_attribute("open") is None:
        await compose.locator("summary").click()
    await chat.get_by_label("卡片类型").select_option(template)
    await chat.get_by_label("标题", exact=True).fill(title)
    await chat.get_by_label("第 1 行标签").fill("年化收益 Yield")
    await chat.get_by_label("第 1 行内容").fill(value)
    await chat.get_by_label("按钮文字").fill("立即办理")
    await chat.get_by_label(re.compile("^按钮链接")).fill(url)
    for c in classes:
        await chat.get_by_label(f"{c} 类户", exact=True).check()
    await chat.get_by_role("button", name="发送卡片").click()
    await expect(chat.locator(".card-status")).to_have_text("卡片已发送")


async def test_rm_card_shows_verified_to_the_customer_and_a_forged_copy_does_not(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    wang_context = await new_desktop(browser, hub, errors)
    li_context = await new_phone(browser, hub, errors)
    wang, li = await wang_context.new_page(), await li_context.new_page()

    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    await sign_in(wang, "rm.wang", "/staff/")
    await wang.locator('.card.customer[data-username="c.li"]').get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()

    # a card for class I accounts (c.li is class I) and one for class II only
    await _send_card(wang, TITLE, value="2.35%", url="bankhub://services/wealth/7d", classes=["I"])
    await _send_card(wang, GATED, value="3.10%", url="https://www.icbc.com.cn/mortgage", classes=["II"], template="appointment")

    log = li.get_by_role("log")
    card = log.locator(".svc-card", has_text=TITLE)
    await expect(card.locator(".verified-badge")).to_have_text("已验证 · 工商银行")
    await expect(card).to_have_attribute("data-verified", "true")
    await expect(card).to_contain_text("2.35%")
    gated = log.locator(".svc-card", has_text=GATED)
    await expect(gated.locator(".verified-badge")).to_have_text("已验证 · 工商银行")
    await expect(gated.get_by_role("button", name="立即办理")).to_be_disabled()
    await expect(gated.locator(".card-gate")).to_have_text(re.compile("您的账户（I 类）不可办理：仅限 II 类账户"))
    await li.screenshot(path=shots / "01-verified-card.png")
    # the sender's workbench shows the badge too
    await expect(wang.get_by_role("log").locator(".svc-card", has_text=TITLE).locator(".verified-badge")).to_have_text("已验证 · 工商银行")
    await wang.screenshot(path=shots / "02-rm-sent-card.png")

    # the bankhub:// action is handled in the app: it opens the Services tab
    await card.get_by_role("link", name="立即办理").click()
    await expect(li.get_by_role("tab", name=re.compile("功能"))).to_have_attribute("aria-selected", "true")

    # forged copies injected into the history the app loads: one altered, one moved to another message
    async def forge(route: Route) -> None:
        response = await route.fetch()
        page: dict[str, Any] = await response.json()
        real = next(m for m in page["messages"] if m["body"].get("kind") == "card" and m["body"]["title"] == TITLE)
        altered = copy.deepcopy(real)
        altered["body"]["title"] = "七日理财 7-day wealth（伪）"
        altered["body"]["fields"][0]["value"] = "23.5%"
        moved = copy.deepcopy(real)  # the very same body and signature, on another message
        top = max(m["seq"] for m in page["messages"])
        for i, forged in enumerate((altered, moved), start=1):
            forged["seq"] = top + i
            forged["message_id"] = real["message_id"][:-12] + f"{i:012d}"
            forged["client_msg_id"] = f"forged-{i}"
        page["messages"] = [moved, altered, *page["messages"]]
        await route.fulfill(response=response, json=page)

    await li.route(re.compile(r".*/v1/conversations/[^/]+/messages.*"), forge)
    await li.reload()
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    cards = li.get_by_role("log").locator(".svc-card")
    await expect(cards).to_have_count(4)
    await expect(li.get_by_role("log").locator(".verified-badge.ok")).to_have_count(2)  # the two real cards only
    forged_altered = cards.filter(has_text="（伪）")
    await expect(forged_altered).to_have_attribute("data-verified", "false")
    await expect(forged_altered.locator(".verified-badge")).to_have_text(re.compile("未验证"))
    await expect(forged_altered.get_by_role("button", name="立即办理")).to_be_disabled()  # never acted on
    await expect(forged_altered.get_by_role("link")).to_have_count(0)
    forged_moved = cards.nth(2)  # seqs order the log: the real two, then the altered, then the moved copy
    await expect(forged_moved).to_have_attribute("data-verified", "false")
    await expect(forged_moved).to_contain_text(TITLE)
    await expect(forged_moved.locator(".verified-badge.ok")).to_have_count(0)
    await li.screenshot(path=shots / "03-forged-copies.png")
    errors.assert_none()


async def test_official_account_notice_shows_the_verified_badge(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li = await (await new_phone(browser, hub, errors)).new_page()
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "ho.admin", "password": DEMO_PASSWORD})
        headers = {"authorization": f"Bearer {r.json()['token']}"}
        found = (await http.get("/v1/accounts", params={"q": "bank.service"}, headers=headers)).json()["accounts"]
        account = next(a["id"] for a in found if a["handle"] == "bank.service")
        r = await http.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "五一假期营业安排"}}, headers=headers)
        assert r.status_code == 201, r.text
    await sign_in(li, "c.li")
    await li.get_by_role("tab", name=re.compile("发现")).click()
    await li.get_by_role("button", name=re.compile("Bank Service")).first.click()
    notice = li.locator(".notice", has_text="五一假期营业安排")
    await expect(notice.locator(".verified-badge")).to_have_text("已验证 · 工商银行")
    await li.screenshot(path=shots / "04-verified-notice.png")
    errors.assert_none()
