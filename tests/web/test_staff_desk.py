"""The service desk end to end in real Chromium: c.li in the customer app (phone) and
agent.zhao in the staff workbench (desktop), then ho.admin's figures.

"人工" → the queue (agent.zhao, away, sees one waiting) → routed to agent.zhao once available, who serves → both chat live → transfer to
another queue with an agents-only note (back to agent.zhao, the only agent, with the note)
→ close with tags → c.li rates 5 → the figures and the session show the CSAT.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in
from .test_staff_workbench import bearer, check_screen, once_in_log, send_in

expect.set_options(timeout=20_000)


async def first_words(page: Page, text: str) -> None:
    """Type ``text`` as the customer's first words to the desk."""
    await send_in(page, text)
    await expect(page.get_by_role("log").get_by_text(text, exact=True)).to_have_count(1)


async def test_service_desk_from_human_to_csat(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    zhao_context = await new_desktop(browser, hub, errors)
    li_context = await new_phone(browser, hub, errors)
    zhao, li = await zhao_context.new_page(), await li_context.new_page()

    # agent.zhao opens the desk, still away: his queues, nobody waiting
    await sign_in(zhao, "agent.zhao", "/staff/")
    await expect(zhao.get_by_role("tab", name="服务台")).to_have_attribute("aria-selected", "true")
    await expect(zhao.get_by_role("radio", name="离开")).to_be_checked()
    await expect(zhao.get_by_text("接待中 0 / 3")).to_be_visible()
    general = zhao.locator('.queues li[data-queue="general"]')
    await expect(general).to_have_text("General enquiries · 服务中 · 无人等待")

    # c.li asks the bot, then for a person: "人工"; nobody is available, so she waits
    await sign_in(li, "c.li")
    await li.get_by_role("tab", name=re.compile("功能")).click()
    await li.get_by_role("button", name=re.compile("在线客服")).click()
    await li.get_by_role("button", name="咨询客服").click()
    await expect(li.get_by_role("status").filter(has_text="智能客服为您服务")).to_be_visible()
    # the bot's greeting is on screen: the desk knows its conversation and the composer stays put
    await expect(li.get_by_role("log").get_by_text(re.compile("assistant for General enquiries"))).to_be_visible()
    await first_words(li, "人工")
    await expect(li.get_by_role("status").filter(has_text="排在第 1 位")).to_be_visible()

    # the agent sees the queue, comes on the desk, and is routed her at once
    await zhao.locator(".queues").get_by_role("button", name="刷新").click()
    await expect(general).to_contain_text(re.compile(r"1 人等待，最长 \d+ 秒"))
    await check_screen(zhao, shots, "01-agent-desk")
    await zhao.get_by_role("radio", name="可接待").check()
    await expect(li.get_by_role("status").filter(has_text="Zhao (Service Desk) 为您服务")).to_be_visible()

    # routed to agent.zhao: announced live, served from the card
    await expect(zhao.get_by_role("status").filter(has_text="新客户：Li Lei")).to_be_visible()
    await expect(zhao.get_by_text("接待中 1 / 3")).to_be_visible()
    session_card = zhao.locator(".card.session")
    await expect(session_card).to_have_count(1)
    session_id = await session_card.get_attribute("data-session")
    assert session_id
    await session_card.get_by_role("button", name="接待 Li Lei").click()
    await once_in_log(zhao, "人工")
    await expect(zhao.locator(".customer-card")).to_contain_text("Beijing Branch（BJ）")

    # both chat live
    await send_in(zhao, "您好，我是客服小赵，请问有什么可以帮您？")
    await once_in_log(li, "您好，我是客服小赵，请问有什么可以帮您？")
    await send_in(li, "我的信用卡好像丢了。")
    await once_in_log(zhao, "我的信用卡好像丢了。")
    await once_in_log(zhao, "您好，我是客服小赵，请问有什么可以帮您？")
    await check_screen(zhao, shots, "02-agent-serving")
    await li.screenshot(path=shots / "03-customer-with-agent.png")

    # transfer needs a note; with one, to the cards queue: back to agent.zhao (the only agent), note attached
    await zhao.get_by_label("转接到队列").select_option("cards")
    await zhao.get_by_role("button", name="转接", exact=True).click()
    await expect(zhao.get_by_role("alert").filter(has_text="请填写转接备注")).to_be_visible()
    await zhao.get_by_label(re.compile("转接备注")).fill("客户信用卡遗失，需要挂失。")
    await zhao.get_by_role("button", name="转接", exact=True).click()
    await expect(zhao.get_by_role("status").filter(has_text=re.compile("新客户：Li Lei（Cards"))).to_be_visible()
    await zhao.locator(".card.session").get_by_role("button", name="接待 Li Lei").click()
    await expect(zhao.locator(".notes")).to_contain_text("客户信用卡遗失，需要挂失。")
    await once_in_log(zhao, "我的信用卡好像丢了。")
    # the note is for agents only: the customer never sees it
    await expect(li.get_by_text("客户信用卡遗失，需要挂失。")).to_have_count(0)
    await send_in(zhao, "已为您挂失，新卡将在七个工作日内寄出。")
    await once_in_log(li, "已为您挂失，新卡将在七个工作日内寄出。")
    await send_in(li, "好的，谢谢。")
    await once_in_log(zhao, "好的，谢谢。")

    # close needs a tag
    await zhao.get_by_role("button", name="结束会话").click()
    await expect(zhao.get_by_role("alert").filter(has_text="请至少选择一个标签")).to_be_visible()
    await zhao.get_by_role("checkbox", name="Lost or stolen card").check()
    await zhao.get_by_role("checkbox", name="Resolved").check()
    await zhao.get_by_label("结束备注（可选）").fill("已挂失并补卡")
    await zhao.get_by_role("button", name="结束会话").click()
    await expect(zhao.get_by_role("status").filter(has_text="会话已结束")).to_be_visible()
    await expect(zhao.locator(".card.session")).to_have_count(0)
    await expect(zhao.get_by_text("接待中 0 / 3")).to_be_visible()

    # c.li rates the service
    await expect(li.get_by_text("请为本次服务评分")).to_be_visible()
    await li.get_by_text("5 分").click()
    await li.get_by_label(re.compile("意见")).fill("处理很快，谢谢！")
    await li.get_by_role("button", name="提交评价").click()
    await expect(li.get_by_text("感谢您的评价！")).to_be_visible()

    # the supervisor's figures: the CSAT is recorded for agent.zhao and the queue
    sup_context = await new_desktop(browser, hub, errors)
    sup = await sup_context.new_page()
    await sign_in(sup, "ho.admin", "/staff/")
    await sup.get_by_role("tab", name="服务数据").click()
    agent_row = sup.locator("#agent-figures tbody tr").filter(has_text="agent.zhao")
    await expect(agent_row).to_contain_text("5.0（1 条）")
    await expect(agent_row).to_contain_text("可接待")
    queue_rows = sup.locator("#queue-figures tbody tr")
    await expect(queue_rows.filter(has_text="5.0（1 条）")).to_have_count(1)
    await expect(sup.locator("#queue-figures")).to_contain_text("服务水平")
    await check_screen(sup, shots, "04-supervisor-figures")
    await sup.get_by_role("button", name="Switch to English").click()
    await expect(sup.locator("#agent-figures")).to_contain_text("5.0 (1)")
    await expect(sup.get_by_role("tab", name="Desk figures")).to_have_attribute("aria-selected", "true")
    await check_screen(sup, shots, "04-supervisor-figures-en")
    await sup.get_by_role("button", name="切换到中文").click()
    await sup.get_by_role("tab", name="客户移交").click()
    await check_screen(sup, shots, "05-head-office-handover")

    # and the hub agrees
    async with httpx.AsyncClient(base_url=hub.http_url) as http:
        r = await http.get(f"/v1/service/sessions/{session_id}", headers=await bearer(http, "ho.admin"))
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["session"]["state"] == "closed" and got["session"]["csat"] == 5, got
        assert sorted(got["session"]["tags"]) == ["card_loss", "resolved"]
        assert got["csat_comment"] == "处理很快，谢谢！"
        assert any(n["text"] == "客户信用卡遗失，需要挂失。" for n in got["notes"]), got["notes"]
    errors.assert_none()
    for context in (zhao_context, li_context, sup_context):
        await context.close()
