"""The service bot's first line: a small FAQ matched by keywords. Pure.

:func:`answer` reads one customer message and decides:

* ``human`` — the customer asks for a person ("人工", "转人工", "agent", "human", ...);
* ``answer`` — an FAQ entry matches: the entry with the most distinct keyword hits wins
  (ties: the earlier entry);
* ``unknown`` — nothing matches: the bot cannot help and hands over to a person.

Matching is case-insensitive after Unicode NFKC normalisation (full-width letters match
too). Latin keywords match whole words only ("fee" does not match "feel"); Chinese
keywords match anywhere in the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FaqEntry", "BotDecision", "DEFAULT_FAQ", "HANDOVER_KEYWORDS", "answer", "normalise"]


@dataclass(frozen=True, slots=True)
class FaqEntry:
    id: str
    keywords: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class BotDecision:
    kind: str  # "answer" | "human" | "unknown"
    entry: FaqEntry | None = None
    hits: tuple[str, ...] = field(default=())


HANDOVER_KEYWORDS: tuple[str, ...] = (
    "人工",
    "转人工",
    "人工客服",
    "真人",
    "客服人员",
    "agent",
    "human",
    "a person",
    "real person",
    "operator",
    "representative",
)

DEFAULT_FAQ: tuple[FaqEntry, ...] = (
    FaqEntry(
        "card_loss",
        ("挂失", "丢失", "丢了", "被盗", "lost card", "lost my card", "stolen", "card lost", "block my card"),
        "To block a lost or stolen card at once: in the app open Cards > Report loss, or call 95588 "
        "(24 hours). The block takes effect immediately; a replacement card can be ordered in the same place.",
    ),
    FaqEntry(
        "card_activation",
        ("激活", "开卡", "activate", "activation"),
        "To activate a new card: in the app open Cards > Activate, confirm with your login password and "
        "set a PIN. The card works as soon as activation is confirmed.",
    ),
    FaqEntry(
        "card_limit",
        ("额度", "提额", "信用额度", "credit limit", "limit", "raise my limit"),
        "You can see your card limit in the app under Cards > Limits, and ask for a higher limit there. "
        "Most requests are answered within one working day.",
    ),
    FaqEntry(
        "repayment",
        ("还款", "账单", "最低还款", "repay", "repayment", "due date", "statement", "bill"),
        "Card bills are due on the repayment date shown in Cards > Statements. You can repay in full or the "
        "minimum amount in the app, or set up automatic repayment from a debit account.",
    ),
    FaqEntry(
        "loan_rate",
        ("利率", "贷款利率", "房贷", "interest rate", "loan rate", "mortgage rate"),
        "Current loan and mortgage rates are listed in the app under Loans > Rates. Your personal rate "
        "depends on the product and term; an agent or your relationship manager can quote it.",
    ),
    FaqEntry(
        "password",
        ("密码", "忘记密码", "重置密码", "password", "reset password", "forgot password", "pin"),
        "To reset your login password, tap 'Forgot password' on the sign-in screen and verify with your "
        "phone number and ID. A card PIN can be reset in Cards > PIN with face verification.",
    ),
    FaqEntry(
        "fees",
        ("手续费", "费用", "年费", "fee", "fees", "charge", "charges", "annual fee"),
        "Transfers inside mainland China in the app are free of charge. Card annual fees and other charges "
        "are listed in the app under Help > Fees.",
    ),
    FaqEntry(
        "hours",
        ("营业时间", "几点", "开门", "opening hours", "branch hours", "open on", "business hours"),
        "Most branches open 09:00-17:00 on working days; opening times of each branch are in the app under "
        "Branches. This chat's assistant answers at any time.",
    ),
)

_LATIN = re.compile(r"[a-z0-9]")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form keywords are matched in."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _hit(text: str, keyword: str) -> bool:
    key = normalise(keyword)
    if not key:
        return False
    if not _LATIN.search(key):
        return key in text  # Chinese: no word boundaries to respect
    return re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", text) is not None


def answer(text: str, faq: Sequence[FaqEntry] = DEFAULT_FAQ) -> BotDecision:
    """What the bot does with one customer message; see the module docstring."""
    norm = normalise(text)
    if any(_hit(norm, k) for k in HANDOVER_KEYWORDS):
        return BotDecision("human")
    best: FaqEntry | None = None
    best_hits: tuple[str, ...] = ()
    for entry in faq:
        hits = tuple(k for k in entry.keywords if _hit(norm, k))
        if len(hits) > len(best_hits):
            best, best_hits = entry, hits
    if best is None:
        return BotDecision("unknown")
    return BotDecision("answer", best, best_hits)
