"""The node-level notice fan-out, fed broadcast signals by hand: targeting, one encode per
event, no double delivery after sync, gap fill from storage (with retry), resync, the
follower index and the online delivery counts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from bankhub.delivery.notices import NoticeFanout
from bankhub.models import Role, User
from bankhub.protocol.frames import Notice, TextNotice
from bankhub.protocol.wire import payload_of
from bankhub.signals import NoticeSignal
from bankhub.models import NoticeEventRow, Target
from bankhub.targeting import matches

ACC = "acc-1"
HO, BJ, SH = "ho", "bj", "sh"


_TEXTS: dict[int, tuple[bytes, str]] = {}


@dataclass(eq=False)
class FakeConn:
    user: User
    org_path: tuple[str, ...]
    follows: set[str] = field(default_factory=lambda: {ACC})
    notice_seen: dict[str, int] = field(default_factory=dict)
    frames: list[str] = field(default_factory=list)
    wires: list[bytes] = field(default_factory=list)

    def push(self, text: str) -> None:
        self.frames.append(text)

    def send_wire(self, wire: bytes) -> None:
        self.wires.append(wire)
        # the same text object for the same bytes object: one encode stays visible as identity
        held = _TEXTS.get(id(wire))
        if held is None or held[0] is not wire:
            held = _TEXTS[id(wire)] = (wire, payload_of(wire))
        self.frames.append(held[1])

    send_now = send_wire

    @property
    def _notice_seen(self) -> dict[str, int]:
        return self.notice_seen

    def decoded(self) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.frames]


def _user(name: str, role: Role = Role.CUSTOMER, org: str = BJ, tags: tuple[str, ...] = (), segment: str | None = None) -> User:
    return User(name, name, name, role, org, tags=tags, segment=segment)


def _notice(seq: int, text: str = "n", recalled: bool = False) -> Notice:
    return Notice(ACC, f"notice-{seq}", seq, 1000 + seq, None if recalled else TextNotice(text), recalled, 2000 if recalled else None)


def _signal(event_seq: int, target: Target = Target(), notice: Notice | None = None) -> NoticeSignal:
    return NoticeSignal(event_seq=event_seq, notice=notice or _notice(event_seq, f"n{event_seq}"), target=target)


class Storage:
    """The account stream as storage holds it; counts fetches, can fail on demand."""

    def __init__(self, events: list[NoticeEventRow]) -> None:
        self.events = events
        self.calls: list[tuple[str, int, int | None]] = []
        self.failures = 0

    async def fetch(self, account: str, after: int, upto: int | None) -> list[NoticeEventRow]:
        self.calls.append((account, after, upto))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage down")
        return [e for e in self.events if e.event_seq > after and (upto is None or e.event_seq <= upto)]


def _row(event_seq: int, target: Target = Target()) -> NoticeEventRow:
    return NoticeEventRow(event_seq=event_seq, notice=_notice(event_seq, f"n{event_seq}"), target=target)


def _fanout(conns: list[FakeConn], storage: Storage | None = None) -> NoticeFanout:
    fanout = NoticeFanout((storage or Storage([])).fetch)
    for c in conns:
        fanout.add(c)  # type: ignore[arg-type]
    return fanout


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_only_targeted_connected_followers_get_it_encoded_once() -> None:
    li = FakeConn(_user("li", org=BJ, tags=("card",)), (BJ, HO))
    zhou = FakeConn(_user("zhou", org=SH), (SH, HO))
    wang = FakeConn(_user("wang", Role.RM, BJ), (BJ, HO))
    other = FakeConn(_user("x"), (BJ, HO), follows={"another-account"})
    fanout = _fanout([li, zhou, wang, other])
    fanout.on_signal(_signal(1, Target(org_ids=[BJ])))
    assert [len(c.frames) for c in (li, zhou, wang, other)] == [1, 0, 1, 0]
    assert li.frames[0] is wang.frames[0]  # one encode for every follower
    assert li.decoded()[0] == {"type": "notice", "notice": {"account_id": ACC, "notice_id": "notice-1", "seq": 1, "ts": 1001, "body": {"kind": "text", "text": "n1"}}}
    fanout.on_signal(_signal(2, Target(staff_only=True)))
    assert [len(c.frames) for c in (li, zhou, wang)] == [1, 0, 2]
    fanout.on_signal(_signal(3, Target(tags=["card"])))
    assert [len(c.frames) for c in (li, zhou, wang)] == [2, 0, 2]
    assert fanout.take_delivered() == {"notice-1": 2, "notice-2": 1, "notice-3": 1}
    assert fanout.take_delivered() == {}


def test_a_notice_is_framed_once_and_every_follower_gets_the_same_bytes() -> None:
    conns = [FakeConn(_user(f"u{i}"), (BJ, HO)) for i in range(3)]
    fanout = _fanout(conns)
    fanout.on_signal(_signal(1))
    wire = conns[0].wires[0]
    assert all(c.wires == [wire] and c.wires[0] is wire for c in conns)
    # an unmasked, unfragmented text frame whose payload is the notice frame
    assert wire[0] == 0x81 and not wire[1] & 0x80
    assert json.loads(payload_of(wire))["notice"]["notice_id"] == "notice-1"


def test_an_event_the_client_already_synced_is_not_pushed_again() -> None:
    li = FakeConn(_user("li"), (BJ, HO), notice_seen={ACC: 2})
    fanout = _fanout([li])
    fanout.on_signal(_signal(2))
    assert li.frames == []
    fanout.on_signal(_signal(3))
    assert [f["notice"]["seq"] for f in li.decoded()] == [3]
    fanout.on_signal(_signal(3))  # a duplicate signal
    assert len(li.frames) == 1


def test_a_recall_event_sends_notice_recalled() -> None:
    li = FakeConn(_user("li"), (BJ, HO))
    fanout = _fanout([li])
    fanout.on_signal(_signal(1))
    fanout.on_signal(NoticeSignal(event_seq=2, notice=_notice(1, recalled=True), target=Target()))
    assert li.decoded()[1] == {"type": "notice_recalled", "account_id": ACC, "notice_id": "notice-1", "seq": 1, "event_seq": 2, "ts": 2000}
    assert fanout.take_delivered() == {"notice-1": 1}  # recalls are not deliveries


async def test_a_gap_is_filled_from_storage_once_for_the_node_in_order() -> None:
    li = FakeConn(_user("li"), (BJ, HO))
    zhou = FakeConn(_user("zhou", org=SH), (SH, HO))
    storage = Storage([_row(1), _row(2, Target(org_ids=[SH])), _row(3), _row(4), _row(5)])
    fanout = _fanout([li, zhou], storage)
    fanout.on_signal(_signal(1))
    fanout.on_signal(_signal(4))  # 2 and 3 were lost
    fanout.on_signal(_signal(5))  # arrives while the gap is being filled
    await _settle()
    assert storage.calls == [(ACC, 1, 4)]
    assert [f["notice"]["seq"] for f in li.decoded()] == [1, 3, 4, 5]
    assert [f["notice"]["seq"] for f in zhou.decoded()] == [1, 2, 3, 4, 5]


async def test_a_failed_fill_is_retried_and_nothing_is_skipped() -> None:
    li = FakeConn(_user("li"), (BJ, HO))
    storage = Storage([_row(1), _row(2), _row(3)])
    storage.failures = 1
    fanout = _fanout([li], storage)
    fanout.on_signal(_signal(1))
    fanout.on_signal(_signal(3))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(li.frames) == 3:
            break
    assert [f["notice"]["seq"] for f in li.decoded()] == [1, 2, 3]
    assert len(storage.calls) == 2


async def test_after_a_broker_outage_the_node_fetches_what_it_missed() -> None:
    li = FakeConn(_user("li"), (BJ, HO))
    storage = Storage([_row(1), _row(2), _row(3)])
    fanout = _fanout([li], storage)
    fanout.on_signal(_signal(1))
    fanout.resync()
    await _settle()
    assert storage.calls == [(ACC, 1, None)]
    assert [f["notice"]["seq"] for f in li.decoded()] == [1, 2, 3]
    fanout.on_signal(_signal(3))  # the late signal is a duplicate now
    fanout.on_signal(_signal(4))
    assert [f["notice"]["seq"] for f in li.decoded()] == [1, 2, 3, 4]


def test_follow_and_unfollow_update_the_index() -> None:
    li = FakeConn(_user("li"), (BJ, HO), follows=set())
    fanout = _fanout([li])
    fanout.on_signal(_signal(1))
    assert li.frames == []
    fanout.follow(li, ACC, True)  # type: ignore[arg-type]
    fanout.on_signal(_signal(2))
    assert len(li.frames) == 1
    fanout.follow(li, ACC, False)  # type: ignore[arg-type]
    fanout.on_signal(_signal(3))
    assert len(li.frames) == 1 and ACC not in fanout.by_account
    fanout.follow(li, ACC, True)  # type: ignore[arg-type]
    fanout.remove(li)  # type: ignore[arg-type]
    assert fanout.by_account == {}


@pytest.mark.parametrize(
    ("target", "user", "path", "expected"),
    [
        (Target(), _user("c"), (BJ, HO), True),
        (Target(org_ids=[BJ]), _user("c", org="hd"), ("hd", BJ, HO), True),  # the subtree counts
        (Target(org_ids=[BJ]), _user("c", org=SH), (SH, HO), False),
        (Target(org_ids=[HO]), _user("c", org=SH), (SH, HO), True),
        (Target(org_ids=[SH, BJ]), _user("c", org=SH), (SH, HO), True),  # OR within a dimension
        (Target(tags=["a", "b"]), _user("c", tags=("b",)), (BJ, HO), True),
        (Target(tags=["a"]), _user("c", tags=("b",)), (BJ, HO), False),
        (Target(segments=["mass"]), _user("c", segment="mass"), (BJ, HO), True),
        (Target(segments=["mass"]), _user("c"), (BJ, HO), False),  # no segment matches no segment list
        (Target(staff_only=True), _user("c"), (BJ, HO), False),
        (Target(staff_only=True), _user("s", Role.STAFF), (BJ, HO), True),
        (Target(org_ids=[BJ], tags=["a"]), _user("c", tags=("a",), org=SH), (SH, HO), False),  # AND across
    ],
)
def test_targeting_rule(target: Target, user: User, path: tuple[str, ...], expected: bool) -> None:
    assert matches(target, user, path) is expected


async def test_a_large_fan_out_is_written_in_slices_and_keeps_each_connection_in_order() -> None:
    from bankhub.delivery.notices import SLICE

    conns = [FakeConn(_user(f"u{i}"), (BJ, HO)) for i in range(SLICE * 2 + 7)]
    fanout = _fanout(conns)
    fanout.on_signal(_signal(1))
    fanout.on_signal(_signal(2))  # arrives while the first is still being written
    # the first turn wrote one slice only: the loop is free for other sockets in between
    assert sum(len(c.frames) for c in conns) == SLICE
    for _ in range(10):
        await asyncio.sleep(0)
    assert all([f["notice"]["seq"] for f in c.decoded()] == [1, 2] for c in conns)
    assert fanout.take_delivered() == {"notice-1": len(conns), "notice-2": len(conns)}


@dataclass(eq=False)
class BrokenConn(FakeConn):
    """A follower whose socket write raises."""

    closes: list[int] = field(default_factory=list)
    id: str = "broken"

    def send_now(self, wire: bytes) -> None:
        raise OSError("broken socket")

    def close(self, code: int, reason: str) -> None:
        self.closes.append(code)


def test_a_write_that_raises_closes_that_follower_and_the_others_get_the_notice() -> None:
    broken = BrokenConn(_user("broken"), (BJ, HO))
    others = [FakeConn(_user(f"u{i}"), (BJ, HO)) for i in range(3)]
    fanout = _fanout([broken, *others])
    fanout.on_signal(_signal(1))
    assert broken.closes == [1001]  # going away: the client reconnects and syncs
    assert all([f["notice"]["seq"] for f in c.decoded()] == [1] for c in others)


async def test_a_write_that_raises_in_a_large_fan_out_does_not_stop_it_nor_later_notices() -> None:
    from bankhub.delivery.notices import SLICE

    broken = BrokenConn(_user("broken"), (BJ, HO))
    others = [FakeConn(_user(f"u{i}"), (BJ, HO)) for i in range(SLICE * 2)]
    fanout = _fanout([broken, *others])
    fanout.on_signal(_signal(1))
    await _settle()
    fanout.on_signal(_signal(2))  # after the large one: the node's fan-out is not stuck
    await _settle()
    assert broken.closes == [1001, 1001]
    assert all([f["notice"]["seq"] for f in c.decoded()] == [1, 2] for c in others)


async def test_a_notice_creates_no_per_connection_state_on_followers_it_does_not_target() -> None:
    from tests.unit.test_connection_outbound import _conn

    li, _, li_out = _conn(name="c.li")
    zhou, _, zhou_out = _conn(name="c.zhou")
    li.org_path, zhou.org_path = (BJ, HO), (SH, HO)
    li.follows = zhou.follows = {ACC}
    fanout = _fanout([li, zhou])  # type: ignore[list-item]
    fanout.on_signal(_signal(1, Target(org_ids=[BJ])))
    await _settle()
    assert li._notice_seen == {ACC: 1} and len(li_out.texts()) == 1
    assert zhou._notice_seen is None and zhou_out.writes == []  # not targeted: nothing allocated
