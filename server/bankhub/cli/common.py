"""What every ``bankhub`` command shares: finding and reaching the database, the key
provider, the node's settings, and one way to fail.

A command that needs the database takes its DSN from the first of:

1. ``--database-url URL``;
2. ``--data-dir DIR``: the embedded Postgres of a ``bankhub dev --data-dir DIR`` that is running
   (found through ``DIR/pg/postmaster.pid``);
3. ``BANKHUB_DATABASE_URL``;
4. the embedded Postgres of a ``bankhub dev`` running on its default data dir, ``./var``.

When none gives a database, or it cannot be reached, or the connection is lost, the command
prints one line to stderr and exits 2 ("could not run"), never a traceback: exit 1 keeps its
meaning of each command (for ``audit verify``: the chain is broken), so a monitor never takes
an outage for tampering. Messages name where the database is (host, port, database) but never
the DSN's password.

Every command runs under :func:`guard`: it raises :class:`CannotRun` (or lets a key file,
settings or database failure propagate) and ``guard`` prints ``bankhub COMMAND: REASON`` and
returns 2; an :class:`~bankhub.actions.errors.ActionError` (a refusal) returns 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import asyncpg

    from ..crypto import KeyProvider
    from ..settings import Settings
    from ..storage.db import Database

__all__ = [
    "DEFAULT_DATA_DIR",
    "CONNECT_TIMEOUT_SECONDS",
    "Command",
    "CannotRun",
    "Group",
    "add_database_arguments",
    "add_key_file_argument",
    "env_settings",
    "database_url",
    "dev_key_file",
    "key_provider",
    "where",
    "connect",
    "open_database",
    "with_connection",
    "with_db",
    "guard",
]

DEFAULT_DATA_DIR = "./var"
CONNECT_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")

Command = Callable[[argparse.Namespace], int]
"""A command's function: parsed arguments in, exit code out."""


class CannotRun(Exception):
    """The command could not run; the message is the one line printed (exit 2)."""


URL_HELP = "default: $BANKHUB_DATABASE_URL"


def add_database_arguments(parser: Any, *, url_help: str = URL_HELP) -> None:
    """Add ``--database-url`` and ``--data-dir`` to a command's parser."""
    parser.add_argument("--database-url", help=url_help)
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"use the database of the `bankhub dev --data-dir DIR` running there "
        f"(when neither this, --database-url nor $BANKHUB_DATABASE_URL is given: {DEFAULT_DATA_DIR})",
    )


def add_key_file_argument(parser: Any) -> None:
    """Add ``--file``, the key file (see :func:`key_provider`), to a command's parser."""
    parser.add_argument("--file", help="key file (default: $BANKHUB_KEY_FILE)")


class Group:
    """A command group, ``bankhub NAME SUBCOMMAND ...``: :meth:`add` adds a subcommand that
    runs under :func:`guard` as ``NAME SUBCOMMAND``."""

    def __init__(self, subparsers: Any, name: str, help: str) -> None:
        self.name = name
        self._sub = subparsers.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True)

    def add(
        self, name: str, help: str, fn: Command, *, key_file: bool = False, database: bool = True, url_help: str = URL_HELP
    ) -> argparse.ArgumentParser:
        """Add subcommand ``name`` running ``fn``, with ``--file`` (``key_file``), then the database
        arguments (``database``); returns its parser for more arguments."""
        parser: argparse.ArgumentParser = self._sub.add_parser(name, help=help)
        if key_file:
            add_key_file_argument(parser)
        if database:
            add_database_arguments(parser, url_help=url_help)
        parser.set_defaults(func=guard(f"{self.name} {name}", fn))
        return parser


def env_settings() -> Settings:
    """The node's settings from ``BANKHUB_*`` variables; a bad one is :class:`CannotRun`."""
    from ..settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None


def _from_data_dir(args: argparse.Namespace) -> bool:
    """Whether the database (and the dev key file) come from a data dir rather than a URL."""
    if getattr(args, "database_url", None):
        return False
    return bool(getattr(args, "data_dir", None)) or not env_settings().database_url


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "data_dir", None) or DEFAULT_DATA_DIR)


def database_url(args: argparse.Namespace) -> str:
    """The DSN this command uses (see the module docstring for the order); raises :class:`CannotRun`."""
    from ..embedded import running_dsn

    url: str | None = getattr(args, "database_url", None)
    if url:
        return url
    if not _from_data_dir(args):
        return env_settings().database_url
    data_dir = _data_dir(args)
    dsn = running_dsn(data_dir)
    if dsn is None:
        if getattr(args, "data_dir", None):
            raise CannotRun(f"no running `bankhub dev` database in {data_dir}/pg (start `bankhub dev --data-dir {data_dir}` first)")
        raise CannotRun(
            f"no database: set BANKHUB_DATABASE_URL, pass --database-url, or --data-dir of a running `bankhub dev` "
            f"(none runs in {data_dir})"
        )
    return dsn


def dev_key_file(args: argparse.Namespace) -> str | None:
    """``DIR/keys.json`` of the data dir the database comes from, if it exists (the KEK file
    ``bankhub dev`` creates); None when the database comes from a URL."""
    if not _from_data_dir(args):
        return None
    path = _data_dir(args) / "keys.json"
    return str(path) if path.is_file() else None


def key_provider(args: argparse.Namespace) -> KeyProvider:
    """The KEK provider: ``--file``, else ``BANKHUB_KEY_FILE``, else ``BANKHUB_KEY_PROVIDER``, else the
    data dir's ``keys.json``; none is :class:`CannotRun`."""
    from ..crypto import provider_from_settings
    from ..settings import NO_KEY_PROVIDER

    env = env_settings()
    key_file = args.file or env.key_file or (None if env.key_provider else dev_key_file(args))
    provider = provider_from_settings(key_file, None if args.file else env.key_provider)
    if provider is None:
        raise CannotRun(NO_KEY_PROVIDER)
    return provider


def where(dsn: str) -> str:
    """Where ``dsn`` points, for messages: ``host:port/database`` (a socket dir for a unix
    socket), without the user's password."""
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "localhost"])[0]
        port = query.get("port", [str(parts.port) if parts.port else ""])[0]
        database = parts.path.lstrip("/") or "?"
    except ValueError:
        return "the configured database"
    return f"{host}{':' + port if port else ''}/{database}"


def _reason(exc: BaseException) -> str:
    """One line saying why, from an exception (no traceback, no DSN)."""
    if isinstance(exc, TimeoutError):
        text = f"no answer within {CONNECT_TIMEOUT_SECONDS:g} s"
    elif isinstance(exc, socket.gaierror) and exc.strerror:
        text = exc.strerror  # "Name or service not known"
    elif isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        text = os.strerror(exc.errno)  # "Connection refused", not asyncio's "Connect call failed (...)"
    else:
        text = str(exc) or type(exc).__name__
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection; any failure to connect becomes :class:`CannotRun`."""
    import asyncpg

    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # whatever stops the connection, the command cannot run
        raise CannotRun(f"cannot connect to the database at {where(dsn)}: {_reason(exc)}") from None


async def open_database(dsn: str, *, max_size: int = 2) -> Database:
    """An opened :class:`~bankhub.storage.db.Database` pool; failures become :class:`CannotRun`.

    A first plain connection (with a timeout) tells an unreachable database quickly, before
    the pool would wait for it.
    """
    from ..storage.db import Database

    probe = await connect(dsn)
    await probe.close()
    db = Database(dsn, min_size=1, max_size=max_size, acquire_timeout=10.0)
    try:
        await db.open()
    except Exception as exc:
        raise CannotRun(f"cannot connect to the database at {where(dsn)}: {_reason(exc)}") from None
    return db


class _Closing(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closing)


async def _using(opening: Awaitable[C], fn: Callable[[C], Awaitable[T]]) -> T:
    resource = await opening
    try:
        return await fn(resource)
    finally:
        await resource.close()


def with_connection(dsn: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``fn`` on one connection to ``dsn`` (:func:`connect`), then close it."""
    return asyncio.run(_using(connect(dsn), fn))


def with_db(args: argparse.Namespace, fn: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``fn`` on an opened pool of this command's database (:func:`database_url`), then close it."""
    return asyncio.run(_using(open_database(database_url(args)), fn))


def _lost(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` means the database went away or lacks the schema."""
    import asyncpg

    from ..storage.db import StorageUnavailable

    if isinstance(exc, asyncpg.exceptions.UndefinedTableError):
        return f"the database has no bankhub schema ({_reason(exc)}); run `bankhub migrate`"
    if isinstance(
        exc,
        (
            StorageUnavailable,
            ConnectionError,
            TimeoutError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.ConnectionFailureError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError,
            asyncpg.exceptions.TooManyConnectionsError,
        ),
    ):
        return f"lost the database connection: {_reason(exc)}"
    return None


def guard(command: str, fn: Command) -> Command:
    """Run ``fn``, printing ``bankhub COMMAND: REASON`` on stderr for what stops it: 2 when it
    could not run (:class:`CannotRun`, a bad key file, a database that cannot be found or
    reached or is lost midway), 1 for a refusal (:class:`~bankhub.actions.errors.ActionError`)."""

    def run(args: argparse.Namespace) -> int:
        from ..actions.errors import ActionError
        from ..crypto import KeyFileError

        try:
            return fn(args)
        except ActionError as exc:
            print(f"bankhub {command}: {exc.message}", file=sys.stderr)
            return 1
        except (CannotRun, KeyFileError) as exc:
            print(f"bankhub {command}: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            reason = _lost(exc)
            if reason is None:
                raise
            print(f"bankhub {command}: {reason}", file=sys.stderr)
            return 2

    run.__doc__ = fn.__doc__
    return run
