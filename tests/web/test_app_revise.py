"""Recall and edit in real Chromium: c.li in the customer app edits and then recalls a message
through the message-actions menu; rm.wang's staff chat shows the edited text with
"（已编辑）" and then "消息已撤回", live, and so does a reload (history). The original text is
nowhere on either page.
"""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


async def test_edit_and_recall_show_live_in_the_staff_chat(browser: Browser, hub: RunningNode) -> None:
    errors = PageErrors()
    li_context, wang_context = await new_phone(browser, hub, errors), await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()

    await sign_in(wang, "rm.wang", "/staff/")
    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    compose = li.get_by_label(re.compile("输入消息|Message"))
    send = li.get_by_role("button", name=re.compile("^(发送|Send)$"))
    await compose.fill("明天下午三点见")
    await send.click()
    await compose.fill("转账到 6222 0000 1111")
    await send.click()

    card = wang.locator('.card.customer[data-username="c.li"]')
    await card.get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()
    wang_log = wang.get_by_role("log")
    await expect(wang_log.get_by_text("明天下午三点见", exact=True)).to_have_count(1)
    await expect(wang_log.get_by_text("转账到 6222 0000 1111", exact=True)).to_have_count(1)

    li_log = li.get_by_role("log")
    first = li_log.locator(".msg.mine").filter(has_text="明天下午三点见")
    second = li_log.locator(".msg.mine").filter(has_text="转账到 6222 0000 1111")
    await expect(first).to_have_count(1)
    # the other side's messages have no menu; mine do, by keyboard: Enter opens it, the first item has focus
    await expect(wang_log.locator(".msg.theirs .msg-actions-toggle")).to_have_count(0)
    toggle = first.get_by_role("button", name="消息操作")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.focus()
    await li.keyboard.press("Enter")
    menu = first.get_by_role("menu")
    await expect(menu).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(menu.get_by_role("menuitem", name="撤回")).to_be_focused()
    await li.keyboard.press("ArrowDown")
    await expect(menu.get_by_role("menuitem", name="编辑")).to_be_focused()
    await li.keyboard.press("Enter")

    # edit: the text is in the composer, a bar says so; sending replaces the message
    await expect(compose).to_have_value("明天下午三点见")
    await expect(li.get_by_text("正在编辑消息，发送即替换原文")).to_be_visible()
    await compose.fill("明天下午四点见")
    await send.click()
    await expect(li.get_by_text("正在编辑消息，发送即替换原文")).to_be_hidden()
    await expect(li_log.locator(".msg.mine").filter(has_text="明天下午四点见").locator(".edited")).to_have_text("（已编辑）")

    # rm.wang sees the edit live, marked, and no bubble for the edit message itself
    edited = wang_log.locator(".msg.theirs").filter(has_text="明天下午四点见")
    await expect(edited).to_have_count(1)
    await expect(edited.locator(".edited")).to_have_text("（已编辑）")
    await expect(wang_log.get_by_text("明天下午三点见")).to_have_count(0)
    await expect(wang_log.locator(".msg")).to_have_count(2)

    # recall the second message with the mouse
    await second.get_by_role("button", name="消息操作").click()
    await second.get_by_role("menuitem", name="撤回").click()
    await expect(li_log.get_by_text("消息已撤回")).to_have_count(1)
    await expect(wang_log.get_by_text("消息已撤回")).to_have_count(1)
    await expect(wang_log.get_by_text("6222", exact=False)).to_have_count(0)
    # a withdrawn message has no menu any more
    await expect(li_log.locator(".msg.mine").filter(has_text="消息已撤回").locator(".msg-actions-toggle")).to_have_count(0)

    # a reload shows the same from history
    await wang.reload()
    await wang.locator('.card.customer[data-username="c.li"]').get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()
    wang_log = wang.get_by_role("log")
    await expect(wang_log.get_by_text("明天下午四点见", exact=True)).to_have_count(1)
    await expect(wang_log.get_by_text("消息已撤回")).to_have_count(1)
    await expect(wang_log.get_by_text("6222", exact=False)).to_have_count(0)
    await expect(wang_log.get_by_text("三点", exact=False)).to_have_count(0)
    errors.assert_none()
    await li_context.close()
    await wang_context.close()
