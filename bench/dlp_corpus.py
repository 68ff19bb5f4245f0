"""A labelled corpus for data-loss prevention (bankhub.compliance.dlp), generated from a seed.

    .venv/bin/python -m bench.suite dlp        # precision/recall per kind and overall, scan throughput

:func:`corpus` makes ``n`` samples (at least 1,200 by default), each a chat text and the values
it carries — ``(kind, canonical)`` pairs, empty for a negative. Positives of every kind with
their edge cases: separators (none, spaces, dashes), full-width digits, Chinese around and
glued to the value, the value at the very start or end, punctuation next to it, several values
in one text. Evasions (``card/evasion/*``): a card
with a line break, two or three separators, a tab, dots, slashes, underscores, an en dash or a
minus sign, a zero-width space or joiner, a soft hyphen or a combining mark between its groups,
grouped 3-4-4-rest or in twos, glued to letters, or on the line after an amount; grouped and
glued codes (``验证码 482 913``, ``OTP1234``, ``CVV 1 2 3``, ``cvv\n123``); mistyped IDs after their
keyword (masked as IDs). Beyond the rules, counted rather than left out (``card/beyond/*``): a
card in Chinese numerals, with letters between its groups, or four blanks apart.
Negatives: mobile and landline numbers (+86 138 …, 1xx xxxx xxxx), amounts
(¥1,280.00, 12,345.67), dates (2026-12-07, 20261207), timestamps, times, IP addresses, order
and reference numbers that fail Luhn, order numbers that pass it (``order/luhn``: after their
word, and a tenth of them bare — indistinguishable from a domestic card), IBAN-like non-CN
strings, near misses (a valid card or ID with one digit changed). The same seed makes the same
corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Sample", "corpus", "luhn_digit", "card", "resident_id", "evaluate", "Score", "NEGATIVE_GROUPS"]

NEGATIVE_GROUPS = ("phone", "amount", "date", "timestamp", "time", "ip", "order", "order/luhn", "iban", "near_card", "near_id", "plain")
"""The categories of the negative samples."""


@dataclass(frozen=True)
class Sample:
    text: str
    values: frozenset[tuple[str, str]]  # (kind, canonical): what the text carries
    group: str  # positive: the kind and the edge case; negative: its category


def luhn_digit(partial: str) -> str:
    """The check digit that makes ``partial + digit`` pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch) * (1 if i % 2 else 2)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _luhn_ok(digits: str) -> bool:
    return luhn_digit(digits[:-1]) == digits[-1]


_PREFIXES = ("6222", "6228", "6217", "6214", "6259", "4111", "4392", "5100", "5399", "3568", "9558", "2221", "6011")


def card(rng: random.Random, length: int | None = None) -> str:
    """A card number that passes Luhn (13–19 digits, a real-looking issuer prefix)."""
    n = length or rng.choice((16, 16, 16, 19, 19, 15, 13, 17, 18))
    prefix = rng.choice(_PREFIXES)
    if n == 15:
        prefix = rng.choice(("3782", "3714"))
    body = prefix + "".join(rng.choice("0123456789") for _ in range(n - len(prefix) - 1))
    return body + luhn_digit(body)


_REGIONS = ("110101", "110105", "310104", "440305", "320102", "510107", "330106", "420111", "610113", "650102")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(rng: random.Random, want_x: bool = False) -> str:
    """A valid mainland resident ID (GB 11643)."""
    while True:
        y, m, d = rng.randint(1940, 2008), rng.randint(1, 12), rng.randint(1, 28)
        body = f"{rng.choice(_REGIONS)}{y:04d}{m:02d}{d:02d}{rng.randint(0, 999):03d}"
        check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS)) % 11]
        if not want_x or check == "X":
            return body + check


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


def _grouped(digits: str, sep: str, rng: random.Random) -> str:
    if not sep:
        return digits
    if len(digits) == 15 and rng.random() < 0.5:  # Amex 4-6-5
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


_CARD_SAY = (
    "我的卡号是{}，麻烦帮我查一下", "卡号{}", "{} 这张卡被冻结了", "please check card {} thanks", "my card: {}.",
    "刚刚绑定的卡（{}）扣款失败", "{}", "银行卡：{}！", "card no.{}", "转到这张卡 {} 可以吗？", "「{}」", "Card:{}; exp 12/28",
)
_ID_SAY = ("身份证号{}", "我的身份证：{}。", "ID {} please update", "{}", "证件号码 {}，姓名张三", "(ID:{})")
_ACCOUNT_SAY = ("账号：{}", "请转账到账户 {}，谢谢", "帐号{}", "account no. {}", "acct# {}", "A/C {}", "收款账户：{}。", "Account number: {}")
_CVV_SAY = ("CVV {}", "安全码是{}", "cvv2: {}", "校验码 {}", "CVC:{}", "卡背面的安全码{}")
_OTP_SAY = ("验证码：{}", "动态码{}，请勿告诉他人", "your OTP is {}", "one-time code {}", "passcode: {}", "短信验证码 {} 5分钟内有效")


# how a card is written to slip past a filter: any separator people type or paste between its
# groups, invisible characters, unusual groupings, letters glued to it
_EVASION_SEPS = ("\n", "  ", "\t", ".", "/", "_", "\u2013", "\u2212", "\u200b", "\u200d", "\u00ad", "\r\n", " - ")


def _evasion(rng: random.Random) -> Sample:
    digits = card(rng, rng.choice((16, 16, 19)))
    how = rng.choice(("sep", "sep", "sep", "3445", "twos", "combining", "glued", "after_amount"))
    if how == "sep":
        sep = rng.choice(_EVASION_SEPS)
        written, case = sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)), f"sep[{sep.encode('unicode_escape').decode()}]"
    elif how == "3445":
        written, case = " ".join((digits[:3], digits[3:7], digits[7:11], digits[11:])), "3-4-4-rest"
    elif how == "twos":
        written, case = " ".join(digits[i : i + 2] for i in range(0, len(digits), 2)), "twos"
    elif how == "combining":
        written, case = "\u0301".join(digits), "combining"
    elif how == "glued":
        digits = "4" + digits[1:-1]
        digits = digits[:-1] + luhn_digit(digits[:-1]) if len(digits) == 16 else digits + luhn_digit(digits)
        digits = digits if len(digits) in (16, 19) else digits[:-1]
        digits = digits[:-1] + luhn_digit(digits[:-1])
        written, case = rng.choice(("card{}", "卡号{}号", "no{}")).format(digits), "glued"
        return Sample(written, frozenset({("card", digits)}), f"card/evasion/{case}")
    else:
        written, case = f"{rng.randint(1, 999)}\n" + " ".join(digits[i : i + 4] for i in range(0, len(digits), 4)), "after_amount"
    return Sample(rng.choice(_CARD_SAY).format(written), frozenset({("card", digits)}), f"card/evasion/{case}")


_CN_DIGITS = "零一二三四五六七八九"


def _beyond(rng: random.Random) -> Sample:
    """A card written past what is detected (the known limits, counted, not hidden): digits
    spelled in Chinese, letters between the groups, more than three separators in a row."""
    digits = card(rng, 16)
    how = rng.choice(("chinese", "letters", "wide_gap"))
    if how == "chinese":
        written = "".join(_CN_DIGITS[int(c)] for c in digits)
    elif how == "letters":
        written = "a".join(digits[i : i + 4] for i in range(0, 16, 4))
    else:
        written = "    ".join(digits[i : i + 4] for i in range(0, 16, 4))
    return Sample(rng.choice(_CARD_SAY).format(written), frozenset({("card", digits)}), f"card/beyond/{how}")


def _positive(rng: random.Random) -> Sample:
    kind = rng.choice(("card", "card", "card", "resident_id", "resident_id", "bank_account", "cvv", "otp", "mixed"))
    if kind == "resident_id" and rng.random() < 0.1:
        kind = "resident_id/mistyped"
    if kind == "card" and rng.random() < 0.04:
        return _beyond(rng)
    if kind == "card" and rng.random() < 0.35:
        return _evasion(rng)
    if kind == "card":
        digits = card(rng)
        sep = rng.choice(("", " ", "-", " "))
        written = _grouped(digits, sep, rng)
        case = f"sep[{sep or 'none'}]"
        if rng.random() < 0.2:
            written, case = _fullwidth(written), "fullwidth"
        return Sample(rng.choice(_CARD_SAY).format(written), frozenset({("card", digits)}), f"card/{case}")
    if kind == "resident_id":
        value = resident_id(rng, want_x=rng.random() < 0.3)
        written = value if rng.random() < 0.5 else value.lower()
        case = "x" if value.endswith("X") else "digits"
        if rng.random() < 0.2:
            written, case = _fullwidth(written), "fullwidth"
        elif rng.random() < 0.15:
            written, case = f"{value[:6]} {value[6:14]} {value[14:]}", "6-8-4"
        return Sample(rng.choice(_ID_SAY).format(written), frozenset({("resident_id", value)}), f"resident_id/{case}")
    if kind == "resident_id/mistyped":
        value = resident_id(rng)
        while True:  # one digit changed outside the birth date: still shaped as an ID
            i = rng.choice((0, 1, 2, 3, 4, 5, 14, 15, 16))
            changed = value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]
            if _id_shaped(changed):
                break
        return Sample(rng.choice(("身份证号{}", "证件号码 {}")).format(changed), frozenset({("resident_id", changed)}), "resident_id/mistyped")
    if kind == "bank_account":
        while True:  # an account number that is not a card (fails Luhn or no card prefix)
            digits = rng.choice("0178") + "".join(rng.choice("0123456789") for _ in range(rng.randint(9, 24)))
            mobile = len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"
            if not (13 <= len(digits) <= 19 and _luhn_ok(digits)) and not mobile:
                break
        sep = rng.choice(("", "", " ", "-"))
        written = _grouped(digits, sep, rng) if sep else digits
        return Sample(rng.choice(_ACCOUNT_SAY).format(written), frozenset({("bank_account", digits)}), "bank_account")
    if kind == "cvv":
        value = f"{rng.randint(0, 9999):04d}"[: rng.choice((3, 3, 4))]
        if rng.random() < 0.4:  # spaced out, glued to the keyword, on the next line
            written = rng.choice((" ".join(value), value, "\n" + value))
            say = rng.choice(("CVV{}", "cvv:{}", "安全码{}", "CVC {}"))
            return Sample(say.format(written), frozenset({("cvv", value)}), "cvv/grouped")
        return Sample(rng.choice(_CVV_SAY).format(value), frozenset({("cvv", value)}), "cvv")
    if kind == "otp":
        value = "".join(rng.choice("0123456789") for _ in range(rng.choice((4, 6, 6, 8))))
        if rng.random() < 0.4:  # in two halves ("482 913", "1234-5678"), glued to the keyword
            half = len(value) // 2
            written = rng.choice((f"{value[:half]} {value[half:]}", f"{value[:half]}-{value[half:]}", value))
            say = rng.choice(("验证码 {}", "验证码：{}", "OTP{}", "OTP: {}", "动态码\n{}"))
            return Sample(say.format(written), frozenset({("otp", value)}), "otp/grouped")
        return Sample(rng.choice(_OTP_SAY).format(value), frozenset({("otp", value)}), "otp")
    digits, cvv = card(rng, 16), f"{rng.randint(100, 999)}"
    text = rng.choice(("卡号{} CVV {}", "card {} cvv2 {}", "{}，安全码{}"))
    return Sample(text.format(_grouped(digits, " ", rng), cvv), frozenset({("card", digits), ("cvv", cvv)}), "mixed/card+cvv")


def _phone(rng: random.Random) -> str:
    mobile = rng.choice("3456789")
    n = f"1{mobile}{rng.randint(0, 999999999):09d}"
    return rng.choice((
        f"+86 {n[:3]} {n[3:7]} {n[7:]}", n, f"{n[:3]}-{n[3:7]}-{n[7:]}", f"{n[:3]} {n[3:7]} {n[7:]}", f"+86{n}",
        f"0086 {n}", f"(010) {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", f"+86-10-{rng.randint(10000000, 99999999)}",
        f"400-820-{rng.randint(1000, 9999)}", f"{n} 或 1{rng.choice('3456789')}{rng.randint(0, 999999999):09d}",
    ))


def _amount(rng: random.Random) -> str:
    whole = rng.randint(1, 99_999_999)
    return rng.choice((f"¥{whole:,}.{rng.randint(0, 99):02d}", f"{whole:,}.{rng.randint(0, 99):02d}", f"RMB {whole}.00",
                       f"￥{whole}", f"{whole:,}元", f"USD {whole:,.2f}", f"金额 {rng.randint(1, 10**12):,}.00"))


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice((f"{y}-{m:02d}-{d:02d}", f"{y}{m:02d}{d:02d}", f"{y}/{m}/{d}", f"{y}年{m}月{d}日", f"{d:02d}.{m:02d}.{y}",
                       f"{y}-{m:02d}-{d:02d} {y + 1}-{m:02d}-{d:02d}"))


def _order(rng: random.Random) -> str:
    while True:
        digits = rng.choice("234569") + "".join(rng.choice("0123456789") for _ in range(rng.randint(12, 18)))
        if not _luhn_ok(digits):
            break
    return rng.choice((f"订单号 {digits}", f"order {digits}", f"ORD{digits}", f"参考号：{digits}", f"ref-{digits}", digits))


def _order_luhn(rng: random.Random) -> str:
    """An order, waybill or reference number that passes Luhn (one in ten does) but has no card
    network's prefix and length — after the word that says what it is."""
    while True:
        n = rng.randint(13, 19)
        body = rng.choice("23") + "".join(rng.choice("0123456789") for _ in range(n - 2))
        digits = body + luhn_digit(body)
        p2, p4 = int(digits[:2]), int(digits[:4])
        network = 2221 <= p4 <= 2720 or p2 in (34, 37) or (p2 == 35 and 3528 <= p4 <= 3589)
        if not network:
            break
    if rng.random() < 0.1:  # no word says what it is: indistinguishable from a domestic card, masked (counted)
        return rng.choice(("{}", "就是这个 {}", "{} 查一下")).format(digits)
    return rng.choice((f"订单号：{digits}", f"order #{digits}", f"tracking no. {digits}", f"流水号 {digits}", f"ORD{digits}",
                       f"运单号{digits}", f"ref-{digits}", f"交易号: {digits}"))


def _iban(rng: random.Random) -> str:
    country = rng.choice(("DE", "GB", "FR", "NL", "ES", "IT"))
    rest = "".join(rng.choice("0123456789") for _ in range(rng.choice((18, 20, 22))))
    spaced = " ".join((country + f"{rng.randint(10, 99)}" + rest)[i : i + 4] for i in range(0, len(rest) + 4, 4))
    return rng.choice((f"IBAN {spaced}", spaced, f"IBAN: {country}{rng.randint(10, 99)}{rest}"))


def _near_card(rng: random.Random) -> str:
    digits = card(rng, 16)
    i = rng.randrange(16)
    changed = digits[:i] + str((int(digits[i]) + rng.randint(1, 9)) % 10) + digits[i + 1 :]
    return rng.choice(_CARD_SAY).format(_grouped(changed, rng.choice(("", " ", "-")), rng))


def _near_id(rng: random.Random) -> str:
    """A valid ID with one digit changed (the checksum fails), without an ID keyword: a number.
    (After 身份证/证件号 an ID-shaped value is masked as a mistyped ID: see ``_mistyped_id``.)"""
    value = resident_id(rng)
    i = rng.randrange(17)
    changed = value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]
    return rng.choice(("号码{}", "编号 {}", "{}")).format(changed)


def _id_shaped(value: str) -> bool:
    import datetime as dt

    try:
        dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return 11 <= int(value[:2]) <= 82 and 1900 <= int(value[6:10]) <= 2099


_NEGATIVES: dict[str, Callable[[random.Random], str]] = {
    "phone": lambda r: rng_say(r, ("我的电话是{}", "call me on {}", "联系电话：{}，谢谢", "{}"), _phone(r)),
    "amount": lambda r: rng_say(r, ("本月还款{}", "amount due {}", "转账 {} 已到账", "{}"), _amount(r)),
    "date": lambda r: rng_say(r, ("到期日 {}", "due on {}", "{}", "生日{}"), _date(r)),
    "timestamp": lambda r: rng_say(r, ("ts={}", "{}", "时间戳 {}"), str(r.randint(1_600_000_000, 1_900_000_000) * r.choice((1, 1000)) + r.randint(0, 999))),
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d} 见",
    "ip": lambda r: f"登录IP {r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
    "order": _order,
    "order/luhn": _order_luhn,
    "iban": _iban,
    "near_card": _near_card,
    "near_id": _near_id,
    "plain": lambda r: r.choice(("您好，请问信用卡怎么还款？", "thanks, see you at 3pm", "我想咨询一下理财产品", "card ending 7890 was charged",
                                 "please call 95588", "余额不足", "CVV是什么？", "验证码收不到")),
}


def rng_say(rng: random.Random, templates: tuple[str, ...], value: str) -> str:
    return rng.choice(templates).format(value)


def corpus(seed: int = 15, n: int = 1600) -> list[Sample]:
    """``n`` samples (about half positive), the same for the same seed."""
    rng = random.Random(seed)
    out = []
    groups = list(_NEGATIVES)
    for i in range(n):
        if i % 2 == 0:
            out.append(_positive(rng))
        else:
            g = groups[(i // 2) % len(groups)]
            out.append(Sample(_NEGATIVES[g](rng), frozenset(), g))
    return out


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def evaluate(samples: list[Sample], scan: Callable[[str], list[tuple[str, str]]]) -> dict[str, Score]:
    """Precision and recall per kind (and ``overall``): ``scan(text)`` returns (kind, canonical) pairs."""
    scores: dict[str, Score] = {}
    for s in samples:
        found = set(scan(s.text))
        for kind, _ in found | set(s.values):
            scores.setdefault(kind, Score())
        for kind, value in found:
            if (kind, value) in s.values:
                scores[kind].tp += 1
            else:
                scores[kind].fp += 1
                scores[kind].misses.append(f"FP {s.group}: {s.text}")
        for kind, value in s.values - found:
            scores[kind].fn += 1
            scores[kind].misses.append(f"FN {s.group}: {s.text}")
    overall = Score()
    for sc in scores.values():
        overall.tp, overall.fp, overall.fn = overall.tp + sc.tp, overall.fp + sc.fp, overall.fn + sc.fn
    scores["overall"] = overall
    return scores


def scenario_dlp(cfg: object = None, *, seed: int = 15, n: int = 1600, rounds: int = 5) -> dict[str, object]:
    """The ``dlp`` bench target: precision and recall per kind and overall on :func:`corpus`,
    and scan throughput (texts and MB per second, best of ``rounds`` passes over the corpus)."""
    import time

    from bankhub.compliance import dlp

    samples = corpus(seed, n)
    scores = evaluate(samples, lambda t: [(f.kind, f.canonical) for f in dlp.scan(t)])
    texts = [s.text for s in samples]
    # long texts too: a 4,000-character message (the protocol's limit) with values spread through it
    long_texts = [(" ".join(texts[i : i + 60]))[: dlp.MAX_SCAN_CHARS] for i in range(0, len(texts), 60)]
    best, best_long = float("inf"), float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for text in texts:
            dlp.mask(text)
        best = min(best, time.perf_counter() - t)
        t = time.perf_counter()
        for text in long_texts:
            dlp.mask(text)
        best_long = min(best_long, time.perf_counter() - t)
    chars = sum(len(t) for t in texts)
    long_chars = sum(len(t) for t in long_texts)
    return {
        "seed": seed,
        "samples": len(samples),
        "positives": sum(1 for s in samples if s.values),
        "negatives": sum(1 for s in samples if not s.values),
        "kinds": {
            k: {"tp": v.tp, "fp": v.fp, "fn": v.fn, "precision": round(v.precision, 4), "recall": round(v.recall, 4),
                "errors": v.misses[:5]}
            for k, v in sorted(scores.items(), key=lambda kv: (kv[0] == "overall", kv[0]))
        },
        "throughput": {
            "texts_per_s": round(len(texts) / best),
            "mb_per_s": round(chars * 3 / best / 1e6, 2),  # as UTF-8, roughly (CJK is 3 bytes)
            "long_texts_per_s": round(len(long_texts) / best_long),
            "long_chars_per_s": round(long_chars / best_long),
        },
    }


def table(result: dict[str, object]) -> str:
    """The ``dlp`` target's table."""
    r: dict[str, object] = result
    kinds = r["kinds"]
    assert isinstance(kinds, dict)
    lines = [f"dlp  ({r['samples']} samples, seed {r['seed']}: {r['positives']} positive, {r['negatives']} negative)",
             f"  {'kind':<14}{'tp':>6}{'fp':>6}{'fn':>6}{'precision':>11}{'recall':>9}"]
    for kind, s in kinds.items():
        lines.append(f"  {kind:<14}{s['tp']:>6}{s['fp']:>6}{s['fn']:>6}{s['precision']:>11.4f}{s['recall']:>9.4f}")
    tp = r["throughput"]
    assert isinstance(tp, dict)
    lines.append(f"  scan: {tp['texts_per_s']} chat texts/s ({tp['mb_per_s']} MB/s); 4,000-character texts: "
                 f"{tp['long_texts_per_s']}/s ({tp['long_chars_per_s']} chars/s)")
    return "\n".join(lines)
