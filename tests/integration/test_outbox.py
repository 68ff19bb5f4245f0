"""The after-commit outbox against a real Postgres: signals leave only after the commit,
never after a rollback, in one round trip, and a broker failure never fails the action."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import pytest

from bankhub.broker import MemoryBroker, user_channel
from bankhub.outbox import Outbox
from bankhub.signals import FollowSignal, decode_signal
from bankhub.storage.db import Database


class WatchingBroker(MemoryBroker):
    """Records every ``publish_many`` call, and whether the probe row was committed (read on
    another connection) at the moment the signals went out."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.calls: list[list[tuple[str, bytes]]] = []
        self.committed_when_published: list[bool] = []

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        async with self.db.connection("probe") as conn:
            self.committed_when_published.append(bool(await conn.fetchval("SELECT count(*) FROM outbox_probe")))
        self.calls.append(list(items))


class FailingBroker(MemoryBroker):
    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        raise ConnectionError("broker down")


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn)
    await database.open()
    async with database.connection("setup") as conn:
        await conn.execute("CREATE TABLE outbox_probe (id int)")
    yield database
    await database.close()


def _follow(user: str) -> FollowSignal:
    return FollowSignal(user_id=user, account_id="a", following=True)


async def test_signals_leave_after_the_commit_in_one_round_trip(db: Database) -> None:
    broker = WatchingBroker(db)
    outbox = Outbox(db, broker)
    shared = _follow("u1")
    async with outbox.transaction("probe_write") as tx:
        await tx.conn.execute("INSERT INTO outbox_probe VALUES (1)")
        tx.emit(user_channel("u1"), shared)
        tx.emit_to_users(["u2", "u3"], _follow("u2"))
        assert broker.calls == []  # nothing goes out while the transaction is open
    assert broker.committed_when_published == [True]
    [call] = broker.calls
    assert [channel for channel, _ in call] == [user_channel("u1"), user_channel("u2"), user_channel("u3")]
    assert decode_signal(call[0][1]) == shared
    # a signal emitted to many users is encoded once
    assert call[1][1] is call[2][1]


async def test_a_rollback_publishes_nothing(db: Database) -> None:
    broker = WatchingBroker(db)
    outbox = Outbox(db, broker)
    with pytest.raises(RuntimeError):
        async with outbox.transaction("probe_write") as tx:
            await tx.conn.execute("INSERT INTO outbox_probe VALUES (1)")
            tx.emit(user_channel("u1"), _follow("u1"))
            raise RuntimeError("refused half-way")
    assert broker.calls == []
    async with db.connection("check") as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox_probe") == 0


async def test_nothing_emitted_means_no_round_trip(db: Database) -> None:
    broker = WatchingBroker(db)
    async with Outbox(db, broker).transaction("probe_read") as tx:
        await tx.conn.fetchval("SELECT 1")
    assert broker.calls == []


async def test_a_broker_failure_after_commit_is_logged_not_raised(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(db, FailingBroker())
    with caplog.at_level(logging.WARNING, logger="bankhub.outbox"):
        async with outbox.transaction("probe_write") as tx:
            await tx.conn.execute("INSERT INTO outbox_probe VALUES (1)")
            tx.emit(user_channel("u1"), _follow("u1"))
        await outbox.publish([(user_channel("u2"), _follow("u2"))], what="desk change")
    async with db.connection("check") as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox_probe") == 1  # the state stays committed
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "probe_write: publish after commit failed; receivers catch up from storage",
        "desk change: publish after commit failed; receivers catch up from storage",
    ]
