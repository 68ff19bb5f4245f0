"""``bankhub dev``, ``bankhub serve``, and what configures a node: ``keygen``, ``schema``, ``settings``.

* ``dev [--port 8000] [--host 127.0.0.1] [--data-dir ./var] [--tls]`` — the embedded default:
  embedded Postgres, in-process broker, demo data, a key file and a demo calling system.
* ``serve`` — a production node, configured by ``BANKHUB_*`` variables (:mod:`bankhub.settings`);
  exits 2 with one line on stderr when they are incomplete or a schema delta is pending.
* ``keygen`` — a new cluster key for ``BANKHUB_CLUSTER_KEY``.
* ``schema`` — the protocol's JSON Schema.
* ``settings [--only PREFIX]`` — the table of every ``BANKHUB_*`` variable (README's, generated).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import gctune
from . import common

if TYPE_CHECKING:
    from ..storage.migrate import Delta

__all__ = ["register_nodes", "register_tools", "register_settings", "cmd_dev", "cmd_serve", "cmd_keygen", "cmd_schema", "cmd_settings"]


def _banner(port: int, tls: bool, data_dir: str = common.DEFAULT_DATA_DIR, dsn: str = "") -> str:
    from ..demo import DEMO_PASSWORD, DEMO_USERS, DEMO_WIDGET_ORIGIN

    http = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ws = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/v1/ws"
    users = "\n".join(f"    {u:<11} {role.value:<18} {name}" for u, name, role, _, _ in DEMO_USERS)
    return f"""
bankhub dev is running (embedded Postgres, in-process broker)
  Customer app {http}/app/      (sign in as c.li; open it again in another browser as rm.wang)
  Staff        {http}/staff/
  Console      {http}/console/
  Compliance   {http}/compliance/
  HTTP API     {http}/
  OpenAPI      {http}/openapi.json
  Health       {http}/readyz
  WebSocket    {ws}   (subprotocol bankhub.v1)
  Widget       {http}/widget/loader.js   (demo partner demo-shop, page origin {DEMO_WIDGET_ORIGIN}: docs/widget.md)
  Database     {dsn}
               (other bankhub commands find it with --data-dir {data_dir})

Demo logins (password for all: {DEMO_PASSWORD}):
{users}

Try it from a second terminal: see "Chat in ten lines" in README.md. Ctrl-C stops.
"""


def _stop_dev(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_dev(args: argparse.Namespace) -> int:
    from ..crypto import LocalKeyFile
    from ..demo import seed_demo
    from ..embedded import start_postgres
    from ..node import build_hub
    from ..runner import HubServer, uvicorn_config
    from ..settings import Settings
    from ..storage.migrate import migrate
    from .alerts import seed_demo_system
    from ..demo import DEMO_WIDGET_ORIGIN
    from .widget import seed_demo_partner

    data_dir = Path(args.data_dir)
    print(f"starting embedded Postgres in {data_dir.resolve()}/pg ...", flush=True)
    pg = start_postgres(data_dir)
    try:
        dsn = pg.dsn()
        asyncio.run(migrate(dsn))
        if asyncio.run(seed_demo(dsn)):
            print("demo data seeded", flush=True)
        key_file = data_dir / "keys.json"  # the KEKs for encryption at rest, created on first run
        if not key_file.exists():
            LocalKeyFile.create(key_file)
            print(f"created key file {key_file.resolve()}", flush=True)
        secret_file = seed_demo_system(dsn, key_file, data_dir)
        if secret_file is not None:
            print(f"demo calling system core-banking registered; its secret is in {secret_file}", flush=True)
        partner = seed_demo_partner(dsn, key_file, data_dir, DEMO_WIDGET_ORIGIN)
        if partner is not None:
            print(f"demo widget partner demo-shop registered for {DEMO_WIDGET_ORIGIN}; its id and secret are in {partner[1]}", flush=True)
        settings = Settings(
            database_url=dsn, host=args.host, port=args.port, node_name="dev", key_file=str(key_file), widget_dev_origins="loopback"
        )
        if args.tls:
            from ..tlsgen import self_signed

            cert, key = self_signed(data_dir / "tls")
            settings = dataclasses.replace(settings, tls_cert=cert, tls_key=key)
        hub = build_hub(settings)
        config = uvicorn_config(hub, host=args.host, port=args.port, log_level="warning")
        gctune.tune_for_serving()
        server = HubServer(config, hub, freeze_gc=True)
        print(_banner(args.port, bool(args.tls), args.data_dir, dsn), flush=True)
        # uvicorn re-raises the signal that stopped it once its graceful shutdown is done; with
        # the default SIGTERM action that would kill the process before Postgres is stopped
        signal.signal(signal.SIGTERM, _stop_dev)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        print("bankhub dev stopped", flush=True)
    finally:
        pg.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..node import build_hub
    from ..runner import HubServer, uvicorn_config
    from ..storage.migrate import pending

    settings = common.env_settings()
    try:
        settings.validate()
    except ValueError as exc:
        print(f"bankhub serve: {exc}", file=sys.stderr)
        return 2

    async def todo_deltas() -> list[Delta]:
        # a clear one-line refusal when the database is not there, before pending() tries it
        await (await common.connect(settings.database_url)).close()
        return list(await pending(settings.database_url))

    todo = asyncio.run(todo_deltas())
    if todo:
        print(f"bankhub serve: {len(todo)} schema delta(s) pending; run `bankhub migrate` first", file=sys.stderr)
        return 2
    try:
        hub = build_hub(settings)
    except ValueError as exc:  # e.g. an unreadable or group/world-readable key file
        print(f"bankhub serve: {exc}", file=sys.stderr)
        return 2
    gctune.tune_for_serving()
    HubServer(uvicorn_config(hub, host=settings.host, port=settings.port, log_level=settings.log_level), hub, freeze_gc=True).run()
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..broker.sealing import generate_key_b64

    print(generate_key_b64())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ..protocol.schema import protocol_schema_text

    sys.stdout.write(protocol_schema_text())
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from ..settings import ENV_PREFIX, settings_table

    sys.stdout.write(settings_table(ENV_PREFIX + args.only.upper().removeprefix(ENV_PREFIX)))
    return 0


def register_nodes(subparsers: Any) -> None:
    """Add ``dev`` and ``serve`` to the ``bankhub`` parser's subparsers."""
    dev = subparsers.add_parser("dev", help="run on the embedded default: embedded Postgres, in-process broker, demo data")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    dev.add_argument("--tls", action="store_true", help="serve HTTPS/WSS with a generated self-signed certificate")
    dev.set_defaults(func=cmd_dev)
    subparsers.add_parser("serve", help="run a production node, configured by BANKHUB_* variables").set_defaults(
        func=common.guard("serve", cmd_serve)
    )


def register_tools(subparsers: Any) -> None:
    """Add ``keygen`` and ``schema`` to the ``bankhub`` parser's subparsers."""
    subparsers.add_parser("keygen", help="print a new cluster key for BANKHUB_CLUSTER_KEY").set_defaults(func=cmd_keygen)
    subparsers.add_parser("schema", help="print the protocol's JSON Schema").set_defaults(func=cmd_schema)


def register_settings(subparsers: Any) -> None:
    """Add ``settings`` to the ``bankhub`` parser's subparsers."""
    cmd = subparsers.add_parser("settings", help="print the table of every BANKHUB_* variable (README's, generated)")
    cmd.add_argument("--only", default="", metavar="PREFIX", help="only the variables starting so, e.g. ALERT_")
    cmd.set_defaults(func=cmd_settings)
