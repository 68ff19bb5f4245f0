"""A customer group chat in real Chromium: c.li makes a group with her friend c.zhang, they
chat in it live, the member list shows both, and when c.zhang leaves c.li sees it said."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode
from bankhub.storage.contacts import ContactStore

from ..conftest import login
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


async def _befriend(hub: RunningNode, a: str, b: str) -> None:
    ua, ub = await hub.hub.users.by_username(a), await hub.hub.users.by_username(b)
    assert ua is not None and ub is not None
    async with hub.hub.db.transaction("test_befriend") as conn:
        await ContactStore.befriend(conn, ua.id, ub.id)


async def _send(page: Page, text: str) -> None:
    await page.get_by_label(re.compile("输入消息|Message")).fill(text)
    await page.get_by_role("button", name=re.compile("^(发送|Send)$")).click()


async def test_a_customer_group_chat(browser: Browser, hub: RunningNode, shots: Path) -> None:
    await _befriend(hub, "c.li", "c.zhang")
    errors = PageErrors()
    li = await (await new_phone(browser, hub, errors)).new_page()
    zhang = await (await new_desktop(browser, hub, errors)).new_page()
    await sign_in(li, "c.li")
    await sign_in(zhang, "c.zhang")

    # c.li starts a group with a friend: the form lists her friends
    await li.get_by_role("button", name="发起群聊").click()
    await li.get_by_label("群名称").fill("周末聚会")
    await li.get_by_role("checkbox", name="Zhang Wei").check()
    await li.screenshot(path=shots / "01-new-group.png")
    await li.get_by_role("button", name="创建").click()
    await expect(li.get_by_role("heading", level=1)).to_have_text("周末聚会")
    await _send(li, "周六一起去颐和园吗？")
    log = li.get_by_role("log")
    await expect(log.get_by_text("周六一起去颐和园吗？", exact=True)).to_have_count(1)

    # c.zhang's list gains the group live; she sees who wrote, and answers
    row = zhang.get_by_role("button", name=re.compile("周末聚会"))
    await row.click()
    their = zhang.get_by_role("log").locator(".msg.theirs")
    await expect(their.get_by_text("周六一起去颐和园吗？", exact=True)).to_have_count(1)
    await expect(their.locator(".from")).to_have_text("Li Lei")
    await _send(zhang, "好啊，上午十点见！")
    await expect(log.locator(".msg.theirs").get_by_text("好啊，上午十点见！", exact=True)).to_have_count(1)
    await expect(log.locator(".msg.theirs .from")).to_have_text("Zhang Wei")

    # the member list: both, c.li the owner
    toggle = li.get_by_role("button", name="群成员")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    members = li.get_by_role("region", name="群成员")
    await expect(members.get_by_role("heading")).to_have_text("群成员（2）")
    await expect(members.locator('[data-username="c.li"] .member-role')).to_have_text("群主")
    await expect(members.locator('[data-username="c.zhang"]')).to_contain_text("Zhang Wei")
    await li.screenshot(path=shots / "02-group-chat.png")

    # c.zhang leaves: her chat closes, and c.li sees it said in the group, the list updated
    zhang.on("dialog", lambda dialog: dialog.accept())
    await zhang.get_by_role("button", name="群成员").click()
    await zhang.get_by_role("button", name="退出群聊").click()
    await expect(zhang.get_by_role("button", name=re.compile("周末聚会"))).to_have_count(0)
    await expect(log.locator(".msg.system").get_by_text("Zhang Wei 退出了群聊")).to_have_count(1)
    await expect(members.get_by_role("heading")).to_have_text("群成员（1）")
    await li.screenshot(path=shots / "03-member-left.png")
    errors.assert_none()


async def test_an_org_group_in_the_staff_workbench(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    admin = await (await new_desktop(browser, hub, errors)).new_page()
    wang = await (await new_desktop(browser, hub, errors)).new_page()
    await sign_in(wang, "rm.wang", "/staff/")
    await wang.get_by_role("tab", name="群聊").click()
    # the demo's group of his customers is there; the org group is not, yet
    await expect(wang.get_by_role("button", name=re.compile("Wang's wealth club"))).to_be_visible()
    await expect(wang.get_by_role("button", name=re.compile("北京分行全体员工"))).to_have_count(0)

    # the branch admin makes a group of all Beijing staff; rm.wang's workbench gains it live
    token = await login(hub, "br.admin")
    async with httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.post("/v1/org-groups", json={"title": "北京分行全体员工", "org": "BJ"})
        assert r.status_code == 201, r.text
    row = wang.get_by_role("button", name=re.compile("北京分行全体员工"))
    await row.click()
    await _send(wang, "各位同事，周五下午三点开例会。")

    # the admin, a member now, has the Groups section: they chat in it
    await sign_in(admin, "br.admin", "/staff/")
    await admin.get_by_role("tab", name="群聊").click()
    await admin.get_by_role("button", name=re.compile("北京分行全体员工")).click()
    log = admin.get_by_role("log")
    await expect(log.get_by_text("各位同事，周五下午三点开例会。", exact=True)).to_have_count(1)
    await expect(log.locator(".msg.theirs .from")).to_have_text(re.compile("Wang"))
    await expect(log.locator(".msg.system").first).to_contain_text("创建了群聊“北京分行全体员工”")
    await _send(admin, "收到。")
    await expect(wang.get_by_role("log").get_by_text("收到。", exact=True)).to_have_count(1)

    # and make another one there: Haidian has no staff yet
    await admin.get_by_label("群名称").fill("海淀支行全体员工")
    await admin.get_by_label(re.compile("机构代码")).fill("BJ-HD")
    await admin.get_by_role("button", name="创建").click()
    await expect(admin.get_by_role("status").filter(has_text="已创建")).to_have_text("已创建：0 名成员")
    await admin.screenshot(path=shots / "01-org-group.png")
    errors.assert_none()
