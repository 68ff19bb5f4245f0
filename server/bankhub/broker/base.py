"""The broker interface: how gateway nodes signal each other.

Postgres is the source of truth; the broker only carries *signals* between gateway
nodes (ids and seq numbers, or payloads sealed with the cluster key — never message
plaintext). A signal that is lost is not a lost message: receivers detect a gap in
a conversation's ``seq`` and catch up from storage, and clients ``sync`` after a
reconnect. The broker therefore promises at-most-once, best-effort delivery:

* ``publish(channel, payload)`` delivers ``payload`` to every node currently
  subscribed to ``channel`` (including the publishing node itself), in publish order
  per channel and per publisher.
* ``subscribe``/``unsubscribe`` are node-level and reference counted by the caller
  (the gateway's connection registry); calling ``subscribe`` twice for one channel is
  harmless, and one ``unsubscribe`` removes it.
* Received payloads are handed to the single ``handler`` given to ``start``. The
  handler is a plain (non-async) callable and must not block: it enqueues work.
* When a broker loses and regains its connection, it resubscribes everything by
  itself and then calls ``on_resync`` so that the node can catch up from storage
  for whatever may have been published while it was away. When it notices the loss it
  calls ``on_lost`` (if set) and reports ``connected`` False until then.

Implementations: :mod:`bankhub.broker.memory` (single node, the default) and
:mod:`bankhub.broker.redis` (Redis >= 7 / Valkey, sharded pub/sub where available).
One conformance suite (``tests/integration/test_broker_conformance.py``) runs on both.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

__all__ = ["Broker", "Handler", "ResyncHandler", "user_channel", "BROADCAST_CHANNEL"]

Handler = Callable[[str, bytes], None]
"""Called with ``(channel, payload)`` for every payload received on a subscribed channel."""

ResyncHandler = Callable[[], None]
"""Called after the broker recovered from a disconnect (signals may have been missed)."""

BROADCAST_CHANNEL = "bh:all"
"""A channel every node subscribes to: for signals that concern every node."""


def user_channel(user_id: str) -> str:
    """The channel of one user: every node holding a connection of that user subscribes."""
    return f"bh:u:{user_id}"


class Broker(abc.ABC):
    """A node's link to its peers. See the module docstring for the guarantees."""

    @abc.abstractmethod
    async def start(self, handler: Handler, on_resync: ResyncHandler | None = None) -> None:
        """Connect and begin handing received payloads to ``handler``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving and release connections. Idempotent."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel`` on this node. Returns once the subscription is active."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` on this node."""

    @abc.abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to every node subscribed to ``channel``. Raises on a broker outage."""

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish several payloads at once (pipelined where the transport allows)."""
        for channel, payload in items:
            await self.publish(channel, payload)

    on_lost: Callable[[], None] | None = None
    """Called (plain, must not block) when the broker notices it lost its link: signals
    published from then until ``on_resync`` may never arrive (the session cache flushes)."""

    @property
    def connected(self) -> bool:
        """False while the broker knows its link is down (signals may be missed meanwhile)."""
        return True

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the broker is reachable (used by ``/readyz``)."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short name for logs and ``/readyz`` (``memory`` or ``redis``)."""
