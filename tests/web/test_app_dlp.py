"""Data-loss prevention in real Chromium: c.li types a card number to rm.wang in the customer
app; her chat shows the masked text and the notice ("卡号已隐去：6222 **** **** … — 请勿在聊天中发送
卡号…"), rm.wang's staff chat shows only the masked text, live; rm.wang's own card number to
c.li is refused with an alert and never reaches her. The full number is on neither page.
"""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from bankhub.runner import RunningNode

from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)


def _luhn_complete(partial: str) -> str:
    for d in "0123456789":
        digits = partial + d
        total = sum((int(c) * (2 if i % 2 else 1)) - (9 if int(c) * (2 if i % 2 else 1) > 9 else 0) for i, c in enumerate(reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


CARD = _luhn_complete("622202123456789")
SPACED = " ".join(CARD[i : i + 4] for i in range(0, 16, 4))
MASKED = f"{CARD[:4]} **** **** {CARD[-4:]}"


async def test_a_card_number_is_masked_with_a_notice_and_staff_cannot_send_one(browser: Browser, hub: RunningNode) -> None:
    errors = PageErrors()
    li_context, wang_context = await new_phone(browser, hub, errors), await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()
    await sign_in(wang, "rm.wang", "/staff/")
    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    compose = li.get_by_label(re.compile("输入消息|Message"))
    await compose.fill(f"我的卡号 {SPACED} 请帮我查账")
    await li.get_by_role("button", name=re.compile("^(发送|Send)$")).click()

    li_log = li.get_by_role("log")
    await expect(li_log.get_by_text(f"我的卡号 {MASKED} 请帮我查账", exact=True)).to_have_count(1)
    notice = li.get_by_role("status").filter(has_text="卡号已隐去")
    await expect(notice).to_contain_text(f"卡号已隐去：{MASKED}")
    await expect(notice).to_contain_text("请勿在聊天中发送卡号、CVV安全码或验证码")
    await expect(li_log.get_by_text(CARD[4:8], exact=False)).to_have_count(0)

    card = wang.locator('.card.customer[data-username="c.li"]')
    await card.get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()
    wang_log = wang.get_by_role("log")
    await expect(wang_log.get_by_text(f"我的卡号 {MASKED} 请帮我查账", exact=True)).to_have_count(1)
    assert CARD not in await wang.content() and SPACED not in await wang.content()

    # staff to a customer: refused, said so, and nothing reaches c.li
    wang_compose = wang.get_by_role("textbox").last
    await wang_compose.fill(f"您的新卡号 {CARD}")
    await wang_compose.press("Enter")
    alert = wang.get_by_role("alert").filter(has_text="未发送")
    # in the page's language, built from the kinds the hub names (not the hub's English text)
    await expect(alert).to_contain_text("未发送：消息含卡号。")
    await expect(alert).not_to_contain_text("card number")
    await expect(wang_log.locator(".msg.mine")).to_have_count(0)
    await li.wait_for_timeout(500)
    await expect(li_log.get_by_text("您的新卡号")).to_have_count(0)

    # the notice can be dismissed from the keyboard
    dismiss = li.get_by_role("button", name="知道了")
    await dismiss.focus()
    await li.keyboard.press("Enter")
    await expect(notice).to_be_hidden()
    errors.assert_none()
