"""The stream follower, fed by hand: offered seqs and fetched rows in, decisions out.

No event loop and no storage: each test plays the signals and the storage answers a
gateway would see, and checks what the follower says to deliver, hold, drop or fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

from bankhub.delivery.following import FILL_RETRY_MAX, FILL_RETRY_MIN, retry_delay
from bankhub.protocol.streams import Decision, Fetch, Filled, StreamFollower


@dataclass(frozen=True)
class Item:
    """One stream item; ``src`` tells a live signal from a row read back from storage."""

    seq: int
    src: str = "live"


def _seq(item: Item) -> int:
    return item.seq


def rows(*seqs: int) -> list[Item]:
    return [Item(s, "row") for s in seqs]


def seqs(filled: Filled[Item]) -> list[int]:
    return [i.seq for i in filled.deliver]


def follower(*, gap_free: bool = True) -> StreamFollower[Item]:
    return StreamFollower(_seq, gap_free=gap_free)


def offer(f: StreamFollower[Item], key: str, seq: int) -> Decision | Fetch:
    return f.offer(key, seq, Item(seq))


# --- live items --------------------------------------------------------------------------


def test_in_order_items_are_delivered_once_and_keys_are_independent() -> None:
    f = follower()
    assert offer(f, "a", 5) is Decision.DELIVER  # first sight starts the stream
    assert offer(f, "a", 6) is Decision.DELIVER
    assert offer(f, "a", 6) is Decision.DROP  # a duplicate signal
    assert offer(f, "a", 3) is Decision.DROP  # a late one
    assert offer(f, "b", 1) is Decision.DELIVER
    assert f.cursors.snapshot() == {"a": 6, "b": 1} and f.fills() == []


def test_a_declared_position_is_where_the_stream_continues() -> None:
    f = follower()
    f.cursors.set("a", 10)  # a sync: the client holds everything up to 10
    assert offer(f, "a", 10) is Decision.DROP
    assert offer(f, "a", 11) is Decision.DELIVER


# --- gaps --------------------------------------------------------------------------------


def test_a_gap_asks_for_the_missing_range_and_holds_what_arrives_meanwhile() -> None:
    f = follower()
    f.cursors.set("a", 2)
    fetch = offer(f, "a", 5)
    assert fetch == Fetch("a", after=2, upto=5, attempt=0)
    assert f.cursors.get("a") == 2 and f.fills() == ["a"]  # a gap does not move the position
    # while the fill is in flight nothing overtakes the hole, not even the next seq
    assert [offer(f, "a", s) for s in (7, 6, 5, 3)] == [Decision.HOLD] * 4
    assert offer(f, "b", 1) is Decision.DELIVER  # other keys go on
    assert isinstance(fetch, Fetch)
    done = f.filled(fetch, rows(3, 4, 5))
    # in seq order, each once; the stored row wins over a held copy of the same seq
    assert [(i.seq, i.src) for i in done.deliver] == [(3, "row"), (4, "row"), (5, "row"), (6, "live"), (7, "live")]
    assert done.fetch is None and f.fills() == [] and f.cursors.get("a") == 7
    assert offer(f, "a", 8) is Decision.DELIVER


def test_a_short_fetch_keeps_the_hole_and_asks_again_up_to_everything_held() -> None:
    f = follower()
    f.cursors.set("a", 2)
    first = offer(f, "a", 6)
    assert isinstance(first, Fetch)
    assert offer(f, "a", 9) is Decision.HOLD
    # storage is behind the signals: it has only 3 so far
    again = f.filled(first, rows(3))
    assert seqs(again) == [3]
    assert again.fetch == Fetch("a", after=3, upto=9, attempt=1)  # the same hole, one attempt later
    assert f.fills() == ["a"] and offer(f, "a", 10) is Decision.HOLD  # still held behind it
    done = f.filled(again.fetch, rows(4, 5, 6, 7, 8, 9))
    assert seqs(done) == [4, 5, 6, 7, 8, 9, 10] and done.fetch is None


def test_a_failed_read_of_a_gap_free_stream_is_a_fetch_that_found_nothing() -> None:
    f = follower()
    f.cursors.set("a", 2)
    fetch = offer(f, "a", 5)
    assert isinstance(fetch, Fetch)
    retry = f.failed(fetch)
    assert retry == Filled([], Fetch("a", after=2, upto=5, attempt=1))
    assert retry.fetch is not None
    # meanwhile a sync says the client has 4: the held 5 is next, nothing is missing
    f.cursors.set("a", 4)
    done = f.failed(retry.fetch)
    assert seqs(done) == [5] and done.fetch is None and f.fills() == []


def test_a_sync_during_a_fill_moves_the_position_and_what_it_covers_is_dropped() -> None:
    f = follower()
    f.cursors.set("a", 2)
    fetch = offer(f, "a", 6)
    assert isinstance(fetch, Fetch)
    f.cursors.set("a", 8)
    assert offer(f, "a", 9) is Decision.HOLD
    done = f.filled(fetch, rows(3, 4, 5, 6))
    assert seqs(done) == [9] and done.fetch is None


# --- sparse streams: a fetched range is complete ----------------------------------------------


def test_a_sparse_stream_skips_what_a_complete_fetch_lacks_and_opens_the_next_gap() -> None:
    f = follower(gap_free=False)
    f.cursors.set("a", 2)
    fetch = offer(f, "a", 6)
    assert fetch == Fetch("a", after=2, upto=6)
    assert offer(f, "a", 9) is Decision.HOLD and offer(f, "a", 7) is Decision.HOLD
    assert isinstance(fetch, Fetch)
    # 4 expired: storage does not return it, and nothing waits for it
    step = f.filled(fetch, rows(3, 5, 6))
    assert [(i.seq, i.src) for i in step.deliver] == [(3, "row"), (5, "row"), (6, "row"), (7, "live")]
    # 8 is missing before the held 9: a new gap from the new position, a first attempt
    assert step.fetch == Fetch("a", after=7, upto=9, attempt=0) and f.fills() == ["a"]
    # storage no longer returns 9 either (replaced meanwhile): the signal of it is not shown
    done = f.filled(step.fetch, [])
    assert done == Filled([], None) and f.cursors.get("a") == 9 and f.fills() == []


def test_a_failed_read_of_a_sparse_stream_is_retried_for_the_same_range_with_items_still_held() -> None:
    f = follower(gap_free=False)
    f.cursors.set("a", 2)
    fetch = offer(f, "a", 6)
    assert isinstance(fetch, Fetch)
    retry = f.failed(fetch)
    assert retry == Filled([], Fetch("a", after=2, upto=6, attempt=1))
    assert f.fills() == ["a"] and offer(f, "a", 7) is Decision.HOLD
    assert retry.fetch is not None
    done = f.filled(retry.fetch, rows(3, 4, 5, 6))
    assert seqs(done) == [3, 4, 5, 6, 7] and done.fetch is None


# --- resets: cut off, restored, resynced ---------------------------------------------------


def test_a_key_revoked_during_a_fill_hands_over_nothing_until_restored() -> None:
    f = follower()
    assert offer(f, "a", 1) is Decision.DELIVER
    fetch = offer(f, "a", 3)
    assert isinstance(fetch, Fetch)
    f.cursors.revoke("a")  # the member lost access while the gap was being read
    assert offer(f, "a", 4) is Decision.HOLD
    assert f.filled(fetch, rows(2, 3)) == Filled([], None)
    assert f.fills() == [] and "a" not in f.cursors.snapshot()
    assert offer(f, "a", 5) is Decision.DROP  # dropped, and no gap is fetched
    f.cursors.restore("a")
    assert offer(f, "a", 7) is Decision.DELIVER  # access back: from the first seq seen


def test_resync_asks_once_for_everything_after_each_known_position() -> None:
    f = follower()
    f.cursors.set("a", 3)
    assert offer(f, "b", 1) is Decision.DELIVER
    assert offer(f, "c", 1) is Decision.DELIVER and isinstance(offer(f, "c", 4), Fetch)
    fetches = f.resync()
    # every key with a position, except one whose fill is in flight already
    assert sorted(fetches, key=lambda x: x.key) == [Fetch("a", 3, None), Fetch("b", 1, None)]
    assert f.resync() == []  # not twice while they are in flight
    assert offer(f, "a", 9) is Decision.HOLD
    a = next(x for x in fetches if x.key == "a")
    done = f.filled(a, rows(4, 5, 6, 7, 8))
    assert seqs(done) == [4, 5, 6, 7, 8, 9] and done.fetch is None
    b = next(x for x in fetches if x.key == "b")
    # an open-ended read that failed with nothing held behind it: nothing to retry
    assert f.failed(b) == Filled([], None) and sorted(f.fills()) == ["c"]


# --- bounds --------------------------------------------------------------------------------


def test_state_is_kept_only_for_keys_with_a_position_or_a_fill_in_flight() -> None:
    f = follower()
    f.cursors.revoke("gone")
    assert offer(f, "gone", 1) is Decision.DROP  # a cut-off key gains no position
    fetches = [offer(f, f"k{i}", 1) for i in range(50)] + [offer(f, f"k{i}", 3) for i in range(50)]
    gaps = [x for x in fetches if isinstance(x, Fetch)]
    assert len(gaps) == 50 and len(f.fills()) == 50
    for gap in gaps:
        assert seqs(f.filled(gap, rows(2, 3))) == [2, 3]
    # every held item is released by the fill that held it
    assert f.fills() == [] and set(f.cursors.snapshot()) == {f"k{i}" for i in range(50)}


def test_retries_wait_longer_each_attempt_up_to_a_cap() -> None:
    assert [retry_delay(a) for a in (1, 2, 3, 4, 5)] == [FILL_RETRY_MIN * 2**i for i in range(5)]
    assert retry_delay(6) == retry_delay(60) == FILL_RETRY_MAX
