"""Alert delivery per connection: once, in inbox-seq order, gaps filled from storage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bankhub.delivery.alerts import AlertDelivery
from bankhub.protocol.frames import Alert, InboxUpdate
from bankhub.signals import AlertSignal, InboxSignal


@dataclass(frozen=True)
class _User:
    id: str = "u1"


@dataclass(eq=False)
class FakeConnection:
    """What AlertDelivery uses of a connection: push, _spawn, close_code, user, id."""

    id: str = "c1"
    user: _User = field(default_factory=_User)
    close_code: int | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def push(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def seqs(self) -> list[int]:
        return [f["alert"]["seq"] for f in self.frames if f["type"] == "alert"]


def alert(seq: int) -> Alert:
    return Alert(alert_id=f"a{seq}", seq=seq, category="transaction", priority="high", template="t", title="T", text="x", ts=seq)


class Storage:
    """The inbox as storage holds it; ``hidden`` seqs expired or were replaced."""

    def __init__(self, last: int, hidden: set[int] | None = None, fail: int = 0) -> None:
        self.last, self.hidden, self.fail = last, hidden or set(), fail
        self.calls: list[tuple[int, int | None]] = []

    async def fetch(self, user_id: str, after: int, upto: int | None) -> list[Alert]:
        self.calls.append((after, upto))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("postgres away")
        top = self.last if upto is None else upto
        return [alert(s) for s in range(after + 1, top + 1) if s not in self.hidden]


def signal(seq: int) -> AlertSignal:
    return AlertSignal(user_id="u1", alert=alert(seq))


async def settle(conn: FakeConnection) -> None:
    while any(not t.done() for t in conn.tasks):
        await asyncio.gather(*conn.tasks)


async def test_in_order_once_duplicates_dropped() -> None:
    d, conn = AlertDelivery(Storage(10).fetch), FakeConnection()
    for s in (3, 4, 4, 3, 5):
        d.on_signal([conn], signal(s))
    assert conn.seqs() == [3, 4, 5] and d.held(conn) == 5
    assert sorted(d.take_delivered()) == ["a3", "a4", "a5"] and d.take_delivered() == []


async def test_a_gap_is_filled_from_storage_skipping_hidden_alerts_and_later_signals_wait() -> None:
    store = Storage(9, hidden={4})
    d, conn = AlertDelivery(store.fetch), FakeConnection()
    d.synced(conn, 2, [])
    d.on_signal([conn], signal(6))  # 3..5 lost
    d.on_signal([conn], signal(8))  # arrives during the fill
    d.on_signal([conn], signal(7))
    await settle(conn)
    assert conn.seqs() == [3, 5, 6, 7, 8] and store.calls[0] == (2, 6)
    d.on_signal([conn], signal(9))
    assert conn.seqs()[-1] == 9 and d.held(conn) == 9


async def test_a_failed_fill_is_retried() -> None:
    store = Storage(3, fail=2)
    d, conn = AlertDelivery(store.fetch), FakeConnection()
    d.synced(conn, 0, [])
    d.on_signal([conn], signal(3))
    await settle(conn)
    assert conn.seqs() == [1, 2, 3] and len(store.calls) == 3


async def test_resync_after_a_broker_outage_catches_up_and_a_closed_connection_gets_nothing() -> None:
    store = Storage(4)
    d, conn, closed = AlertDelivery(store.fetch), FakeConnection(), FakeConnection(id="c2", close_code=1000)
    d.synced(conn, 1, [])
    d.synced(closed, 1, [])
    d.resync([conn, closed])
    await settle(conn)
    await settle(closed)
    assert conn.seqs() == [2, 3, 4] and closed.frames == []


async def test_inbox_updates_go_to_every_device() -> None:
    d, a, b = AlertDelivery(Storage(0).fetch), FakeConnection(), FakeConnection(id="c2")
    d.on_signal([a, b], InboxSignal(user_id="u1", update=InboxUpdate(state="read", unread=0, alert_ids=["a1"])))
    assert a.frames == b.frames == [{"type": "inbox_update", "state": "read", "unread": 0, "alert_ids": ["a1"]}]
