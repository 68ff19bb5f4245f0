"""The after-commit outbox: the one way signals leave a node.

An action that changes state and tells other nodes about it opens a named transaction
through :meth:`Outbox.transaction` (``hub.transaction("notice_publish")``) and, inside it,
*emits* signals instead of publishing them::

    async with hub.transaction("notice_recall") as tx:
        rec = await hub.accounts.recall(tx.conn, notice_id, ...)
        tx.emit(BROADCAST_CHANNEL, NoticeSignal(...))

Nothing is published while the transaction is open. When the block exits cleanly (the
transaction committed), everything emitted goes out in one ``publish_many``; when it
raises, the emitted signals are dropped with the rollback. So a signal never announces a
state that could still be rolled back, and a committed state is never left unannounced
because someone forgot to publish by hand.

State committed elsewhere (a routing transaction inside storage, a row read after a
commit) is announced with :meth:`Outbox.publish`, the same path without a transaction.

The failure policy is written once, here: a publish that fails after commit is logged and
swallowed, never reported to the caller as a failure of the action. The state is durable
and the receivers catch up from Postgres (seq gap filling, ``sync``, the periodic sweeps),
so a lost signal costs latency, not data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from itertools import repeat
from . import tracing
from .broker import Broker, user_channel
from .signals import MessageSignal, Signal, encode_signal
from .storage.db import Conn, Database, Isolation

__all__ = ["Outbox", "Transaction", "Emitted"]

log = logging.getLogger("bankhub.outbox")

Emitted = tuple[str, Signal]
"""A signal and the broker channel it goes to."""

class Transaction:
    """An open transaction (``conn``) and the signals to publish once it has committed."""

    __slots__ = ("conn", "_emitted")

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._emitted: list[tuple[list[str], Signal]] = []  # a signal with all its channels

    def emit(self, channel: str, signal: Signal) -> None:
        """Publish ``signal`` on ``channel`` after the commit (never if it rolls back)."""
        self._emitted.append(([channel], signal))

    def emit_to_users(self, user_ids: Iterable[str], signal: Signal) -> None:
        """Publish ``signal`` on each user's channel after the commit."""
        self._emitted.append(([user_channel(uid) for uid in user_ids], signal))


class Outbox:
    """Publishes signals after commit, with one failure policy. ``hub.outbox``."""

    def __init__(self, db: Database | None, broker: Broker) -> None:
        # without a database (a CLI command that committed on its own connection) it only
        # publishes already-committed state: :meth:`publish`
        self.db = db
        self.broker = broker
        # told of the signals of a publish that failed after commit (the hub retries those the
        # session cache depends on); must not raise
        self.on_publish_failed: Callable[[Sequence[Signal]], None] | None = None

    @asynccontextmanager
    async def transaction(
        self, name: str, *, isolation: Isolation = "read_committed", shared_locks: Sequence[int] = ()
    ) -> AsyncIterator[Transaction]:
        """A named transaction whose emitted signals are published once it has committed
        (``shared_locks``: see :meth:`~bankhub.storage.db.Database.transaction`)."""
        if self.db is None:
            raise RuntimeError("an outbox without a database publishes only committed state")
        async with self.db.transaction(name, isolation=isolation, shared_locks=shared_locks) as conn:
            tx = Transaction(conn)
            yield tx
        # reached only when the block exited cleanly and the transaction committed
        await self._publish(tx._emitted, name)

    async def publish(self, items: Sequence[Emitted], *, what: str) -> None:
        """Publish already-committed state changes in one round trip; ``what`` names them
        in the log line if the broker fails (the state stays committed: see the module
        docstring)."""
        await self._publish([([channel], signal) for channel, signal in items], what)

    async def republish(self, items: Sequence[Emitted], *, every: float, within: float) -> bool:
        """Publish committed state changes whose first publish failed: again every ``every``
        seconds until one attempt goes out (True) or ``within`` seconds have passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        payloads = [(channel, encode_signal(signal)) for channel, signal in items]
        while loop.time() < deadline:
            await asyncio.sleep(every)
            try:
                await self.broker.publish_many(payloads)
                return True
            except Exception:
                log.warning("publish after commit failed again; retrying in %.1f s", every)
        return False

    async def _publish(self, emitted: Sequence[tuple[list[str], Signal]], what: str) -> None:
        if not emitted:
            return
        try:
            # only inside a traced send's commit: other state changes start no trace of their own
            with tracing.span("broker.publish", child_only=True, signals=len(emitted)):
                payloads: list[tuple[str, bytes]] = []
                for channels, signal in emitted:
                    if channels:
                        if tracing.enabled and isinstance(signal, MessageSignal):
                            signal.trace = tracing.traceparent()  # the receiving node's span continues this one
                        # encoded once for all its channels (a group message: once, not once per
                        # member), so the receiving node also decodes one shared payload once
                        payloads.extend(zip(channels, repeat(encode_signal(signal))))
                if payloads:
                    await self.broker.publish_many(payloads)
        except Exception:
            log.warning("%s: publish after commit failed; receivers catch up from storage", what, exc_info=True)
            if self.on_publish_failed is not None:
                self.on_publish_failed([signal for _, signal in emitted])
