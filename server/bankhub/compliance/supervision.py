"""Supervision: the pure rules (no I/O) — lexicon and pattern rules, and sampling.

A *rule* flags a message into the compliance review queue when its text matches:

* ``lexicon``: a list of terms. Text and terms are compared after :func:`normalize` (NFKC,
  which folds full-width and half-width forms; case folding; invisible characters removed —
  format characters such as zero-width spaces, every Default_Ignorable_Code_Point such as
  variation selectors, the combining grapheme joiner and the Hangul fillers, and combining
  marks (category Mn); the braille blank, every punctuation mark, symbol and emoji read as a
  space; Cyrillic and Greek letters that look like Latin ones read as those, so ``wеchat``
  with a Cyrillic ``е`` is ``wechat``). A term of CJK characters matches with any spaces
  (so any punctuation, emoji or underscores) between its characters (``加_我.微😀信`` is
  ``加我微信``); a term that starts or ends with a Latin letter matches only where no Latin
  letter stands next to it (``telegram`` is not in ``telegraphic``, but is in
  ``telegram2`` and ``whatsapp8613800138000``: digits are a boundary); one space may stand
  between any two letters of a Latin word (``w h a t s a p p``, ``whats app``); spaces and
  hyphens inside a Latin term match any run of spaces and hyphens (``risk free`` is
  ``risk-free``). A term written ``!phrase`` is an *exception*:
  the rule's terms do not count where they occur inside an occurrence of the phrase
  (``保本`` with ``!不保本``: "本产品不保本" is the proper disclosure, not a guarantee).
* ``pattern``: a regular expression in RE2 syntax, matched case-insensitively by RE2 (an
  automaton: time linear in the text, whatever the pattern) on the NFKC text with invisible
  characters removed. It is checked once, where it enters (:func:`check_pattern`): at most
  :data:`MAX_PATTERN_CHARS` characters, it must compile under RE2 (no backreferences, no
  lookaround), its compiled program at most :data:`MAX_PATTERN_PROGRAM` instructions, and it
  may not match the empty text or every one of a few ordinary chat lines.

A :class:`RuleSet` is compiled once (a node keeps one and replaces it when the rules
change) and :meth:`RuleSet.evaluate` answers the ids of the rules a text matches.

*Sampling* picks messages for review at random but reproducibly: :func:`sampled` is a
keyed hash (HMAC-SHA256 under the hub's sampling key) of the message id compared against
the rate, so the same message is always either sampled or not, on every node, and nobody
without the key can tell in advance (or afterwards) which of their messages are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import re2

__all__ = [
    "KINDS",
    "MAX_RULES",
    "MAX_TERMS",
    "MAX_TERM_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_PATTERN_PROGRAM",
    "MAX_PATTERN_RULES",
    "PATTERN_MAX_MEM",
    "RuleError",
    "RuleSpec",
    "CompiledRule",
    "RuleSet",
    "EMPTY",
    "normalize",
    "check_terms",
    "check_pattern",
    "compile_rule",
    "sampled",
    "DEMO_RULES",
]

KINDS = ("lexicon", "pattern")
MAX_RULES = 200
"""Rules that may exist at once (enabled or not): the compiled set stays small."""
MAX_TERMS = 100
MAX_TERM_CHARS = 64
MAX_PATTERN_CHARS = 200
MAX_PATTERN_PROGRAM = 1000
"""The most instructions a pattern's compiled RE2 program may have: RE2's work per character
of text is bounded by it (when its DFA runs out of memory it falls back to a simulation that
steps through at most the whole program per character)."""
MAX_PATTERN_RULES = 20
"""Pattern rules that may exist at once: with :data:`MAX_PATTERN_PROGRAM` and the text's
4,000 characters this bounds the pattern work per text (measured: under 5 ms per rule on
the most hostile texts found, so under 0.1 s per text for all of them)."""
PATTERN_MAX_MEM = 4 << 20
"""RE2's memory budget per pattern (bytes): its program and the cache of its DFA."""


class RuleError(ValueError):
    """A rule that cannot be compiled; the message says why (safe to show: no message text)."""


# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside categories Cf and Mn,
# which are removed whole: the Hangul fillers and the other invisible letters
_IGNORABLE = frozenset(
    "\u115f\u1160\u17b4\u17b5\u3164\uffa0" + "".join(map(chr, range(0xFFF0, 0xFFF9)))
)
# Cyrillic and Greek letters (after case folding) drawn like a Latin one
_CONFUSABLE = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ω": "w", "ϲ": "c", "ϳ": "j",
}


@lru_cache(maxsize=16384)
def _fold_char(ch: str, lexicon: bool) -> str:
    """One character as rules see it (see :func:`normalize`)."""
    cat = unicodedata.category(ch)
    if cat in ("Cf", "Mn", "Me") or ch in _IGNORABLE or 0xE0000 <= ord(ch) <= 0xE0FFF:
        return ""
    if not lexicon:
        return ch
    if ch == "\u2800" or cat[0] in "PSZ" or ch.isspace():
        return " "
    return _CONFUSABLE.get(ch, ch)


def normalize(text: str, *, fold_case: bool = True) -> str:
    """The text as rules see it.

    Always: NFKC (full-width ``ＷｅＣｈａｔ`` is ``WeChat``, half-width katakana full-width)
    and invisible characters removed — format characters (Cf: zero-width spaces and joiners,
    soft hyphens, bidi controls), combining marks (Mn, Me: NFKC has composed the letters
    that have a composed form), variation selectors and the other Default_Ignorable code
    points (the Hangul fillers, the combining grapheme joiner, tags): they are invisible, so
    they would otherwise split a term without the reader noticing. With ``fold_case`` (the
    lexicon's text): also case folded; every punctuation mark, symbol (emoji), separator and
    the braille blank read as one space, runs of spaces as one; Cyrillic and Greek
    look-alikes of Latin letters read as those."""
    text = unicodedata.normalize("NFKC", text)
    if fold_case:
        text = text.casefold()
        if text.isascii():  # the common case: only punctuation and spaces to fold
            text = text.translate(_ASCII_FOLD)
        else:
            text = "".join([_fold_char(ch, True) for ch in text])
        return " ".join(text.split())
    if not text.isascii():
        text = "".join([_fold_char(ch, False) for ch in text])
    return text


_ASCII_FOLD = {
    c: " " for c in range(128) if unicodedata.category(chr(c))[0] in "PSZ" or chr(c).isspace() or unicodedata.category(chr(c)) == "Cc"
}


def _latin(ch: str) -> bool:
    """A Latin letter or digit (after case folding): a term's Latin words."""
    return ch.isascii() and ch.isalnum() or ("\u00c0" <= ch <= "\u024f" and ch.isalpha())


# the boundary of a Latin term: letters only, so digits glued to a term do not hide it
_LATIN_CLASS = r"a-z\u00c0-\u024f"
_SEP = " -"


def _term_regex(term: str) -> str:
    """One normalized term as a regular expression (see the module docstring)."""
    parts: list[str] = []
    chars = [c for c in term]
    # drop spaces between CJK characters (they match any whitespace anyway)
    i = 0
    prev: str | None = None
    while i < len(chars):
        ch = chars[i]
        if ch in _SEP:
            j = i
            while j < len(chars) and chars[j] in _SEP:
                j += 1
            nxt = chars[j] if j < len(chars) else None
            if prev is not None and nxt is not None and (_latin(prev) or _latin(nxt)):
                parts.append(r"[\s\-]+")
            i = j
            continue
        if prev is not None and parts and parts[-1] != r"[\s\-]+":
            # CJK: spaces (punctuation, emoji) between characters do not count; Latin: one
            # space between letters does not either (spaced-out letters, a word split in two)
            parts.append(r"\s?" if _latin(prev) and _latin(ch) else r"\s*")
        parts.append(re.escape(ch))
        prev = ch
        i += 1
    body = "".join(parts)
    stripped = term.strip(_SEP)
    if stripped and stripped[0].isalpha() and _latin(stripped[0]):
        body = f"(?<![{_LATIN_CLASS}])" + body
    if stripped and stripped[-1].isalpha() and _latin(stripped[-1]):
        body += f"(?![{_LATIN_CLASS}])"
    return body


def check_terms(terms: Sequence[str]) -> list[str]:
    """The lexicon's terms, normalized; :class:`RuleError` when there are none, too many, an
    empty or over-long one, or only exceptions."""
    if not terms:
        raise RuleError("a lexicon rule needs at least one term")
    if len(terms) > MAX_TERMS:
        raise RuleError(f"a lexicon rule has at most {MAX_TERMS} terms")
    out: list[str] = []
    for raw in terms:
        if len(raw) > MAX_TERM_CHARS:
            raise RuleError(f"a term has at most {MAX_TERM_CHARS} characters")
        exception = raw.startswith("!")
        term = normalize(raw[1:] if exception else raw).strip()
        term = re.sub(r"\s+", " ", term)
        if not term.strip(_SEP):
            raise RuleError("a term may not be empty")
        out.append(("!" if exception else "") + term)
    if all(t.startswith("!") for t in out):
        raise RuleError("a lexicon rule needs a term that is not an exception")
    return out


class Searcher(Protocol):
    """A compiled rule's matcher (Python's ``re`` for lexicons, RE2 for patterns)."""

    def search(self, text: str) -> object | None: ...


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = PATTERN_MAX_MEM
    options.log_errors = False  # a refused pattern is answered to the officer, not logged
    return options


_RE2_OPTIONS = _re2_options()
# ordinary chat lines: a pattern that matches every one of them would flag every message
_ORDINARY = ("好的，谢谢", "ok", "See you tomorrow at 10.", "您好，请问有什么可以帮您？", "1")


def check_pattern(pattern: str) -> Searcher:
    """The pattern compiled by RE2 (case-insensitive), or :class:`RuleError`.

    Why the work is bounded: RE2 matches with automata, never by backtracking, so a search
    takes time linear in the text for any pattern; the constant is bounded by refusing a
    compiled program of more than :data:`MAX_PATTERN_PROGRAM` instructions (large bounded
    repeats such as ``.{0,999}`` or ``[^x]{2000}`` unroll into that many) and by RE2's memory
    budget :data:`PATTERN_MAX_MEM`. RE2 has no backreferences and no lookaround: such a
    pattern does not compile and is refused. A pattern is also refused when it matches the
    empty text or every one of a few ordinary chat lines (``.``, ``\\B``): it would flag
    every message."""
    if not pattern:
        raise RuleError("a pattern rule needs a pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RuleError(f"a pattern has at most {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except Exception as exc:  # re2.error; its message names RE2's complaint, never any text
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise RuleError(f"the pattern does not compile under RE2 (no backreferences or lookaround): {detail}"[:300]) from None
    if compiled.programsize > MAX_PATTERN_PROGRAM:
        raise RuleError("the pattern is too large once compiled (large bounded repeats unroll): simplify it")
    if compiled.search("") is not None:
        raise RuleError("the pattern matches an empty text: it would flag every message")
    if all(compiled.search(normalize(t, fold_case=False)) is not None for t in _ORDINARY):
        raise RuleError("the pattern matches ordinary chat: it would flag every message")
    searcher: Searcher = compiled
    return searcher


@dataclass(frozen=True)
class RuleSpec:
    """A rule as stored: its id, name, kind, terms or pattern, and whether it is on."""

    rule_id: str
    name: str
    kind: str
    terms: tuple[str, ...] = ()
    pattern: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class CompiledRule:
    rule_id: str
    regex: re.Pattern[str]  # lexicon: matched on normalize(text); a hit needs group "hit"
    lexicon: bool
    # lexicon: each term without its spaces and hyphens. A match of a term leaves exactly these
    # characters once spaces and hyphens are squeezed out of the text, so a text that contains
    # none of them cannot match: a substring test (C speed) spares most texts the regex
    cores: tuple[str, ...] = ()
    # lexicon: the term each core comes from (what a flag names as matched)
    terms: Mapping[str, str] = field(default_factory=dict)
    # pattern: RE2's matcher and the pattern (what a flag names as matched)
    searcher: Searcher | None = None
    pattern: str = ""

    def match(self, folded: str, plain: str) -> str | None:
        """The term (lexicon) or pattern this rule matches in the text (given folded by
        :func:`normalize` and plain by ``normalize(text, fold_case=False)``), or None."""
        if self.searcher is not None:
            return self.pattern if self.searcher.search(plain) is not None else None
        for m in self.regex.finditer(folded):
            hit = m.group("hit")
            if hit is not None:
                # by construction a hit squeezed is a term's core; never answer the text itself
                return self.terms.get(_SQUEEZE.sub("", hit), "")
        return None


_NEVER = re.compile(r"(?!)")


_SQUEEZE = re.compile(r"[\s\-]+")


def compile_rule(spec: RuleSpec) -> CompiledRule:
    """One rule compiled; :class:`RuleError` when its terms or pattern are refused."""
    if spec.kind == "lexicon":
        terms = check_terms(spec.terms)
        # exceptions first and longest first: at a position where an exception starts it wins
        exceptions = sorted((t[1:] for t in terms if t.startswith("!")), key=len, reverse=True)
        positives = sorted((t for t in terms if not t.startswith("!")), key=len, reverse=True)
        hit = "(?P<hit>" + "|".join(_term_regex(t) for t in positives) + ")"
        source = "|".join([*(_term_regex(t) for t in exceptions), hit])
        by_core = {_SQUEEZE.sub("", t): t for t in reversed(positives)}  # the shortest term of a core names it
        return CompiledRule(spec.rule_id, re.compile(source), True, tuple(sorted(by_core)), by_core)
    if spec.kind == "pattern":
        pattern = spec.pattern or ""
        return CompiledRule(spec.rule_id, _NEVER, False, searcher=check_pattern(pattern), pattern=pattern)
    raise RuleError(f"kind must be one of {list(KINDS)}")


_DIRECT_CORES = 64


@dataclass(frozen=True)
class RuleSet:
    """The enabled rules, compiled once; ``version`` is the rules' version it was built from.

    ``index`` maps the first two characters of each lexicon term's core (the core itself when
    it is one character) to the rules and cores that start so: a text is tested only against
    the cores whose start it contains, so the cost of a message stays near its length even
    with many terms."""

    rules: tuple[CompiledRule, ...] = ()
    version: int = 0
    sample_key: bytes = field(default=b"", repr=False)
    skipped: tuple[str, ...] = field(default=())  # ids of stored rules that no longer compile
    index: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    cores: int = 0  # how many cores the index holds

    @classmethod
    def build(cls, specs: Iterable[RuleSpec], version: int = 0, sample_key: bytes = b"") -> RuleSet:
        compiled: list[CompiledRule] = []
        skipped: list[str] = []
        for spec in specs:
            if not spec.enabled:
                continue
            try:
                compiled.append(compile_rule(spec))
            except RuleError:
                skipped.append(spec.rule_id)  # checked when stored; a later, stricter check skips it
        index: dict[str, list[tuple[int, str]]] = {}
        for i, rule in enumerate(compiled):
            for core in rule.cores:
                index.setdefault(core[:2], []).append((i, core))
        cores = sum(len(v) for v in index.values())
        return cls(tuple(compiled), version, sample_key, tuple(skipped), {k: tuple(v) for k, v in index.items()}, cores)

    def _candidates(self, squeezed: str) -> set[int]:
        """The lexicon rules one of whose cores ``squeezed`` contains."""
        if self.cores <= _DIRECT_CORES:  # few terms: a substring test each is cheaper than the text's bigrams
            return {i for i, rule in enumerate(self.rules) if any(core in squeezed for core in rule.cores)}
        grams = {squeezed[i : i + 2] for i in range(len(squeezed) - 1)}
        grams.update(squeezed)  # one-character cores
        found: set[int] = set()
        index = self.index
        for gram in grams:  # not grams & index: that would walk the index's keys
            for i, core in index.get(gram, ()):
                if i not in found and core in squeezed:
                    found.add(i)
        return found

    def matches(self, text: str) -> list[tuple[str, str]]:
        """The rules ``text`` matches, in rule order: (rule id, the term or pattern matched)."""
        if not self.rules or not text:
            return []
        folded = normalize(text)
        candidates = self._candidates(_SQUEEZE.sub("", folded)) if self.index else set()
        plain = ""
        if any(not rule.lexicon for rule in self.rules):
            plain = normalize(text, fold_case=False)
        out: list[tuple[str, str]] = []
        for i, rule in enumerate(self.rules):
            if rule.lexicon and i not in candidates:
                continue
            matched = rule.match(folded, plain)
            if matched is not None:
                out.append((rule.rule_id, matched))
        return out

    def evaluate(self, text: str) -> list[str]:
        """The ids of the rules ``text`` matches, in rule order."""
        return [rule_id for rule_id, _ in self.matches(text)]

    def matches_all(self, texts: Iterable[str]) -> list[tuple[str, str]]:
        """The rules any of ``texts`` matches (a card's title, fields and action labels): the
        first match of each rule."""
        seen: dict[str, str] = {}
        for text in texts:
            for rule_id, matched in self.matches(text):
                seen.setdefault(rule_id, matched)
        return list(seen.items())

    def evaluate_all(self, texts: Iterable[str]) -> list[str]:
        """The ids of the rules any of ``texts`` matches."""
        return [rule_id for rule_id, _ in self.matches_all(texts)]


EMPTY = RuleSet()


def sampled(key: bytes, message_id: str, rate: float) -> bool:
    """Whether the message is sampled for review: HMAC-SHA256(key, message id) read as a
    number in [0, 1) is below ``rate``. Deterministic per key and id; 0 never, 1 always."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hmac.new(key, b"bankhub.supervision.sample.v1\n" + message_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < int(rate * 2**64)


# name, terms: the rules the demo data starts with (docs/compliance.md, "Supervision")
DEMO_RULES: list[tuple[str, list[str]]] = [
    (
        "guarantee of returns",
        [
            "保本", "保收益", "保证收益", "稳赚", "稳赚不赔", "零风险", "无风险", "刚性兑付",
            "guaranteed return", "guaranteed returns", "guaranteed profit", "guaranteed profits",
            "guarantee your returns", "risk-free", "zero risk", "no risk at all",
            # Traditional Chinese (Hong Kong, Taiwan, Macao customers)
            "保證收益", "穩賺", "穩賺不賠", "零風險", "無風險", "剛性兌付",
            # the proper disclosures contain the words: not a guarantee
            "!不保本", "!非保本", "!不保证收益", "!不保收益", "!无风险利率", "!risk-free rate",
            "!不保證收益", "!無風險利率",
            "!no guaranteed return", "!no guaranteed returns", "!not guaranteed returns",
        ],
    ),
    (
        "off-channel",
        [
            "加我微信", "加微信", "加个微信", "微信联系", "私人微信", "个人微信", "私下转账", "私下交易",
            "add me on wechat", "wechat me", "whatsapp", "telegram", "my personal number", "my private number",
            "my personal phone",
            # Traditional Chinese, and what people write to dodge the word WeChat
            "加個微信", "微信聯繫", "微信聯系", "個人微信", "私下轉賬", "私下轉帳",
            "weixin", "vx", "v信", "加v", "薇信", "加薇",
        ],
    ),
]
