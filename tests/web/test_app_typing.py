"""Typing, presence and read receipts in real Chromium: c.li in the customer app, rm.wang in
the staff workbench, against a real node.

* c.li types to her RM: rm.wang's chat shows "正在输入…"; it clears when she clears the
  text, and when her message arrives.
* c.li sees her RM online (a dot on the RM's row) and her message turn 已读.
* The Me tab's privacy switch turns read receipts off (saved in the hub).
"""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


async def test_typing_shows_and_clears_in_the_staff_chat(browser: Browser, hub: RunningNode) -> None:
    errors = PageErrors()
    li_context, wang_context = await new_phone(browser, hub, errors), await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()

    await sign_in(wang, "rm.wang", "/staff/")
    await sign_in(li, "c.li")
    # my RM is online: a dot on the RM's row
    rm_row = li.get_by_role("button", name=re.compile("我的客户经理"))
    await expect(rm_row.locator(".presence-dot.online")).to_have_count(1)
    await rm_row.click()  # opens the direct conversation with my RM
    compose = li.get_by_label(re.compile("输入消息|Message"))
    await expect(compose).to_be_visible()

    # rm.wang opens the chat with c.li from her card
    card = wang.locator('.card.customer[data-username="c.li"]')
    await card.get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()
    indicator = wang.locator(".chat .typing-indicator")
    await expect(indicator).to_have_text("")

    # c.li types: rm.wang sees it; she clears the text: it clears
    await compose.press_sequentially("我想问")
    await expect(indicator).to_contain_text("正在输入")
    await expect(indicator).to_have_attribute("data-typing", "true")
    await compose.fill("")
    await expect(indicator).to_have_text("")

    # she types and sends: the indicator goes when her message arrives
    await compose.press_sequentially("理财产品的收益")
    await expect(indicator).to_contain_text("正在输入")
    await li.get_by_role("button", name=re.compile("^(发送|Send)$")).click()
    await expect(wang.get_by_role("log").get_by_text("理财产品的收益", exact=True)).to_have_count(1)
    await expect(indicator).to_have_text("")
    # rm.wang has it on screen: c.li's message turns 已读
    await expect(li.get_by_role("log").locator(".msg.mine .state")).to_have_text("已读")

    # the Me tab: read receipts off, saved in the hub
    await li.get_by_role("tab", name=re.compile("我")).click()
    switch = li.get_by_role("switch", name="发送已读回执")
    await expect(switch).to_be_checked()
    await switch.click()
    await expect(li.get_by_text("已保存")).to_be_visible()
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "c.li", "password": DEMO_PASSWORD})
        privacy = await http.get("/v1/me/privacy", headers={"authorization": f"Bearer {r.json()['token']}"})
        assert privacy.json()["share_read_receipts"] is False
    errors.assert_none()
    await li_context.close()
    await wang_context.close()
