"""Every audit action the hub records has a row in docs/security.md's audit table."""

from __future__ import annotations

import re
from pathlib import Path

from bankhub.actions import audit

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> set[str]:
    names: set[str] = set()
    for line in (ROOT / "docs" / "security.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", first))
    return names


def _constants() -> set[str]:
    actor_names = {audit.ANONYMOUS, audit.SYSTEM}
    return {
        v for k, v in vars(audit).items()
        if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", v) and v not in actor_names
    }


def test_every_audit_action_constant_has_a_row() -> None:
    missing = sorted(_constants() - _documented())
    assert not missing, f"audit actions without a row in docs/security.md: {missing}"


def test_the_table_is_parsed() -> None:
    # the parser finds the table (a guard against a test that cannot fail)
    assert {"session.login", "privileged_read", "hold.placed"} <= _documented()
