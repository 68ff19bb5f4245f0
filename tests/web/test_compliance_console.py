"""The compliance console (/compliance/) in real Chromium.

co.sun places a legal hold on c.li and requests an export of c.li's conversations; a second
officer, co.qian, approves it in their own browser; co.sun watches it become ready, downloads
it, and the manifest verifies offline (the pure ``verify_export`` and ``bankhub export verify``).
Dual control of a hold's release; a reason prompt (a modal dialog) before any read of message
text, Escape cancelling without a read; the audit chain's head to anchor and its verification;
only compliance officers may use the console. Every section has no serious or critical
axe-core violation, and a screenshot is kept of each.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, Page, Route, expect

from bankhub.runner import RunningNode
from bankhub.storage.holds import lock_holds_exclusive_txn

from ..conftest import DEMO_PASSWORD, login, open_direct
from ..support.wsclient import RawClient
from .conftest import PageErrors, new_desktop, sign_in

expect.set_options(timeout=20_000)
BANKHUB = str(Path(sys.executable).parent / "bankhub")  # the console script of this environment
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
    await expect(page.get_by_role("tabpanel").get_by_text("正在加载…")).to_have_count(0)


async def _officer(page: Page, username: str) -> None:
    await sign_in(page, username, "/compliance/")
    await expect(page.get_by_role("heading", name="合规控制台", level=1)).to_be_visible()


async def _audit_count(dsn: str, action: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = $1", action)
        return count
    finally:
        await conn.close()


async def _chat(hub: RunningNode) -> str:
    """c.li and rm.wang exchange a few messages; returns their conversation's id."""
    li, wang = await login(hub, "c.li"), await login(hub, "rm.wang")
    conv = await open_direct(hub, li, "rm.wang")
    a, b = await RawClient.connect(hub.ws_url, li), await RawClient.connect(hub.ws_url, wang)
    try:
        for client, text in ((a, "王经理，我想了解一下理财产品"), (b, "好的，李女士，我把产品说明发给您"), (a, "谢谢，收到了")):
            await client.expect("sent", frame_id=await client.send_text(conv, text))
    finally:
        await a.close()
        await b.close()
    return conv


async def test_a_customer_is_told_the_console_is_not_for_them(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await page.goto("/compliance/")
    await expect(page.get_by_label("用户名")).to_be_focused()
    await page.get_by_label("用户名").fill("c.li")
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("heading", name="无权使用合规控制台")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("仅供合规官使用")
    await expect(page.get_by_role("tablist")).to_have_count(0)
    await _check(page, shots, "not-for-you")
    # the hub refuses anyway: the gate only spares a screen of refusals
    errors.allow("status of 403")
    status = await page.evaluate("fetch('/v1/compliance/audit/head', {credentials: 'same-origin'}).then(r => r.status)")
    assert status == 403
    await page.get_by_role("button", name="退出登录").click()
    await expect(page.get_by_label("用户名")).to_be_visible()
    errors.assert_none()
    await context.close()


async def test_a_hold_release_needs_a_second_officer(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    sun_context, qian_context = await new_desktop(browser, hub, errors), await new_desktop(browser, hub, errors)
    sun, qian = await sun_context.new_page(), await qian_context.new_page()
    await _officer(sun, "co.sun")
    await expect(sun.get_by_role("tab", name="法律保全")).to_have_attribute("aria-selected", "true")
    await sun.get_by_label("保全名称").fill("Release drill")
    await sun.get_by_label("保管人（用户名）").fill("c.zhang")
    await sun.get_by_role("button", name="设置法律保全").click()
    row = sun.get_by_role("row").filter(has_text="Release drill")
    await expect(row).to_contain_text("c.zhang")
    await expect(row).to_contain_text("生效中")
    await row.get_by_label("解除保全「Release drill」的原因").fill("matter closed")
    await row.get_by_role("button", name="申请解除").click()
    await expect(sun.get_by_role("status").filter(has_text="等待另一位合规官批准")).to_be_visible()
    await sun.get_by_label("显示状态").select_option("release_pending")
    await expect(sun.get_by_label("显示状态")).to_be_focused()
    row = sun.get_by_role("row").filter(has_text="Release drill")
    await expect(row).to_contain_text("须由另一位合规官批准")
    await expect(row.get_by_role("button", name="批准解除")).to_have_count(0)  # not for the officer who asked

    await _officer(qian, "co.qian")
    await qian.get_by_label("显示状态").select_option("release_pending")
    row = qian.get_by_role("row").filter(has_text="Release drill")
    await expect(row).to_contain_text("co.sun：matter closed")
    await row.get_by_role("button", name="批准解除").click()
    await expect(qian.get_by_role("status").filter(has_text="保全已解除")).to_be_visible()
    await qian.get_by_label("显示状态").select_option("released")
    await expect(qian.get_by_role("row").filter(has_text="Release drill")).to_contain_text("已解除")
    errors.assert_none()


async def test_every_section_is_accessible_and_the_audit_head_verifies(browser: Browser, hub: RunningNode, shots: Path, dsn: str) -> None:
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await _officer(page, "co.sun")
    for name, shot in (
        ("法律保全", "holds"),
        ("保留策略", "retention"),
        ("监察复核", "review"),
        ("电子取证导出", "exports"),
        ("信息隔离墙", "barriers"),
        ("敏感数据检索", "dlp"),
        ("审计链", "audit"),
    ):
        await _section(page, name)
        await _check(page, shots, shot)

    # the audit tab: the current head (nothing to anchor before a verification), then a
    # verification of the whole chain, worded for what it shows without an anchor
    seq = page.locator("#audit-head-seq")
    await expect(seq).to_have_text(re.compile(r"^\d+$"))
    await expect(page.get_by_role("button", name="复制链头")).to_have_count(0)
    before = int(await seq.inner_text())
    await page.get_by_role("button", name="校验审计链").click()
    await expect(page.get_by_text(re.compile(r"审计链自洽（未比对留存的链头）：已校验 \d+ 行"))).to_be_visible()
    await expect(page.get_by_text("未比对留存的链头：从某行起被整体重写")).to_be_visible()
    assert await _audit_count(dsn, "audit.verified") == 1
    head = await page.locator("#audit-anchor").inner_text()
    assert re.fullmatch(r"\d+:[0-9a-f]{64}", head) and int(head.split(":")[0]) >= before
    await page.get_by_role("button", name="复制链头").click()
    await expect(page.get_by_text("已复制")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == head
    # the anchored head checks out on the command line too
    done = subprocess.run(
        [BANKHUB, "audit", "verify", "--database-url", dsn, "--expect-head", head],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    await _check(page, shots, "audit-verified")

    # an anchor that does not match: reported broken, and no head is offered to anchor
    anchored = page.get_by_label("已留存的链头（SEQ:HEX，可选）")
    await anchored.fill(f"{head.split(':')[0]}:{'0' * 64}")
    await page.get_by_role("button", name="校验审计链").click()
    await expect(page.get_by_text(re.compile(r"审计链损坏：第 \d+ 行（与留存的链头不符）"))).to_be_visible()
    await expect(page.get_by_text("不要留存此链头", exact=False)).to_be_visible()
    await expect(page.locator("#audit-anchor")).to_have_count(0)
    await expect(page.get_by_role("button", name="复制链头")).to_have_count(0)
    # the head anchored earlier: the chain is intact up to it
    await anchored.fill(head)
    await page.get_by_role("button", name="校验审计链").click()
    await expect(page.get_by_text(re.compile(r"审计链完整：与留存的链头（第 \d+ 行）一致"))).to_be_visible()
    await expect(page.get_by_role("button", name="复制链头")).to_be_visible()
    assert await _audit_count(dsn, "audit.verified") == 3

    # keyboard: arrows move between the tabs
    await page.get_by_role("tab", name="审计链").focus()
    await page.keyboard.press("Home")
    await expect(page.get_by_role("tab", name="法律保全")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(page.get_by_role("tab", name="保留策略")).to_have_attribute("aria-selected", "true")
    # English on request
    await page.get_by_role("button", name="Switch to English").click()
    await expect(page.get_by_role("heading", name="Compliance console", level=1)).to_be_visible()
    errors.assert_none()


async def test_co_sun_holds_c_li_and_downloads_an_export_co_qian_approved(
    browser: Browser, hub: RunningNode, shots: Path, dsn: str, tmp_path: Path
) -> None:
    from bankhub.compliance.export_format import open_jsonl, read_export, verify_export

    conv = await _chat(hub)
    errors = PageErrors()
    sun_context, qian_context = await new_desktop(browser, hub, errors), await new_desktop(browser, hub, errors)
    sun, qian = await sun_context.new_page(), await qian_context.new_page()

    # co.sun places a hold on custodian c.li
    await _officer(sun, "co.sun")
    await sun.get_by_label("保全名称").fill("Li complaint")
    await sun.get_by_label("案件编号").fill("CASE-2026-0042")
    await sun.get_by_label("保管人（用户名）").fill("c.li")
    await sun.get_by_role("button", name="设置法律保全").click()
    await expect(sun.get_by_role("status").filter(has_text="已设置保全「Li complaint」")).to_be_focused()  # the outcome, for a screen reader
    row = sun.get_by_role("row").filter(has_text="Li complaint")
    await expect(row).to_contain_text("c.li")
    await expect(row).to_contain_text("生效中")
    await _check(sun, shots, "hold-placed")

    # ... and requests an export of c.li's conversations
    await _section(sun, "电子取证导出")
    await sun.get_by_label("保管人（用户名）").fill("c.li")
    await sun.get_by_label("原因").select_option("legal_hold")
    await sun.get_by_label("案件编号").fill("CASE-2026-0042")
    await sun.get_by_role("button", name="申请导出").click()
    await expect(sun.get_by_role("status").filter(has_text="已提交导出申请")).to_be_visible()
    row = sun.get_by_role("row").filter(has_text="c.li")
    await expect(row).to_contain_text("待批准")
    await expect(row.get_by_role("button", name=re.compile("^批准"))).to_have_count(0)  # not for the requester
    await _check(sun, shots, "export-requested")
    # a second request, left pending: co.sun keeps the keyboard focus on it while the list is re-read
    await sun.get_by_label("保管人（用户名）").fill("c.zhang")
    await sun.get_by_label("原因").select_option("internal_audit")
    await sun.get_by_role("button", name="申请导出").click()
    await expect(sun.get_by_role("status").filter(has_text="已提交导出申请")).to_be_visible()
    withdraw = sun.get_by_role("row").filter(has_text="c.zhang").get_by_role("button", name="撤回")
    await withdraw.focus()

    # a second officer approves it in their own browser
    await _officer(qian, "co.qian")
    await _section(qian, "电子取证导出")
    await qian.get_by_role("row").filter(has_text="c.li").get_by_role("button", name="批准 co.sun 的导出申请").click()
    await expect(qian.get_by_role("status").filter(has_text="已批准导出")).to_be_visible()

    # co.sun's list follows it to ready (the page polls while it awaits approval or runs)
    link = sun.get_by_role("link", name="下载")
    await expect(link).to_be_visible(timeout=60_000)
    await expect(sun.get_by_role("row").filter(has_text="c.li")).to_contain_text("可下载")
    await expect(sun.get_by_role("row").filter(has_text="c.li")).to_contain_text("co.qian")
    # the list was re-drawn (pending → running → ready) without taking the focus away, and the
    # change was said in the polite live region
    await expect(withdraw).to_be_focused()
    await expect(sun.get_by_role("status").filter(has_text=re.compile(r"导出 [0-9a-f]{8}：可下载"))).to_have_count(1)
    await _check(sun, shots, "export-ready")
    async with sun.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    assert re.fullmatch(r"bankhub-export-[0-9a-f-]{36}\.zip", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)

    # the manifest verifies offline: the pure check and the command line
    result = verify_export(saved)
    assert result.ok, result.problems
    assert result.files_checked > 0
    # what it holds: the chat's text, and c.li as a member when each message was sent
    records = open_jsonl(read_export(saved.read_bytes(), "messages.jsonl"))
    texts = {r["body"].get("text") for r in records}
    assert {"王经理，我想了解一下理财产品", "好的，李女士，我把产品说明发给您", "谢谢，收到了"} <= texts, texts
    assert all("c.li" in {s["username"] for s in r["members_at_send"]} for r in records if r["conversation_id"] == conv)
    conversations = open_jsonl(read_export(saved.read_bytes(), "conversations.jsonl"))
    (mine,) = [c for c in conversations if c["conversation_id"] == conv]
    assert {s["username"] for s in mine["membership"]} >= {"c.li", "rm.wang"}
    # pinned to the key the hub publishes: only then is the signer authenticated (exit 0)
    async with httpx.AsyncClient(base_url=hub.http_url) as anon:
        keys = await anon.get("/v1/signing-keys")
    assert keys.status_code == 200, keys.text
    key_file = tmp_path / "signing-keys.json"
    key_file.write_text(keys.text)
    done = subprocess.run([BANKHUB, "export", "verify", str(saved), "--key", str(key_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert await _audit_count(dsn, "export.downloaded") == 1
    errors.assert_none()


async def test_retention_policies_keep_the_floor_and_a_purge_runs_to_done(browser: Browser, hub: RunningNode, shots: Path) -> None:
    """co.sun asks for a policy (below the floor: refused); it waits for co.qian, who approves
    it in their own browser (co.sun may not); a purge runs to done; the policy's removal is a
    request co.qian approves too."""
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    qian_context = await new_desktop(browser, hub, errors)
    page, qian = await context.new_page(), await qian_context.new_page()
    await _officer(page, "co.sun")
    await _section(page, "保留策略")
    floor = hub.hub.settings.retention_floor_days
    await expect(page.get_by_text(f"保留下限：{floor} 天")).to_be_visible()
    await page.get_by_label("范围").select_option("kind")
    await page.get_by_label("取值").fill("group")
    await page.get_by_label("保留天数").fill(str(floor - 1))
    errors.allow("status of 422")
    await page.get_by_role("button", name="添加").click()
    await expect(page.get_by_role("status").filter(has_text="失败")).to_be_visible()  # below the floor: the hub refuses
    await expect(page.get_by_role("row").filter(has_text="group")).to_have_count(0)
    await page.get_by_label("保留天数").fill(str(floor + 365))
    await page.get_by_role("button", name="添加").click()
    await expect(page.get_by_role("status").filter(has_text="须由另一位合规官批准后生效")).to_be_visible()
    await expect(page.get_by_role("table", name="保留策略")).to_have_count(0)  # not in force yet
    asked = page.get_by_role("table", name="待批准的保留申请").get_by_role("row").filter(has_text=str(floor + 365))
    await expect(asked).to_contain_text("co.sun")
    await expect(asked.get_by_role("button", name=re.compile("^批准"))).to_have_count(0)  # not for the officer who asked

    await _officer(qian, "co.qian")
    await _section(qian, "保留策略")
    row = qian.get_by_role("table", name="待批准的保留申请").get_by_role("row").filter(has_text=str(floor + 365))
    await row.get_by_role("button", name=f"批准：设置策略 会话类型=group，保留 {floor + 365} 天").click()
    await expect(qian.get_by_role("status").filter(has_text="已批准")).to_be_visible()
    await expect(qian.get_by_role("table", name="保留策略").get_by_role("row").filter(has_text=str(floor + 365))).to_contain_text("co.sun")

    await _section(page, "信息隔离墙")
    await _section(page, "保留策略")
    await expect(page.get_by_role("row").filter(has_text=str(floor + 365))).to_contain_text("co.sun")

    await page.get_by_role("button", name="开始清理").click()
    runs = page.get_by_role("table", name="历次清理")
    await expect(runs.get_by_role("row").filter(has_text="已完成")).to_have_count(1, timeout=60_000)
    await _check(page, shots, "retention")
    await page.get_by_role("button", name="删除策略 会话类型=group").click()
    await expect(page.get_by_role("status").filter(has_text="已申请删除策略")).to_be_visible()
    await expect(page.get_by_role("table", name="保留策略")).to_have_count(1)  # until approved
    await _section(qian, "信息隔离墙")
    await _section(qian, "保留策略")
    await qian.get_by_role("button", name=f"批准：删除策略 会话类型=group（{floor + 365} 天）").click()
    await expect(qian.get_by_role("status").filter(has_text="已批准")).to_be_visible()
    await expect(qian.get_by_role("table", name="保留策略")).to_have_count(0)
    errors.assert_none()


async def test_the_purge_list_keeps_the_focus_through_its_re_reads_says_what_changed_and_stops_when_done(
    browser: Browser, hub: RunningNode, dsn: str
) -> None:
    """While a purge runs, the runs are re-read every 1.5 s: a re-read with nothing new redraws
    nothing; one that changes a run's state redraws the list with the focus still on the control
    it was on, says so in the polite live region, and the re-reads stop once no run is going."""
    purges = "/v1/compliance/retention/purges"
    floor = hub.hub.settings.retention_floor_days
    async with (
        httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'co.sun')}"}) as sun,
        httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'co.qian')}"}) as qian,
    ):
        asked = await sun.post("/v1/compliance/retention/policies", json={"scope": "kind", "value": "service", "days": floor + 10})
        assert asked.status_code == 202, asked.text
        assert (await qian.post(f"/v1/compliance/retention/requests/{asked.json()['request_id']}/approve")).status_code == 200
        # an earlier run that failed: its Resume button is the control focused
        earlier = (await sun.post(purges)).json()["run_id"]
        async with asyncio.timeout(30):
            while (await sun.get(f"{purges}/{earlier}")).json()["state"] == "running":
                await asyncio.sleep(0.1)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE purge_runs SET state = 'failed' WHERE id = $1", earlier)
            # a hold being placed: the next run's first batch waits for it, so the run stays running
            tx = conn.transaction()
            await tx.start()
            await lock_holds_exclusive_txn(conn)
            r = await sun.post(purges)
            assert r.status_code == 202, r.text
            going = r.json()["run_id"]

            errors = PageErrors()
            context = await new_desktop(browser, hub, errors)
            page = await context.new_page()
            await page.clock.install()
            first_page = re.compile(r"/v1/compliance/retention/purges\?limit=50$")
            reads: list[str] = []
            page.on("request", lambda request: reads.append(request.url) if first_page.search(request.url) else None)
            await _officer(page, "co.sun")
            # the clock stands still before the list is read: its re-read timer is armed on
            # paused time, so only run_for below fires it, however long the steps take
            await page.clock.pause_at((await page.evaluate("Date.now()") + 500) / 1000)  # seconds
            await _section(page, "保留策略")
            runs = page.get_by_role("table", name="历次清理")
            await expect(runs.get_by_role("row").filter(has_text="进行中")).to_have_count(1)
            resume = page.locator(f"#run-{earlier}-resume")
            await resume.focus()
            await expect(resume).to_be_focused()
            busy = page.locator(".runs")

            # re-read while the run is going: the same figures, nothing redrawn, the focus stays
            count = len(reads)
            for _ in range(2):
                async with page.expect_response(first_page):
                    await page.clock.run_for(1_600)
                await expect(busy).not_to_have_attribute("aria-busy", "true")
                await expect(resume).to_be_focused()
            assert len(reads) == count + 2, reads

            # the hold commits, the run finishes: the next re-read redraws, the focus stays on Resume
            await tx.commit()
            async with asyncio.timeout(30):
                while (await sun.get(f"{purges}/{going}")).json()["state"] == "running":
                    await asyncio.sleep(0.1)
            async with page.expect_response(first_page):
                await page.clock.run_for(1_600)
            await expect(runs.get_by_role("row").filter(has_text="进行中")).to_have_count(0)
            await expect(page.locator(f"#run-{earlier}-resume")).to_be_focused()
            await expect(page.get_by_role("status").filter(has_text=f"清理 {going[:8]}：已完成")).to_be_attached()
            await expect(page.locator("#purge-start")).to_be_enabled()
            # nothing running: no more re-reads
            count = len(reads)
            await page.clock.run_for(30_000)
            assert len(reads) == count, reads
            errors.assert_none()
        finally:
            await conn.close()


async def test_barrier_segments_members_and_policies(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await _officer(page, "co.sun")
    await _section(page, "信息隔离墙")
    for name, title in (("research", "Research"), ("ibd", "Investment banking")):
        await page.get_by_label("分组标识").fill(name)
        await page.get_by_label("分组名称").fill(title)
        await page.get_by_role("button", name="添加").first.click()
        await expect(page.get_by_role("status").filter(has_text="已新增分组")).to_be_visible()
        await expect(page.get_by_role("row").filter(has_text=title)).to_be_visible()
    await page.get_by_role("button", name="research 的成员").click()
    await page.get_by_label("用户名").fill("rm.wang")
    await page.get_by_role("button", name="添加成员").click()
    await expect(page.get_by_role("table", name="成员").get_by_role("row").filter(has_text="rm.wang")).to_be_visible()
    await page.get_by_label("分组 A").select_option("ibd")
    await page.get_by_label("分组 B").select_option("research")
    await page.get_by_role("form", name=re.compile("新增隔离策略")).get_by_role("button", name="添加").click()
    await expect(page.get_by_role("status").filter(has_text="已新增隔离策略")).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("删除 (ibd 与 research|research 与 ibd) 之间的隔离"))).to_be_visible()
    await _check(page, shots, "barriers")
    errors.assert_none()


async def test_a_review_queue_read_waits_for_a_reason_and_escape_reads_nothing(
    browser: Browser, hub: RunningNode, shots: Path, dsn: str
) -> None:
    # a lexicon rule, then rm.wang promises returns to c.li
    async with httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'co.sun')}"}) as http:
        r = await http.post("/v1/compliance/supervision/rules", json={"name": "承诺收益", "kind": "lexicon", "terms": ["保证收益"]})
        assert r.status_code == 201, r.text
    li, wang = await login(hub, "c.li"), await login(hub, "rm.wang")
    conv = await open_direct(hub, li, "rm.wang")
    client = await RawClient.connect(hub.ws_url, wang)
    try:
        for text in ("李女士您好", "这款产品保证收益百分之八", "详情见说明书"):
            await client.expect("sent", frame_id=await client.send_text(conv, text))
    finally:
        await client.close()

    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    # every read of a flag the page makes (the Escape check counts them, not the audit rows a
    # slow read might not have written yet)
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if "/v1/compliance/supervision/flags/" in request.url and request.method == "GET" else None)
    await _officer(page, "co.sun")
    await _section(page, "监察复核")
    queue = page.get_by_role("table", name="复核队列")
    row = queue.get_by_role("row").filter(has_text="承诺收益")
    await expect(row).to_contain_text("rm.wang")
    await expect(page.get_by_text("这款产品保证收益百分之八")).to_have_count(0)  # the queue is metadata only
    open_button = row.get_by_role("button", name="查阅 rm.wang 被「承诺收益」标记的消息")

    # the prompt comes first; confirming without a reason reads nothing
    await open_button.click()
    dialog = page.get_by_role("dialog", name="查阅原因")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("radio", name="投诉调查")).to_be_focused()
    await _check(page, shots, "reason-prompt")
    await dialog.get_by_role("button", name="确认并查阅").click()
    await expect(dialog.get_by_role("alert")).to_have_text("请先选择原因")
    await expect(dialog).to_be_visible()
    # by keyboard alone: Tab to 确认并查阅 and press Enter, still without a reason
    await dialog.get_by_role("radio", name="投诉调查").focus()
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_label("案件编号")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="确认并查阅")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dialog.get_by_role("alert")).to_have_text("请先选择原因")
    await expect(dialog.get_by_role("radio", name="投诉调查")).to_be_focused()
    for _ in range(6):  # Tab stays inside the modal dialog
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement?.closest('dialog') !== null")
    assert await _audit_count(dsn, "privileged_read") == 0

    # Escape cancels: no read, focus back on the button that opened it
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(open_button).to_be_focused()
    await expect(page.get_by_text("这款产品保证收益百分之八")).to_have_count(0)
    assert await _audit_count(dsn, "privileged_read") == 0

    # with a reason and a case reference: the audited read, then the message in its context
    await open_button.click()
    await dialog.get_by_role("radio", name="投诉调查").check()
    await dialog.get_by_label("案件编号").fill("CASE-2026-0077")
    await dialog.get_by_role("button", name="确认并查阅").click()
    reader = page.get_by_role("region", name="被标记的消息")
    await expect(reader.locator(".message.flagged")).to_contain_text("这款产品保证收益百分之八")
    await expect(reader).to_contain_text("李女士您好")
    await expect(reader).to_contain_text("详情见说明书")
    assert await _audit_count(dsn, "privileged_read") == 1
    assert len(reads) == 1, reads  # the cancelled prompt read nothing
    await _check(page, shots, "flag-read")

    # a decision with a note; the figures count it
    await reader.get_by_label("处理备注").fill("promise of returns: refer to the branch")
    await reader.get_by_role("button", name="升级").click()
    await expect(page.get_by_role("status").filter(has_text="已升级")).to_be_visible()
    await page.get_by_label("显示状态").select_option("escalated")
    await expect(queue.get_by_role("row").filter(has_text="承诺收益")).to_contain_text("已升级")
    figures = page.get_by_role("table", name="按规则")
    await expect(figures.get_by_role("row").filter(has_text="承诺收益")).to_be_visible()
    errors.assert_none()


async def test_a_card_number_finds_its_conversation_and_reading_it_needs_a_reason(
    browser: Browser, hub: RunningNode, shots: Path, dsn: str
) -> None:
    card = "6222021234567894"  # passes Luhn
    li = await login(hub, "c.li")
    conv = await open_direct(hub, li, "rm.wang")
    client = await RawClient.connect(hub.ws_url, li)
    try:
        await client.expect("sent", frame_id=await client.send_text(conv, f"我的卡号是 {card[:4]} {card[4:8]} {card[8:12]} {card[12:]}"))
    finally:
        await client.close()

    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await _officer(page, "co.sun")
    await _section(page, "敏感数据检索")
    await page.get_by_label("号码类型").select_option("card")
    await page.get_by_label("号码", exact=True).fill(card)
    await page.get_by_role("button", name="检索").click()
    dialog = page.get_by_role("dialog", name="查阅原因")
    await dialog.get_by_role("radio", name="欺诈调查").check()
    await dialog.get_by_role("button", name="确认并查阅").click()
    await expect(page.get_by_text("共 1 条匹配，涉及 1 个会话")).to_be_visible()
    await expect(page.get_by_label("号码", exact=True)).to_have_value("")  # the number does not stay on screen
    row = page.get_by_role("table", name="匹配的会话").get_by_role("row").filter(has_text=conv)
    await expect(row).to_be_visible()
    assert await _audit_count(dsn, "privileged_read") == 0  # metadata only so far

    # reading the conversation asks again; what is shown is the stored, masked text
    await row.get_by_role("button", name="查阅会话").click()
    await dialog.get_by_role("radio", name="欺诈调查").check()
    await dialog.get_by_role("button", name="确认并查阅").click()
    reader = page.get_by_role("region", name="会话内容")
    await expect(reader).to_contain_text("我的卡号是")
    await expect(reader).to_contain_text(card[-4:])
    await expect(reader).not_to_contain_text(card[4:8])
    assert await _audit_count(dsn, "privileged_read") == 1
    await _check(page, shots, "dlp-search")
    errors.assert_none()


async def test_reading_a_dlp_match_early_in_a_long_conversation_shows_it_and_pages_under_one_reason(
    browser: Browser, hub: RunningNode, shots: Path, dsn: str
) -> None:
    card = "6222021234567894"
    li = await login(hub, "c.li")
    conv = await open_direct(hub, li, "rm.wang")
    client = await RawClient.connect(hub.ws_url, li)
    try:
        await client.expect("sent", frame_id=await client.send_text(conv, "开头第一条"))
        draft = await client.expect("sent", frame_id=await client.send_text(conv, "原来的说法"))
        await client.expect("sent", frame_id=await client.send_text(conv, f"卡号 {card}"))
        # the edit replaces seq 2's text; the reader shows the original beside it
        edited = await client.request(
            {"type": "edit", "conversation_id": conv, "message_id": draft["message_id"], "client_msg_id": "edit-1", "body": {"kind": "text", "text": "改过的说法"}}
        )
        assert edited["type"] == "sent", edited
        for n in range(70):  # the match is far from the latest page
            await client.expect("sent", frame_id=await client.send_text(conv, f"后续消息 {n}"))
    finally:
        await client.close()

    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await _officer(page, "co.sun")
    await _section(page, "敏感数据检索")
    await page.get_by_label("号码类型").select_option("card")
    await page.get_by_label("号码", exact=True).fill(card)
    await page.get_by_role("button", name="检索").click()
    dialog = page.get_by_role("dialog", name="查阅原因")
    await dialog.get_by_role("radio", name="欺诈调查").check()
    await dialog.get_by_role("button", name="确认并查阅").click()
    row = page.get_by_role("table", name="匹配的会话").get_by_role("row").filter(has_text=conv)
    await row.get_by_role("button", name="查阅会话").click()
    await dialog.get_by_role("radio", name="欺诈调查").check()
    await dialog.get_by_role("button", name="确认并查阅").click()
    reader = page.get_by_role("region", name="会话内容")
    # the match itself, and the messages around it, not the latest 50
    await expect(reader.locator('[aria-current="true"]')).to_contain_text("卡号")
    await expect(reader.locator('[aria-current="true"]')).to_contain_text(card[-4:])
    await expect(reader).to_contain_text("开头第一条")
    await expect(reader).to_contain_text("改过的说法")
    await expect(reader).to_contain_text("第 1 次编辑前")
    await expect(reader).to_contain_text("原来的说法")
    await expect(reader).not_to_contain_text("后续消息 69")
    await expect(reader.get_by_role("button", name="更早的消息")).to_have_count(0)  # the conversation's start is shown
    assert await _audit_count(dsn, "privileged_read") == 1
    await _check(page, shots, "dlp-read-around")
    # later pages: each one an audited read under the same reason, no prompt again
    later = reader.get_by_role("button", name="更晚的消息")
    await later.click()
    await expect(reader).to_contain_text("后续消息 30")
    await expect(later).to_be_focused()
    assert await _audit_count(dsn, "privileged_read") == 2
    await later.click()
    await expect(reader).to_contain_text("后续消息 60")
    await later.click()
    await expect(reader).to_contain_text("后续消息 69")
    await expect(later).to_have_count(0)
    await expect(dialog).to_have_count(0)
    errors.assert_none()


async def test_long_lists_show_a_page_and_load_more_on_request(browser: Browser, hub: RunningNode, shots: Path) -> None:
    async with httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'co.sun')}"}) as http:
        for n in range(53):
            r = await http.post("/v1/compliance/holds", json={"name": f"Bulk {n:02d}", "custodian": "c.zhang"})
            assert r.status_code == 201, r.text
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/v1/compliance/holds?" in request.url else None)
    await _officer(page, "co.sun")
    holds = page.get_by_role("table", name="法律保全（生效中）")
    await expect(holds.get_by_role("row")).to_have_count(51)  # a header and the first 50
    assert len(requests) == 1 and "limit=50" in requests[0], requests
    more = page.get_by_role("button", name="加载更多")
    await more.click()
    await expect(holds.get_by_role("row")).to_have_count(54)
    await expect(more).to_be_hidden()
    await expect(holds.locator("caption")).to_be_focused()
    assert len(requests) == 2, requests
    await _check(page, shots, "holds-more")
    errors.assert_none()


async def test_the_export_list_polls_slowly_while_pending_survives_a_stale_read_pauses_hidden_and_stops_on_401(
    browser: Browser, hub: RunningNode
) -> None:
    async with httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'co.sun')}"}) as http:
        r = await http.post("/v1/compliance/exports", json={"custodians": ["c.li"], "reason": "internal_audit"})
        assert r.status_code == 201, r.text
    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await page.clock.install()
    first_page = re.compile(r"/v1/compliance/exports\?limit=50$")
    # counted as the route sees them: the page's "request" event may reach the test after a
    # routed answer was already handled (the 401 below would then be counted late)
    reads: list[str] = []
    held: list[Route] = []
    holding = asyncio.Event()
    plan = {"hold": False, "refuse": False}

    async def route(r: Route) -> None:
        reads.append(r.request.url)
        if plan["refuse"]:
            await r.fulfill(status=401, content_type="application/problem+json", body='{"code": "unauthorized", "status": 401, "title": "Unauthorized", "detail": "session ended"}')
        elif plan["hold"]:
            plan["hold"] = False
            held.append(r)
            holding.set()
        else:
            await r.continue_()

    async def settle() -> None:
        # a round trip: an answer already received is handled by the page meanwhile (the
        # faked clock fires no timer on its own, so nothing else runs)
        await page.evaluate("fetch('/healthz').then((r) => r.text())")

    async def handled() -> None:
        # the list's re-read is over (its answer shown and the next one planned)
        await expect(page.locator(".exports")).not_to_have_attribute("aria-busy", "true")

    await page.route(first_page, route)
    await _officer(page, "co.sun")
    # paused before the list is read: its 15 s timer is armed on paused time
    await page.clock.pause_at((await page.evaluate("Date.now()") + 500) / 1000)  # seconds
    await _section(page, "电子取证导出")
    await expect(page.get_by_role("row").filter(has_text="c.li")).to_contain_text("待批准")
    assert len(reads) == 1

    # awaiting approval: the first page is re-read every 15 s, not every 1.5 s
    await page.clock.run_for(13_000)
    assert len(reads) == 1, reads
    async with page.expect_response(first_page):
        await page.clock.run_for(3_000)
    await handled()
    assert len(reads) == 2

    # a read still in flight when the section is left and shown again lands on the old list:
    # it must not cancel the re-reads of the list now shown
    plan["hold"] = True
    await page.clock.run_for(16_000)
    await asyncio.wait_for(holding.wait(), 20)
    stale = await page.locator(".exports").element_handle()
    assert await stale.get_attribute("aria-busy") == "true"
    await _section(page, "审计链")
    await _section(page, "电子取证导出")
    await expect(page.get_by_role("row").filter(has_text="c.li")).to_contain_text("待批准")
    async with page.expect_response(first_page):
        await held[0].continue_()
    # the old list (no longer in the page) has handled its answer: no selector reaches it, so
    # its handle is asked directly until then
    async with asyncio.timeout(20):
        while await stale.get_attribute("aria-busy") == "true":
            await settle()
    count = len(reads)
    async with page.expect_response(first_page):
        await page.clock.run_for(16_000)
    await handled()
    assert len(reads) == count + 1, reads

    # hidden: no re-read until the page is visible again
    await page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}); document.dispatchEvent(new Event('visibilitychange'))")
    count = len(reads)
    await page.clock.run_for(40_000)
    assert len(reads) == count, reads
    async with page.expect_response(first_page):
        await page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => false}); document.dispatchEvent(new Event('visibilitychange'))")
    await handled()

    # the session ended: back to sign-in, and no more re-reads
    errors.allow("status of 401")
    plan["refuse"] = True
    await page.clock.run_for(16_000)
    await expect(page.get_by_label("用户名")).to_be_visible()
    count = len(reads)
    await page.clock.run_for(120_000)
    assert len(reads) == count, reads
    errors.assert_none()


async def test_a_flagged_group_title_reads_as_the_title_with_the_term_it_matched(
    browser: Browser, hub: RunningNode, shots: Path
) -> None:
    from ..integration.test_groups import befriend

    await befriend(hub, "c.li", "c.zhang")
    async with httpx.AsyncClient(base_url=hub.http_url, headers={"authorization": f"Bearer {await login(hub, 'c.li')}"}) as http:
        r = await http.post("/v1/groups", json={"title": "稳赚俱乐部", "members": ["c.zhang"]})
        assert r.status_code == 201, r.text

    errors = PageErrors()
    context = await new_desktop(browser, hub, errors)
    page = await context.new_page()
    await _officer(page, "co.sun")
    await _section(page, "监察复核")
    row = page.get_by_role("table", name="复核队列").get_by_role("row").filter(has_text="c.li")
    await expect(row).to_have_count(1)
    await row.get_by_role("button").first.click()
    dialog = page.get_by_role("dialog", name="查阅原因")
    await dialog.get_by_role("radio", name="内部审计").check()
    await dialog.get_by_role("button", name="确认并查阅").click()
    reader = page.get_by_role("region", name="被标记的消息")
    flagged = reader.locator(".message.flagged")
    await expect(flagged).to_contain_text("群名称")
    await expect(flagged).to_contain_text("稳赚俱乐部")
    await expect(reader).not_to_contain_text("该消息已不可读")
    await expect(reader).to_contain_text("命中：稳赚")
    await _check(page, shots, "flag-group-title")
    errors.assert_none()
