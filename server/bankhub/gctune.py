"""Garbage-collector settings for a serving process.

A busy node holds tens of thousands of live objects per thousand in-flight requests
(tasks, futures, frames); with CPython's default thresholds every few hundred
allocations trigger a young collection and full collections walk that whole heap, which
showed up as ~40% of the hub's CPU and most of its tail latency under load. Raising the
young-generation threshold and freezing everything allocated at start-up (modules,
settings, the app) into the permanent generation removes most of that work. The hub's
hot-path records (messages, frames, signals) are msgspec structs declared ``gc=False``,
since they never form reference cycles.
"""

from __future__ import annotations

import gc

__all__ = ["tune_for_serving", "freeze_startup_heap"]


def tune_for_serving(gen0: int = 50_000, gen1: int = 20, gen2: int = 100) -> None:
    gc.set_threshold(gen0, gen1, gen2)


def freeze_startup_heap() -> None:
    """Move everything alive now into the permanent generation (call once the node is up)."""
    gc.collect()
    gc.freeze()
