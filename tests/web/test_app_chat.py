"""The customer app in real Chromium: c.li (phone) and rm.wang (desktop) chat in /app/.

Both ways live; then rm.wang's page reloads, and c.li's browser goes offline, sends while
offline and comes back: every message is on both screens exactly once, and a send made
offline shows as pending until the hub acknowledged it.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


def _log(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("log")


async def _send(page: Page, text: str) -> None:
    box = page.get_by_label(re.compile("输入消息|Message"))
    await box.fill(text)
    await page.get_by_role("button", name=re.compile("^(发送|Send)$")).click()


async def _exactly_once(page: Page, *texts: str) -> None:
    for text in texts:
        await expect(_log(page).get_by_text(text, exact=True)).to_have_count(1)


async def test_customer_and_rm_chat_live_and_nothing_is_lost_or_doubled(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li_context = await new_phone(browser, hub, errors)
    wang_context = await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()

    await li.goto("/app/")
    await expect(li.get_by_role("button", name="登录")).to_be_visible()
    await li.screenshot(path=shots / "01-sign-in.png")
    await sign_in(li, "c.li")
    await sign_in(wang, "rm.wang")
    await expect(li.get_by_role("tab", name=re.compile("消息"))).to_have_attribute("aria-selected", "true")
    await li.screenshot(path=shots / "02-messages.png")

    # c.li opens the chat with her RM and writes; rm.wang sees it live, with an unread badge
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    await expect(li.get_by_role("heading", level=1)).to_have_text(re.compile("Wang"))
    await _send(li, "王经理您好，我的信用卡额度提高了吗？")
    await _exactly_once(li, "王经理您好，我的信用卡额度提高了吗？")
    chat_row = wang.get_by_role("button", name=re.compile("Li Lei"))
    await expect(chat_row).to_have_accessible_name(re.compile("1 条未读"))
    await wang.screenshot(path=shots / "03-rm-unread.png")
    await chat_row.click()
    await _exactly_once(wang, "王经理您好，我的信用卡额度提高了吗？")

    # rm.wang read it: c.li's message turns 已读; the reply arrives live
    await expect(_log(li).locator(".msg.mine .state")).to_have_text("已读")
    await _send(wang, "已经提高了，今天上午生效。")
    await _exactly_once(li, "已经提高了，今天上午生效。")
    await li.screenshot(path=shots / "04-chat.png")

    # rm.wang's page reloads: the cookie session resumes, the history is there once
    await wang.reload()
    await wang.get_by_role("button", name=re.compile("Li Lei")).click()
    await _exactly_once(wang, "王经理您好，我的信用卡额度提高了吗？", "已经提高了，今天上午生效。")
    await _send(wang, "重新加载后：还有其他问题吗？")
    await _exactly_once(li, "重新加载后：还有其他问题吗？")

    # c.li goes offline: her send is pending; rm.wang writes meanwhile
    errors.allow(r"ERR_INTERNET_DISCONNECTED|WebSocket|Failed to load resource|net::")
    await li_context.set_offline(True)
    await expect(li.get_by_role("status")).to_have_text(re.compile("离线|连接中"))
    await _send(li, "我在地铁里，离线时发的")
    pending = _log(li).locator(".msg.pending")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text("发送中")
    await li.screenshot(path=shots / "05-offline-pending.png")
    await _send(wang, "您离线时我发的消息")
    await _exactly_once(wang, "您离线时我发的消息")

    # back online: the pending send goes out once, the missed message comes in once
    await li_context.set_offline(False)
    await expect(pending).to_have_count(0)
    await _exactly_once(li, "我在地铁里，离线时发的", "您离线时我发的消息")
    await _exactly_once(wang, "我在地铁里，离线时发的")
    await expect(li.get_by_role("status")).to_have_text("")

    # and after a reload of both, each message is there once, in order
    everything = [
        "王经理您好，我的信用卡额度提高了吗？",
        "已经提高了，今天上午生效。",
        "重新加载后：还有其他问题吗？",
        "您离线时我发的消息",
        "我在地铁里，离线时发的",
    ]
    for page, peer in ((li, "我的客户经理"), (wang, "Li Lei")):
        await page.reload()
        await page.get_by_role("button", name=re.compile(peer)).click()
        await _exactly_once(page, *everything)
        shown = await _log(page).locator(".msg .text").all_inner_texts()
        assert sorted(shown) == sorted(everything) and len(shown) == len(everything), shown
    await li.screenshot(path=shots / "06-after-reload.png")

    # the server agrees: five messages, each stored once
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        r = await http.post("/v1/sessions", json={"username": "rm.wang", "password": "bankhub-demo"})
        headers = {"authorization": f"Bearer {r.json()['token']}"}
        cid = (await http.get("/v1/conversations", headers=headers)).json()["conversations"][0]["id"]
        stored = (await http.get(f"/v1/conversations/{cid}/messages", headers=headers)).json()["messages"]
        assert sorted(m["body"]["text"] for m in stored) == sorted(everything)
    errors.assert_none()
    await li_context.close()
    await wang_context.close()
