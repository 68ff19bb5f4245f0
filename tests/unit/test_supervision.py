"""Supervision's pure rules: lexicon matching, pattern checks, sampling, and the policy around them."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankhub import policy
from bankhub.compliance.supervision import (
    DEMO_RULES,
    MAX_PATTERN_CHARS,
    RuleError,
    RuleSet,
    RuleSpec,
    check_pattern,
    compile_rule,
    normalize,
    sampled,
)
from bankhub.desk.system import system_user
from bankhub.models import Role, User
from bankhub.protocol.frames import MAX_TEXT_CHARS

DEMO = RuleSet.build([RuleSpec(name, name, "lexicon", tuple(terms)) for name, terms in DEMO_RULES])
GUARANTEE, OFF_CHANNEL = "guarantee of returns", "off-channel"


def lexicon(*terms: str) -> RuleSet:
    return RuleSet.build([RuleSpec("r", "r", "lexicon", terms)])


@pytest.mark.parametrize(
    "text",
    [
        "this fund is 保本保收益",
        "放心，这款产品保本",
        "年化5%，保证收益",
        "稳赚的，您放心",
        "稳赚不赔！",
        "零风险理财",
        "无风险，随时赎回",
        "我们是刚性兑付的",
        "It's a guaranteed return of 5%",
        "We offer guaranteed returns",
        "GUARANTEED PROFITS every quarter",
        "this is risk-free",
        "this is risk free",
        "zero risk, I promise",
        "there is no risk at all",
    ],
)
def test_the_guarantee_rule_flags_promises_of_returns(text: str) -> None:
    assert DEMO.evaluate(text) == [GUARANTEE]


@pytest.mark.parametrize(
    "text",
    [
        "加我微信吧，方便联系",
        "你加微信聊",
        "加个微信？",
        "我们微信联系",
        "这是我的私人微信",
        "用个人微信发给你",
        "可以私下转账给我",
        "Add me on WeChat please",
        "wechat me tonight",
        "message me on WhatsApp",
        "I'm on Telegram",
        "call my personal number instead",
        "here is my private number",
    ],
)
def test_the_off_channel_rule_flags_moves_off_the_hub(text: str) -> None:
    assert DEMO.evaluate(text) == [OFF_CHANNEL]


@pytest.mark.parametrize(
    "text",
    [
        # ordinary banking chat, and the proper disclosures that contain the words
        "您好，您的信用卡账单已出，本期应还¥1,280.00，请在到期日前还款。",
        "Hi, can we meet on Tuesday at 3pm to discuss your mortgage renewal?",
        "本产品不保本，收益浮动，请您注意风险。",
        "该理财为非保本浮动收益型产品",
        "本产品不保证收益",
        "The risk-free rate is 2.1% this year",
        "无风险利率下降了",
        "There are no guaranteed returns with equity funds",
        "Past performance is not indicative of future results.",
        "Your international telegraphic transfer has arrived",
        "I sent you a WeChat Pay request for the deposit",
        "Please check the wechat message from the bank's official account",
        "You can pay the bill with 微信支付 or the app",
        "There's no risk of a double charge; the first payment was reversed",
        "Please keep your personal details safe",
        "您的转账已到账，请查收",
    ],
)
def test_ordinary_banking_chat_is_not_flagged(text: str) -> None:
    assert DEMO.evaluate(text) == []


def test_both_rules_fire_on_one_text_and_in_rule_order() -> None:
    assert DEMO.evaluate("稳赚不赔，加我微信细聊") == [GUARANTEE, OFF_CHANNEL]


def test_full_width_half_width_case_and_invisible_characters_are_folded() -> None:
    assert DEMO.evaluate("ＡＤＤ ＭＥ ＯＮ ＷｅＣｈａｔ") == [OFF_CHANNEL]  # full-width Latin, ideographic space
    assert DEMO.evaluate("加\u3000我\u3000微\u3000信") == [OFF_CHANNEL]  # ideographic spaces between CJK
    assert DEMO.evaluate("加 我 微 信") == [OFF_CHANNEL]
    assert DEMO.evaluate("加\u200b我\u200d微信") == [OFF_CHANNEL]  # zero-width characters do not split a term
    assert DEMO.evaluate("Risk\u00adFree") == []  # a soft hyphen is removed: "riskfree" is not a separated term
    assert DEMO.evaluate("RISK-FREE") == [GUARANTEE]
    assert lexicon("ﾃｽﾄ").evaluate("テスト") == ["r"]  # half-width katakana folded to full width
    assert lexicon("テスト").evaluate("ﾃｽﾄ") == ["r"]
    assert normalize("ＷｅＣｈａｔ") == "wechat"


def test_latin_terms_match_at_word_boundaries_only() -> None:
    rules = lexicon("telegram", "risk-free")
    assert rules.evaluate("telegraphic") == []
    assert rules.evaluate("mytelegram") == []
    assert rules.evaluate("telegram2") == ["r"]  # digits are a boundary: a number glued on does not hide a term
    assert rules.evaluate("on telegram.") == ["r"]
    assert rules.evaluate("加我telegram吧") == ["r"]  # next to CJK is a boundary
    assert rules.evaluate("risk - free") == ["r"]  # separators inside a term match any run of spaces and hyphens
    assert rules.evaluate("riskfree") == []


def test_exceptions_only_cover_the_occurrences_inside_them() -> None:
    rules = lexicon("保本", "!不保本")
    assert rules.evaluate("本产品不保本") == []
    assert rules.evaluate("本产品不保本，但那款保本") == ["r"]
    with pytest.raises(RuleError):
        compile_rule(RuleSpec("r", "r", "lexicon", ("!不保本",)))


@pytest.mark.parametrize("terms", [(), ("",), ("  ",), ("x" * 65,), tuple(f"t{i}" for i in range(101))])
def test_bad_lexicons_are_refused(terms: tuple[str, ...]) -> None:
    with pytest.raises(RuleError):
        compile_rule(RuleSpec("r", "r", "lexicon", terms))


@pytest.mark.parametrize(
    "pattern",
    [
        r"(\w)\1",  # a backreference: RE2 has none
        r"(?P<x>a)(?P=x)",
        r"(a)?(?(1)b|c)",  # a conditional group
        r"(?=a)b",  # lookaround: RE2 has none
        r"(?<!a)b",
        r"(?:a?a?){0,999}z",  # unrolls into a program too large
        r"(?:a?a?a?){0,999}z",
        r".{0,999}[^x]{2000}x",  # a repeat over RE2's bound
        r".",  # matches ordinary chat
        r"\B",
        r"(?:.?){0,10}",
        "x" * (MAX_PATTERN_CHARS + 1),
        r"(",  # does not compile
        r"a?",  # matches an empty text
        "",
    ],
)
def test_dangerous_or_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(RuleError):
        check_pattern(pattern)


@pytest.mark.parametrize(
    "pattern, text",
    [
        (r"年化\s{0,3}\d{1,3}(?:\.\d{1,2})?%\s{0,3}保证", "年化 8.5% 保证"),
        (r"\b(?:wechat|whatsapp)\s{1,3}id\b", "my WhatsApp ID is"),
        (r"返点\d{1,2}个点", "给您返点3个点"),
    ],
)
def test_reasonable_patterns_are_accepted_and_match(pattern: str, text: str) -> None:
    rules = RuleSet.build([RuleSpec("p", "p", "pattern", pattern=pattern)])
    assert rules.evaluate(text) == ["p"]
    assert rules.evaluate("您好，请问有什么可以帮您？") == []


def test_an_accepted_pattern_stays_fast_on_a_hostile_text() -> None:
    rules = RuleSet.build([RuleSpec("p", "p", "pattern", pattern=r"\s{0,9}\d{0,9}a{1,9}x")])
    hostile = "a" * MAX_TEXT_CHARS
    start = time.perf_counter()
    assert rules.evaluate(hostile) == []
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "pattern",
    [
        # exponential or high-polynomial for a backtracking matcher; accepted under the old check
        r"(?:a?a?){0,99}z",
        r"(?:a?a?a?){0,60}z",
        r".{0,30}.{0,30}x",
        r".{0,33}.{0,33}.{0,33}x",
        r"(?:a|aa|aaa){0,60}z",
        r"(?:.?){0,99}z",
        r"(?:\w?\w?){0,50}z",
    ],
)
def test_the_largest_accepted_patterns_stay_linear_on_hostile_texts(pattern: str) -> None:
    """RE2 with a program-size cap: the worst texts found stay far under a millisecond per
    character, for the most patterns that may exist at once."""
    from bankhub.compliance.supervision import MAX_PATTERN_RULES

    rules = RuleSet.build([RuleSpec(f"p{i}", f"p{i}", "pattern", pattern=pattern) for i in range(MAX_PATTERN_RULES)])
    assert len(rules.rules) == MAX_PATTERN_RULES
    for hostile in ("a" * MAX_TEXT_CHARS, "加" * MAX_TEXT_CHARS, "a1" * (MAX_TEXT_CHARS // 2), " a" * (MAX_TEXT_CHARS // 2)):
        start = time.perf_counter()
        assert rules.evaluate(hostile) == []
        assert time.perf_counter() - start < 1.0, (pattern, hostile[:4])


def test_disabled_rules_and_rules_that_no_longer_compile_are_left_out() -> None:
    rules = RuleSet.build(
        [RuleSpec("off", "off", "lexicon", ("保本",), enabled=False), RuleSpec("bad", "bad", "pattern", pattern=r"(a)\1")]
    )
    assert rules.rules == () and rules.skipped == ("bad",)
    assert rules.evaluate("保本") == []


def test_sampling_is_deterministic_and_near_its_rate() -> None:
    key = b"k" * 32
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(20_000)]
    assert not any(sampled(key, m, 0.0) for m in ids)
    assert all(sampled(key, m, 1.0) for m in ids)
    picked = [m for m in ids if sampled(key, m, 0.02)]
    assert 0.015 * len(ids) < len(picked) < 0.025 * len(ids)
    assert picked == [m for m in ids if sampled(key, m, 0.02)]  # the same answer every time
    other = [m for m in ids if sampled(b"o" * 32, m, 0.02)]
    assert other != picked  # keyed: another key picks other messages
    assert set(m for m in ids if sampled(key, m, 0.01)) <= set(picked)  # a lower rate picks a subset


def test_who_is_supervised() -> None:
    def user(role: Role) -> User:
        return User(str(uuid.uuid4()), role.value, role.value, role, "org")

    assert policy.supervised(user(Role.RM)) == (True, True)
    assert policy.supervised(user(Role.AGENT)) == (True, True)
    assert policy.supervised(user(Role.CUSTOMER)) == (True, False)  # rules yes, never sampled
    assert policy.supervised(user(Role.BRANCH_ADMIN)) == (True, False)
    assert policy.supervised(system_user("org")) == (False, False)


def test_flag_decisions() -> None:
    officer = User("o", "co.sun", "Sun", Role.COMPLIANCE, "ho")
    rm = User("r", "rm.wang", "Wang", Role.RM, "bj")
    assert policy.may_decide_flag(officer, "open", "escalate").allowed
    assert policy.may_decide_flag(officer, "open", "close").allowed
    assert policy.may_decide_flag(officer, "escalated", "close").allowed
    assert policy.may_decide_flag(officer, "escalated", "escalate").code == "conflict"
    assert policy.may_decide_flag(officer, "closed", "escalate").code == "conflict"
    assert policy.may_decide_flag(officer, "closed", "close").code == "conflict"
    assert policy.may_decide_flag(rm, "open", "close").code == "forbidden"
    disabled = User("o2", "co.x", "X", Role.COMPLIANCE, "ho", disabled=True)
    assert policy.may_supervise(disabled).code == "forbidden"


_ALPHABET = sorted({ch for _, terms in DEMO_RULES for t in terms for ch in t.lstrip("!")} | set(" -\u3000\u200bＷｅ.x"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=60).map("".join))
def test_the_substring_prefilter_never_hides_a_match(text: str) -> None:
    """A text the regex of a rule matches always passes the rule's substring prefilter."""
    folded = normalize(text)
    by_regex = [r.rule_id for r in DEMO.rules if any(m.group("hit") is not None for m in r.regex.finditer(folded))]
    assert DEMO.evaluate(text) == by_regex


_MANY = RuleSet.build(
    [RuleSpec(f"r{i}", f"r{i}", "lexicon", tuple(f"{a}{b}" for a in "加微信保本" for b in "我信本利息"[: i + 1])) for i in range(5)]
    + [RuleSpec("one", "one", "lexicon", ("赚",)), RuleSpec("latin", "latin", "lexicon", tuple(f"w{i}" for i in range(40)))]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("加微信保本我利息赚w0123 -x")), max_size=40).map("".join))
def test_the_term_index_finds_what_testing_every_term_finds(text: str) -> None:
    """With more terms than the direct test takes, the bigram index must not hide a match."""
    assert _MANY.cores > 64
    folded = normalize(text)
    by_regex = [r.rule_id for r in _MANY.rules if any(m.group("hit") is not None for m in r.regex.finditer(folded))]
    assert _MANY.evaluate(text) == by_regex


def test_the_texts_rules_see_in_each_kind_of_body() -> None:
    from bankhub.actions.supervision import texts_of
    from bankhub.protocol.frames import CardField, EditBody, ImageBody, RecallBody, SignedCardBody, TextBody, VoiceBody

    card = SignedCardBody(template="offer", title="新品", fields=[CardField(label="保", value="本金安全")])
    assert texts_of(card) == ["新品", "保", "本金安全"]
    assert DEMO.evaluate_all(texts_of(card)) == []  # a term never spans a label and its value
    assert texts_of(ImageBody(media_id="m", caption="加我微信")) == ["加我微信"]
    assert texts_of(ImageBody(media_id="m")) == []
    assert texts_of(EditBody(message_id="x", body=TextBody(text="稳赚"))) == ["稳赚"]
    assert texts_of(TextBody(text="hi")) == ["hi"]
    assert texts_of(RecallBody(message_id="x")) == [] and texts_of(VoiceBody(media_id="m")) == []


@pytest.mark.parametrize(
    "text, rule",
    [
        # invisible characters that are not format characters
        ("保\u034f本", GUARANTEE),  # combining grapheme joiner
        ("保\ufe0f本", GUARANTEE),  # variation selector
        ("保\U000e0100本", GUARANTEE),  # variation selector supplement
        ("保\u3164本", GUARANTEE),  # Hangul filler
        ("保\u115f本", GUARANTEE),
        ("保\uffa0本", GUARANTEE),  # half-width Hangul filler
        ("保\u2800本", GUARANTEE),  # braille blank
        ("保\u0301本", GUARANTEE),  # a combining mark
        # punctuation, emoji and underscores between CJK characters
        ("保.本", GUARANTEE),
        ("保，本", GUARANTEE),
        ("加😀我微信", OFF_CHANNEL),
        ("加_我_微_信", OFF_CHANNEL),
        # Traditional Chinese
        ("穩賺不賠", GUARANTEE),
        ("保證收益", GUARANTEE),
        ("加個微信", OFF_CHANNEL),
        # Cyrillic and Greek look-alikes
        ("wеchat me", OFF_CHANNEL),
        ("whаtsapp", OFF_CHANNEL),
        ("tεlεgram", OFF_CHANNEL),
        # what people write instead of WeChat
        ("加vx", OFF_CHANNEL),
        ("V信聊", OFF_CHANNEL),
        ("薇信", OFF_CHANNEL),
        ("my weixin", OFF_CHANNEL),
        # spaced-out letters, a word split, digits glued on
        ("w h a t s a p p", OFF_CHANNEL),
        ("whats app", OFF_CHANNEL),
        ("w.h.a.t.s.a.p.p", OFF_CHANNEL),
        ("whatsapp8613800138000", OFF_CHANNEL),
    ],
)
def test_disguised_terms_are_caught(text: str, rule: str) -> None:
    assert DEMO.evaluate(text) == [rule]


@pytest.mark.parametrize("text", ["本产品不保本", "本產品不保證收益", "what's up", "whatever", "the app is ready", "tele-gramme", "V8 engine"])
def test_the_folds_add_no_false_positive(text: str) -> None:
    assert DEMO.evaluate(text) == []


def test_a_match_names_its_term_and_a_pattern_rule_its_pattern() -> None:
    rules = RuleSet.build([*(RuleSpec(n, n, "lexicon", tuple(t)) for n, t in DEMO_RULES), RuleSpec("p", "p", "pattern", pattern=r"返点\d{1,2}")])
    assert rules.matches("加 我 微信，返点3个点") == [(OFF_CHANNEL, "加我微信"), ("p", r"返点\d{1,2}")]
    assert rules.matches_all(["x", "保本"]) == [(GUARANTEE, "保本")]
    assert "sample_key" not in repr(RuleSet(sample_key=b"secret"))


def test_card_action_labels_are_supervised() -> None:
    from bankhub.actions.supervision import texts_of
    from bankhub.protocol.frames import CardAction, SignedCardBody

    card = SignedCardBody(template="offer", title="新品", actions=[CardAction(label="加我微信", url="bankhub://x")])
    assert "加我微信" in texts_of(card)
    assert DEMO.evaluate_all(texts_of(card)) == [OFF_CHANNEL]


def test_four_eyes_and_no_decision_on_ones_own_message() -> None:
    sun = User("o", "co.sun", "Sun", Role.COMPLIANCE, "ho")
    assert policy.may_decide_flag(sun, "open", "close", sender_id="o").code == "forbidden"
    assert policy.may_decide_flag(sun, "open", "escalate", sender_id="o").code == "forbidden"
    assert policy.may_decide_flag(sun, "escalated", "close", sender_id="r", escalated_by="o").code == "forbidden"
    assert policy.may_decide_flag(sun, "escalated", "close", sender_id="r", escalated_by="q").allowed
    assert policy.may_decide_flag(sun, "open", "close", sender_id="r").allowed
