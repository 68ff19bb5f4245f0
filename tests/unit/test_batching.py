"""Group commit batching, with an in-memory flush function."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bankhub.batching import Batcher


class Recorder:
    def __init__(self, delay: float = 0.01, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail_on = fail_on

    async def flush(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail_on in items:
            raise RuntimeError("flush failed")
        return [i.upper() for i in items]


async def test_concurrent_submissions_share_batches_and_each_gets_its_own_result() -> None:
    rec = Recorder()
    b: Batcher[str, str] = Batcher(rec.flush, max_batch=50, writers=1)
    b.start()
    results = await asyncio.gather(*(b.submit(f"m{i}") for i in range(100)))
    await b.stop()
    assert results == [f"M{i}" for i in range(100)]
    assert len(rec.batches) < 10  # grouped, not one flush per item
    assert max(len(x) for x in rec.batches) <= 50
    assert b.items == 100


async def test_a_failed_flush_fails_every_caller_of_that_batch_only() -> None:
    rec = Recorder(fail_on="bad")
    b: Batcher[str, str] = Batcher(rec.flush, writers=1)
    b.start()
    first = await asyncio.gather(b.submit("ok1"), b.submit("bad"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in first)
    assert await b.submit("ok2") == "OK2"
    await b.stop()


async def test_sharding_keeps_per_key_order_across_writers() -> None:
    rec = Recorder(delay=0.001)
    b: Batcher[str, str] = Batcher(rec.flush, writers=3, shard=lambda s: s.split(":")[0])
    b.start()
    await asyncio.gather(*(b.submit(f"{k}:{i}") for i in range(30) for k in "abcd"))
    await b.stop()
    for key in "abcd":
        seen = [int(item.split(":")[1]) for batch in rec.batches for item in batch if item.startswith(key)]
        assert seen == list(range(30))


async def test_stop_flushes_what_was_submitted_and_refuses_more() -> None:
    rec = Recorder(delay=0.05)
    b: Batcher[str, str] = Batcher(rec.flush, writers=2)
    b.start()
    pending = [asyncio.ensure_future(b.submit(f"x{i}")) for i in range(10)]
    await asyncio.sleep(0)
    await b.stop()
    assert [p.result() for p in pending] == [f"X{i}" for i in range(10)]
    with pytest.raises(RuntimeError):
        await b.submit("late")
