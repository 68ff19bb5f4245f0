"""The hub of one node: storage, broker, connection registry and the group committer.

``Hub`` is built from :class:`~bankhub.settings.Settings` (or explicit parts in tests),
started once (:meth:`start`) and stopped once (:meth:`stop`, which drains). Actions get
everything they need from it.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from .actions.messages import Pending, commit_and_publish
from .batching import Batcher
from .bodies import BodyCodec
from .broker import Broker, make_broker, user_channel
from .gateway.registry import ConnectionRegistry
from .protocol.frames import CloseCode, Message
from .protocol.session import SessionLimits
from .settings import Settings
from .signals import RevokeSignal, encode_signal
from .storage import Appended, ConversationStore, Database, MessageStore, SessionStore, UserStore

__all__ = ["Hub"]

log = logging.getLogger("bankhub")


class Hub:
    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker | None = None,
        codec: BodyCodec | None = None,
        session_limits: SessionLimits | None = None,
    ) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, max_size=settings.db_pool_size)
        self.broker = broker or make_broker(settings.redis_url, settings.cluster_key)
        self.users = UserStore(self.db)
        self.sessions = SessionStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.messages = MessageStore(self.db, codec)
        self.session_limits = session_limits or SessionLimits()
        self.registry = ConnectionRegistry(self.broker, self._catch_up)
        self.committer: Batcher[Pending, Appended] = Batcher(
            lambda batch: commit_and_publish(self, batch),
            max_batch=settings.commit_batch_max,
            writers=settings.commit_writers,
            shard=lambda p: p.new.conversation_id,
        )
        self.draining = False
        self._started = False

    async def start(self) -> None:
        await self.db.open()
        await self.broker.start(self.registry.on_signal, self.registry.on_resync)
        self.committer.start()
        self._started = True
        log.info("node %s started (broker: %s)", self.settings.node_name, self.broker.name)

    async def stop(self) -> None:
        """Drain: refuse new sockets, finish in-flight commits, ask clients to reconnect (1012)."""
        if not self._started:
            return
        self._started = False
        self.draining = True
        await self.committer.stop()
        self.registry.close_all(CloseCode.SERVICE_RESTART, "node restarting: reconnect and sync")
        waits = [c.closed.wait() for c in self.registry.connections()]
        if waits:
            # a client that stopped reading must not hold up the shutdown
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5.0)
        await self.broker.close()
        await self.db.close()

    async def _catch_up(self, user_id: str, cursors: dict[str, int]) -> list[Message]:
        synced = await self.messages.since(user_id, cursors, self.session_limits.max_sync_limit)
        return [m for c in synced if c.conversation_id in cursors for m in c.messages]

    async def publish_revoke(self, signal: RevokeSignal) -> None:
        try:
            await self.broker.publish(user_channel(signal.user_id), encode_signal(signal))
        except Exception:
            log.warning("revocation signal not published", exc_info=True)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Browsers send an Origin: allow the hub's own origin and the configured allowlist."""
        origin = origin.rstrip("/")
        if origin in self.settings.allowed_origins:
            return True
        return urlsplit(origin).netloc == host and bool(host)
