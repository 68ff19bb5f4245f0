"""The customer app's Me tab in real Chromium: c.li's profile card, her RM's availability,
and her signed-in devices: this one marked, another one signed out from here (its browser
session ends on the hub at once)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from ..support.desk import api, token_for
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


async def test_me_shows_profile_rm_availability_and_revokes_another_device(browser: Browser, hub: RunningNode, shots: Path) -> None:
    wang = await token_for(hub, "rm.wang")
    async with api(hub, wang) as http:
        r = await http.put("/v1/rm/availability", json={"status": "away", "message": "客户拜访中，下午三点回来"})
        assert r.status_code == 200, r.text

    errors = PageErrors()
    phone = await new_phone(browser, hub, errors)
    # the other device's page is signed out under it: the errors of its dying socket are expected
    laptop = await new_desktop(browser, hub, PageErrors())
    page, other = await phone.new_page(), await laptop.new_page()
    await sign_in(other, "c.li")
    await sign_in(page, "c.li")
    await page.get_by_role("tab", name="我", exact=True).click()

    await expect(page.locator(".profile").first).to_contain_text("Beijing Branch (BJ)")
    await expect(page.locator(".profile").first).to_contain_text("wealth")
    await expect(page.locator(".rm-name")).to_have_text("Wang (Relationship Manager)")
    await expect(page.locator(".rm-status")).to_have_text("暂时离开")
    await expect(page.get_by_text("客户拜访中，下午三点回来")).to_be_visible()

    devices = page.get_by_role("list", name="已登录设备")
    await expect(devices.get_by_role("listitem")).to_have_count(2)
    mine = devices.locator(".device.current")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("本设备")
    await expect(mine.get_by_role("button")).to_have_count(0)  # this device signs out with 退出登录
    await page.screenshot(path=shots / "01-me.png")

    await devices.locator(".device:not(.current)").get_by_role("button", name=re.compile("^下线")).click()
    await expect(devices.get_by_role("listitem")).to_have_count(1)
    assert (await other.request.get("/v1/web/session")).status == 401  # the laptop's session is over
    assert (await page.request.get("/v1/web/session")).status == 200  # this one is not
    errors.assert_none()
    await phone.close()
    await laptop.close()
