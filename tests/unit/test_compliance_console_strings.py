"""The compliance console's strings: zh and en hold the same keys, every key the scripts ask
for exists, and every state, reason and problem the hub can answer has a string in both."""

from __future__ import annotations

import re

from bankhub.policy import PRIVILEGED_READ_REASONS
from bankhub.web import WEB_ROOT

HERE = WEB_ROOT / "static" / "compliance"

# what the hub answers, by the prefix the console looks strings up under
STATES = {
    "export_": {"pending_approval", "rejected", "running", "ready", "failed", "expired"},
    "hold_": {"active", "release_pending", "released"},
    "flag_": {"open", "escalated", "closed"},
    "reason_": set(PRIVILEGED_READ_REASONS),
    "problem_": {"altered", "missing", "broken_link", "bad_seq", "undecodable", "truncated", "anchor_mismatch"},
    "verify_": {"verify_running", "rate_limited"},
}


def _tables() -> dict[str, set[str]]:
    source = (HERE / "i18n.js").read_text(encoding="utf-8")
    zh_at, en_at = source.index('"zh-CN": {'), source.index("\n  en: {")
    key = re.compile(r"^    ([a-z0-9_]+):", re.M)
    return {"zh": set(key.findall(source[zh_at:en_at])), "en": set(key.findall(source[en_at:]))}


def test_zh_and_en_have_the_same_keys() -> None:
    tables = _tables()
    assert len(tables["zh"]) > 100
    assert tables["zh"] - tables["en"] == set(), "only in zh"
    assert tables["en"] - tables["zh"] == set(), "only in en"


def test_every_key_the_scripts_ask_for_exists() -> None:
    keys = _tables()["en"]
    asked: set[str] = set()
    for script in HERE.glob("*.js"):
        # the first argument of each t(…): a key, or a choice of keys (`t(ok ? "a" : "b", …)`)
        for first in re.findall(r"\bt\(([^,()]*)", script.read_text(encoding="utf-8")):
            asked |= set(re.findall(r"(?<!== )(?<!==)\"([a-z0-9_]+)\"", first))  # not a compared value
    assert asked, "no t(\"…\") calls found"
    assert asked - keys == set()


def test_every_state_reason_and_problem_has_a_string() -> None:
    keys = _tables()
    for prefix, values in STATES.items():
        for lang in ("zh", "en"):
            missing = {v for v in values if prefix + v not in keys[lang]}
            assert missing == set(), (lang, prefix, missing)
