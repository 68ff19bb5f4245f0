"""The committed lock pins every dependency ``pyproject.toml`` declares, and both README commands install from it.

Refresh the lock after changing dependencies (see README, "Development")::

    .venv/bin/pip install pip-tools && .venv/bin/pip-compile --extra test --extra bench --strip-extras \\
        --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def _pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if m := _PIN.match(line):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        declared += [Requirement(r) for r in extra]
    return declared


def disagreements(declared: list[Requirement], pins: dict[str, str]) -> list[str]:
    """Declared requirements (for this platform) that the lock misses or pins outside their range."""
    problems = []
    for req in declared:
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} in requirements.lock does not satisfy {req}")
    return problems


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _pins(LOCK.read_text())
    assert len(pins) > len(_declared()), "the lock must pin transitive dependencies too"
    assert disagreements(_declared(), pins) == [], "refresh requirements.lock (see this module's docstring)"


def test_a_disagreement_is_reported() -> None:
    pins = {"starlette": "0.40.0", "httpx": "0.28.1"}
    found = disagreements([Requirement("starlette>=0.47"), Requirement("httpx>=0.27"), Requirement("redis>=5")], pins)
    assert found == ["starlette==0.40.0 in requirements.lock does not satisfy starlette>=0.47", "redis is not in requirements.lock"]


def test_the_lock_names_no_package_index() -> None:
    text = LOCK.read_text()
    assert not re.search(r"^\s*--(extra-)?index-url|^\s*--find-links|^\s*-[if]\s", text, re.M)


def test_readme_quick_start_and_ci_install_from_the_lock() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    assert all("pip install -c requirements.lock -e " in c for c in commands), commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
