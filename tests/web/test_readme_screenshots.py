"""The README's screenshots, taken from the real app and console in Chromium.

The walk-through the README describes, run as a test: c.li and rm.wang chat; ho.admin
publishes a Beijing notice from the console; c.li sees it in Discover. Each screen is kept as
an artifact. With ``BANKHUB_README_SCREENSHOTS=1`` the pictures the README shows are also
written to ``docs/screenshots/`` (that is how they are refreshed); a normal run never rewrites
committed files. Either way the test checks that the README shows every one of them and that
each is committed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)

ROOT = Path(__file__).resolve().parents[2]
DOCS_SHOTS = ROOT / "docs" / "screenshots"
README = ROOT / "README.md"
PICTURES = ["app-chat.png", "app-discover.png", "console-compose.png", "console-notices.png"]
WRITE = os.environ.get("BANKHUB_README_SCREENSHOTS") == "1"


async def test_readme_walkthrough_and_its_screenshots(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li_context = await new_phone(browser, hub, errors)
    wang_context = await new_desktop(browser, hub, errors)
    admin_context = await new_desktop(browser, hub, errors)
    li, wang, admin = await li_context.new_page(), await wang_context.new_page(), await admin_context.new_page()

    # c.li and rm.wang chat
    await sign_in(li, "c.li")
    await sign_in(wang, "rm.wang")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    await li.get_by_label("输入消息").fill("王经理您好，我想了解一下理财产品。")
    await li.get_by_role("button", name="发送", exact=True).click()
    await wang.get_by_role("button", name=re.compile("Li Lei")).click()
    await expect(wang.get_by_role("log").get_by_text("王经理您好，我想了解一下理财产品。", exact=True)).to_have_count(1)
    await wang.get_by_label("输入消息").fill("您好！我下午三点给您打电话详细介绍。")
    await wang.get_by_role("button", name="发送", exact=True).click()
    await expect(li.get_by_role("log").get_by_text("您好！我下午三点给您打电话详细介绍。", exact=True)).to_have_count(1)
    await expect(li.get_by_role("log").locator(".msg.mine .state")).to_have_text("已读")
    await li.screenshot(path=shots / "app-chat.png")

    # c.li keeps the Bank Service feed open in Discover
    await li.get_by_role("tab", name="发现").click()
    await li.locator('button.conv[data-account="bank.service"]').click()

    # ho.admin publishes a Beijing notice from the console
    await sign_in(admin, "ho.admin", path="/console/")
    await admin.get_by_role("tab", name="撰写通知").click()
    await admin.get_by_label("官方账号").select_option(label="Bank Service (bank.service)")
    await admin.get_by_label("BJ · Beijing Branch").check()
    await expect(admin.locator("#audience-count")).to_have_text("预计送达 2 位关注者")
    notice = "本周六北京地区网点照常营业，欢迎前来办理业务。"
    await admin.get_by_label("通知内容").fill(notice)
    await admin.screenshot(path=shots / "console-compose.png", full_page=True)
    await admin.get_by_role("button", name="提交").click()
    await expect(admin.locator("#compose-result")).to_have_text("已发布")

    # c.li sees it live
    await expect(li.get_by_text(notice, exact=True)).to_have_count(1)
    await li.screenshot(path=shots / "app-discover.png")

    # the console's notices, with the figures
    await admin.get_by_role("tab", name="已发通知").click()
    card = admin.get_by_role("listitem").filter(has=admin.get_by_role("heading", name=notice))
    await card.get_by_role("button", name="统计").click()
    await expect(card.locator(".stats")).to_contain_text("目标关注者2")
    await expect(card.locator(".stats")).to_contain_text("在线送达1")
    await admin.screenshot(path=shots / "console-notices.png")
    errors.assert_none()
    for context in (li_context, wang_context, admin_context):
        await context.close()

    if WRITE:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for name in PICTURES:
            shutil.copyfile(shots / name, DOCS_SHOTS / name)
    text = README.read_text()
    for name in PICTURES:
        assert f"docs/screenshots/{name}" in text, f"README does not show {name}"
        assert (DOCS_SHOTS / name).is_file(), f"docs/screenshots/{name} is missing: run with BANKHUB_README_SCREENSHOTS=1"
