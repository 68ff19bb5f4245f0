"""Alert templates: typed variables, both languages, and the card-number guard (hostile input too)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankhub.alerts.templates import (
    LOCALES,
    TEMPLATES,
    CardNumberFound,
    Template,
    TemplateError,
    Var,
    VarType,
    find_card_number,
    luhn_ok,
    prepare,
    render,
)

TIME = "2026-05-01T10:15:00+08:00"
SAMPLE: dict[VarType, Any] = {
    VarType.MONEY: {"amount": "1234567.5", "currency": "CNY"},
    VarType.ACCOUNT: "6222 0212 3456 7890",
    VarType.TIME: TIME,
    VarType.TEXT: "Coffee Lab",
}


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
@pytest.mark.parametrize("locale", LOCALES)
def test_every_template_renders_in_both_languages_without_the_full_account(template_id: str, locale: str) -> None:
    template = TEMPLATES[template_id]
    variables = {name: SAMPLE[var.type] for name, var in template.variables.items()}
    _, values = prepare(template_id, variables)
    out = render(template, values, locale, "Asia/Shanghai")
    assert out.title and out.body and "{" not in out.body
    assert "6222" not in out.body and find_card_number(out.body) is None


def test_money_account_and_time_are_shown_per_locale_and_zone() -> None:
    template, values = prepare("card.debit", {"amount": {"amount": "1234567.5", "currency": "CNY"}, "account": "****7890", "merchant": "Coffee Lab", "time": TIME})
    assert values["account"] == "7890" and values["amount"] == {"amount": "1234567.50", "currency": "CNY"}
    zh = render(template, values, "zh-CN", "Asia/Shanghai")
    assert zh.body == "您尾号7890的卡于2026年5月1日 10:15在Coffee Lab消费人民币1,234,567.50。"
    en = render(template, values, "en", "America/New_York")
    assert en.body == "Your card ending 7890 was charged CNY 1,234,567.50 at Coffee Lab on 30 Apr 2026, 22:15."
    _, jpy = prepare("account.credit", {"amount": {"amount": "1500", "currency": "JPY"}, "account": "1234", "time": TIME})
    assert render(TEMPLATES["account.credit"], jpy, "zh-CN", "Asia/Tokyo").body.endswith("入账日元1,500。")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"amount": 12.5, "currency": "CNY"}, "strings"),
        ({"amount": "12.505", "currency": "CNY"}, "decimal places"),
        ({"amount": "1", "currency": "JPY", "x": 1}, "must be"),
        ({"amount": "-1", "currency": "CNY"}, "plain decimal"),
        ({"amount": "1e3", "currency": "CNY"}, "plain decimal"),
        ({"amount": "10000000000", "currency": "CNY"}, "out of range"),
        ({"amount": "1", "currency": "XYZ"}, "currency"),
        ({"amount": "1.5", "currency": "JPY"}, "decimal places"),
    ],
)
def test_bad_money_is_refused(value: Any, why: str) -> None:
    with pytest.raises(TemplateError, match=why):
        prepare("account.credit", {"amount": value, "account": "1234", "time": TIME})


@pytest.mark.parametrize("account", ["123", "12ab5678", "1234****", "", "６２２２０２１２３４５６７８９０"])
def test_bad_accounts_are_refused(account: str) -> None:
    with pytest.raises(TemplateError):
        prepare("service.statement_ready", {"account": account, "period": "April"})


def test_times_need_an_offset_and_text_a_sane_length() -> None:
    with pytest.raises(TemplateError, match="offset"):
        prepare("security.password_changed", {"time": "2026-05-01T10:15:00"})
    with pytest.raises(TemplateError, match="longer than 64"):
        prepare("security.new_device", {"device": "x" * 65, "time": TIME})
    with pytest.raises(TemplateError, match="empty"):
        prepare("security.new_device", {"device": "\u200b\u200b ", "time": TIME})
    with pytest.raises(TemplateError, match="no variable"):
        prepare("security.password_changed", {"time": TIME, "extra": 1})
    with pytest.raises(TemplateError, match="unknown template"):
        prepare("nope", {})


def test_hostile_text_is_shown_as_typed_never_expanded_and_without_control_characters() -> None:
    template, values = prepare("security.new_device", {"device": "{account} {0} %s\x1b[31m\nPhone\u202e", "time": TIME})
    out = render(template, values, "en", "UTC")
    assert "{account} {0} %s[31m Phone" in out.body and "\x1b" not in out.body and "\u202e" not in out.body


# --- the card-number guard ------------------------------------------------------------------

PANS = ["4111111111111111", "5500000000000004", "340000000000009", "6011000000000004", "6222021234567890128"]


def test_luhn() -> None:
    assert all(luhn_ok(p) for p in PANS if p != "6222021234567890128") and not luhn_ok("4111111111111112")


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "card 4111 1111 1111 1111 charged",
        "4111-1111-1111-1111",
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111  1111  1111  1111",  # two separators in a row
        "４１１１１１１１１１１１１１１１",  # full-width
        "٤١١١١١١١١١١١١١١١",  # Arabic-Indic digits
        "4111\u200b1111\u200b1111\u200b1111",  # zero-width space
        "4111\u00a01111\u00a01111\u00a01111",  # no-break space
        "4\u03011\u03011\u03011111111111111",  # combining marks between digits
        "ref 99994111111111111111",  # more than 19 digits in one go: a PAN could hide in it
        "4111 1111 1111 1111 2",  # a stray digit after it
        "9 4111-1111-1111-1111",  # ... or before it
        "340000000000009",  # 15-digit Amex
    ],
)
def test_card_numbers_are_found_however_they_are_written(text: str) -> None:
    assert find_card_number(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "411111111111",  # 12 digits
        "CNY 1,234,567,890.00",
        "call 95588 or +86 10 6666 8888",
        "2026-05-01 10:15",
        "4111 1111 1111   1111",  # three separators: two numbers
    ],
)
def test_other_numbers_pass(text: str) -> None:
    assert find_card_number(text) is None


def test_the_sample_is_masked() -> None:
    assert find_card_number("x 4111111111111111") == "41**********1111"


def test_a_card_number_formed_where_a_variable_meets_template_text_is_refused() -> None:
    # a template where two variables meet: a text ending in digits, then an account's last four
    tricky = Template(
        id="t.tricky",
        category="service",
        priority="normal",
        variables={"ref": Var(VarType.TEXT, 40), "account": Var(VarType.ACCOUNT)},
        title={"zh-CN": "t", "en": "t"},
        body={"zh-CN": "{ref} {account}", "en": "{ref} {account}"},
    )
    values = {"ref": "411111111111", "account": "1111"}  # neither alone is a card number
    assert find_card_number(values["ref"]) is None
    with pytest.raises(CardNumberFound):
        render(tricky, values, "en", "UTC")


def test_a_template_must_show_every_variable_and_declare_every_placeholder() -> None:
    with pytest.raises(ValueError):
        Template(id="x", category="service", priority="normal", variables={"a": Var(VarType.TEXT)}, title={"zh-CN": "", "en": ""}, body={"zh-CN": "{b}", "en": "{a}"})
    with pytest.raises(ValueError):
        Template(id="x", category="service", priority="normal", variables={"a": Var(VarType.TEXT), "b": Var(VarType.TEXT)}, title={"zh-CN": "", "en": ""}, body={"zh-CN": "{a}", "en": "{a}"})


hostile = st.text(alphabet=st.sampled_from(list("0123456789 -./\u200b\u00a0４１٤xX*{}")), min_size=1, max_size=64)


@settings(max_examples=300, deadline=None)
@given(device=hostile, account=st.text(alphabet="0123456789 -*", min_size=4, max_size=30), period=hostile)
def test_whatever_the_variables_no_rendered_alert_shows_a_card_number(device: str, account: str, period: str) -> None:
    for template_id, variables in (
        ("security.new_device", {"device": device, "time": TIME}),
        ("service.statement_ready", {"account": account, "period": period}),
        ("marketing.offer", {"headline": period[:40], "text": device}),
    ):
        try:
            template, values = prepare(template_id, variables)
        except TemplateError:
            continue  # refused: fine
        for locale in LOCALES:
            try:
                out = render(template, values, locale, "UTC")
            except CardNumberFound:
                continue
            assert find_card_number(out.title) is None and find_card_number(out.body) is None


def test_alert_content_is_sealed_and_bound_to_its_alert_and_recipient() -> None:
    import os
    import uuid

    from bankhub.alerts.content import CONTENT_KEY_ID, ContentUnreadable, open_content, seal
    from bankhub.crypto.keyring import DataKey

    key = DataKey(os.urandom(32))
    alert, user, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    stored = seal(key, alert, user, "消费提醒", "尾号7890")
    assert "7890".encode() not in stored and "消费".encode() not in stored
    assert open_content(key, alert, user, stored, CONTENT_KEY_ID) == ("消费提醒", "尾号7890")
    for args in ((key, other, user, stored, CONTENT_KEY_ID), (key, alert, other, stored, CONTENT_KEY_ID),
                 (DataKey(os.urandom(32)), alert, user, stored, CONTENT_KEY_ID), (key, alert, user, stored, "plain")):  # fmt: skip
        with pytest.raises(ContentUnreadable):
            open_content(*args)
