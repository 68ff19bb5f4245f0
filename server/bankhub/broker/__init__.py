"""How gateway nodes signal each other: see :mod:`bankhub.broker.base` for the contract."""

from __future__ import annotations

from .base import BROADCAST_CHANNEL, Broker, Handler, ResyncHandler, user_channel
from .memory import MemoryBroker
from .redis import RedisBroker
from .sealing import Sealer, SealError, generate_key_b64

__all__ = [
    "BROADCAST_CHANNEL",
    "Broker",
    "Handler",
    "MemoryBroker",
    "RedisBroker",
    "ResyncHandler",
    "SealError",
    "Sealer",
    "generate_key_b64",
    "make_broker",
    "user_channel",
]


def make_broker(redis_url: str | None, cluster_key_b64: str | None) -> Broker:
    """The broker for this configuration: in-process without a URL, else Redis.

    With Redis, payloads are sealed when a cluster key is given. (Whether running
    multi-node without a key is acceptable is the caller's policy to enforce.)
    """
    if not redis_url:
        return MemoryBroker()
    sealer = Sealer.from_b64(cluster_key_b64) if cluster_key_b64 else None
    return RedisBroker(redis_url, sealer=sealer)
