"""The head-office console (/console/) in real Chromium.

ho.admin publishes a Beijing-targeted notice from the console after the live audience count
shows whom it reaches: c.li (Beijing, customer app on a phone) sees it live in Discover, c.zhou
(Shanghai) never does; the console's figures count it; a recall with a reason from the console
withdraws it on c.li's screen. Maker-checker: a notice of an account that needs approval waits
in the queue, its author cannot approve it, a second administrator can. Only administrators
may use the console. Every main screen has no serious or critical axe-core violation, and a
screenshot is kept of each.
"""

from __future__ import annotations

import datetime as dt
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


async def _check(page: Page, shots: Path, name: str) -> None:
    """A screenshot, then axe-core: no serious or critical violation."""
    await page.screenshot(path=shots / f"{name}.png", full_page=True)
    results = await _axe.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )


async def _section(page: Page, name: str) -> None:
    tab = page.get_by_role("tab", name=name)
    await tab.click()
    await expect(tab).to_have_attribute("aria-selected", "true")


async def _open_feed(page: Page, handle: str) -> None:
    """The customer app's Discover tab, with the feed of the account ``handle`` open."""
    await page.get_by_role("tab", name=re.compile("发现")).click()
    await page.locator(f'button.conv[data-account="{handle}"]').click()


async def _api(hub: RunningNode, username: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=hub.http_url)
    r = await http.post("/v1/sessions", json={"username": username, "password": DEMO_PASSWORD})
    assert r.status_code == 201, r.text
    http.headers["authorization"] = f"Bearer {r.json()['token']}"
    return http


async def test_head_office_publishes_a_beijing_notice_that_only_beijing_sees_and_recalls_it(
    browser: Browser, hub: RunningNode, shots: Path
) -> None:
    errors = PageErrors()
    admin_context = await new_desktop(browser, hub, errors)
    li_context = await new_phone(browser, hub, errors)
    zhou_context = await new_phone(browser, hub, errors)
    admin, li, zhou = await admin_context.new_page(), await li_context.new_page(), await zhou_context.new_page()

    # c.li (Beijing) and c.zhou (Shanghai) have the Bank Service feed open in the customer app
    for page, who in ((li, "c.li"), (zhou, "c.zhou")):
        await sign_in(page, who)
        await _open_feed(page, "bank.service")
    text = "北京分行网点周六照常营业"

    # ho.admin signs in to the console
    await admin.goto("/console/")
    await expect(admin.get_by_label("用户名")).to_be_focused()
    await _check(admin, shots, "01-console-sign-in")
    await sign_in(admin, "ho.admin", path="/console/")
    await expect(admin.get_by_role("table")).to_contain_text("bank.service")
    await _check(admin, shots, "02-accounts")

    # compose: the live audience count follows the targeting before anything is sent
    await _section(admin, "撰写通知")
    await admin.get_by_label("官方账号").select_option(label="Bank Service (bank.service)")
    count = admin.locator("#audience-count")
    await expect(count).to_have_text(re.compile(r"预计送达 \d+ 位关注者"))
    await admin.get_by_label("BJ · Beijing Branch").check()
    await expect(count).to_have_text("预计送达 2 位关注者")  # c.li and c.zhang (BJ-HD is inside BJ)
    await admin.get_by_label("SH · Shanghai Branch").check()
    await expect(count).to_have_text("预计送达 3 位关注者")
    await admin.get_by_label("SH · Shanghai Branch").uncheck()
    await expect(count).to_have_text("预计送达 2 位关注者")
    await admin.get_by_label("通知内容").fill(text)
    await _check(admin, shots, "03-compose")
    await admin.get_by_role("button", name="提交").click()
    await expect(admin.locator("#compose-result")).to_have_text("已发布")

    # c.li sees it live; c.zhou does not
    await expect(li.get_by_text(text, exact=True)).to_have_count(1)
    await li.screenshot(path=shots / "04-customer-sees-notice.png")

    # the notices of the account, with the figures of this one
    await _section(admin, "已发通知")
    card = admin.get_by_role("listitem").filter(has=admin.get_by_role("heading", name=text))
    await expect(card).to_contain_text("已发布")
    await card.get_by_role("button", name="统计").click()
    await expect(card.locator(".stats")).to_contain_text("目标关注者2")
    # c.li's open feed got it live and read it; the figures refresh while shown
    await expect(card.locator(".stats")).to_contain_text("在线送达1")
    await expect(card.locator(".stats")).to_contain_text("已读1")
    await _check(admin, shots, "05-notices-figures")

    # recall with a reason: c.li's screen shows it withdrawn
    await card.get_by_role("button", name="撤回").click()
    await card.get_by_label("撤回原因").fill("营业时间有变")
    await card.get_by_role("button", name="确认撤回").click()
    recalled = admin.get_by_role("listitem").filter(has=admin.get_by_role("heading", name=text))
    await expect(recalled.locator(".status")).to_have_text("已撤回")
    await expect(recalled).to_contain_text("营业时间有变")
    await expect(li.get_by_text(text, exact=True)).to_have_count(0)
    await expect(li.locator(".notice.withdrawn")).to_have_count(1)
    await li.screenshot(path=shots / "06-customer-sees-withdrawn.png")
    await admin.screenshot(path=shots / "07-console-recalled.png", full_page=True)

    # c.zhou never saw it: not live, not after a reload, not in her history
    await expect(zhou.get_by_text(text, exact=True)).to_have_count(0)
    await zhou.reload()
    await _open_feed(zhou, "bank.service")
    await expect(zhou.get_by_role("tab", name=re.compile("发现"))).to_have_attribute("aria-selected", "true")
    await expect(zhou.locator(".notice.withdrawn")).to_have_count(0)
    await expect(zhou.get_by_text(text, exact=True)).to_have_count(0)
    http = await _api(hub, "c.zhou")
    try:
        service = next(a["account"]["id"] for a in (await http.get("/v1/me/accounts")).json()["accounts"] if a["account"]["handle"] == "bank.service")
        seen = (await http.get(f"/v1/accounts/{service}/notices")).json()["notices"]
        assert seen == [], seen
    finally:
        await http.aclose()
    errors.assert_none()
    for context in (admin_context, li_context, zhou_context):
        await context.close()


async def test_maker_checker_in_the_console_and_only_administrators_may_use_it(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    ho_context, br_context, li_context = [await new_desktop(browser, hub, errors) for _ in range(3)]
    ho, br, li = await ho_context.new_page(), await br_context.new_page(), await li_context.new_page()

    # ho.admin creates a Beijing account whose notices need a second administrator
    await sign_in(ho, "ho.admin", path="/console/")
    await ho.get_by_label("账号标识").fill("bj.approved")
    await ho.get_by_label("名称", exact=True).fill("北京分行公告")
    await ho.get_by_label("所属机构").select_option("BJ")
    await ho.get_by_label("发布需第二位管理员审批").check()
    await ho.get_by_role("button", name="创建").click()
    await expect(ho.get_by_role("status").filter(has_text="已创建官方账号")).to_have_text("已创建官方账号 北京分行公告")
    await expect(ho.get_by_role("row", name=re.compile("北京分行公告"))).to_contain_text("BJ")

    # an article card, scheduled for later: it waits for approval first
    await _section(ho, "撰写通知")
    await ho.get_by_label("官方账号").select_option(label="北京分行公告 (bj.approved)")
    await expect(ho.locator("#audience-count")).to_have_text(re.compile(r"预计送达 0 位关注者"))  # nobody follows it yet
    await ho.get_by_label("图文卡片").check()
    await ho.get_by_label("标题").fill("春节营业安排")
    await ho.get_by_label("摘要").fill("除夕至初三部分网点调整营业时间")
    await ho.get_by_label("在指定时间发送").check()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    await ho.get_by_label("发送时间").fill(later.strftime("%Y-%m-%dT09:00"))
    await ho.get_by_label("时区").select_option("+08:00")
    await ho.get_by_role("button", name="提交").click()
    await expect(ho.locator("#compose-result")).to_have_text("已提交，等待第二位管理员审批")

    # its author sees it queued but may not approve it
    await _section(ho, "待审批")
    mine = ho.get_by_role("listitem").filter(has=ho.get_by_role("heading", name="春节营业安排"))
    await expect(mine).to_contain_text("您提交的通知需由另一位管理员审批")
    await expect(mine.get_by_role("button", name="批准")).to_have_count(0)
    await _check(ho, shots, "01-approvals-own")

    # the Beijing branch admin approves it; it becomes scheduled for its time
    await sign_in(br, "br.admin", path="/console/")
    await expect(br.get_by_role("table")).to_contain_text("bj.approved")
    await expect(br.get_by_role("table")).not_to_contain_text("bank.service")  # head office's, not theirs
    await _section(br, "待审批")
    theirs = br.get_by_role("listitem").filter(has=br.get_by_role("heading", name="春节营业安排"))
    await expect(theirs).to_contain_text("定向")
    await _check(br, shots, "02-approvals-checker")
    await theirs.get_by_role("button", name="批准").click()
    await expect(br.get_by_text("没有待审批的通知")).to_be_visible()
    await _section(br, "已发通知")
    await br.get_by_label("官方账号").select_option(label="北京分行公告 (bj.approved)")
    card = br.get_by_role("listitem").filter(has=br.get_by_role("heading", name="春节营业安排"))
    await expect(card.locator(".status")).to_have_text("已定时")
    await expect(card).to_contain_text("BJ")
    await expect(card).to_contain_text("09:00")  # the time chosen, in China time
    await _check(br, shots, "03-notices-scheduled")

    # in English
    await br.get_by_role("button", name="Switch to English").click()
    await expect(br.get_by_role("tab", name="Notices")).to_have_attribute("aria-selected", "true")
    # the sections are a keyboard tablist: arrows move between them
    await br.get_by_role("tab", name="Notices").focus()
    await br.keyboard.press("ArrowUp")
    await expect(br.get_by_role("tab", name="Approvals")).to_be_focused()
    await expect(br.get_by_role("tab", name="Approvals")).to_have_attribute("aria-selected", "true")
    await _section(br, "Accounts")
    await expect(br.get_by_role("table")).to_contain_text("Beijing Branch")
    await _check(br, shots, "04-accounts-en")

    # a customer signed in to the console is told it is not for them; the hub refuses anyway
    await li.goto("/console/")
    await li.get_by_label("用户名").fill("c.li")
    await li.get_by_label("密码").fill(DEMO_PASSWORD)
    await li.get_by_role("button", name="登录").click()
    await expect(li.get_by_role("alert")).to_have_text(re.compile("仅供总行和分行管理员使用"))
    await _check(li, shots, "05-not-for-customers")
    r = await li.request.get("/v1/orgs")
    assert r.status == 403
    errors.assert_none()
    for context in (ho_context, br_context, li_context):
        await context.close()
