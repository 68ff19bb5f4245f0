"""In-process broker for a single gateway node (the default without Redis).

``publish`` calls the handler directly and synchronously, before it returns. That
is the fastest option and trivially keeps publish order per channel; it is safe
because the :class:`~bankhub.broker.base.Broker` contract requires handlers not to
block (they only enqueue work). A handler exception is logged, not raised into the
publisher, mirroring :class:`~bankhub.broker.redis.RedisBroker`, where the handler
runs on a reader task.
"""

from __future__ import annotations

import logging

from .base import Broker, Handler, ResyncHandler

__all__ = ["MemoryBroker"]

log = logging.getLogger(__name__)


class MemoryBroker(Broker):
    """Single-node broker: payloads published here go to this node's handler only.

    There is no connection to lose, so ``on_resync`` is never called.
    """

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._channels: set[str] = set()

    async def start(self, handler: Handler, on_resync: ResyncHandler | None = None) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, payload: bytes) -> None:
        handler = self._handler
        if handler is None or channel not in self._channels:
            return  # nobody listening: a dropped signal, as on Redis
        try:
            handler(channel, payload)
        except Exception:
            log.exception("broker handler failed for channel %s", channel)

    async def ping(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return "memory"
