"""Copy the JavaScript SDK (``clients/web/src/*.js``) into the package (``static/sdk/``).

The hub serves the SDK at ``/static/sdk/bankhub.js`` from the Python package, so running it
needs no Node.js. The copy is committed; ``tests/unit/test_web_assets.py`` fails when it
differs from the source. Run from the repository: ``python -m bankhub.web.sync_sdk``
(``--check`` only reports, exit 1 when stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import WEB_ROOT

__all__ = ["SOURCE", "TARGET", "stale", "sync", "main"]

SOURCE = WEB_ROOT.parents[2] / "clients" / "web" / "src"
TARGET = WEB_ROOT / "static" / "sdk"


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.js"))} if directory.is_dir() else {}


def stale(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """The names that differ between ``source`` and ``target`` (missing, extra or changed); empty when in sync."""
    src, dst = _files(source), _files(target)
    return sorted(name for name in src.keys() | dst.keys() if src.get(name) != dst.get(name))


def sync(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Make ``target`` an exact copy of ``source``'s ``*.js``; returns the names written or removed."""
    if not source.is_dir():
        raise FileNotFoundError(f"no SDK sources at {source} (run this from a checkout of the repository)")
    changed = stale(source, target)
    target.mkdir(parents=True, exist_ok=True)
    src = _files(source)
    for name in changed:
        if name in src:
            (target / name).write_bytes(src[name])
        else:
            (target / name).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bankhub.web.sync_sdk", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when the copy is stale")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: static/sdk/{name}")
        return 1 if names else 0
    try:
        names = sync()
    except FileNotFoundError as exc:
        print(f"sync_sdk: {exc}", file=sys.stderr)
        return 2
    print(f"static/sdk: {len(names)} file(s) updated" + (": " + ", ".join(names) if names else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
