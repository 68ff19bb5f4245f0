"""Data-loss prevention: find card numbers, resident ID numbers, bank account numbers, CVVs and
one-time codes in a text, mask them, and fingerprint them under a compliance key. Pure: no I/O.

What is found (in a text of any length: one linear pass, never an error):

- ``card``: 13–19 digits passing Luhn, starting with 2–6 or 9 (the card networks' and the
  legacy domestic issuer ranges; a 13-digit millisecond timestamp starts with 1), unbroken or
  in groups. A *run* is digit groups joined by at most three visible separators in a row (a
  space or any blank, a tab, a line break, ``. / _``, any dash, the minus sign); invisible
  characters (format controls such as U+200B, soft hyphens, combining marks) join nothing and
  split nothing. A card is whole groups of a run, grouped as card numbers are written (every
  group but the last the same size — fours, threes, twos —, or every group at least 3 digits:
  ``3782 822463 10005``, 3-4-4-5), joined the same way throughout (or by single blanks and
  dashes mixed); it starts at the run's first group, right after an earlier finding, or where
  the writing visibly changes (a group of another size or another separator before it:
  ``1 6222 0212 3456 7890``, ``500\\n6222 …``). Not a card: 18 digits shaped as a resident ID (a
  region code and a birth date: an ID, perhaps mistyped), a decimal fraction (``0.4111…``, the
  rest of ``1,234…``), an IBAN's tail (``FR76 3000 …``). After an order or reference word
  (订单, 单号, 流水, order, tracking, ref …) or glued to letters (``ORD4111…``, ``card6222…``) a
  number is a card only with a real network prefix and length (:func:`network_prefix`): one
  order number in ten passes Luhn.
- ``resident_id``: a mainland resident ID (GB 11643): 18 characters, 17 digits and a check
  character (``X`` for 10), the checksum right, a region code 11–82 and a real birth date
  (1900–2099); unbroken or grouped (6-8-4, in fours …). After 身份证/证件号/ID card, an
  ID-shaped value with a wrong check character too (a mistyped ID is still the person's).
- ``bank_account``: 10–25 digits within 12 characters after an account keyword
  (账号/账户/帐号/帐户/account/acct/A/C), when not already a card or an ID, and not a
  mainland mobile number (11 digits starting 13–19).
- ``cvv``: 3–4 digits within 8 characters after CVV/CVC/CVV2/CVC2/安全码/校验码.
- ``otp``: 4–8 digits within 8 characters after OTP/验证码/动态码/动态密码/one-time code/
  one-time password/passcode/verification code.
  A code may follow its keyword directly (``CVV123``) or on the next line, and may be written in
  groups as long as its first (``验证码 482 913``, ``OTP: 1234 5678``, ``CVV 1 2 3``): they are
  joined up to the kind's most digits.

Digits are read after a per-character NFKC normalisation (full-width ``６２２２`` is ``6222``;
other scripts' decimal digits count too), so offsets into the text stay the same and masking
replaces exactly the characters that carried the value; the rest of the text is kept as sent.

Masks keep what people need to recognise the value and nothing more: a card's first 4 and last
4 digits (``6222 **** **** 7890``), an ID's first 6 and last 4, an account's last 4
(``**********7890``); a CVV (``***``) and a code (``******``) are masked whole. A mask keeps the
separators as written and is as long as the value it replaces.

:func:`fingerprint` is the keyed HMAC-SHA256 of a value's canonical form (digits; an ID's check
character upper-case), domain-separated per kind: the same card typed ``6222-0212…`` or in
full-width digits has one fingerprint, a card and an account with the same digits have two, and
without the key nobody can test a guess against the stored fingerprints.

Every step is linear: one pass over the characters finds the runs; from each group at most
19 digits' worth of candidate spans is tried; keyword patterns have bounded gaps.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..protocol.frames import MAX_TEXT_CHARS

__all__ = [
    "Kind",
    "KINDS",
    "SEARCHABLE_KINDS",
    "MAX_SCAN_CHARS",
    "Finding",
    "Masked",
    "normalise",
    "luhn_ok",
    "resident_id_ok",
    "scan",
    "mask",
    "mask_value",
    "fingerprint",
    "canonical",
    "network_prefix",
    "find_card_number",
]

Kind = Literal["card", "resident_id", "bank_account", "cvv", "otp"]
KINDS: Final[tuple[Kind, ...]] = ("card", "resident_id", "bank_account", "cvv", "otp")
SEARCHABLE_KINDS: Final[tuple[Kind, ...]] = ("card", "resident_id", "bank_account")
"""The kinds an investigator can search by (:func:`canonical`). A CVV or a code has so few
values that a fingerprint of it would identify nothing: none is kept (``fingerprint`` refuses)."""

MAX_SCAN_CHARS: Final = MAX_TEXT_CHARS
"""A text message's limit (the bench's long texts). :func:`scan` takes a text of any length —
an official account's article body is longer — in one linear pass, and never raises."""

_DOMAIN = b"bankhub.dlp.v1"


@dataclass(frozen=True, slots=True)
class Finding:
    """One value found: its kind, its span in the text (``text[start:end]``), its canonical
    form (never logged, never stored) and its mask."""

    kind: Kind
    start: int
    end: int
    canonical: str
    masked: str

    def __repr__(self) -> str:  # never the value, even in a traceback or a test failure
        return f"Finding(kind={self.kind!r}, start={self.start}, end={self.end}, masked={self.masked!r})"


@dataclass(frozen=True, slots=True)
class Masked:
    """A text with every finding replaced by its mask, and the findings (in text order)."""

    text: str
    findings: tuple[Finding, ...]


def _norm_char(ch: str) -> str:
    if ch.isascii():
        return ch
    d = unicodedata.decimal(ch, None)
    if d is not None:
        return str(d)
    n = unicodedata.normalize("NFKC", ch)
    # one character for one (offsets into the normalised text are offsets into the original), and
    # only letters, digits, blanks and dashes: a Chinese comma "，" is not a thousands separator
    return n if len(n) == 1 and (n.isalnum() or n in " -") and n.isascii() else ch


def normalise(text: str) -> str:
    """``text`` with each character NFKC-normalised when that gives one ASCII letter, digit,
    blank or dash (full-width ``６``, ``Ｘ``, ``　``, ``－``), and every decimal digit of any script
    as its ASCII digit; other characters as they are. The same length as ``text``."""
    if text.isascii():
        return text
    return "".join(_norm_char(ch) for ch in text)


def luhn_ok(digits: str) -> bool:
    """Whether the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _id_shaped(value: str) -> bool:
    """18 characters with a resident ID's region (11–82) and a real birth date 1900–2099."""
    if len(value) != 18 or not value[:17].isdigit() or not value.isascii() or value[17] not in "0123456789X":
        return False
    if not 11 <= int(value[:2]) <= 82:
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not 1900 <= year <= 2099:
        return False
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def resident_id_ok(value: str) -> bool:
    """Whether ``value`` (18 characters, canonical: digits and an upper-case ``X`` last) is a
    plausible mainland resident ID: region 11–82, a real birth date 1900–2099, the GB 11643
    check character right."""
    if not _id_shaped(value):
        return False
    check = sum(int(c) * w for c, w in zip(value[:17], _ID_WEIGHTS, strict=True)) % 11
    return _ID_CHECK[check] == value[17]


# --- reading digit runs ------------------------------------------------------------------------
# A run is digit groups joined by at most two visible separators in a row — a space or any blank,
# a tab, a line break, ". / _", any dash — which is how people (and anyone evading a filter)
# write numbers. Invisible characters (format controls such as U+200B or a soft hyphen, combining
# marks) join nothing and split nothing: "4111\u200b1111…" is one group. An ID's check X may end
# a group, and ends the run.
_SEPS = frozenset(" \t\n\r./_-\u2212\u00a0")
_MAX_SEPS = 3  # "6217 - 4575", "4111\r\n1111"
_SEP, _TRANSPARENT, _OTHER = 1, 2, 3


def _char_class(ch: str) -> int:
    if ch in _SEPS:
        return _SEP
    if ch.isascii():
        return _OTHER
    cat = unicodedata.category(ch)
    if cat in ("Zs", "Zl", "Zp", "Pd"):
        return _SEP
    if cat in ("Cf", "Mn", "Me"):
        return _TRANSPARENT
    return _OTHER


@dataclass(frozen=True, slots=True)
class _Group:
    start: int
    end: int  # exclusive: just after its last digit (or check X)
    digits: str  # ASCII digits (an ID's check X upper-case last)
    sep: str  # the visible separators before it ("" for a run's first group)


@dataclass(frozen=True, slots=True)
class _Run:
    start: int
    end: int
    groups: tuple[_Group, ...]
    glued_before: bool  # ASCII letters right before it ("ORD4111…", "card6222…")
    glued_after: bool  # ASCII letters right after it
    tail: bool  # right after "<digit>," — the rest of "1,234"


_IBAN_HEAD = re.compile(r"(?<![0-9A-Za-z])[A-Z]{2}")
_DIGIT = re.compile(r"[0-9]")


def _runs(norm: str) -> list[_Run]:
    """Every run of digit groups in ``norm``, in one pass (linear in the text)."""
    runs: list[_Run] = []
    groups: list[_Group] = []
    gstart, last, digits, pending, gsep = -1, -1, "", "", ""
    n = len(norm)

    def finish(after: int) -> None:
        nonlocal groups
        start, end = groups[0].start, groups[-1].end
        before = norm[start - 1] if start else ""
        glued_after = after == end and after < n and norm[after].isascii() and norm[after].isalpha()
        iban = len(groups) > 1 and len(groups[0].digits) == 2 and start >= 2 and _IBAN_HEAD.match(norm, start - 2) is not None
        if not iban:  # "FR76 3000 6000 …": an IBAN, not a number of its own
            runs.append(_Run(start, end, tuple(groups), before.isascii() and before.isalpha(), glued_after,
                             start >= 2 and before == "," and norm[start - 2].isdigit()))
        groups = []

    i = -1
    while True:
        i += 1
        if i >= n:
            break
        ch = norm[i]
        if "0" <= ch <= "9":
            if gstart < 0:
                gstart, digits, gsep, pending = i, "", pending, ""
            digits += ch
            last = i + 1
            continue
        if gstart < 0 and not groups:
            # outside a run nothing changes until the next digit: go there at C speed
            nxt = _DIGIT.search(norm, i)
            if nxt is None:
                break
            i = nxt.start() - 1
            continue
        cls = _char_class(ch)
        if cls == _TRANSPARENT:
            continue
        if cls == _SEP and len(pending) < _MAX_SEPS:
            if gstart >= 0:
                groups.append(_Group(gstart, last, digits, gsep))
                gstart = -1
            pending += ch
            continue
        if gstart >= 0 and ch in "Xx" and last == i and not (i + 1 < n and norm[i + 1].isascii() and norm[i + 1].isalnum()):
            groups.append(_Group(gstart, i + 1, digits + "X", gsep))  # an ID's check character
            gstart, pending = -1, ""
            finish(-1)
            continue
        if gstart >= 0:
            groups.append(_Group(gstart, last, digits, gsep))
            gstart = -1
        pending = ""
        finish(i)
    if gstart >= 0:
        groups.append(_Group(gstart, last, digits, gsep))
    if groups:
        finish(n)
    return runs


_CARD_FIRST = frozenset("234569")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
# a keyword, then at most this many characters: no digit, no currency sign, one line break at most
_GAP = re.compile(r"[^0-9¥￥$€£]*")
_ACCOUNT_KW = re.compile(r"账号|账户|帐号|帐户|银行账|(?<![A-Za-z])(?:account|acct|a/c)(?![A-Za-z/])", re.IGNORECASE)
_CVV_KW = re.compile(r"安全码|校验码|(?<![A-Za-z])(?:cvv(?:2(?![0-9]))?|cvc(?:2(?![0-9]))?)(?![A-Za-z])", re.IGNORECASE)
_OTP_KW = re.compile(
    r"验证码|动态码|动态密码|(?<![A-Za-z])(?:otp|passcode|one[ -]?time (?:pass)?code|one[ -]?time password|verification code)(?![A-Za-z])",
    re.IGNORECASE,
)
_ID_KW = re.compile(r"身份证|证件号|(?<![A-Za-z])(?:resident id|id card|id no)(?![A-Za-z])", re.IGNORECASE)
# an order, waybill or reference number: many are 13–19 digits and one in ten passes Luhn; after
# these words a card needs a real network prefix and length
_REF_KW = re.compile(
    r"订单|单号|流水|运单|快递|参考号|交易号|(?<![A-Za-z])(?:order|tracking|ref|reference|invoice|txn|transaction)(?![A-Za-z])",
    re.IGNORECASE,
)
_ACCOUNT_GAP, _CODE_GAP, _REF_GAP = 12, 8, 12
_PRIORITY: dict[Kind, int] = {"resident_id": 0, "card": 1, "bank_account": 2, "cvv": 3, "otp": 4}
_KEEP: dict[Kind, tuple[int, int]] = {"card": (4, 4), "resident_id": (6, 4), "bank_account": (0, 4), "cvv": (0, 0), "otp": (0, 0)}


def mask_value(kind: Kind, written: str) -> str:
    """The mask of a value of ``kind`` as written (normalised: ASCII digits, separators): each
    digit replaced by ``*`` but a card's first 4 and last 4, an ID's first 6 and last 4 (its
    check character included), an account's last 4; a CVV's and a code's every digit. The
    separators stay where they were, so the mask is exactly as long as what it replaces (a
    masked text never outgrows the limit the original met)."""
    head, tail = _KEEP[kind]
    n = sum(1 for ch in written if ch.isdigit() or ch in "Xx")
    out, k = [], 0
    for ch in written:
        if ch.isdigit() or ch in "Xx":
            out.append(ch.upper() if k < head or k >= n - tail else "*")
            k += 1
        else:
            out.append(ch)
    return "".join(out)


def _finding(kind: Kind, start: int, end: int, value: str, norm: str) -> Finding:
    return Finding(kind, start, end, value, mask_value(kind, norm[start:end]))



def network_prefix(digits: str) -> bool:
    """Whether a card-length digit string has a real card network's prefix and length: Visa 4
    (13, 16, 19), Mastercard 51–55 and 2221–2720 (16), American Express 34/37 (15), JCB 3528–3589
    (16–19), UnionPay 62 (16–19)."""
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)
    p2, p4 = int(digits[:2]), int(digits[:4])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p2 == 35:
        return 3528 <= p4 <= 3589 and 16 <= n <= 19
    return p2 == 62 and 16 <= n <= 19


def _gap_ok(norm: str, a: int, b: int, gap: int) -> bool:
    if b - a > gap or not _GAP.fullmatch(norm, a, b):
        return False
    between = norm[a:b]
    return between.count("\n") + between.count("\r") - between.count("\r\n") <= 1


def _after(norm: str, kw: re.Pattern[str], runs: list[_Run], starts: list[int], gap: int) -> list[_Run]:
    """The runs starting within ``gap`` characters after a match of ``kw`` (no digit between)."""
    out = []
    for m in kw.finditer(norm):
        k = bisect.bisect_left(starts, m.end())
        if k and runs[k - 1].end > m.end():
            # the keyword ends in a digit of a run ("cvv2 456"): the groups after it
            rest = tuple(g for g in runs[k - 1].groups if g.start >= m.end())
            if rest and _gap_ok(norm, m.end(), rest[0].start, gap):
                first = _Group(rest[0].start, rest[0].end, rest[0].digits, "")
                out.append(_Run(first.start, rest[-1].end, (first, *rest[1:]), False, runs[k - 1].glued_after, False))
                continue
        if k < len(runs) and _gap_ok(norm, m.end(), runs[k].start, gap):
            out.append(runs[k])
    return out


def _shape_ok(sizes: Sequence[int]) -> bool:
    """Grouped as card numbers are written: every group but the last the same size ("62 22 02 …",
    "6222 0212 3456 7890 1"), or every group at least 3 digits ("3782 822463 10005", 3-4-4-5).
    Dates and times ("2026 12 07 10 30") are neither."""
    inner = sizes[:-1]
    return len(sizes) == 1 or all(s == inner[0] for s in inner) or all(s >= 3 for s in sizes)


def _window_seps_ok(groups: Sequence[_Group]) -> bool:
    """A number is joined the same way throughout, or by single blanks and dashes mixed
    ("6222 0212-3456 7890"): "5678\\n139 8765 4321" or "5678 / 139 8765" is the end of one
    phone number and the start of another."""
    seps = {g.sep for g in groups[1:]}
    return len(seps) <= 1 or all(len(s) == 1 and s not in "\n\r" for s in seps)


def _in_run(norm: str, run: _Run, reference: bool, id_keyword: bool) -> list[Finding]:
    """The IDs and card numbers in one run: from each group on, the longest run of whole groups
    that is an ID (18 characters, checksum right) or else a card (13–19 digits passing Luhn), then
    on from after it."""
    g = run.groups
    found: list[Finding] = []
    k, fresh = 0, True
    while k < len(g):
        best: tuple[Kind, int, str] | None = None
        digits = ""
        for j in range(k, len(g)):
            digits += g[j].digits
            if len(digits) > 19:
                break
            window = g[k : j + 1]
            if not (_shape_ok([len(x.digits) for x in window]) and _window_seps_ok(window)):
                continue
            # inside a run, a grouped number starts only where the writing visibly changes — a
            # group of another size or another separator before it ("1 6222 0212 …", "500\n6222 …");
            # else "5018 2600 0000 0000 005" would hold a card from its second group on
            if not fresh and j > k and len(g[k - 1].digits) == len(g[k].digits) and g[k].sep == g[k + 1].sep:
                continue
            if len(digits) == 18 and (resident_id_ok(digits) or (id_keyword and k == 0 and _id_shaped(digits))):
                best = ("resident_id", j, digits)
                break  # an ID wins
            if digits[-1] == "X" or len(digits) < 13 or digits[0] not in _CARD_FIRST:
                continue
            # 18 digits shaped as an ID (region, birth date) are an ID, mistyped or not: rarely a card
            if not luhn_ok(digits) or _id_shaped(digits):
                continue
            # a decimal fraction ("0.4111…", the rest of "1,234…") is one unbroken digit string
            if j == k and ((k > 0 and g[k].sep == ".") or (k == 0 and run.tail)):
                continue
            # an order or reference number (after its keyword, or glued to letters): a card only with
            # a real network prefix and length
            ref = reference or id_keyword or (k == 0 and run.glued_before) or (j == len(g) - 1 and run.glued_after)
            if ref and not network_prefix(digits):
                continue
            best = ("card", j, digits)
        if best is None:
            k, fresh = k + 1, False
            continue
        kind, j, value = best
        found.append(_finding(kind, g[k].start, g[j].end, value, norm))
        k, fresh = j + 1, True
    return found


def _account_in(norm: str, run: _Run) -> Finding | None:
    groups: list[_Group] = []
    for grp in run.groups:  # up to a line break: the next line is something else
        if groups and ("\n" in grp.sep or "\r" in grp.sep):
            break
        groups.append(grp)
    value = "".join(x.digits for x in groups)
    if value.isdigit() and 10 <= len(value) <= 25 and not _MOBILE.fullmatch(value):
        return _finding("bank_account", groups[0].start, groups[-1].end, value, norm)
    return None


def _code_in(norm: str, run: _Run, kind: Kind, lo: int, hi: int) -> Finding | None:
    # the first group, and the next ones while they are as long as it and the code is not too
    # long: "验证码 482 913", "OTP: 1234 5678", "CVV 1 2 3" — but "验证码 482913 5分钟内有效" is a
    # code and a number of minutes
    first = run.groups[0]
    value, end = first.digits, first.end
    for grp in run.groups[1:]:
        if len(grp.digits) != len(first.digits) or len(value) + len(grp.digits) > hi or "\n" in grp.sep:
            break
        value, end = value + grp.digits, grp.end
    if value.isdigit() and lo <= len(value) <= hi:
        return _finding(kind, first.start, end, value, norm)
    return None


def scan(text: str) -> list[Finding]:
    """Every value found in ``text`` (any length: linear in it, never raises), in text order,
    none overlapping (an ID wins over a card over an account over a CVV over a code)."""
    norm = normalise(text)
    runs = _runs(norm)
    if not runs:
        return []
    starts = [r.start for r in runs]
    reference = {id(r) for r in _after(norm, _REF_KW, runs, starts, _REF_GAP)}
    id_keyword = {id(r) for r in _after(norm, _ID_KW, runs, starts, _ACCOUNT_GAP)}
    found: list[Finding] = []
    for run in runs:
        found.extend(_in_run(norm, run, id(run) in reference, id(run) in id_keyword))
    for run in _after(norm, _ACCOUNT_KW, runs, starts, _ACCOUNT_GAP):
        acct = _account_in(norm, run)
        if acct is not None:
            found.append(acct)
    for kw, kind, lo, hi in ((_CVV_KW, "cvv", 3, 4), (_OTP_KW, "otp", 4, 8)):
        for run in _after(norm, kw, runs, starts, _CODE_GAP):
            code = _code_in(norm, run, kind, lo, hi)  # type: ignore[arg-type]
            if code is not None:
                found.append(code)
    # no overlaps: by priority, then position
    found.sort(key=lambda f: (_PRIORITY[f.kind], f.start))
    kept: list[Finding] = []
    for f in found:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept



def mask(text: str) -> Masked:
    """``text`` with each finding of :func:`scan` replaced by its mask; the text unchanged (the
    same object) when nothing was found."""
    findings = scan(text)
    if not findings:
        return Masked(text, ())
    parts, at = [], 0
    for f in findings:
        parts.append(text[at : f.start])
        parts.append(f.masked)
        at = f.end
    parts.append(text[at:])
    return Masked("".join(parts), tuple(findings))


def fingerprint(key: bytes, kind: Kind, canonical_value: str) -> bytes:
    """The keyed HMAC-SHA256 of a value's canonical form, domain-separated by ``kind`` (32 bytes).
    Only for :data:`SEARCHABLE_KINDS`."""
    if kind not in SEARCHABLE_KINDS:
        raise ValueError(f"no fingerprint is kept for {kind}")
    if len(key) < 32:
        raise ValueError("the compliance key is 32 bytes or more")
    return hmac.new(key, _DOMAIN + b"\x00" + kind.encode() + b"\x00" + canonical_value.encode(), hashlib.sha256).digest()




def canonical(kind: Kind, value: str) -> str | None:
    """An investigator's value in canonical form, or None when it is not a valid value of ``kind``:
    digits only once separators (blanks, dashes, dots, invisible characters …) are removed (an
    ID may end in ``X``), a card 13–19 digits passing Luhn, an ID passing its checksum, an
    account 10–25 digits."""
    if kind not in SEARCHABLE_KINDS or len(value) > 64:
        return None
    v = "".join(ch for ch in normalise(value) if _char_class(ch) == _OTHER).upper()  # no separators
    if not v.isascii():
        return None
    if kind == "card":
        return v if v.isdigit() and 13 <= len(v) <= 19 and luhn_ok(v) else None
    if kind == "resident_id":
        return v if resident_id_ok(v) else None
    return v if v.isdigit() and 10 <= len(v) <= 25 else None


# --- the alert guard -------------------------------------------------------------------------------
# An alert (bankhub.alerts.templates) is refused rather than masked, so its guard is broader than
# scan(): any whole groups of a run holding 13–19 digits that pass Luhn, wherever they start, and
# any unbroken run of more than 19 digits (a card could hide anywhere inside it).


def find_card_number(text: str) -> str | None:
    """A masked sample of the first card-number-like digit sequence in ``text``, else None.

    Digits of any script count. Digits separated by at most two separators (a space or any
    blank, a tab, a line break, ``.``, ``/``, ``_``, any dash, or an invisible or combining
    character) form one *run*, made of *groups* (the digits between separators). Card-like is:

    * any consecutive groups of a run holding 13–19 digits together that pass the Luhn
      check (``4111 1111 1111 1111``, also with a stray digit group before or after), or
    * a group of more than 19 digits (a card number could hide anywhere inside it).

    A single 13–19 digit number that fails the Luhn check (a reference number) passes.
    """
    runs: list[list[str]] = []
    groups: list[str] = []
    current: list[str] = []
    gap = 0
    for ch in text:
        value = unicodedata.decimal(ch, None)
        if value is not None:
            if gap and current:
                groups.append("".join(current))
                current = []
            current.append(chr(48 + value))
            gap = 0
        elif (current or groups) and _char_class(ch) != _OTHER and gap < 2:  # "4111   1111": two numbers
            gap += 1
        else:
            if current:
                groups.append("".join(current))
            if groups:
                runs.append(groups)
            groups, current, gap = [], [], 0
    if current:
        groups.append("".join(current))
    if groups:
        runs.append(groups)
    for run in runs:
        for start in range(len(run)):
            if len(run[start]) > 19:
                return f"{run[start][:2]}{'*' * (len(run[start]) - 6)}{run[start][-4:]}"
            digits = ""
            for group in run[start:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_ok(digits):
                    return f"{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"
    return None
