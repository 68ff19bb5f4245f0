"""``bankhub widget ...``: partners of the embeddable service widget (docs/widget.md).

* ``widget add-partner --name NAME --origin https://shop.example [--origin ...]`` — register
  a partner and print its id and secret **once** (the secret is stored only wrapped under
  the KEK). Plain ``http://127.0.0.1:PORT`` origins are accepted only with
  ``BANKHUB_WIDGET_DEV_ORIGINS=loopback`` (development and tests).
* ``widget list`` — every partner, its origins and state (never a secret).
* ``widget rotate-secret NAME`` — print a new secret, in force at once.
* ``widget disable NAME`` / ``widget enable NAME``.

Database and key provider as for ``bankhub systems`` (see :mod:`bankhub.cli.common`).
Exit codes: 0 done, 1 refused, 2 could not run (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import common
from .common import CannotRun

__all__ = ["register", "seed_demo_partner", "DEMO_PARTNER"]

DEMO_PARTNER = "demo-shop"


def _show_secret(partner_id: str, name: str, secret: str) -> None:
    print(f"partner id (the page's data-partner): {partner_id}")
    print(f"secret for {name} (shown once; keep it in the partner backend's secret store):")
    print(secret)


def cmd_add(args: argparse.Namespace) -> int:
    from ..actions.widget import add_partner
    from ..widget.origins import OriginError, is_loopback_http, normalise

    loopback = common.env_settings().widget_dev_origins == "loopback"
    for origin in args.origin:
        try:
            if is_loopback_http(normalise(origin)) and not loopback:
                raise CannotRun(f"{origin} is plain http: allowed only with BANKHUB_WIDGET_DEV_ORIGINS=loopback (development)")
        except OriginError:
            pass  # add_partner refuses it with the reason
    provider = common.key_provider(args)
    partner, secret = common.with_db(args, lambda db: add_partner(db, provider, args.name, args.origin))
    print(f"widget partner {partner.name} added: origins {' '.join(partner.origins)}")
    _show_secret(partner.id, partner.name, secret)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from ..actions.widget import rotate_secret

    provider = common.key_provider(args)
    partner, secret = common.with_db(args, lambda db: rotate_secret(db, provider, args.name))
    print(f"widget partner {partner.name}: new secret in force now; tokens signed with the old one are refused")
    _show_secret(partner.id, partner.name, secret)
    return 0


def _set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    from ..actions.widget import set_enabled

    untold: list[str] = []

    async def announce(revoked: dict[str, list[str]]) -> None:
        if (why := await _tell_hubs(revoked)) is not None:
            untold.append(why)

    partner = common.with_db(args, lambda db: set_enabled(db, args.name, enabled, announce=announce))
    state = "enabled" if partner.enabled else "disabled: its frame is 404, its tokens are refused, its visitors' sessions ended"
    print(f"widget partner {partner.name} {state}")
    if untold:
        print(
            f"note: the hubs were not told ({untold[0]}): each node stops accepting the visitors' sessions at its next "
            "session re-check (within BANKHUB_SESSION_RECHECK_SECONDS, see docs/security.md \"Session cache\")",
            file=sys.stderr,
        )
    return 0


async def _tell_hubs(revoked: dict[str, list[str]]) -> str | None:
    """Publish the revocations through the cluster's broker, as a hub would; None when done,
    else why not (no broker configured, or it cannot be reached)."""
    from ..actions.sessions import publish_revoked
    from ..broker import make_broker
    from ..outbox import Outbox

    settings = common.env_settings()
    if not settings.redis_url:
        return "no BANKHUB_REDIS_URL"
    broker = make_broker(settings.redis_url, settings.cluster_key)
    outbox = Outbox(None, broker)
    failed: list[bool] = []
    outbox.on_publish_failed = lambda _signals: failed.append(True)
    try:
        await broker.start(lambda _channel, _payload: None)
        await publish_revoked(outbox, revoked, "widget partner disabled")
    except Exception as exc:  # the disable has committed: say so, and how long the window is
        return f"the broker could not be reached: {type(exc).__name__}"
    finally:
        await broker.close()
    return "the broker could not be reached" if failed else None


def cmd_list(args: argparse.Namespace) -> int:
    from ..actions.widget import list_partners

    partners = common.with_db(args, list_partners)
    if args.json:
        out: list[dict[str, Any]] = [
            {"id": p.id, "name": p.name, "origins": p.origins, "enabled": p.enabled, "created_at": p.created_at.isoformat()}
            for p in partners
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not partners:
        print("no widget partners (add one: bankhub widget add-partner --name NAME --origin https://...)")
    for p in partners:
        print(f"{p.name:<24} {'active' if p.enabled else 'DISABLED':<8} {p.id}  {' '.join(p.origins)}")
    return 0


def seed_demo_partner(dsn: str, key_file: Path, data_dir: Path, origin: str) -> tuple[str, Path] | None:
    """``bankhub dev``: register partner ``demo-shop`` (``origin``) once, its id and secret in
    ``<data dir>/demo-shop.secret`` (mode 0600). Returns (partner id, path) when created now."""
    from ..actions.widget import add_partner, list_partners
    from ..crypto import LocalKeyFile
    from ..storage.db import Database

    path = data_dir / f"{DEMO_PARTNER}.secret"
    if path.exists():
        return None

    async def run() -> tuple[str, str] | None:
        db = Database(dsn, min_size=1, max_size=2)
        await db.open()
        try:
            if any(p.name == DEMO_PARTNER for p in await list_partners(db)):
                return None
            partner, secret = await add_partner(db, LocalKeyFile(key_file), DEMO_PARTNER, [origin])
            return partner.id, secret
        finally:
            await db.close()

    made = asyncio.run(run())
    if made is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"partner_id={made[0]}\nsecret={made[1]}\n")
    return made[0], path.resolve()


def register(subparsers: Any) -> None:
    """Add ``widget`` to the ``bankhub`` parser's subparsers."""
    widget = common.Group(subparsers, "widget", "partners of the embeddable service widget")
    add = widget.add("add-partner", "register a partner and print its id and secret once", cmd_add, key_file=True)
    add.add_argument("--name", required=True)
    add.add_argument("--origin", action="append", required=True, help="an exact origin, https://host[:port]; repeat for more")
    lst = widget.add("list", "list the partners (never their secrets)", cmd_list)
    lst.add_argument("--json", action="store_true")
    widget.add("rotate-secret", "print a new secret, in force at once", cmd_rotate, key_file=True).add_argument("name")
    widget.add("disable", "refuse a partner's visitors and stop framing its widget", lambda a: _set_enabled(a, False)).add_argument("name")
    widget.add("enable", "serve a disabled partner again", lambda a: _set_enabled(a, True)).add_argument("name")
