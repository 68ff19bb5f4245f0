"""``bankhub systems ...``, ``bankhub notify``, ``bankhub alerts ...``: transactional alerts.

* ``systems add NAME --categories transaction,security`` — register a calling system and
  print its secret **once** (it is stored only wrapped under the KEK).
* ``systems list`` — every system, its categories, limits and state (never a secret).
* ``systems rotate-secret NAME [--grace-hours 24]`` — print a new secret; the old one keeps
  working for the grace period, so the calling system can switch without a gap.
* ``systems disable NAME`` / ``systems enable NAME`` — refuse (or accept again) its requests.
* ``notify --hub URL --system NAME --to USER --template ID --var k=v ...`` — send one signed
  alert as a calling system (the secret comes from ``$BANKHUB_SYSTEM_SECRET``, never argv).
* ``alerts dead-letters`` / ``alerts replay (--all | ID ...)`` — the fallback channel's
  dead-letter list, and requeueing it (audited).

Database and key provider as for ``bankhub keys``: ``--database-url``, ``--data-dir`` of a
running ``bankhub dev`` or ``BANKHUB_DATABASE_URL`` (see :mod:`bankhub.cli.common`);
``--file``/``BANKHUB_KEY_FILE`` or ``BANKHUB_KEY_PROVIDER`` (with a data dir, its ``keys.json``).
Exit codes: 0 done, 1 refused, 2 could not run (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..alerts.rules import CATEGORIES
from . import common
from .common import CannotRun

__all__ = ["register", "seed_demo_system", "DEMO_SYSTEM"]


def _show_secret(name: str, secret: str) -> None:
    print(f"secret for {name} (shown once; keep it in the calling system's secret store):")
    print(secret)


# --- systems ------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    from ..actions.alert_systems import add_system

    provider = common.key_provider(args)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    system, secret = common.with_db(
        args,
        lambda db: add_system(
            db, provider, args.name, cats, description=args.description, rate_per_second=args.rate, burst=args.burst
        ),
    )
    print(f"system {system.name} added: categories {', '.join(system.categories)}; {system.rate_per_second:g} requests/s, burst {system.burst}")
    _show_secret(system.name, secret)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from ..actions.alert_systems import rotate_secret

    provider = common.key_provider(args)
    grace = dt.timedelta(hours=args.grace_hours)
    system, secret = common.with_db(args, lambda db: rotate_secret(db, provider, args.name, grace=grace))
    print(f"system {system.name}: new secret active now; the previous one works for {args.grace_hours:g} more hour(s)")
    _show_secret(system.name, secret)
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    from ..actions.alert_systems import set_disabled

    system = common.with_db(args, lambda db: set_disabled(db, args.name, disabled))
    print(f"system {system.name} {'disabled: its requests are refused' if system.disabled else 'enabled'}")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_list(args: argparse.Namespace) -> int:
    from ..actions.alert_systems import list_systems

    rows = common.with_db(args, list_systems)
    if args.json:
        out = [
            {
                "name": s.name,
                "id": s.id,
                "description": s.description,
                "categories": list(s.categories),
                "rate_per_second": s.rate_per_second,
                "burst": s.burst,
                "disabled": s.disabled,
                **{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in info.items()},
            }
            for s, info in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        print("no calling systems (add one: bankhub systems add NAME --categories transaction)")
    for s, info in rows:
        state = "DISABLED" if s.disabled else "active"
        grace = info["previous_secret_valid_until"]
        extra = f"; previous secret valid until {grace.isoformat(timespec='seconds')}" if grace else ""
        print(f"{s.name:<24} {state:<8} {','.join(s.categories):<40} {s.rate_per_second:g}/s burst {s.burst}  kek {info['kek_id']}{extra}")
    return 0


# --- notify -------------------------------------------------------------------------------


def _variables(args: argparse.Namespace) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if args.vars:
        try:
            loaded = json.loads(args.vars)
        except ValueError as exc:
            raise CannotRun(f"--vars is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise CannotRun("--vars must be a JSON object")
        variables.update(loaded)
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            raise CannotRun(f"--var wants NAME=VALUE, got {item!r}")
        amount, space, currency = value.partition(" ")
        # NAME=12.50 CNY is a money value; anything else a string
        if space and currency.isalpha() and len(currency) == 3 and amount.replace(".", "", 1).isdigit():
            variables[name] = {"amount": amount, "currency": currency}
        else:
            variables[name] = value
    return variables


def cmd_notify(args: argparse.Namespace) -> int:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from ..alerts.signing import canonical_request, signature

    secret = os.environ.get("BANKHUB_SYSTEM_SECRET", "")
    if not secret:
        raise CannotRun("set BANKHUB_SYSTEM_SECRET to the system's secret (never on the command line)")
    body: dict[str, Any] = {"recipient": args.to, "template": args.template, "variables": _variables(args)}
    if args.priority:
        body["priority"] = args.priority
    if args.ttl:
        body["ttl_seconds"] = args.ttl
    if args.collapse_key:
        body["collapse_key"] = args.collapse_key
    raw = json.dumps(body, ensure_ascii=False).encode()
    key = args.idempotency_key or str(uuid.uuid4())
    path = "/v1/notifications"
    ts, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    base = urlsplit(args.hub.rstrip("/"))
    headers = {
        "content-type": "application/json",
        "idempotency-key": key,
        "x-bankhub-system": args.system,
        "x-bankhub-timestamp": ts,
        "x-bankhub-nonce": nonce,
        "x-bankhub-signature": signature(secret, canonical_request("POST", base.path + path, "", ts, nonce, args.system, key, raw)),
    }
    try:
        response = httpx.post(args.hub.rstrip("/") + path, content=raw, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise CannotRun(f"could not reach {args.hub}: {type(exc).__name__}: {exc}") from None
    try:
        shown = json.dumps(response.json(), indent=2, ensure_ascii=False)
    except ValueError:
        shown = f"HTTP {response.status_code}: {response.text[:500]}"
    print(shown)
    if response.status_code >= 400:
        return 1
    print(f"idempotency key {key} (repeat with --idempotency-key {key} to retry safely)", file=sys.stderr)
    return 0


# --- dead letters -------------------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from ..actions.alerts import notification_json
    from ..storage.alerts import AlertStore

    rows = common.with_db(args, lambda db: AlertStore(db).dead_letters(args.limit))
    out = [notification_json(rec, username) for rec, username, _ in rows]
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    if not out:
        print("the dead-letter list is empty")
    for n in out:
        fb = n["fallback"] or {}
        print(f"{n['alert_id']}  {n['recipient']:<16} {n['category']:<12} attempts {fb.get('attempts')}  dead {fb.get('dead_at')}  {fb.get('last_error')}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..actions import audit
    from ..actions.alerts import replay
    from ..storage.alerts import AlertStore

    if bool(args.all) == bool(args.ids):
        raise CannotRun("name alert ids, or --all")
    ids = None if args.all else list(args.ids)
    replayed = common.with_db(args, lambda db: replay(AlertStore(db), db, audit.SYSTEM, ids))
    print(f"requeued {len(replayed)} alert(s) for the fallback channel")
    return 0 if replayed or args.all else 1


DEMO_SYSTEM = "core-banking"


def seed_demo_system(dsn: str, key_file: Path, data_dir: Path) -> Path | None:
    """``bankhub dev``: register calling system ``core-banking`` once, its secret in
    ``<data dir>/core-banking.secret`` (mode 0600). Returns that path when it was created now."""
    from ..actions.alert_systems import add_system
    from ..crypto import LocalKeyFile
    from ..storage.alert_systems import AlertSystemStore
    from ..storage.db import Database

    path = data_dir / f"{DEMO_SYSTEM}.secret"
    if path.exists():
        return None

    async def run() -> str | None:
        db = Database(dsn, min_size=1, max_size=2)
        await db.open()
        try:
            if await AlertSystemStore(db).by_name(DEMO_SYSTEM) is not None:
                return None  # registered by an earlier run whose secret file was removed: leave it
            _, secret = await add_system(db, LocalKeyFile(key_file), DEMO_SYSTEM, list(CATEGORIES), description="demo")
            return secret
        finally:
            await db.close()

    secret = asyncio.run(run())
    if secret is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path.resolve()


def register(subparsers: Any) -> None:
    """Add ``systems``, ``notify`` and ``alerts`` to the ``bankhub`` parser's subparsers."""
    systems = common.Group(subparsers, "systems", "calling systems allowed to send alerts (core banking, cards, ...)")
    add = systems.add("add", "register a system and print its secret once", cmd_add)
    common.add_key_file_argument(add)
    add.add_argument("name")
    add.add_argument("--categories", required=True, help="comma-separated: security,transaction,service,marketing")
    add.add_argument("--description", default="")
    add.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    add.add_argument("--burst", type=int, default=100, help="burst of requests (default 100)")
    lst = systems.add("list", "list the systems (never their secrets)", cmd_list)
    lst.add_argument("--json", action="store_true")
    rot = systems.add("rotate-secret", "print a new secret; the old one works for a grace period", cmd_rotate)
    common.add_key_file_argument(rot)
    rot.add_argument("name")
    rot.add_argument("--grace-hours", type=float, default=24.0, help="how long the old secret keeps working (default 24; 0: stop now)")
    systems.add("disable", "refuse every request of a system", cmd_disable).add_argument("name")
    systems.add("enable", "accept a disabled system's requests again", cmd_enable).add_argument("name")

    notify = subparsers.add_parser("notify", help="send one signed alert as a calling system ($BANKHUB_SYSTEM_SECRET)")
    notify.add_argument("--hub", default="http://127.0.0.1:8000")
    notify.add_argument("--system", required=True)
    notify.add_argument("--to", required=True, help="the recipient's username")
    notify.add_argument("--template", required=True, help="e.g. card.debit, security.new_device")
    notify.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a variable ('NAME=12.50 CNY' for money)")
    notify.add_argument("--vars", help="variables as a JSON object")
    notify.add_argument("--priority", choices=["high", "normal", "low"])
    notify.add_argument("--ttl", type=int, help="seconds until the alert expires")
    notify.add_argument("--collapse-key")
    notify.add_argument("--idempotency-key", help="default: a new random key")
    notify.set_defaults(func=common.guard("notify", cmd_notify))

    alerts = common.Group(subparsers, "alerts", "the fallback channel's dead-letter list")
    dead = alerts.add("dead-letters", "alerts the fallback channel gave up on", cmd_dead_letters)
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--json", action="store_true")
    rep = alerts.add("replay", "requeue dead letters (audited)", cmd_replay)
    rep.add_argument("ids", nargs="*", metavar="ALERT_ID")
    rep.add_argument("--all", action="store_true")
