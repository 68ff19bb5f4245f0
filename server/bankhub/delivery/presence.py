"""Presence and typing on one node: who is online, who watches whom, the typing gate.

Whether a user is online is "has an open connection on some node". A node knows its own
connections (the registry); the :class:`Directory` tells the nodes apart:

* :class:`LocalDirectory` (no Redis: one node) reads the registry.
* :class:`RedisDirectory` keeps, per user, a hash of the node incarnations holding one
  of their connections (written when the user's first connection on a node opens and
  its last one closes, never per heartbeat), and one liveness key per node, refreshed by
  the node every third of ``presence_node_ttl_seconds`` (one write per node, not per
  connection): a crashed node's users read as offline once its key lapses.

Changes travel lazily. A connection that sends ``watch_presence`` is recorded here (a
map that exists only for watching connections: the others cost nothing) and the node
subscribes the presence channel of each watched user. When a user's presence changes,
their node publishes on that channel; nobody subscribes it unless someone watches. The
receiving node checks the relationship again on current rows (a block, a removed contact
or an RM's change of role since the watch takes effect at once) and each watcher's view (last-seen privacy) before pushing
``presence``. Transitions are queued and handled by one task per node, so a connection
adds no task of its own. Last-seen times are written to Postgres in batches
(``presence_last_seen_flush_seconds``), after a user's last connection closed.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .. import policy
from ..broker import Broker
from ..metrics import TALLY
from ..outbox import Outbox
from ..models import User
from ..protocol.frames import PresenceEvent, PresenceInfo, encode
from ..protocol.liveness import TypingGate
from ..settings import Settings
from ..signals import PresenceSignal, Signal, decode_signal
from ..storage.privacy import PrivacyStore

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "PRESENCE_PREFIX",
    "presence_channel",
    "ContactsView",
    "Directory",
    "LocalDirectory",
    "RedisDirectory",
    "PresenceRuntime",
]

log = logging.getLogger("bankhub.presence")

PRESENCE_PREFIX = "bh:p:"


def presence_channel(user_id: str) -> str:
    """The channel a user's presence changes are published on (only watchers' nodes subscribe)."""
    return PRESENCE_PREFIX + user_id


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


class ContactsView(Protocol):
    """What presence needs of the contacts store (``hub.contacts``)."""

    async def contact_ids(self, user_id: str) -> list[str]: ...

    async def blocked_either_way(self, a_id: str, b_id: str) -> bool: ...


# --- where users are online ------------------------------------------------------------


class Directory(abc.ABC):
    """Which users hold a connection on some node."""

    @abc.abstractmethod
    async def arrived(self, user_ids: Sequence[str]) -> set[str]:
        """These users' first connection on this node opened; returns those who were
        offline on every other node (their presence changed)."""

    @abc.abstractmethod
    async def left(self, user_ids: Sequence[str]) -> set[str]:
        """These users' last connection on this node closed; returns those now offline
        everywhere."""

    @abc.abstractmethod
    async def online(self, user_ids: Sequence[str]) -> set[str]:
        """Those of ``user_ids`` with a connection on some node."""

    async def refresh(self) -> None:
        """Renew this node's liveness mark (a periodic job)."""

    async def close(self) -> None:
        """Release connections; forget this node's users."""


class LocalDirectory(Directory):
    """One node: its registry is the whole truth."""

    def __init__(self, is_local: Callable[[str], bool]) -> None:
        self._is_local = is_local

    async def arrived(self, user_ids: Sequence[str]) -> set[str]:
        return set(user_ids)

    async def left(self, user_ids: Sequence[str]) -> set[str]:
        return {u for u in user_ids if not self._is_local(u)}

    async def online(self, user_ids: Sequence[str]) -> set[str]:
        return {u for u in user_ids if self._is_local(u)}


class RedisDirectory(Directory):
    """Users' nodes in Redis/Valkey: ``bh:pr:u:<user>`` is a hash of node incarnations,
    ``bh:pr:n:<incarnation>`` a node's liveness key (see the module docstring)."""

    USER_KEY_TTL = 2 * 86400  # longer than any session may last (its absolute lifetime)

    def __init__(self, url: str, node_name: str, ttl: float, *, timeout: float = 1.0) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2)
        # a restarted node is a new incarnation: fields of the old one lapse with its key
        self.incarnation = f"{node_name}:{uuid.uuid4().hex[:12]}"
        self._ttl_ms = int(ttl * 1000)

    @staticmethod
    def _user(uid: str) -> str:
        return "bh:pr:u:" + uid

    @staticmethod
    def _node(incarnation: str) -> str:
        return "bh:pr:n:" + incarnation

    async def refresh(self) -> None:
        await self._redis.set(self._node(self.incarnation), b"1", px=self._ttl_ms)

    async def _live_others(self, fields_per_user: Sequence[Sequence[bytes]]) -> list[set[str]]:
        """Per user, the other live incarnations among its fields (dead ones are removed)."""
        names = sorted({f.decode() for fields in fields_per_user for f in fields} - {self.incarnation})
        alive: set[str] = set()
        if names:
            flags = await self._redis.mget([self._node(n) for n in names])
            alive = {n for n, flag in zip(names, flags, strict=True) if flag is not None}
        return [{f.decode() for f in fields} & alive for fields in fields_per_user]

    async def arrived(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hkeys(self._user(uid))
                pipe.hset(self._user(uid), self.incarnation, b"1")
                pipe.expire(self._user(uid), self.USER_KEY_TTL)
            replies = await pipe.execute()
        before = [replies[i * 3] for i in range(len(user_ids))]
        others = await self._live_others(before)
        return {uid for uid, live in zip(user_ids, others, strict=True) if not live}

    async def left(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hdel(self._user(uid), self.incarnation)
                pipe.hkeys(self._user(uid))
            replies = await pipe.execute()
        remaining = [replies[i * 2 + 1] for i in range(len(user_ids))]
        others = await self._live_others(remaining)
        return {uid for uid, live in zip(user_ids, others, strict=True) if not live}

    async def online(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hkeys(self._user(uid))
            fields = await pipe.execute()
        mine = [self.incarnation.encode() in f for f in fields]
        others = await self._live_others(fields)
        return {uid for uid, here, live in zip(user_ids, mine, others, strict=True) if here or live}

    async def close(self) -> None:
        try:
            await self._redis.delete(self._node(self.incarnation))
        except Exception:
            log.debug("presence liveness key not removed", exc_info=True)
        await self._redis.aclose()


# --- the node's runtime -------------------------------------------------------------------


class PresenceRuntime:
    """``hub.presence``: the directory, the watches of this node's connections, the typing
    gate and the pending last-seen writes. See the module docstring."""

    def __init__(self, settings: Settings, broker: Broker, outbox: Outbox, privacy: PrivacyStore, directory: Directory) -> None:
        self.settings = settings
        self.broker = broker  # subscriptions of presence channels; changes leave through the outbox
        self.outbox = outbox
        self.privacy = privacy
        self.directory = directory
        self.contacts: Callable[[], ContactsView | None] = lambda: None  # set by the hub
        self.typing = TypingGate(
            interval=settings.typing_interval_seconds,
            ttl=max(settings.typing_ttl_seconds, settings.typing_interval_seconds),
            max_tracked=settings.typing_max_tracked,
        )
        # watches: only watching connections appear here
        self._by_target: dict[str, set[Connection]] = {}
        self._by_conn: dict[Connection, frozenset[str]] = {}
        # local transitions not yet handled (latest wins) and last-seen times not yet written
        self._changes: dict[str, bool] = {}
        self._last_seen: dict[str, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.directory.refresh()
        except Exception:
            log.warning("presence directory unavailable at start; retried by the node's job", exc_info=True)
        self._worker = asyncio.create_task(self._work(), name="presence")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        now = dt.datetime.now(dt.timezone.utc)
        for uid, online in self._changes.items():
            if not online:
                self._last_seen[uid] = now
        self._changes.clear()
        try:
            await self.flush_last_seen()
        except Exception:
            log.warning("last-seen times not saved at shutdown", exc_info=True)
        await self.directory.close()

    async def tick(self) -> None:
        """The node's periodic presence job: renew the liveness mark, write last-seen times."""
        await self.directory.refresh()
        await self.flush_last_seen()

    async def flush_last_seen(self) -> None:
        seen, self._last_seen = self._last_seen, {}
        try:
            await self.privacy.write_last_seen(seen)
        except Exception:
            for uid, at in seen.items():  # kept for the next flush
                self._last_seen.setdefault(uid, at)
            raise

    # --- connections ------------------------------------------------------------------

    def arrived(self, user_id: str) -> None:
        """The user's first connection on this node opened (no await: queued for the worker)."""
        self._queue(user_id, True)

    def left(self, conn: Connection, last: bool) -> None:
        """A connection closed (``last``: the user's last on this node): drop its watches."""
        self.unwatch(conn)
        if last:
            self._queue(conn.user.id, False)

    def _queue(self, user_id: str, online: bool) -> None:
        # the latest state wins: a reconnect within one turn of the worker is announced as
        # online again (harmless), a connect-and-close as offline
        self._changes[user_id] = online
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            changes, self._changes = self._changes, {}
            try:
                await self._apply(changes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("presence changes of %d users not announced", len(changes), exc_info=True)
            await asyncio.sleep(0.05)  # coalesce a burst of connects into one round trip

    async def _apply(self, changes: dict[str, bool]) -> None:
        came = [u for u, on in changes.items() if on]
        went = [u for u, on in changes.items() if not on]
        now = dt.datetime.now(dt.timezone.utc)
        online = await self.directory.arrived(came)
        offline = await self.directory.left(went)
        for uid in offline:
            self._last_seen[uid] = now
        if len(self._last_seen) > 50_000:  # bounded between flushes, whatever the churn
            await self.flush_last_seen()
        items: list[tuple[str, Signal]] = [(presence_channel(u), PresenceSignal(user_id=u, online=True)) for u in online]
        items += [(presence_channel(u), PresenceSignal(user_id=u, online=False, last_seen=_ms(now))) for u in offline]
        await self.outbox.publish(items, what="presence changes")

    # --- watching -----------------------------------------------------------------------

    async def watch(self, conn: Connection, user_ids: Sequence[str]) -> list[PresenceInfo]:
        """Replace ``conn``'s watch list with ``user_ids``; their presence as ``conn`` sees it."""
        wanted = list(dict.fromkeys(user_ids))
        infos = await self.query(conn.user, wanted)
        targets = frozenset(i.user_id for i in infos if i.online is not None)
        await self._set_watch(conn, targets)
        return infos

    async def _set_watch(self, conn: Connection, targets: frozenset[str]) -> None:
        old = self._by_conn.get(conn, frozenset())
        for uid in old - targets:
            await self._drop(conn, uid)
        kept = set(targets & old)
        self._by_conn[conn] = frozenset(kept)
        for uid in targets - old:
            if conn.close_code is not None:
                break
            watchers = self._by_target.get(uid)
            if watchers is None:
                if len(self._by_target) >= self.settings.presence_max_watched:
                    continue  # answered, but no live changes: the node's bound
                try:
                    await self.broker.subscribe(presence_channel(uid))
                except Exception:
                    log.warning("presence channel not subscribed; no live presence for it", exc_info=True)
                    continue
                watchers = self._by_target.setdefault(uid, set())
            if len(watchers) < self.settings.presence_max_watchers:
                watchers.add(conn)
                kept.add(uid)
                # recorded at once: a cancelled watch leaves nothing unaccounted for
                self._by_conn[conn] = frozenset(kept)
        if not kept or conn.close_code is not None:
            self.unwatch(conn)

    def unwatch(self, conn: Connection) -> None:
        """Forget every watch of ``conn`` (its close); O(1) for a connection that never watched."""
        targets = self._by_conn.pop(conn, None)
        if not targets:
            return
        for uid in targets:
            watchers = self._by_target.get(uid)
            if watchers is None:
                continue
            watchers.discard(conn)
            if not watchers:
                del self._by_target[uid]
                self._spawn(self._unsubscribe(uid))

    async def _drop(self, conn: Connection, uid: str) -> None:
        watchers = self._by_target.get(uid)
        if watchers is None:
            return
        watchers.discard(conn)
        if not watchers:
            del self._by_target[uid]
            await self._unsubscribe(uid)

    async def _unsubscribe(self, uid: str) -> None:
        if uid in self._by_target:  # watched again meanwhile
            return
        try:
            await self.broker.unsubscribe(presence_channel(uid))
        except Exception:
            log.debug("presence channel not unsubscribed", exc_info=True)

    def watched(self) -> int:
        """How many distinct users this node's connections watch."""
        return len(self._by_target)

    # --- what a viewer may see --------------------------------------------------------------

    async def query(self, viewer: User, user_ids: Sequence[str]) -> list[PresenceInfo]:
        """Presence of ``user_ids`` as ``viewer`` may see it, in the order asked (an id not
        related to the viewer, blocked or unknown: ``online`` null)."""
        wanted = list(dict.fromkeys(user_ids))
        valid = [u for u in wanted if _is_uuid(u) and u != viewer.id]
        contacts = self.contacts()
        contact_set = set(await contacts.contact_ids(viewer.id)) if contacts is not None and valid else set()
        # current rows of the viewer and the targets (roles and RM pointers as they are now)
        facts = await self.privacy.presence_facts(viewer.id, [*valid, viewer.id]) if valid else {}
        me = facts.get(viewer.id)
        current = me.user if me is not None else viewer
        viewer_setting = me.last_seen if me is not None else "everyone"
        allowed: dict[str, bool] = {}
        for uid in valid:
            fact = facts.get(uid)
            contact = uid in contact_set
            target = fact.user if fact is not None else None
            blocked = fact is not None and fact.blocked
            if policy.may_see_presence(current, target, contact=contact, blocked=blocked).allowed:
                allowed[uid] = contact
        online = await self.directory.online(list(allowed))
        out: list[PresenceInfo] = []
        for uid in wanted:
            if uid not in allowed:
                out.append(PresenceInfo(user_id=uid))
                continue
            is_on = uid in online
            setting, seen_at = facts[uid].last_seen, facts[uid].last_seen_at
            seen = self._last_seen.get(uid) or seen_at
            show = (
                not is_on
                and seen is not None
                and policy.last_seen_visible(setting, contact=allowed[uid], viewer_setting=viewer_setting)
            )
            out.append(PresenceInfo(user_id=uid, online=is_on, last_seen=_ms(seen) if show and seen else None))
        return out

    # --- broker -------------------------------------------------------------------------

    def on_signal(self, channel: str, payload: bytes) -> None:
        """A presence change on a watched user's channel (a plain broker callback)."""
        uid = channel[len(PRESENCE_PREFIX) :]
        watchers = self._by_target.get(uid)
        if not watchers:
            return
        try:
            change = decode_signal(payload)
        except Exception:
            log.warning("undecodable presence change dropped")
            return
        if not isinstance(change, PresenceSignal) or change.user_id != uid:
            return
        self._spawn(self._deliver(change, list(watchers)))

    async def _deliver(self, change: PresenceSignal, watchers: list[Connection]) -> None:
        """Push ``presence`` to the watchers who may still see it, each with their view."""
        by_viewer: dict[str, list[Connection]] = {}
        for conn in watchers:
            by_viewer.setdefault(conn.user.id, []).append(conn)
        uid = change.user_id
        contacts = self.contacts()
        viewers = list(by_viewer)
        contact_set = set(await contacts.contact_ids(uid)) if contacts is not None else set()
        # current rows: a watcher demoted from RM since the watch no longer sees old customers
        facts = await self.privacy.presence_facts(uid, [uid, *viewers])
        if uid not in facts:
            return
        target = facts[uid].user
        setting = facts[uid].last_seen
        for vid, conns in by_viewer.items():
            fact = facts.get(vid)
            if fact is None:
                continue
            contact = vid in contact_set
            if not policy.may_see_presence(fact.user, target, contact=contact, blocked=fact.blocked).allowed:
                continue
            show = change.last_seen is not None and policy.last_seen_visible(
                setting, contact=contact, viewer_setting=fact.last_seen
            )
            text = encode(PresenceEvent(user_id=uid, online=change.online, last_seen=change.last_seen if show else None)).decode()
            TALLY.frames_out["presence"] += len(conns)  # metrics
            for conn in conns:
                conn.push(text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("presence delivery failed", exc_info=task.exception())

    def typing_now(self) -> float:
        """The typing gate's clock (monotonic seconds)."""
        return time.monotonic()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
