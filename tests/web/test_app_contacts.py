"""Friends in real Chromium: c.li asks c.zhang to be her friend, c.zhang sees the request
live and accepts it in the app, they chat; c.li's invite code shows as text, link and a QR
code, and c.zhou adds her with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)
_axe = Axe()


async def _accessible(page: Page, name: str) -> None:
    """No serious or critical axe-core violation on the screen."""
    violations: list[dict[str, Any]] = (await _axe.run(page)).response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad)


async def _send(page: Page, text: str) -> None:
    await page.get_by_label(re.compile("输入消息|Message")).fill(text)
    await page.get_by_role("button", name=re.compile("^(发送|Send)$")).click()


async def _friends(page: Page) -> None:
    await page.get_by_role("button", name=re.compile("^好友")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("好友")


async def test_a_friend_request_accepted_then_a_chat(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li = await (await new_phone(browser, hub, errors)).new_page()
    zhang = await (await new_desktop(browser, hub, errors)).new_page()
    await sign_in(li, "c.li")
    await sign_in(zhang, "c.zhang")

    # c.li adds c.zhang by username: the answer never says whether the account exists
    await _friends(li)
    await li.get_by_label("添加方式").select_option("username")
    await li.get_by_label("用户名、手机号或邀请码").fill("c.zhang")
    await li.get_by_role("button", name="添加好友").click()
    await expect(li.locator(".contacts-status")).to_have_text("请求已发出：对方可以添加时会收到您的请求")
    await expect(li.locator("#contacts-outgoing")).to_contain_text("c.zhang")
    await li.screenshot(path=shots / "01-request-sent.png")

    # c.zhang sees it live (the Friends button counts it) and accepts in the app
    await expect(zhang.get_by_role("button", name="好友（1 个新请求）")).to_be_visible()
    await _friends(zhang)
    incoming = zhang.get_by_role("region", name=re.compile("好友请求"))
    await expect(incoming.get_by_text("Li Lei 请求添加您为好友")).to_be_visible()
    await zhang.screenshot(path=shots / "02-request-received.png")
    await _accessible(zhang, "friends screen with a request")
    await zhang.get_by_role("button", name="接受 Li Lei 的好友请求").click()
    await expect(zhang.locator(".contacts-status")).to_have_text("Li Lei 已成为您的好友")
    friends = zhang.get_by_role("region", name=re.compile("我的好友"))
    await expect(friends.locator('[data-username="c.li"]')).to_be_visible()

    # c.li's screen follows live: c.zhang is her friend, the request gone
    li_friends = li.get_by_role("region", name=re.compile("我的好友"))
    await expect(li_friends.locator('[data-username="c.zhang"]')).to_be_visible()
    await expect(li.locator("#contacts-outgoing")).to_have_count(0)

    # they chat
    await li.get_by_role("button", name="与 Zhang Wei 聊天").click()
    await expect(li.get_by_role("heading", level=1)).to_have_text("Zhang Wei")
    await _send(li, "周末有空吗？")
    await zhang.get_by_role("button", name="‹ 返回").click()
    row = zhang.get_by_role("button", name=re.compile("Li Lei"))
    await row.click()
    await expect(zhang.get_by_role("log").get_by_text("周末有空吗？", exact=True)).to_have_count(1)
    await _send(zhang, "有的，一起喝茶！")
    await expect(li.get_by_role("log").locator(".msg.theirs").get_by_text("有的，一起喝茶！", exact=True)).to_have_count(1)
    await li.screenshot(path=shots / "03-friends-chat.png")
    errors.assert_none()


async def test_an_invite_code_as_qr_and_text(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li = await (await new_phone(browser, hub, errors)).new_page()
    zhou = await (await new_desktop(browser, hub, errors)).new_page()
    await sign_in(li, "c.li")
    await sign_in(zhou, "c.zhou")
    await _friends(li)
    await li.get_by_role("button", name="显示我的邀请码").click()
    qr = li.get_by_role("img", name="我的邀请二维码")
    await expect(qr).to_be_visible()
    code = (await li.locator(".invite-code").text_content()) or ""
    assert re.fullmatch(r"[0-9A-Z]{16}", code), code
    await expect(li.locator(".invite-link")).to_have_text(f"bankhub://contact/{code}")
    # a version-3 code (29 modules) in a 4-module quiet zone, drawn as one path
    assert await qr.get_attribute("viewBox") == "0 0 37 37"
    assert (await qr.locator("path").get_attribute("d") or "").startswith("M4 4h1v1h-1z")
    await li.screenshot(path=shots / "04-invite-code.png")
    await _accessible(li, "friends screen with an invite code")

    # c.zhou redeems it (pasted as the link): friends at once, on both screens
    await _friends(zhou)
    await zhou.get_by_label("添加方式").select_option("code")
    await zhou.get_by_label("用户名、手机号或邀请码").fill(f"bankhub://contact/{code}")
    await zhou.get_by_role("button", name="添加好友").click()
    await expect(zhou.locator(".contacts-status")).to_have_text("Li Lei 已成为您的好友")
    await expect(li.get_by_role("region", name=re.compile("我的好友")).locator('[data-username="c.zhou"]')).to_be_visible()
    # the code works once (the refused redemption is the documented 404)
    errors.allow(r"status of 404 .*/v1/contacts/invites/redeem")
    await zhou.get_by_label("用户名、手机号或邀请码").fill(code)
    await zhou.get_by_role("button", name="添加好友").click()
    await expect(zhou.get_by_role("alert").filter(has_text="邀请码")).to_have_text("邀请码无效、已使用或已过期")
    errors.assert_none()
