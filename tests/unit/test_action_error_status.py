"""Every code an action raises has an explicit HTTP status (not the 400 fallback by omission)."""

from __future__ import annotations

import re
from pathlib import Path

from bankhub.actions.errors import ActionError

SERVER = Path(__file__).resolve().parents[2] / "server" / "bankhub"


def _raised_codes() -> set[str]:
    codes: set[str] = set()
    for path in SERVER.rglob("*.py"):
        codes.update(re.findall(r'ActionError\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    return codes


def test_every_raised_code_has_an_explicit_status() -> None:
    raised = _raised_codes()
    assert {"invalid_rule", "not_found", "below_floor"} <= raised
    missing = sorted(raised - set(ActionError._STATUS))
    assert not missing, f"ActionError codes without an explicit status: {missing}"


def test_an_invalid_rule_is_a_400() -> None:
    assert ActionError._STATUS["invalid_rule"] == 400
    assert ActionError("invalid_rule", "x").status == 400

