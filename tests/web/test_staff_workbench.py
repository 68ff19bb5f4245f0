"""The staff workbench /staff/ in real Chromium, desktop-first, against a real node.

* rm.wang's book shows c.li's profile card; a chat from the workbench with c.li (in the
  customer app) works both ways live, with the unread count and the pending state.
* br.admin hands c.zhang to another RM of the branch, then that RM's whole book back: the
  admin's view and rm.wang's own workbench change; a handover out of the branch is refused.
* Only staff: a customer who signs in is told the workbench is for staff, and the hub's
  policy refuses the workbench's calls to them anyway.
* Each main screen has no serious or critical axe-core violation; screenshots are kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)
_axe = Axe()


async def check_screen(page: Page, shots: Path, name: str) -> None:
    """Screenshot ``name`` and fail on any serious or critical axe-core violation."""
    await page.screenshot(path=shots / f"{name}.png")
    results = await _axe.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )


async def send_in(page: Page, text: str) -> None:
    """Type ``text`` into the open chat's composer and send it."""
    await page.get_by_label(re.compile("输入消息|Message")).fill(text)
    await page.get_by_role("button", name=re.compile("^(发送|Send)$")).click()


async def once_in_log(page: Page, *texts: str) -> None:
    for text in texts:
        await expect(page.get_by_role("log").get_by_text(text, exact=True)).to_have_count(1)


async def bearer(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/v1/sessions", json={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


async def test_rm_book_shows_card_and_chats_live_with_the_customer(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    wang_context = await new_desktop(browser, hub, errors)
    li_context = await new_phone(browser, hub, errors)
    wang, li = await wang_context.new_page(), await li_context.new_page()

    await wang.goto("/staff/")
    await expect(wang.get_by_label("用户名")).to_be_focused()
    await check_screen(wang, shots, "01-sign-in")
    await sign_in(wang, "rm.wang", "/staff/")
    await expect(wang.get_by_role("tab", name="我的客户")).to_have_attribute("aria-selected", "true")

    # the book: c.li's card with branch, segment and account class
    card = wang.locator('.card.customer[data-username="c.li"]')
    await expect(card).to_contain_text("Li Lei")
    await expect(card).to_contain_text("Beijing Branch（BJ）")
    await expect(card).to_contain_text("wealth")
    await expect(card.locator(".account-class")).to_have_text(re.compile(r"^(I|II|III) 类户$"))
    await expect(wang.locator('.card.customer[data-username="c.zhang"]')).to_contain_text("Haidian Sub-branch")
    await check_screen(wang, shots, "02-rm-book")

    # c.li writes from the app: rm.wang's card counts it unread, live
    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    await send_in(li, "王经理，我想咨询理财产品。")
    await once_in_log(li, "王经理，我想咨询理财产品。")
    chat_button = card.get_by_role("button", name=re.compile("与 Li Lei 聊天"))
    await expect(chat_button).to_have_accessible_name(re.compile("1 条未读"))
    await expect(card.locator(".last")).to_contain_text("王经理，我想咨询理财产品。")

    # the chat from the workbench: history, read state, replies both ways live
    await chat_button.click()
    await once_in_log(wang, "王经理，我想咨询理财产品。")
    await expect(chat_button).not_to_have_accessible_name(re.compile("未读"))
    await expect(li.get_by_role("log").locator(".msg.mine .state")).to_have_text("已读")
    await send_in(wang, "好的，明天上午给您电话介绍。")
    await once_in_log(li, "好的，明天上午给您电话介绍。")
    await once_in_log(wang, "好的，明天上午给您电话介绍。")
    await send_in(li, "谢谢！")
    await once_in_log(wang, "谢谢！")
    await check_screen(wang, shots, "03-rm-chat")

    # offline, rm.wang's send is pending, then goes out once
    errors.allow(r"ERR_INTERNET_DISCONNECTED|WebSocket|Failed to load resource|net::")
    await wang_context.set_offline(True)
    await expect(wang.get_by_role("status").filter(has_text=re.compile("离线|连接中|已断开"))).to_have_count(1)
    await send_in(wang, "离线时写的回复")
    await expect(wang.get_by_role("log").locator(".msg.pending")).to_contain_text("发送中")
    await wang_context.set_offline(False)
    await expect(wang.get_by_role("log").locator(".msg.pending")).to_have_count(0)
    await once_in_log(li, "离线时写的回复")
    await once_in_log(wang, "离线时写的回复")

    # availability: away with an auto-reply; c.li's next message gets it once
    await wang.get_by_label("我的状态").select_option("away")
    await wang.get_by_label(re.compile("自动回复")).fill("我在开会，下午三点后回复您。")
    await wang.get_by_role("button", name="保存").click()
    await expect(wang.get_by_text("已保存：暂时离开")).to_be_visible()
    await send_in(li, "还在吗？")
    await once_in_log(li, "我在开会，下午三点后回复您。")
    await once_in_log(wang, "我在开会，下午三点后回复您。")
    await wang.reload()
    await expect(wang.get_by_label("我的状态")).to_have_value("away")
    await expect(wang.get_by_label(re.compile("自动回复"))).to_have_value("我在开会，下午三点后回复您。")
    errors.assert_none()
    await wang_context.close()
    await li_context.close()


async def test_branch_admin_hands_over_a_customer_and_a_book(browser: Browser, hub: RunningNode, shots: Path) -> None:
    # a second RM in the Beijing branch, made by the branch admin through the API
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        admin = await bearer(http, "br.admin")
        r = await http.post(
            "/v1/users",
            headers=admin,
            json={"username": "rm.liu", "display_name": "Liu (Relationship Manager)", "role": "rm", "org": "BJ", "password": DEMO_PASSWORD},
        )
        assert r.status_code == 201, r.text

    errors = PageErrors()
    admin_context = await new_desktop(browser, hub, errors)
    wang_context = await new_desktop(browser, hub, errors)
    page, wang = await admin_context.new_page(), await wang_context.new_page()
    await sign_in(wang, "rm.wang", "/staff/")
    zhang_on_wang = wang.locator('.card.customer[data-username="c.zhang"]')
    # rm.wang opens a chat with c.zhang from the card (the direct conversation is made then)
    await zhang_on_wang.get_by_role("button", name=re.compile("与 Zhang Wei 聊天")).click()
    await send_in(wang, "张先生您好，我是您的客户经理。")
    await once_in_log(wang, "张先生您好，我是您的客户经理。")

    await sign_in(page, "br.admin", "/staff/")
    await expect(page.get_by_role("tab", name="客户移交")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_role("tab")).to_have_count(1)  # a branch admin does not supervise the desk
    # the RMs of the branch (GET /v1/rm/managers): rm.liu and rm.wang, never Shanghai's rm.chen
    managers = page.locator(".managers li")
    await expect(managers).to_have_count(2)
    await expect(managers.nth(0)).to_contain_text("rm.liu")
    await expect(managers.nth(1)).to_contain_text("rm.wang")
    await expect(managers.nth(1)).to_contain_text("2 位客户")
    await expect(page.get_by_text("rm.chen")).to_have_count(0)
    await page.get_by_role("button", name="rm.wang 的客户簿").click()
    await expect(page.get_by_role("heading", name=re.compile("Wang.*rm.wang"))).to_be_visible()
    zhang = page.locator('.card.customer[data-username="c.zhang"]')
    await expect(zhang).to_contain_text("Zhang Wei")
    await expect(page.locator('.card.customer[data-username="c.li"]')).to_be_visible()
    await check_screen(page, shots, "01-admin-book")

    # out of the branch: the hub refuses, nothing moves
    errors.allow(r"status of (403|404|409|422)")
    await zhang.get_by_label(re.compile("移交给")).fill("rm.chen")
    await zhang.get_by_role("button", name="移交 Zhang Wei").click()
    await expect(page.get_by_role("alert").filter(has_text="操作失败")).to_be_visible()
    await expect(zhang).to_be_visible()

    # c.zhang to rm.liu: gone from rm.wang's book here and on rm.wang's own workbench
    await zhang.get_by_label(re.compile("移交给")).fill("rm.liu")
    await zhang.get_by_role("button", name="移交 Zhang Wei").click()
    await expect(page.get_by_role("status").filter(has_text="已将 1 位客户移交给 rm.liu")).to_be_visible()
    await expect(zhang).to_have_count(0)
    await expect(page.locator('.card.customer[data-username="c.li"]')).to_be_visible()
    await expect(managers.nth(0)).to_contain_text("1 位客户")
    # rm.wang is connected: the card and the open chat go at once, c.li stays
    await expect(zhang_on_wang).to_have_count(0)
    await expect(wang.get_by_role("log")).to_have_count(0)
    await expect(wang.locator('.card.customer[data-username="c.li"]')).to_be_visible()

    # rm.liu's whole book back to rm.wang
    await page.get_by_label("客户经理用户名", exact=True).fill("rm.liu")
    await page.get_by_role("button", name="查看客户簿").click()
    await expect(page.locator('.card.customer[data-username="c.zhang"]')).to_be_visible()
    await page.get_by_label(re.compile("^整本客户簿移交给")).fill("rm.wang")
    await page.get_by_role("button", name="移交整本客户簿").click()
    await expect(page.get_by_role("status").filter(has_text="已将 1 位客户移交给 rm.wang")).to_be_visible()
    await expect(page.get_by_text("客户簿中还没有客户")).to_be_visible()
    await check_screen(page, shots, "02-admin-after-handover")
    # the conversation comes back to rm.wang's book live, with its history
    await expect(zhang_on_wang).to_be_visible()
    await zhang_on_wang.get_by_role("button", name=re.compile("与 Zhang Wei 聊天")).click()
    await once_in_log(wang, "张先生您好，我是您的客户经理。")

    # the hub agrees
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        r = await http.get("/v1/customers/c.zhang/card", headers=await bearer(http, "br.admin"))
        assert r.status_code == 200 and r.json()["customer"]["rm"]["username"] == "rm.wang", r.text
    errors.assert_none()
    await admin_context.close()
    await wang_context.close()


async def test_a_customer_is_told_the_workbench_is_for_staff(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await page.goto("/staff/")
    errors.allow(r"status of 401 .*/v1/web/sessions$")
    await page.get_by_label("用户名").fill("c.li")
    await page.get_by_label("密码").fill("wrong-password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    await expect(page.get_by_label("密码")).to_be_focused()
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("仅供银行员工使用"))
    await expect(page.get_by_role("tablist")).to_have_count(0)
    await check_screen(page, shots, "01-customer-refused")

    # the page is not the judge: the hub refuses a customer the workbench's calls
    session = await page.request.get("/v1/web/session")
    csrf = (await session.json())["csrf_token"]
    assert (await page.request.get("/v1/rm/book")).status == 403
    assert (await page.request.get("/v1/service/figures")).status == 403
    r = await page.request.post("/v1/rm/rm.wang/handover", data={"to": "rm.chen"}, headers={"X-CSRF-Token": csrf})
    assert r.status == 403, await r.text()

    # English, and signing out
    await page.get_by_role("button", name="Switch to English").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("for bank staff only"))
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert (await page.request.get("/v1/web/session")).status == 401
    errors.assert_none()
    await context.close()
