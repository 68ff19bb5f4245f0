"""The hub of one node: storage, broker, connection registry and the group committer.

``Hub`` is built from :class:`~bankhub.settings.Settings` (or explicit parts in tests),
started once (:meth:`start`) and stopped once (:meth:`stop`, which drains). Actions get
everything they need from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from .actions.desk import Desk
from .actions.accounts import publish_due
from .actions.messages import Pending, commit_and_publish
from .alerts.runtime import AlertRuntime
from .batching import Batcher
from .bodies import BodyCodec
from .broker import BROADCAST_CHANNEL, Broker, make_broker, user_channel
from .crypto import KeyProvider, Keyring, provider_from_settings
from .gateway.broadcast import NoticeFanout
from .gateway.registry import ConnectionRegistry
from .protocol.frames import CloseCode, Message
from .protocol.session import SessionLimits
from .ratelimit import RateLimiter, make_limiter
from .settings import NO_KEY_PROVIDER, Settings
from .signals import RevokeSignal, encode_signal
from .storage import Appended, ConversationStore, Database, MessageStore, SessionStore, UserStore
from .storage.accounts import AccountStore
from .storage.audit import AuditStore

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
        limiter: RateLimiter | None = None,
        key_provider: KeyProvider | None = None,
    ) -> None:
        self.settings = settings
        # encryption at rest: the KEK provider is required (tests pass one; nodes configure it)
        provider = key_provider or provider_from_settings(settings.key_file, settings.key_provider)
        if provider is None:
            raise ValueError(NO_KEY_PROVIDER)
        self.keyring = Keyring(provider)
        self.db = Database(settings.database_url, max_size=settings.db_pool_size)
        self.broker = broker or make_broker(settings.redis_url, settings.cluster_key)
        self.users = UserStore(self.db)
        self.sessions = SessionStore(self.db)
        self.audit = AuditStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.messages = MessageStore(self.db, self.keyring, codec)
        # passed limits (tests) win; a node takes the idle timeout from its settings
        self.session_limits = session_limits or SessionLimits(idle_timeout=settings.ws_idle_timeout_seconds)
        self.accounts = AccountStore(self.db)
        self.fanout = NoticeFanout(self.accounts.events)
        self.registry = ConnectionRegistry(self.broker, self._catch_up, self.fanout)
        # relationship managers and the service desk: bot, auto-replies, routing, live statuses
        self.desk = Desk(self)
        # transactional alerts: calling systems, inboxes, delivery to sockets, the fallback channel
        self.alerting = AlertRuntime(self.db, self.keyring, settings)
        self.registry.alerts = self.alerting.delivery
        self.committer: Batcher[Pending, Appended] = Batcher(
            lambda batch: commit_and_publish(self, batch),
            max_batch=settings.commit_batch_max,
            writers=settings.commit_writers,
            shard=lambda p: p.new.conversation_id,
        )
        self.limiter = limiter or make_limiter(settings.redis_url)
        self.draining = False
        self._started = False
        self._recheck: asyncio.Task[None] | None = None
        self._notice_loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.db.open()
        await self.broker.start(self.registry.on_signal, self.registry.on_resync)
        await self.broker.subscribe(BROADCAST_CHANNEL)
        self.committer.start()
        await self.desk.start()
        await self.alerting.start()
        self._recheck = asyncio.create_task(self._recheck_loop(), name="session-recheck")
        self._notice_loops = [
            asyncio.create_task(self._every(self.settings.notice_scheduler_seconds, self.publish_due_notices), name="notice-scheduler"),
            asyncio.create_task(self._every(self.settings.notice_stats_seconds, self.flush_notice_stats), name="notice-stats"),
        ]
        self._started = True
        log.info("node %s started (broker: %s)", self.settings.node_name, self.broker.name)

    async def drain(self, timeout: float = 5.0) -> None:
        """Graceful drain, before the transport shuts down. Idempotent.

        Refuses new sockets (503) and new sends (``unavailable``), commits what was already
        submitted, lets each connection write the answers of its in-flight requests, then
        closes every socket with 1012 so clients reconnect to another node and sync.
        """
        if self.draining:
            return
        self.draining = True
        await self.committer.stop()
        conns = self.registry.connections()
        inflight = [t for c in conns for t in c.inflight()]
        if inflight:
            await asyncio.wait(inflight, timeout=timeout)
        for conn in conns:
            conn.close(CloseCode.SERVICE_RESTART, "node restarting: reconnect and sync", flush=True)
        closing = [asyncio.ensure_future(c.closed.wait()) for c in conns]
        if closing:
            # a client that stopped reading must not hold up the shutdown
            await asyncio.wait(closing, timeout=timeout)
        for waiter in closing:
            waiter.cancel()

    async def stop(self) -> None:
        """Drain (if not done yet), then release the broker, the limiter and the pool."""
        if not self._started:
            return
        self._started = False
        if self._recheck is not None:
            self._recheck.cancel()
        for task in self._notice_loops:
            task.cancel()
        await self.desk.stop()
        await self.drain()
        await self.alerting.stop()
        self.fanout.close()
        try:
            await self.flush_notice_stats()
        except Exception:
            log.warning("online delivery counts not saved at shutdown", exc_info=True)
        await self.broker.close()
        await self.limiter.close()
        await self.db.close()

    async def recheck_sessions(self) -> int:
        """Close sockets whose session was revoked, expired or whose user was disabled.

        The safety net behind revocation signals: one query for all of this node's
        connections. Returns how many connections were closed.
        """
        conns = self.registry.connections()
        dead = await self.sessions.inactive_among(sorted({c.session.id for c in conns}))
        closing = [c for c in conns if c.session.id in dead]
        for conn in closing:
            conn.close(CloseCode.POLICY_VIOLATION, "session is no longer valid")
        return len(closing)

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.session_recheck_seconds)
            try:
                await self.recheck_sessions()
            except Exception:
                log.warning("session re-check failed", exc_info=True)

    async def publish_due_notices(self) -> int:
        """Publish scheduled notices whose time has come (every node runs this; rows are
        claimed with SKIP LOCKED, so each notice goes out once)."""
        return await publish_due(self)

    async def flush_notice_stats(self) -> None:
        """Add this node's online notice deliveries to storage: one statement per flush."""
        counts = self.fanout.take_delivered()
        try:
            await self.accounts.add_delivered(counts)
        except Exception:
            self.fanout.give_back(counts)  # kept for the next flush
            raise

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.draining:
                return
            try:
                await job()
            except Exception:
                log.warning("%s failed; retrying in %.1f s", getattr(job, "__name__", "job"), seconds, exc_info=True)

    async def _catch_up(self, user_id: str, cursors: dict[str, int]) -> list[Message]:
        synced = await self.messages.since(user_id, cursors, self.session_limits.max_sync_limit)
        return [m for c in synced.conversations if c.conversation_id in cursors for m in c.messages]

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
