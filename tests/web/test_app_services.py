"""The customer app's Services tab in real Chromium.

* Alerts: a calling system registered and an alert sent with the ``bankhub`` CLI (``systems
  add``, then ``notify`` with ``$BANKHUB_SYSTEM_SECRET``) appears live in c.li's inbox, the
  unread count follows, read and archive work, and the preferences keep security alerts on.
* The service desk: c.li opens it, the bot answers, "人工" puts her in the queue with her
  position shown live; agent.zhao (driven over the HTTP API and the Python SDK) is routed to
  her once he is free (her place and the estimated wait move live meanwhile), they chat, he
  closes it, and she rates it (the rating is asked for again after a reload).
* The desk's list of conversations answering only after the session opened (without its
  conversation) does not take the conversation from the desk: the first words go out.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from playwright.async_api import APIResponse, Browser, Route, expect

from bankhub.runner import RunningNode
from bankhub_client import Client

from ..support.desk import api, token_for
from .conftest import PageErrors, new_phone, sign_in

expect.set_options(timeout=20_000)
BANKHUB = str(Path(sys.executable).with_name("bankhub"))


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(BANKHUB, *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_an_alert_sent_with_bankhub_notify_appears_live_in_the_inbox(browser: Browser, hub: RunningNode, dsn: str, key_file: str, shots: Path) -> None:
    db = {"BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": key_file}
    code, out, err = await _cli("systems", "add", "core-banking", "--categories", "transaction,security", env=db)
    assert code == 0, out + err
    secret = out.strip().splitlines()[-1]

    async def notify(template: str, *variables: str) -> str:
        args = ["notify", "--hub", hub.http_url, "--system", "core-banking", "--to", "c.li", "--template", template]
        for v in variables:
            args += ["--var", v]
        code, out, err = await _cli(*args, env={"BANKHUB_SYSTEM_SECRET": secret})
        assert code == 0, out + err
        return str(json.loads(out)["notification"]["alert_id"])

    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    page = await context.new_page()
    await sign_in(page, "c.li")
    await page.get_by_role("tab", name="功能").click()
    await page.get_by_role("button", name=re.compile("^动账提醒")).click()
    await expect(page.get_by_role("status").filter(has_text="条未读提醒")).to_have_text("0 条未读提醒")
    await expect(page.get_by_text("没有提醒")).to_be_visible()

    # live: the card debit arrives while the inbox is on screen
    debit = await notify("card.debit", "amount=128.50 CNY", "account=6222021234567890", "merchant=Coffee Lab", "time=2026-05-01T10:15:00+08:00")
    alerts = page.get_by_role("list", name="动账提醒")
    item = alerts.locator(f'[data-alert-id="{debit}"]')
    await expect(item).to_contain_text("消费提醒")
    await expect(item).to_contain_text("您尾号7890的卡于2026年5月1日 10:15在Coffee Lab消费人民币128.50。")
    await expect(item).to_contain_text("交易")
    await expect(page.get_by_role("status").filter(has_text="条未读提醒")).to_have_text("1 条未读提醒")
    await expect(page.get_by_role("tab", name=re.compile("功能")).locator(".badge")).to_have_text("1")
    device = await notify("security.new_device", "device=iPhone 15", "time=2026-05-01T11:00:00+08:00")
    await expect(alerts.locator(f'[data-alert-id="{device}"]')).to_contain_text("安全")
    await expect(page.get_by_role("status").filter(has_text="条未读提醒")).to_have_text("2 条未读提醒")
    assert await alerts.get_by_role("listitem").first.get_attribute("data-alert-id") == device  # newest first
    await page.screenshot(path=shots / "01-inbox.png")

    # by category; read; archive
    await page.get_by_label("类别").select_option("security")
    await expect(alerts.get_by_role("listitem")).to_have_count(1)
    await page.get_by_label("类别").select_option("all")
    await item.get_by_role("button", name=re.compile("标为已读")).click()
    await expect(item).to_have_attribute("data-state", "read")
    await expect(page.get_by_role("status").filter(has_text="条未读提醒")).to_have_text("1 条未读提醒")
    await item.get_by_role("button", name=re.compile("归档")).click()
    await expect(item).to_have_count(0)
    await page.get_by_role("button", name="已归档").click()
    await expect(alerts.locator(f'[data-alert-id="{debit}"]')).to_have_attribute("data-state", "archived")
    await page.get_by_role("button", name="收件箱").click()
    await expect(alerts.get_by_role("listitem")).to_have_count(1)
    li = await token_for(hub, "c.li")
    async with api(hub, li) as http:
        assert (await http.get("/v1/inbox/unread")).json()["unread"] == 1
        archived = (await http.get("/v1/inbox?state=archived")).json()["alerts"]
        assert [a["alert_id"] for a in archived] == [debit]

    # preferences: security cannot be muted (the switch is disabled and says why); marketing can
    await page.get_by_role("button", name="提醒设置").click()
    security = page.get_by_role("switch", name="接收安全提醒")
    await expect(security).to_be_disabled()
    await expect(security).to_be_checked()
    await expect(security).to_have_accessible_description(re.compile("安全提醒无法关闭"))
    await page.get_by_role("switch", name="接收营销提醒").uncheck()
    await page.get_by_role("switch", name=re.compile("开启免打扰")).check()
    await page.get_by_label("开始").fill("22:30")
    await page.get_by_label("结束").fill("07:00")
    await page.get_by_role("button", name="保存").click()
    await expect(page.get_by_role("status").filter(has_text="已保存")).to_be_visible()
    await page.screenshot(path=shots / "02-preferences.png")
    async with api(hub, li) as http:
        prefs = (await http.get("/v1/me/alert-preferences")).json()
        assert prefs["muted"] == ["marketing"] and prefs["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    errors.assert_none()
    await context.close()


async def test_service_desk_from_the_bot_to_a_person_to_a_rating(browser: Browser, hub: RunningNode, shots: Path) -> None:
    admin = await token_for(hub, "ho.admin")
    async with api(hub, admin) as http:
        r = await http.put("/v1/service/agents/agent.zhao", json={"capacity": 1, "queues": ["general", "cards"]})
        assert r.status_code == 200, r.text
    # c.zhang is already waiting for a person in the cards queue
    zhang = await token_for(hub, "c.zhang")
    async with api(hub, zhang) as http:
        zhang_session = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()["session_id"]
        assert (await http.post(f"/v1/service/sessions/{zhang_session}/human")).json()["position"] == 1

    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    page = await context.new_page()
    await sign_in(page, "c.li")
    await page.get_by_role("tab", name="功能").click()
    await page.screenshot(path=shots / "01-services.png")
    await page.get_by_role("button", name=re.compile("^在线客服")).click()
    await page.get_by_label("咨询类别").select_option("cards")
    await page.get_by_role("button", name="咨询客服").click()
    log = page.get_by_role("log")
    await expect(log.locator('[data-event="bot_greeting"]')).to_be_visible()
    await expect(page.locator(".desk-status")).to_have_text("智能客服为您服务")

    # the bot answers from its FAQ
    box = page.get_by_label("输入消息")
    await box.fill("I lost my card yesterday, what do I do?")
    await page.get_by_role("button", name="发送", exact=True).click()
    await expect(log.get_by_text("I lost my card yesterday, what do I do?", exact=True)).to_have_count(1)
    await expect(log.locator('[data-event="bot_answer"]')).to_contain_text("Report loss")

    # "人工": nobody is available yet, so she waits, second in line, with no estimate
    await box.fill("人工")
    await page.keyboard.press("Enter")
    await expect(page.locator(".desk-status")).to_contain_text("排在第 2 位（共 2 人）")
    await expect(page.locator(".desk-status")).to_contain_text("暂无预计等待时间")
    await expect(page.get_by_role("button", name="离开队列")).to_be_visible()

    # agent.zhao (one customer at a time) comes on the desk and takes c.zhang: c.li moves up,
    # live, and now has an estimate (1 ahead of the agent's free slot × 300 s default handle time)
    zhao = await token_for(hub, "agent.zhao")
    async with api(hub, zhao) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
    await expect(page.locator(".desk-status")).to_contain_text("排在第 1 位（共 1 人）")
    await expect(page.locator(".desk-status")).to_contain_text("预计等待约 5 分钟")
    await page.screenshot(path=shots / "02-queued.png")

    # he closes c.zhang's session and is routed to c.li at once
    async with api(hub, zhao) as http:
        r = await http.post(f"/v1/service/sessions/{zhang_session}/close", json={"tags": ["resolved"]})
        assert r.status_code == 200, r.text
    await expect(page.locator(".desk-status")).to_have_text("Zhao (Service Desk) 为您服务")
    await expect(log.locator('[data-event="agent_joined"]')).to_be_visible()
    async with api(hub, zhao) as http:
        me = (await http.get("/v1/service/agents/me")).json()
        session = me["sessions"][0]
        sid, conv = session["session_id"], session["conversation_id"]
    async with Client.connect(hub.http_url, token=zhao) as agent:
        await agent.send(conv, "您好，我已为您挂失这张卡。")
        await expect(log.get_by_text("您好，我已为您挂失这张卡。", exact=True)).to_have_count(1)
        await box.fill("谢谢！")
        await page.keyboard.press("Enter")
        await expect(log.get_by_text("谢谢！", exact=True)).to_have_count(1)
        await page.screenshot(path=shots / "03-agent-chat.png")

    # he closes it; she is asked to rate, once
    async with api(hub, zhao) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["card_loss", "resolved"]})
        assert r.status_code == 200, r.text
    rating = page.get_by_role("group", name="请为本次服务评分")
    await expect(rating).to_be_visible()
    await expect(page.locator(".desk-status")).to_have_text("会话已结束")
    # a rating still owed is asked for again after a reload
    await page.reload()
    await page.get_by_role("tab", name="功能").click()
    await page.get_by_role("button", name=re.compile("^在线客服")).click()
    await expect(rating).to_be_visible()
    await expect(log.get_by_text("您好，我已为您挂失这张卡。", exact=True)).to_have_count(1)
    await rating.get_by_label("5 分").check()
    await page.get_by_label("意见（可选）").fill("很快，谢谢")
    await page.screenshot(path=shots / "04-csat.png")
    await page.get_by_role("button", name="提交评价").click()
    await expect(page.get_by_text("感谢您的评价！")).to_be_visible()
    await expect(rating).to_have_count(0)
    li = await token_for(hub, "c.li")
    async with api(hub, li) as http:
        rated = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert rated["session"]["csat"] == 5 and rated["csat_comment"] == "很快，谢谢", rated
    errors.assert_none()
    await context.close()


async def test_the_first_words_go_out_when_the_desk_list_answers_after_the_session_opened(browser: Browser, hub: RunningNode) -> None:
    """The desk asks for the conversations before the session opens and the answer (with no
    service conversation yet) comes after it opened: the session's conversation stays the
    desk's, so the first words go out at once."""
    errors = PageErrors()
    context = await new_phone(browser, hub, errors)
    page = await context.new_page()
    await sign_in(page, "c.zhou")
    await page.get_by_role("tab", name="功能").click()
    held: list[tuple[Route, APIResponse]] = []
    asked = asyncio.Event()

    async def hold(route: Route) -> None:
        if asked.is_set():
            await route.continue_()
            return
        asked.set()
        held.append((route, await route.fetch()))  # answered now, before the session opens

    conversations = re.compile(r"/v1/conversations(\?[^/]*)?$")
    await page.route(conversations, hold)
    await page.get_by_role("button", name=re.compile("^在线客服")).click()
    await asyncio.wait_for(asked.wait(), 20)
    while not held:
        await asyncio.sleep(0.05)
    await page.get_by_role("button", name="咨询客服").click()
    log = page.get_by_role("log")
    await expect(log.locator('[data-event="bot_greeting"]')).to_be_visible()
    for route, response in held:
        await route.fulfill(response=response)
    # the desk's load goes on from that answer (history, queues) before anything is typed;
    # a second load may already have fetched the queues, so wait for the network to settle
    await page.wait_for_load_state("networkidle", timeout=20_000)
    await page.unroute(conversations, hold)
    await page.get_by_label("输入消息").fill("人工")
    await page.get_by_role("button", name="发送", exact=True).click()
    await expect(log.get_by_text("人工", exact=True)).to_have_count(1)
    await expect(page.locator(".desk-status")).to_contain_text("排在第 1 位")
    errors.assert_none()
    await context.close()
