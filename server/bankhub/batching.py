"""Group commit: many concurrent callers, one transaction per batch.

``await batcher.submit(item)`` queues ``item`` and returns its result once the batch
holding it has been flushed. ``writers`` tasks each take everything queued for them (up to
``max_batch``) and call ``flush(items)``, which must return one result per item, in
order. While a flush is running, new items accumulate, so batches grow with load and
a lone caller pays no waiting time. If ``flush`` raises, every caller in that batch
gets the exception (nothing was committed).

With a ``shard`` function, items with equal shard keys always go to the same writer and
are flushed in submission order — for messages, the key is the conversation, so one
client's messages keep their order while other conversations commit in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("bankhub.batching")
_STOP = object()


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 256,
        writers: int = 2,
        shard: Callable[[T], object] | None = None,
    ) -> None:
        self._flush = flush
        self._max = max_batch
        self._queues: list[asyncio.Queue[tuple[T, asyncio.Future[R]] | object]] = [
            asyncio.Queue() for _ in range(max(1, writers))
        ]
        self._shard = shard
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.batches = 0
        self.items = 0

    @property
    def backlog(self) -> int:
        """Items submitted and not yet taken into a batch (the metrics' committer backlog)."""
        return sum(q.qsize() for q in self._queues)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(q), name=f"batcher-{i}") for i, q in enumerate(self._queues)]

    async def stop(self) -> None:
        """Flush everything submitted so far, then stop the writers."""
        self._stopping = True
        for q in self._queues:
            q.put_nowait(_STOP)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def submit(self, item: T) -> R:
        if not self._tasks or self._stopping:
            raise RuntimeError("Batcher is not running")
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        if self._shard is None or len(self._queues) == 1:
            # unsharded: the shortest queue gets it
            queue = min(self._queues, key=lambda q: q.qsize())
        else:
            queue = self._queues[hash(self._shard(item)) % len(self._queues)]
        queue.put_nowait((item, fut))
        return await fut

    async def _run(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]] | object]) -> None:
        stop = False
        while not stop:
            first = await queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max:
                try:
                    nxt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is _STOP:
                    stop = True  # flush this batch, then exit
                    break
                batch.append(nxt)
            pairs = cast(list[tuple[T, asyncio.Future[R]]], batch)
            live = [(item, fut) for item, fut in pairs if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await self._flush([item for item, _ in live])
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(RuntimeError("hub is shutting down"))
                raise
            except Exception as exc:  # every caller of the batch learns it failed
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
