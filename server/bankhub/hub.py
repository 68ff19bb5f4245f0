"""The parts of one node: storage, broker, outbox, connection registry, group committer.

``Hub`` holds what every action needs and runs the node's life cycle: :meth:`start` once,
:meth:`stop` once (it drains). It knows nothing of the actions above it: the group
committer's flush and the periodic jobs that call actions (the notice scheduler, the
service-desk sweep) are handed to it by :func:`bankhub.node.build_hub`, the one place
that wires a node together. So imports go one way: actions import the hub, never back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec

from .delivery.alerting import AlertRuntime
from . import metrics
from . import tracing
from .batching import Batcher
from .bodies import BodyCodec
from .broker import BROADCAST_CHANNEL, Broker, make_broker
from .crypto import KeyProvider, Keyring, provider_from_settings
from .desk.faq import DEFAULT_FAQ, FaqEntry
from .desk.system import system_user
from .delivery.notices import NoticeFanout
from .delivery.presence import LocalDirectory, PresenceRuntime, RedisDirectory
from .delivery.registry import ConnectionRegistry
from .delivery.following import Tasks
from .models import Session, User
from .outbox import Outbox, Transaction
from .protocol.frames import CloseCode, Message
from .protocol.session import SessionLimits
from .ratelimit import RateLimiter, make_limiter
from .settings import NO_KEY_PROVIDER, Settings
from .session_cache import SessionCache
from .signals import PrincipalSignal, RmStatusSignal, Signal, encode_signal
from .storage import Appended, ConversationStore, Database, MessageStore, NewMessage, SessionStore, UserStore
from .storage.db import Isolation
from .storage.accounts import AccountStore
from .storage.audit import AuditStore
from .storage.privacy import PrivacyStore
from .storage.contacts import ContactStore
from .storage.barriers import BarrierStore
from .storage.groups import GroupStore
from .storage.revisions import RevisionStore
from .storage.rm import RmStore
from .storage.service import ServiceStore
from .media.runtime import MediaRuntime
from .storage.widget import WidgetStore
from .storage.exports import ExportStore
from .storage.supervision import SupervisionStore
from .storage.signing_keys import SigningKeyStore
from .storage.dlp import DlpKeyStore

__all__ = ["Hub", "Pending", "Flush", "Job", "DeskState", "SESSION_RECHECK_BATCH", "REPUBLISH_SECONDS"]

log = logging.getLogger("bankhub")


class Pending(msgspec.Struct, gc=False):
    """A send on its way through the group committer, and the connection it came from."""

    new: NewMessage
    origin: str | None
    trace: Any = None  # the ws.send span's context (bankhub.tracing.current): the commit span links to it


Flush = Callable[["Hub", Sequence[Pending]], Awaitable[list[Appended]]]
"""The group committer's flush: commit a batch of sends, one result per send, in order."""


class Job(NamedTuple):
    """A periodic job of the node: ``run(hub)`` every ``seconds`` until the node drains (or,
    ``while_draining``, until it stops); a failure is logged and the job runs again at its
    next turn."""

    name: str
    seconds: float
    run: Callable[["Hub"], Awaitable[object]]
    while_draining: bool = False
    first_after: float | None = None
    """When set, the first run comes this many seconds after start (e.g. 0: at start-up), not after ``seconds``."""


class DeskState:
    """The node's state of the RM and service-desk features (``hub.desk``).

    Its stores, the FAQ the bot answers from and the clock (both replaceable: tests, a
    bank's own FAQ), the set of RMs whose customers get an auto-reply (kept current by
    broadcast signals and the desk sweep), the system user, and the reactions running on
    this node (one conversation's at a time, in commit order). What *acts* on it lives in
    :mod:`bankhub.actions.routing`, :mod:`bankhub.actions.reactions` and
    :mod:`bankhub.actions.system_posts`.
    """

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.store = ServiceStore(db, keyring)
        self.rm = RmStore(db)
        self.faq: Sequence[FaqEntry] = DEFAULT_FAQ
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
        self.unavailable_rms: set[str] = set()
        self.stopped = False  # commits still flushing during the drain get no reactions
        self._system: User | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per conversation, with its users
        self._legacy_sealed = False

    async def start(self) -> None:
        try:
            await self.system()
            await self.refresh()
        except Exception:
            log.warning("service desk start-up reads failed; the sweep retries", exc_info=True)
        try:
            await self.seal_legacy_text()
        except Exception:
            log.warning("sealing service-desk texts stored in plaintext failed; the sweep retries", exc_info=True)

    async def stop(self) -> None:
        self.stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def system(self) -> User:
        """The system user (its row is created on first use)."""
        if self._system is None:
            org = await self.store.ensure_system_user()
            if org is None:
                raise RuntimeError("no head office org yet: the system user cannot be created")
            self._system = system_user(org)
        return self._system

    async def refresh(self) -> None:
        """Re-read which RMs are unavailable (broadcast signals keep it current between)."""
        self.unavailable_rms = await self.rm.unavailable_rms()

    async def seal_legacy_text(self) -> None:
        """Seal the notes and CSAT comments stored in plaintext before delta 0010 (see
        :meth:`ServiceStore.seal_legacy_text`); once per node, until it succeeded."""
        if self._legacy_sealed:
            return
        count = await self.store.seal_legacy_text()
        self._legacy_sealed = True
        if count:
            log.info("sealed %d service-desk texts stored in plaintext before encryption at rest", count)

    def on_broadcast(self, signal: Signal) -> None:
        """An RM's availability changed on some node (or on this one, at once)."""
        if isinstance(signal, RmStatusSignal):
            if signal.status == "online":
                self.unavailable_rms.discard(signal.user_id)
            else:
                self.unavailable_rms.add(signal.user_id)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a reaction in the background; the node's stop cancels what is still running."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("service desk task failed", exc_info=task.exception())

    async def serialised(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        """One conversation's reactions run one at a time on this node, in commit order."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                await job()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


# cached sessions the periodic re-check compares with storage per tick (one query)
SESSION_RECHECK_BATCH = 5_000
# the pause before a PrincipalSignal whose publish failed is published again
REPUBLISH_SECONDS = 1.0


class Hub:
    """See the module docstring. Build one with :func:`bankhub.node.build_hub`."""

    def __init__(
        self,
        settings: Settings,
        *,
        commit: Flush,
        jobs: Sequence[Job] = (),
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
        self.outbox = Outbox(self.db, self.broker)
        self.users = UserStore(self.db)
        self.sessions = SessionStore(self.db)
        self.audit = AuditStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.groups = GroupStore(self.db)
        self.messages = MessageStore(self.db, self.keyring, codec)
        # recall and edit: the replaced bodies (compliance only) and the target rows' updates
        self.revisions = RevisionStore(self.messages, self.keyring)
        # the hub's Ed25519 key: signs cards at commit and notices at publication
        self.signing = SigningKeyStore(self.db, self.keyring)
        self.messages.signer = self.signing
        # passed limits (tests) win; a node takes them from its settings
        self.session_limits = session_limits or settings.session_limits()
        # contacts (friends), requests, blocks and invite codes: storage/contacts.py
        self.contacts = ContactStore(self.db, max_contacts=settings.contacts_max_contacts)
        self.accounts = AccountStore(self.db)
        # information barriers: segments, members, policies (storage/barriers.py)
        self.barriers = BarrierStore(self.db)
        self.fanout = NoticeFanout(self.accounts.events)
        self.registry = ConnectionRegistry(self.broker, self._catch_up, self.fanout)
        # verified sessions, so a reconnect authenticates without Postgres; every node drops a
        # user's entries on their PrincipalSignal, and everything when the broker link drops
        self.session_cache: SessionCache[Session] = SessionCache(settings.session_cache_size, settings.session_cache_seconds)
        self.registry.broadcast_handlers.append(self._on_principal_signal)
        self.broker.on_lost = self.session_cache.flush
        # a PrincipalSignal whose publish failed is published again until no node can still hold
        # a session cached before it (session_cache_seconds)
        self.outbox.on_publish_failed = self._republish_principals
        self._republishing: set[asyncio.Task[None]] = set()
        # relationship managers and the service desk: routing, bot, auto-replies, live statuses
        self.desk = DeskState(self.db, self.keyring)
        self.registry.broadcast_handlers.append(self.desk.on_broadcast)
        # transactional alerts: calling systems, inboxes, delivery to sockets, the fallback channel
        self.alerting = AlertRuntime(self.db, self.keyring, settings)
        self.registry.alerts = self.alerting.delivery
        # pictures and voice: the media rows, the blob store, the signed-URL keys
        self.media = MediaRuntime(self.db, self.keyring, settings)
        # read-receipt and presence privacy, who is online, presence watches, the typing gate
        self.privacy = PrivacyStore(self.db)
        self.presence = PresenceRuntime(
            settings,
            self.broker,
            self.outbox,
            self.privacy,
            RedisDirectory(settings.redis_url, settings.node_name, settings.presence_node_ttl_seconds)
            if settings.redis_url
            else LocalDirectory(self.registry.by_user.__contains__),
        )
        self.presence.contacts = lambda: self.contacts
        self.registry.presence_handler = self.presence.on_signal
        # the embeddable service widget: partners, visitors, token nonces (docs/widget.md)
        self.widget = WidgetStore(self.db)
        # data-loss prevention: the compliance HMAC key of masked values' fingerprints (storage/dlp.py)
        self.dlp = DlpKeyStore(self.db, self.keyring)
        # eDiscovery exports: the requests, and the builds this node runs in the background
        self.exports = ExportStore(self.db)
        # supervision: the compiled rules (reloaded when their version moves) and the flags
        self.supervision = SupervisionStore(self.db, settings.supervision_reload_seconds, self.keyring)
        # retention: the purge runs this node started over HTTP, running in the background
        self.purges = Tasks()
        self.committer: Batcher[Pending, Appended] = Batcher(
            # one span per batch, linked to each send's (a no-op while tracing is off)
            lambda batch: tracing.within("messages.commit", commit(self, batch), (p.trace for p in batch), messages=len(batch)),
            max_batch=settings.commit_batch_max,
            writers=settings.commit_writers,
            shard=lambda p: p.new.conversation_id,
        )
        self.limiter = limiter or make_limiter(settings.redis_url)
        self.draining = False
        self._jobs = list(jobs)
        self._started = False
        self._loops: list[asyncio.Task[None]] = []
        self._metrics: object = None  # this node's handle in bankhub.metrics while it runs
        self.trace_handle: object = None  # bankhub.tracing.setup's handle (build_hub sets it): released by stop

    def transaction(
        self, name: str, *, isolation: Isolation = "read_committed", shared_locks: Sequence[int] = ()
    ) -> AbstractAsyncContextManager[Transaction]:
        """A named transaction whose emitted signals are published after it commits
        (:class:`~bankhub.outbox.Outbox`); ``shared_locks`` are advisory locks taken shared
        with its ``BEGIN`` (:meth:`~bankhub.storage.db.Database.transaction`)."""
        return self.outbox.transaction(name, isolation=isolation, shared_locks=shared_locks)

    async def start(self) -> None:
        await self.db.open()
        await self.broker.start(self.registry.on_signal, self._on_resync)
        await self.broker.subscribe(BROADCAST_CHANNEL)
        self.committer.start()
        await self.desk.start()
        await self.alerting.start()
        await self.presence.start()
        try:
            await self.signing.ready()
        except Exception:
            log.warning("signing key not loaded at start; cards and notices load it when they need it")
        jobs = [
            # the safety net behind revocation signals keeps running while the node drains
            Job("session-recheck", self.settings.session_recheck_seconds, Hub.recheck_sessions, while_draining=True),
            Job("notice-stats", self.settings.notice_stats_seconds, Hub.flush_notice_stats),
            # presence: the node's liveness mark in the broker and the batched last-seen writes
            Job(
                "presence",
                min(self.settings.presence_node_ttl_seconds / 3, self.settings.presence_last_seen_flush_seconds),
                lambda hub: hub.presence.tick(),
                while_draining=True,
            ),
            *self._jobs,
        ]
        self._loops = [asyncio.create_task(self._every(job), name=job.name) for job in jobs]
        self._started = True
        # its connections and queues sampled, the tallies flushed once a second
        self._metrics = metrics.attach(self.settings.node_name, self.registry, db=self.db, committer=self.committer)
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
        metrics.detach(self._metrics)
        for task in self._loops:
            task.cancel()
        # a sweep half-way through routing finishes unwinding before the drain starts
        await asyncio.gather(*self._loops, return_exceptions=True)
        # export builds running here are cancelled and record it (`interrupted`) while the pool is open
        await self.exports.stop()
        # so are purge runs started here (`interrupted`, resumable from their cursor)
        running = self.purges.running()
        self.purges.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.desk.stop()
        await self.supervision.close()  # a rules refresh in flight ends before the pool closes
        await self.drain()
        await self.alerting.stop()
        await self.media.close()
        await self.presence.stop()
        self.fanout.close()
        try:
            await self.flush_notice_stats()
        except Exception:
            log.warning("online delivery counts not saved at shutdown", exc_info=True)
        for task in list(self._republishing):
            task.cancel()
        await asyncio.gather(*self._republishing, return_exceptions=True)
        await self.broker.close()
        await self.limiter.close()
        await self.db.close()
        # the spans still batched go out now, not at interpreter exit (a worker killed at the drain deadline has none)
        handle, self.trace_handle = self.trace_handle, None
        await tracing.release(handle)

    def _on_principal_signal(self, signal: Signal) -> None:
        if isinstance(signal, PrincipalSignal):
            self.session_cache.forget_user(signal.user_id)

    def _republish_principals(self, signals: Sequence[Signal]) -> None:
        lost = [s for s in signals if isinstance(s, PrincipalSignal)]
        if lost and self.session_cache.enabled and self._started:
            task = asyncio.create_task(self._republish(lost), name="principal-republish")
            self._republishing.add(task)
            task.add_done_callback(self._republishing.discard)

    async def _republish(self, lost: list[PrincipalSignal]) -> None:
        """Every :data:`REPUBLISH_SECONDS` until published, for at most ``session_cache_seconds``:
        after that every entry cached before the change has expired on every node anyway."""
        await self.outbox.republish(
            [(BROADCAST_CHANNEL, s) for s in lost], every=REPUBLISH_SECONDS, within=self.settings.session_cache_seconds
        )

    def _on_resync(self) -> None:
        """The broker link is back: revocations may have been missed meanwhile."""
        self.session_cache.flush()
        self.registry.on_resync()

    async def recheck_sessions(self) -> int:
        """Close sockets whose session was revoked, expired or whose user was disabled, then
        re-check a batch of the cached sessions (:meth:`recheck_cached_sessions`).

        The safety net behind revocation signals: one query for all of this node's
        connections, one for the cached batch. Returns how many connections were closed.
        """
        conns = self.registry.connections()
        dead = await self.sessions.inactive_among(sorted({c.session.id for c in conns}))
        closing = [c for c in conns if c.session.id in dead]
        for conn in closing:
            self.session_cache.forget_user(conn.user.id)  # e.g. a user disabled in the database
            conn.close(CloseCode.POLICY_VIOLATION, "session is no longer valid")
        await self.recheck_cached_sessions()
        return len(closing)

    async def recheck_cached_sessions(self) -> int:
        """Compare up to :data:`SESSION_RECHECK_BATCH` cached sessions (the least recently
        checked) with storage in one query, and forget the users of those that ended or whose
        principal changed (a user disabled, a role, org, RM or follows changed outside the
        hub, sessions revoked by the CLI). Returns how many users were forgotten."""
        cache = self.session_cache
        due = cache.due(SESSION_RECHECK_BATCH)
        if not due:
            return 0
        fresh = await self.sessions.active_by_ids(sorted({p.id for _, p in due}))
        stale: set[str] = set()
        for key, principal in due:
            if fresh.get(principal.id) == principal:
                cache.confirm(key, principal)
            else:
                stale.add(principal.user.id)
        for user_id in stale:
            cache.forget_user(user_id)
        return len(stale)

    async def flush_notice_stats(self) -> None:
        """Add this node's online notice deliveries to storage: one statement per flush."""
        counts = self.fanout.take_delivered()
        try:
            await self.accounts.add_delivered(counts)
        except Exception:
            self.fanout.give_back(counts)  # kept for the next flush
            raise

    async def _every(self, job: Job) -> None:
        wait = job.seconds if job.first_after is None else job.first_after
        while True:
            await asyncio.sleep(wait)
            wait = job.seconds
            if self.draining and not job.while_draining:
                return
            try:
                await job.run(self)
            except Exception:
                log.warning("%s failed; retrying in %.1f s", job.name, job.seconds, exc_info=True)

    async def _catch_up(self, user_id: str, cursors: dict[str, int]) -> list[Message]:
        synced = await self.messages.since(user_id, cursors, self.session_limits.max_sync_limit)
        return [m for c in synced.conversations if c.conversation_id in cursors for m in c.messages]

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Browsers send an Origin: allow the hub's own origin and the configured allowlist."""
        origin = origin.rstrip("/")
        if origin in self.settings.allowed_origins:
            return True
        return urlsplit(origin).netloc == host and bool(host)
