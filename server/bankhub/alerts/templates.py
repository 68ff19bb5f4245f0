"""Alert templates: typed variables, zh-CN and en text, rendered by the hub. Pure code.

A calling system names a template and passes its variables; it never sends the text a
customer reads. Each variable has a type that decides how it is checked and shown:

* ``money`` — ``{"amount": "1234.50", "currency": "CNY"}``: a decimal *string* (never a
  float), 0 ≤ amount < 10^10, at most the currency's minor units; shown with thousands
  separators in the customer's language (``CNY 1,234.50`` / ``人民币1,234.50``).
* ``account`` — an account or card number, in full or already masked (``"****0123"``):
  only its **last four digits** are kept (the full number is never stored) and shown.
* ``time`` — ISO 8601 with a UTC offset (``"2026-05-01T10:15:00+08:00"``), shown in the
  customer's time zone.
* ``text`` — short free text (a merchant, a device, a period), up to the variable's
  length; control and invisible formatting characters are removed.

Whatever the variables hold, a rendered alert never contains a card number: every text
variable and the rendered title and body are scanned (:func:`find_card_number`: 13–19
digits passing the Luhn check, however they are spaced or written, and any unbroken run
of more than 19 digits), and such an alert is refused (:class:`CardNumberFound`) rather
than sent or stored.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import string
import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..compliance.dlp import find_card_number, luhn_ok

__all__ = [
    "LOCALES",
    "VarType",
    "Var",
    "Template",
    "TEMPLATES",
    "TemplateError",
    "CardNumberFound",
    "Rendered",
    "prepare",
    "render",
    "find_card_number",
    "luhn_ok",
]

LOCALES = ("zh-CN", "en")
MAX_AMOUNT = decimal.Decimal(10) ** 10
CURRENCIES: dict[str, tuple[int, str]] = {
    # ISO 4217 code: (minor units, zh-CN name)
    "CNY": (2, "人民币"),
    "USD": (2, "美元"),
    "EUR": (2, "欧元"),
    "HKD": (2, "港币"),
    "GBP": (2, "英镑"),
    "JPY": (0, "日元"),
    "SGD": (2, "新加坡元"),
    "AUD": (2, "澳元"),
}


class TemplateError(ValueError):
    """An alert that cannot be rendered: unknown template, missing or ill-typed variable."""


class CardNumberFound(TemplateError):
    """A variable or the rendered text holds something that looks like a card number."""


class VarType(enum.Enum):
    MONEY = "money"
    ACCOUNT = "account"
    TIME = "time"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Var:
    type: VarType
    max_length: int = 64  # text only


@dataclass(frozen=True)
class Template:
    """A template: its category, default priority, variables and text per locale."""

    id: str
    category: str
    priority: str
    variables: Mapping[str, Var]
    title: Mapping[str, str]
    body: Mapping[str, str]
    description: str = ""
    placeholders: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        used: set[str] = set()
        for texts in (self.title, self.body):
            if set(texts) != set(LOCALES):
                raise ValueError(f"template {self.id}: text for exactly {LOCALES} required")
            for text in texts.values():
                for _, name, spec, conv in string.Formatter().parse(text):
                    if name is None:
                        continue
                    if name not in self.variables or spec or conv:
                        raise ValueError(f"template {self.id}: bad placeholder {{{name}}}")
                    used.add(name)
        if used != set(self.variables):
            raise ValueError(f"template {self.id}: variables {sorted(set(self.variables) - used)} are never shown")
        object.__setattr__(self, "placeholders", frozenset(used))


_MONEY, _ACCOUNT, _TIME = Var(VarType.MONEY), Var(VarType.ACCOUNT), Var(VarType.TIME)

_ALL = [
    Template(
        id="card.debit",
        category="transaction",
        priority="high",
        description="A card payment",
        variables={"amount": _MONEY, "account": _ACCOUNT, "merchant": Var(VarType.TEXT, 64), "time": _TIME},
        title={"zh-CN": "消费提醒", "en": "Card payment"},
        body={
            "zh-CN": "您尾号{account}的卡于{time}在{merchant}消费{amount}。",
            "en": "Your card ending {account} was charged {amount} at {merchant} on {time}.",
        },
    ),
    Template(
        id="account.credit",
        category="transaction",
        priority="normal",
        description="Money received",
        variables={"amount": _MONEY, "account": _ACCOUNT, "time": _TIME},
        title={"zh-CN": "入账提醒", "en": "Money received"},
        body={
            "zh-CN": "您尾号{account}的账户于{time}入账{amount}。",
            "en": "{amount} was credited to your account ending {account} on {time}.",
        },
    ),
    Template(
        id="account.debit",
        category="transaction",
        priority="high",
        description="Money left the account (transfer, withdrawal, direct debit)",
        variables={"amount": _MONEY, "account": _ACCOUNT, "payee": Var(VarType.TEXT, 64), "time": _TIME},
        title={"zh-CN": "转出提醒", "en": "Money sent"},
        body={
            "zh-CN": "您尾号{account}的账户于{time}向{payee}转出{amount}。",
            "en": "{amount} left your account ending {account} on {time}, to {payee}.",
        },
    ),
    Template(
        id="security.new_device",
        category="security",
        priority="high",
        description="A sign-in from a device not seen before",
        variables={"device": Var(VarType.TEXT, 64), "time": _TIME},
        title={"zh-CN": "新设备登录", "en": "New sign-in"},
        body={
            "zh-CN": "您的账户于{time}在新设备（{device}）上登录。如非本人操作，请立即致电本行。",
            "en": "Your account was signed in on a new device ({device}) on {time}. If this wasn't you, call the bank at once.",
        },
    ),
    Template(
        id="security.password_changed",
        category="security",
        priority="high",
        description="The sign-in password was changed",
        variables={"time": _TIME},
        title={"zh-CN": "密码已修改", "en": "Password changed"},
        body={
            "zh-CN": "您的登录密码已于{time}修改。如非本人操作，请立即致电本行。",
            "en": "Your password was changed on {time}. If this wasn't you, call the bank at once.",
        },
    ),
    Template(
        id="service.statement_ready",
        category="service",
        priority="normal",
        description="A statement is ready",
        variables={"account": _ACCOUNT, "period": Var(VarType.TEXT, 32)},
        title={"zh-CN": "账单已出", "en": "Statement ready"},
        body={
            "zh-CN": "您尾号{account}账户的{period}账单已生成。",
            "en": "Your {period} statement for the account ending {account} is ready.",
        },
    ),
    Template(
        id="marketing.offer",
        category="marketing",
        priority="low",
        description="An offer (respects the customer's marketing opt-out)",
        variables={"headline": Var(VarType.TEXT, 40), "text": Var(VarType.TEXT, 200)},
        title={"zh-CN": "{headline}", "en": "{headline}"},
        body={"zh-CN": "{text}", "en": "{text}"},
    ),
]

TEMPLATES: dict[str, Template] = {t.id: t for t in _ALL}
"""Every template by id."""


# --- the card-number guard -------------------------------------------------------------
# One definition of "a card number" and its Luhn check for the whole hub: the data-loss
# prevention core's (bankhub.compliance.dlp), whose alert guard refuses rather than masks.

# --- variables -------------------------------------------------------------------------


def _clean_text(value: str, max_length: int) -> str:
    # NFKC folds full-width letters and digits into their plain forms; control and invisible
    # formatting characters have no place in an alert and can hide a number from a reader
    folded = unicodedata.normalize("NFKC", value)
    kept = "".join(" " if ch in "\t\r\n" else ch for ch in folded if unicodedata.category(ch) not in ("Cc", "Cf") or ch in "\t\r\n")
    text = " ".join(kept.split())
    if not text:
        raise TemplateError("is empty")
    if len(text) > max_length:
        raise TemplateError(f"is longer than {max_length} characters")
    return text


def _money(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or set(value) != {"amount", "currency"}:
        raise TemplateError('must be {"amount": "<decimal string>", "currency": "<ISO 4217 code>"}')
    amount, currency = value["amount"], value["currency"]
    if not isinstance(amount, str) or not isinstance(currency, str):
        raise TemplateError("amount and currency must be strings (amounts are never floats)")
    if currency not in CURRENCIES:
        raise TemplateError(f"currency {currency[:8]!r} is not one of {sorted(CURRENCIES)}")
    if not amount or len(amount) > 20 or not all(c in "0123456789." for c in amount) or amount.count(".") > 1:
        raise TemplateError("amount must be a plain decimal string such as '1234.50'")
    try:
        number = decimal.Decimal(amount)
    except decimal.InvalidOperation:
        raise TemplateError("amount must be a plain decimal string such as '1234.50'") from None
    minor, _ = CURRENCIES[currency]
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > minor:
        raise TemplateError(f"{currency} amounts have at most {minor} decimal places")
    if not (0 <= number < MAX_AMOUNT):
        raise TemplateError("amount is out of range")
    return {"amount": str(number.quantize(decimal.Decimal(1).scaleb(-minor))), "currency": currency}


def _account(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise TemplateError("must be an account or card number (in full or masked), as a string")
    kept = [c for c in value if c not in " -"]
    if len(kept) < 4 or not all(c.isascii() and (c.isdigit() or c in "*xX") for c in kept):
        raise TemplateError("must be digits, optionally masked with * or x, ending in at least 4 digits")
    last4 = "".join(kept[-4:])
    if not last4.isdigit():
        raise TemplateError("must end in 4 digits")
    return last4


def _time(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 40:
        raise TemplateError("must be an ISO 8601 time with a UTC offset, e.g. 2026-05-01T10:15:00+08:00")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TemplateError("must be an ISO 8601 time with a UTC offset, e.g. 2026-05-01T10:15:00+08:00") from None
    if when.tzinfo is None:
        raise TemplateError("needs a UTC offset (a time without one is ambiguous)")
    return when.astimezone(dt.timezone.utc).isoformat()


def prepare(template_id: str, variables: Mapping[str, Any]) -> tuple[Template, dict[str, Any]]:
    """Check ``variables`` against the template; returns the normalised values to render.

    Normalised means: money quantised, accounts reduced to their last four digits, times
    in UTC, text cleaned. Raises :class:`TemplateError` (naming the variable) or
    :class:`CardNumberFound`.
    """
    template = TEMPLATES.get(template_id)
    if template is None:
        raise TemplateError(f"unknown template {template_id[:64]!r}; known: {sorted(TEMPLATES)}")
    unknown = set(variables) - set(template.variables)
    if unknown:
        raise TemplateError(f"template {template.id} has no variable(s) {sorted(str(u)[:32] for u in unknown)}")
    out: dict[str, Any] = {}
    for name, var in template.variables.items():
        if name not in variables:
            raise TemplateError(f"variable {name!r} is required by template {template.id}")
        value = variables[name]
        try:
            if var.type is VarType.MONEY:
                out[name] = _money(value)
            elif var.type is VarType.ACCOUNT:
                out[name] = _account(value)
            elif var.type is VarType.TIME:
                out[name] = _time(value)
            else:
                if not isinstance(value, str):
                    raise TemplateError("must be a string")
                out[name] = _clean_text(value, var.max_length)
                if find_card_number(out[name]) is not None:
                    raise CardNumberFound("holds a card number; send only masked numbers, in an account variable")
        except CardNumberFound as exc:
            raise CardNumberFound(f"variable {name!r} {exc}") from None
        except TemplateError as exc:
            raise TemplateError(f"variable {name!r} {exc}") from None
    return template, out


# --- rendering -------------------------------------------------------------------------


def _group(integer: str) -> str:
    return f"{int(integer):,}"


def _show_money(value: Mapping[str, str], locale: str) -> str:
    integer, _, fraction = value["amount"].partition(".")
    number = _group(integer) + (f".{fraction}" if fraction else "")
    currency = value["currency"]
    if locale == "zh-CN":
        return f"{CURRENCIES[currency][1]}{number}"
    return f"{currency} {number}"


def _show_time(value: str, locale: str, zone: dt.tzinfo) -> str:
    when = dt.datetime.fromisoformat(value).astimezone(zone)
    if locale == "zh-CN":
        return f"{when.year}年{when.month}月{when.day}日 {when:%H:%M}"
    return f"{when.day} {when:%b} {when.year}, {when:%H:%M}"


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    body: str


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("Asia/Shanghai")


def render(template: Template, values: Mapping[str, Any], locale: str, timezone: str) -> Rendered:
    """The alert's title and body in ``locale``, times in ``timezone``.

    ``values`` come from :func:`prepare`. The result is scanned once more: a card number
    that only appears when variables and template text meet (a text variable ending in
    digits next to an account's last four, say) is refused too.
    """
    if locale not in LOCALES:
        locale = LOCALES[0]
    zone = _zone(timezone)
    shown: dict[str, str] = {}
    for name, var in template.variables.items():
        value = values[name]
        if var.type is VarType.MONEY:
            shown[name] = _show_money(value, locale)
        elif var.type is VarType.TIME:
            shown[name] = _show_time(value, locale, zone)
        else:
            shown[name] = str(value)
    # one pass of str.format: a value containing "{account}" is shown as typed, never expanded
    title = template.title[locale].format_map(shown)
    body = template.body[locale].format_map(shown)
    for text in (title, body):
        if find_card_number(text) is not None:
            raise CardNumberFound("the rendered alert would show a card number; refused")
    return Rendered(title=title, body=body)
