"""The Postgres connection pool and named transactions.

Every store method runs its SQL through :meth:`Database.transaction` or
:meth:`Database.connection` with a *name* (``"append_messages"``, ...), so slow or
failing transactions show up by name in logs and metrics. Connection failures are
raised as :class:`StorageUnavailable`, which callers turn into ``unavailable`` errors:
nothing was committed, the client may retry.

Any other asyncpg error propagates unchanged to the unhandled-error paths (``app.py``, the
gateway), which answer ``internal`` and log its type, SQLSTATE and constraint only: its
message and ``detail`` quote row values — a password hash, a username, message text — so
no code logs them (``StorageUnavailable`` names the transaction and the error type, never
the message), and :mod:`bankhub.logredact` strips them from any record that tries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .. import metrics

__all__ = ["Database", "StorageUnavailable", "Conn", "Isolation"]

log = logging.getLogger("bankhub.storage")

Conn = asyncpg.Connection | PoolConnectionProxy
"""The connection type handed to store code (``asyncpg.Connection``)."""

Isolation = Literal["read_committed", "repeatable_read", "serializable"]
"""A transaction's isolation level."""

# Errors that mean "the database is not there right now" rather than "your query is wrong".
_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    # a pooled connection whose session the server ended (shutdown, terminated backend):
    # its FATAL arrived, its close not yet, and the next statement finds the protocol
    # still consuming that error ("cannot switch to state ...")
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)


class _HubConnection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset query.

    By default every release sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` — an extra round trip per checkout, which doubled the statements of a
    reconnect storm. The hub leaves no session state behind: advisory locks are
    transaction-scoped (the migrator's session lock uses its own connection), cursors live
    inside transactions, and nothing LISTENs or SETs. asyncpg still rolls back an open
    transaction on release.
    """

    def get_reset_query(self) -> str:
        return ""


_ISOLATION_SQL = {"read_committed": "READ COMMITTED", "repeatable_read": "REPEATABLE READ", "serializable": "SERIALIZABLE"}


class _LockedTransaction:
    """``BEGIN`` and shared advisory locks in one simple-query round trip; ``COMMIT`` on a
    clean exit, ``ROLLBACK`` otherwise (and asyncpg rolls back on release whatever is left)."""

    def __init__(self, conn: Conn, isolation: Isolation, keys: Sequence[int]) -> None:
        self.conn = conn
        # integers only (formatted with %d): nothing a caller passes becomes SQL text
        locks = "".join("SELECT pg_advisory_xact_lock_shared(%d);" % int(k) for k in keys)
        self.begin = f"BEGIN ISOLATION LEVEL {_ISOLATION_SQL[isolation]};{locks}"

    async def __aenter__(self) -> None:
        try:
            await self.conn.execute(self.begin)
        except BaseException:  # BEGIN ran and a lock did not (cancelled, timed out): end it here
            if not self.conn.is_closed() and self.conn.is_in_transaction():
                try:
                    await self.conn.execute("ROLLBACK")
                except Exception:
                    log.debug("rollback after a failed BEGIN did not go through", exc_info=True)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            await self.conn.execute("COMMIT")
        elif not self.conn.is_closed():
            try:
                await self.conn.execute("ROLLBACK")
            except Exception:  # the connection broke: the server ended the transaction, the pool resets it
                log.debug("rollback after a failed transaction did not go through", exc_info=True)


class StorageUnavailable(Exception):
    """Postgres could not be reached; the operation was not committed."""


class Database:
    """An asyncpg pool with named transactions. Call :meth:`open` before use."""

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10, acquire_timeout: float = 1.0) -> None:
        self.dsn = dsn
        self._min = min_size
        self._max = max_size
        self.acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self.slow_ms = 200.0
        self.waiting = 0  # callers waiting for a pool connection

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min,
            max_size=self._max,
            command_timeout=10,
            connection_class=_HubConnection,
            # statements are prepared per connection; JIT costs more than it saves on short OLTP queries
            server_settings={"jit": "off", "application_name": "bankhub"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Database.open() has not been called")
        return self._pool

    @asynccontextmanager
    async def connection(self, name: str, *, acquire_timeout: float | None = None) -> AsyncIterator[Conn]:
        """A pooled connection in autocommit mode, for reads and single statements.

        ``acquire_timeout`` overrides how long to wait for a free connection: sends keep the
        short default (an outage must answer ``unavailable`` within a second), while a
        burst of reconnecting clients may rather queue a little than be refused.
        """
        start = time.perf_counter()
        self.waiting += 1  # until the pool hands a connection over (the metrics' pool waiters)
        acquired = False
        try:
            async with self.pool.acquire(timeout=acquire_timeout or self.acquire_timeout) as conn:
                acquired = True
                self.waiting -= 1
                yield conn
        except _UNAVAILABLE as exc:
            metrics.storage_unavailable(name)
            raise StorageUnavailable(f"{name}: {type(exc).__name__}") from exc
        finally:
            if not acquired:
                self.waiting -= 1
            self._observe(name, start)

    @asynccontextmanager
    async def transaction(
        self, name: str, *, isolation: Isolation = "read_committed", shared_locks: Sequence[int] = ()
    ) -> AsyncIterator[Conn]:
        """A pooled connection inside one transaction, committed when the block exits cleanly.

        ``shared_locks``: transaction-scoped advisory locks taken shared (in the order given)
        with the ``BEGIN``, in its round trip — a hot path such as the group commit saves one
        round trip per batch. The next statement is a fresh snapshot (READ COMMITTED), so it
        sees whatever the holder of an exclusive lock committed before letting it go."""
        start = time.perf_counter()
        self.waiting += 1
        acquired = False
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                acquired = True
                self.waiting -= 1
                if shared_locks:
                    async with _LockedTransaction(conn, isolation, shared_locks):
                        yield conn
                else:
                    async with conn.transaction(isolation=isolation):
                        yield conn
        except _UNAVAILABLE as exc:
            metrics.storage_unavailable(name)
            raise StorageUnavailable(f"{name}: {type(exc).__name__}") from exc
        finally:
            if not acquired:
                self.waiting -= 1
            self._observe(name, start)

    def pool_levels(self) -> tuple[int, int, int]:
        """The pool's connections, its idle ones, and the callers waiting for one (metrics)."""
        pool = self._pool
        if pool is None:
            return 0, 0, self.waiting
        return pool.get_size(), pool.get_idle_size(), self.waiting

    def _observe(self, name: str, start: float) -> None:
        seconds = time.perf_counter() - start
        metrics.observe_transaction(name, seconds)  # by name: the names are code constants
        ms = seconds * 1000
        if ms > self.slow_ms:
            log.warning("slow transaction %s took %.1f ms", name, ms)

    async def ping(self) -> bool:
        try:
            async with self.connection("ping") as conn:
                return bool(await conn.fetchval("SELECT 1", timeout=1.0) == 1)
        except Exception:  # any failure means "not ready", whatever its kind
            return False
