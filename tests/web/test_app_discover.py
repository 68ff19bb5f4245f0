"""The customer app's Discover tab in real Chromium: c.li finds an official account in the
directory, follows it, and sees notices published over the HTTP API arrive live in its feed
(a text notice, and an article card whose https:// link is a button, while a bankhub://
link is not); a recall shows the notice withdrawn in place; unread counts follow; unfollow."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from ..support.desk import api, token_for
from .conftest import PageErrors, new_phone, sign_in

expect.set_options(timeout=20_000)


async def test_follow_an_account_and_its_notices_arrive_live_and_recalls_show_withdrawn(browser: Browser, hub: RunningNode, shots: Path) -> None:
    admin = await token_for(hub, "ho.admin")
    async with api(hub, admin) as http:
        r = await http.post("/v1/accounts", json={"handle": "bank.events", "name": "Bank Events", "description": "Events near you"})
        assert r.status_code == 201, r.text
        account = r.json()["id"]

    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    page = await context.new_page()
    await sign_in(page, "c.li")
    await page.get_by_role("tab", name="发现").click()
    following = page.get_by_role("region", name="我关注的")
    await expect(following.get_by_role("button", name=re.compile("^Bank Service"))).to_be_visible()
    await expect(following.get_by_role("button", name=re.compile("^Bank Events"))).to_have_count(0)

    # search the directory and follow
    await page.get_by_role("searchbox", name="搜索官方账号").fill("events")
    await page.get_by_role("button", name="搜索", exact=True).click()
    directory = page.get_by_role("list", name="官方账号")
    await expect(directory.get_by_role("listitem")).to_have_count(1)
    await directory.get_by_role("button", name="关注 Bank Events").click()
    await expect(directory.get_by_role("button", name="取消关注 Bank Events")).to_have_attribute("aria-pressed", "true")
    await expect(following.get_by_role("button", name=re.compile("^Bank Events"))).to_be_visible()
    await page.screenshot(path=shots / "01-discover.png")

    # the feed is open when notices are published: they arrive live, newest first
    await following.get_by_role("button", name=re.compile("^Bank Events")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Bank Events")
    await expect(page.get_by_text("还没有通知")).to_be_visible()
    feed = page.locator(".notice-list")
    async with api(hub, admin) as http:
        r = await http.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "本周六网点开放日，欢迎光临。"}})
        assert r.status_code == 201, r.text
        text_notice = r.json()["id"]
        await expect(feed.get_by_text("本周六网点开放日，欢迎光临。")).to_be_visible()
        article = {
            "kind": "article",
            "title": "理财讲座报名",
            "summary": "周日下午两点，线上线下同步。",
            "action_url": "https://bank.example/events/42",
            "action_label": "立即报名",
        }
        assert (await http.post(f"/v1/accounts/{account}/notices", json={"body": article})).status_code == 201
        deep = {"kind": "article", "title": "打开 App 查看", "action_url": "bankhub://events/43", "action_label": "打开"}
        assert (await http.post(f"/v1/accounts/{account}/notices", json={"body": deep})).status_code == 201
    card = feed.locator(".notice.article", has_text="理财讲座报名")
    await expect(card.get_by_role("heading", name="理财讲座报名")).to_be_visible()
    await expect(card.get_by_text("周日下午两点，线上线下同步。")).to_be_visible()
    await expect(card.get_by_role("link", name="立即报名")).to_have_attribute("href", "https://bank.example/events/42")
    await expect(feed.locator(".notice.article", has_text="打开 App 查看").get_by_role("link")).to_have_count(0)
    await expect(feed.locator(".notice")).to_have_count(3)
    assert (await feed.locator(".notice h3, .notice > .text").first.inner_text()) == "打开 App 查看"  # newest first
    await page.screenshot(path=shots / "02-feed.png")

    # recall: withdrawn in place, on c.li's screen, live
    async with api(hub, admin) as http:
        r = await http.post(f"/v1/notices/{text_notice}/recall", json={"reason": "date changed"})
        assert r.status_code == 200, r.text
    withdrawn = feed.locator(f'[data-notice-id="{text_notice}"]')
    await expect(withdrawn).to_contain_text("已撤回")
    await expect(withdrawn).to_contain_text("此通知已撤回")
    await expect(feed.get_by_text("本周六网点开放日，欢迎光临。")).to_have_count(0)
    await page.screenshot(path=shots / "03-withdrawn.png")

    # the open feed was read: nothing unread; a notice published while the list shows is unread
    li = await token_for(hub, "c.li")
    async with api(hub, li) as http:
        mine = {f["account"]["handle"]: f for f in (await http.get("/v1/me/accounts")).json()["accounts"]}
        assert mine["bank.events"]["unread"] == 0
    await page.get_by_role("button", name=re.compile("返回")).click()
    async with api(hub, admin) as http:
        assert (await http.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "新的通知"}})).status_code == 201
    row = following.get_by_role("button", name=re.compile("^Bank Events"))
    await expect(row).to_have_accessible_name(re.compile("1 条未读"))
    await expect(page.get_by_role("tab", name=re.compile("发现")).locator(".badge")).to_have_text("1")
    await row.click()
    await expect(page.locator(".notice-list").get_by_text("新的通知")).to_be_visible()
    await page.get_by_role("button", name=re.compile("返回")).click()
    await expect(row).not_to_have_accessible_name(re.compile("未读"))
    await expect(page.get_by_role("tab", name=re.compile("发现")).locator(".badge")).to_be_hidden()

    # unfollow: gone from the accounts I follow
    await page.get_by_role("searchbox", name="搜索官方账号").fill("events")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await directory.get_by_role("button", name="取消关注 Bank Events").click()
    await expect(directory.get_by_role("button", name="关注 Bank Events")).to_have_attribute("aria-pressed", "false")
    await expect(following.get_by_role("button", name=re.compile("^Bank Events"))).to_have_count(0)
    errors.assert_none()
    await context.close()
