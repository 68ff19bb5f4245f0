"""The customer app at a phone viewport (375×812): each main screen (Messages, a chat, Discover
and a feed, Services with the desk, the alerts inbox and its preferences, Me), in Chinese and
in English, has no serious or critical axe-core violation, and a screenshot is kept of each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_phone, sign_in

expect.set_options(timeout=20_000)
_axe = Axe()


async def _check(page: Page, shots: Path, name: str) -> None:
    await page.screenshot(path=shots / f"{name}.png")
    results = await _axe.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )


async def test_every_main_screen_is_accessible_at_a_phone_viewport(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    page = await context.new_page()
    await page.goto("/app/")
    await expect(page.get_by_label("用户名")).to_be_focused()
    await _check(page, shots, "01-sign-in")

    # a wrong password is announced (role=alert) and focus goes back to the password
    errors.allow(r"status of 401 .*/v1/web/sessions$")
    await page.get_by_label("用户名").fill("c.li")
    await page.get_by_label("密码").fill("not-the-password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    await expect(page.get_by_label("密码")).to_be_focused()
    await _check(page, shots, "02-sign-in-refused")

    await sign_in(page, "c.li")
    await _check(page, shots, "03-messages")
    await page.get_by_role("button", name=re.compile("我的客户经理")).click()
    await page.get_by_label("输入消息").fill("您好")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("log").get_by_text("您好", exact=True)).to_have_count(1)
    await expect(page.get_by_role("log").locator(".msg.mine .state")).to_have_text("已送达")
    await _check(page, shots, "04-chat")

    # the tabs are a keyboard tablist: arrows move between them
    tab = page.get_by_role("tab", name="消息")
    await tab.focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("tab", name="发现")).to_be_focused()
    await expect(page.get_by_role("tab", name="发现")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_role("region", name="我关注的").get_by_role("button", name=re.compile("^Bank Service"))).to_be_visible()
    await expect(page.get_by_role("list", name="官方账号").get_by_role("listitem").first).to_be_visible()
    await _check(page, shots, "05-discover")
    await page.get_by_role("region", name="我关注的").get_by_role("button", name=re.compile("^Bank Service")).click()
    await expect(page.get_by_text("还没有通知")).to_be_visible()
    await _check(page, shots, "05-discover-feed")
    await page.get_by_role("tab", name="功能").click()
    await expect(page.get_by_role("button", name=re.compile("^在线客服"))).to_be_visible()
    await _check(page, shots, "06-services")
    # the service desk with the bot's greeting
    await page.get_by_role("button", name=re.compile("^在线客服")).click()
    await page.get_by_role("button", name="咨询客服").click()
    await expect(page.get_by_role("log").locator('[data-event="bot_greeting"]')).to_be_visible()
    await _check(page, shots, "06-services-desk")
    # the alerts inbox and its preferences
    await page.get_by_role("button", name=re.compile("返回")).click()
    await page.get_by_role("button", name=re.compile("^动账提醒")).click()
    await expect(page.get_by_text("没有提醒")).to_be_visible()
    await _check(page, shots, "06-services-inbox")
    await page.get_by_role("button", name="提醒设置").click()
    await expect(page.get_by_role("switch", name="接收安全提醒")).to_be_disabled()
    await _check(page, shots, "06-services-preferences")
    await page.get_by_role("tab", name="我", exact=True).click()
    await expect(page.get_by_text("Li Lei")).to_be_visible()
    await expect(page.get_by_role("list", name="已登录设备").get_by_text("本设备")).to_be_visible()
    await expect(page.locator(".rm-status")).to_have_text("在线")
    await _check(page, shots, "07-me")

    # English, remembered across a reload
    await page.get_by_role("button", name="Switch to English").click()
    await expect(page.get_by_role("tab", name="Me", exact=True)).to_have_attribute("aria-selected", "true")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.reload()
    await page.get_by_role("tab", name="Messages").click()
    await _check(page, shots, "08-messages-en")
    await page.get_by_role("tab", name="Discover").click()
    await expect(page.get_by_role("region", name="Following")).to_be_visible()
    await _check(page, shots, "09-discover-en")
    await page.get_by_role("tab", name="Services").click()
    await page.get_by_role("button", name=re.compile("^Customer service")).click()
    await expect(page.locator(".desk-status")).to_have_text("Our assistant is answering")
    await _check(page, shots, "10-services-desk-en")

    # sign out: back to the form, and the session is gone on the server too
    await page.get_by_role("tab", name="Me", exact=True).click()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert not any(c["name"] == "bankhub_session" for c in await context.cookies())
    r = await page.request.get("/v1/web/session")
    assert r.status == 401
    errors.assert_none()
    await context.close()
