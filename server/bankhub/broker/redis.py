"""Redis / Valkey broker: nodes signal each other over pub/sub.

Contract (on top of :mod:`bankhub.broker.base`):

* Sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``) is used when the server has it
  (Redis >= 7, Valkey), detected at :meth:`RedisBroker.start` with
  ``COMMAND INFO SPUBLISH``; otherwise classic ``PUBLISH``/``SUBSCRIBE``. All nodes
  of a cluster must agree (they do when they talk to the same server).
* With a :class:`~bankhub.broker.sealing.Sealer`, every payload is sealed before it
  leaves the node and opened on receipt; payloads that fail to open are dropped
  (and logged), never handed to the handler.
* One dedicated pub/sub connection per broker, read by a single reader task that
  calls the handler synchronously, so payloads of one channel reach the handler in
  the order the server delivered them.
* :meth:`~RedisBroker.subscribe` returns once the server confirmed the subscription.
  When the broker is disconnected (or no confirmation comes within 3 s) it raises
  :class:`redis.exceptions.RedisError`, but the channel stays registered and is
  subscribed on reconnect; call ``unsubscribe`` to drop it.
* :meth:`~RedisBroker.publish` raises :class:`redis.exceptions.RedisError` (usually
  ``ConnectionError``/``TimeoutError``) within about two seconds when the server is
  unreachable. It never retries, so a signal is delivered at most once.
* When the pub/sub connection drops, stops answering PINGs, or the server drops a
  subscription by itself, the broker calls ``on_lost`` (``connected`` is False from then
  on), and the reader reconnects with capped exponential backoff (0.05 s .. 1 s),
  resubscribes every registered channel, then calls ``on_resync``.
* :meth:`~RedisBroker.start` raises if the server is unreachable (fail fast at boot);
  :meth:`~RedisBroker.close` is idempotent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..metrics import TALLY
from .base import Broker, Handler, ResyncHandler
from .sealing import Sealer, SealError

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 1.5
"""Connect and command timeout (seconds): an outage surfaces as an error, not a hang."""
CONFIRM_TIMEOUT = 3.0
"""How long to wait for the server to confirm a subscription."""
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0
"""Reconnect delays of the reader (seconds), doubling between attempts."""

_MESSAGE_TYPES = frozenset({"message", "smessage"})
_SUBSCRIBED_TYPES = frozenset({"subscribe", "ssubscribe"})
_UNSUBSCRIBED_TYPES = frozenset({"unsubscribe", "sunsubscribe"})


class RedisBroker(Broker):
    """Broker over one Redis/Valkey server. See the module docstring for the contract."""

    heartbeat: float = 5.0
    """Seconds of silence on the pub/sub connection before it is PINGed; no answer
    within another ``heartbeat`` means a dead (half-open) connection: reconnect."""

    def __init__(self, url: str, *, sealer: Sealer | None = None, sharded: bool | None = None) -> None:
        self._sealer = sealer
        self._sharded = sharded
        self._client: Redis = Redis.from_url(
            url,
            # RESP2 on purpose: with RESP3, redis-py 8 enables "maintenance
            # notifications", which disables the pool's check for connections the
            # server closed — the first publish after a server restart would fail.
            protocol=2,
            decode_responses=False,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # No retries: publish fails fast (and never duplicates) and the reader
            # runs its own reconnect loop.
            retry=Retry(NoBackoff(), 0),
        )
        self._pub_cmd = self._sub_cmd = self._unsub_cmd = ""
        self._handler: Handler | None = None
        self._on_resync: ResyncHandler | None = None
        # Channels this node wants; the source of truth for resubscribing.
        self._channels: set[str] = set()
        # Subscribe commands sent on the current connection and not yet confirmed,
        # per channel in send order (the server confirms in order). A waiter ends
        # True when confirmed, False when the connection was lost (a result, not an
        # exception: nobody may be left to retrieve it).
        self._waiters: dict[str, collections.deque[asyncio.Future[bool]]] = {}
        # The pub/sub connection, set only while connected and fully subscribed.
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return "redis"

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up and every channel is subscribed."""
        return self._pubsub is not None and not self._closed

    @property
    def sharded(self) -> bool | None:
        """Whether sharded pub/sub is in use (``None`` before :meth:`start`)."""
        return self._sharded

    async def start(self, handler: Handler, on_resync: ResyncHandler | None = None) -> None:
        """Detect sharded pub/sub, connect, and start the reader.

        Raises when the server is unreachable: a node should not boot half-wired.
        """
        if self._closed or self._reader is not None:
            raise RuntimeError("RedisBroker.start() called twice or after close()")
        self._handler, self._on_resync = handler, on_resync
        if self._sharded is None:
            self._sharded = await self._server_has_sharded_pubsub()
        if self._sharded:
            self._pub_cmd, self._sub_cmd, self._unsub_cmd = "SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE"
        else:
            self._pub_cmd, self._sub_cmd, self._unsub_cmd = "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"
        await self._connect()
        self._reader = asyncio.create_task(self._run(), name="bankhub-redis-broker-reader")

    async def close(self) -> None:
        """Cancel the reader and close all connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                # Swallow the reader's cancellation, but not our own.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        await self._drop_connection()
        await self._client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Subscribe ``channel``; returns once the server confirmed it."""
        self._check_started()
        ps = self._pubsub
        confirmed = channel in self._channels and channel not in self._waiters
        self._channels.add(channel)
        if ps is None:
            raise RedisConnectionError("broker disconnected; the channel is subscribed on reconnect")
        if confirmed:
            return
        waiter = self._expect_confirmation(channel)
        try:
            await self._send(ps, self._sub_cmd, channel)
        except BaseException:
            waiter.cancel()  # nobody will await it
            raise
        try:
            # On timeout wait_for cancels the waiter; it stays queued so the
            # confirmation that may still come pops it rather than a later one.
            confirmed = await asyncio.wait_for(waiter, CONFIRM_TIMEOUT)
        except TimeoutError:
            raise RedisTimeoutError(f"subscription to {channel} not confirmed") from None
        if not confirmed:
            raise RedisConnectionError(f"connection lost before {channel} was subscribed; retried on reconnect")

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` at once (late messages are dropped locally)."""
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        ps = self._pubsub
        if ps is None:
            return  # disconnected: the reconnect will not resubscribe it
        try:
            await self._send(ps, self._unsub_cmd, channel)
        except RedisError as exc:
            # The reconnect that _send forced leaves the channel out.
            log.debug("unsubscribe %s not sent: %s", channel, exc)

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish one payload (sealed if configured). Raises on an outage."""
        self._check_started()
        data = self._seal(channel, payload)
        # (redis-py leaves a few methods unannotated, hence the type: ignores)
        await self._client.execute_command(self._pub_cmd, channel, data)  # type: ignore[no-untyped-call]

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish several payloads in one round trip (a non-transactional pipeline)."""
        self._check_started()
        if not items:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for channel, payload in items:
                pipe.execute_command(self._pub_cmd, channel, self._seal(channel, payload))
            await pipe.execute()

    async def ping(self) -> bool:
        """True when the server answers a PING; False (never raises) otherwise."""
        if self._closed:
            return False
        try:
            return bool(await asyncio.wait_for(self._client.ping(), 2 * SOCKET_TIMEOUT))
        except (RedisError, OSError, TimeoutError):
            return False

    # -- internals ---------------------------------------------------------------

    def _check_started(self) -> None:
        if self._closed:
            raise RuntimeError("RedisBroker is closed")
        if not self._pub_cmd:
            raise RuntimeError("RedisBroker.start() has not been called")

    def _seal(self, channel: str, payload: bytes) -> bytes:
        return self._sealer.seal(channel, payload) if self._sealer is not None else payload

    async def _server_has_sharded_pubsub(self) -> bool:
        # "COMMAND INFO" as one word: redis-py splits it into two arguments but
        # then skips its COMMAND reply parser, which crashes on the nil entry an
        # unknown command gets.
        try:
            reply = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "COMMAND INFO", "SPUBLISH"
            )
        except ResponseError:
            return False
        return isinstance(reply, list) and bool(reply) and reply[0] is not None

    async def _send(self, ps: PubSub, *args: str) -> None:
        """Send a (un)subscribe on the pub/sub connection; on failure force a reconnect.

        After a failed send, redis-py may already have reconnected the PubSub
        silently, without our subscriptions. Dropping it sends the reader through
        a full reconnect, resubscribe and ``on_resync``.
        """
        try:
            await ps.execute_command(*args)
        except BaseException as exc:
            if self._pubsub is ps:
                log.warning("redis broker pub/sub send failed: %s: %s", type(exc).__name__, exc)
                await self._drop_connection()
            raise

    def _expect_confirmation(self, channel: str) -> asyncio.Future[bool]:
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, collections.deque()).append(waiter)
        return waiter

    async def _connect(self) -> None:
        """Open a pub/sub connection and subscribe every registered channel.

        Reads replies inline (the reader is not running yet, or is the caller).
        Loops because ``subscribe``/``unsubscribe`` may change the set meanwhile.
        """
        ps = self._client.pubsub()
        try:
            await ps.connect()  # type: ignore[no-untyped-call]
            on_server: set[str] = set()
            while True:
                add, drop = self._channels - on_server, on_server - self._channels
                if not add and not drop:
                    break
                if drop:
                    await ps.execute_command(self._unsub_cmd, *drop)
                    on_server -= drop
                if add:
                    waiters = [self._expect_confirmation(ch) for ch in add]
                    try:
                        await ps.execute_command(self._sub_cmd, *add)
                        async with asyncio.timeout(CONFIRM_TIMEOUT):
                            while not all(w.done() for w in waiters):
                                message = await ps.get_message(timeout=CONFIRM_TIMEOUT)
                                if message is not None:
                                    self._dispatch(message)
                    finally:
                        for w in waiters:
                            w.cancel()  # no-op once confirmed
                    on_server |= add
        except BaseException:
            self._release_waiters()
            await _aclose_quietly(ps)
            raise
        # No await since the last check: _channels is exactly what is subscribed.
        self._pubsub = ps

    async def _run(self) -> None:
        """The reader: dispatch messages; on any failure reconnect, resubscribe, resync."""
        delay = BACKOFF_MIN
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    delay = BACKOFF_MIN
                    log.info("redis broker reconnected; %d channels resubscribed", len(self._channels))
                    TALLY.broker_reconnects += 1
                    self._notify_resync()
                assert self._pubsub is not None
                await self._read(self._pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # (redis-py's exception repr hides the message: log type and text)
                if self._pubsub is not None:
                    log.warning("redis broker lost its pub/sub connection: %s: %s", type(exc).__name__, exc)
                else:
                    log.debug("redis broker reconnect failed: %s: %s", type(exc).__name__, exc)
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, ps: PubSub) -> None:
        """Dispatch messages until the connection fails (raises) or goes silent."""
        pinged = False
        while True:
            message = await ps.get_message(timeout=self.heartbeat)
            if message is not None:
                pinged = False
                self._dispatch(message)
            elif pinged:
                raise RedisConnectionError("pub/sub connection does not answer PING")
            else:
                await ps.execute_command("PING")  # the pong counts as a message
                pinged = True

    def _dispatch(self, message: dict[str, Any]) -> None:
        """Handle one pub/sub reply. Raises when the connection must be rebuilt."""
        kind = message["type"]
        if kind in _MESSAGE_TYPES:
            channel = _text(message["channel"])
            handler = self._handler
            if handler is None or channel not in self._channels:
                return  # arrived after unsubscribe
            payload: bytes = message["data"]
            if self._sealer is not None:
                try:
                    payload = self._sealer.open(channel, payload)
                except SealError:
                    log.warning("dropped a payload on %s that failed to unseal (wrong cluster key?)", channel)
                    return
            try:
                handler(channel, payload)
            except Exception:
                log.exception("broker handler failed for channel %s", channel)
        elif kind in _UNSUBSCRIBED_TYPES:
            channel = _text(message["channel"])
            # unsubscribe() forgets a channel before asking the server, so a channel
            # still wanted and not being resubscribed was dropped by the server
            # (e.g. a cluster slot moved): start over with a full resync.
            if channel in self._channels and channel not in self._waiters:
                raise RedisConnectionError(f"server dropped the subscription to {channel}")
        elif kind in _SUBSCRIBED_TYPES:
            channel = _text(message["channel"])
            queue = self._waiters.get(channel)
            if queue:
                waiter = queue.popleft()
                if not queue:
                    del self._waiters[channel]
                if not waiter.done():
                    waiter.set_result(True)
        # pongs need no action

    def _notify_resync(self) -> None:
        if self._on_resync is None:
            return
        try:
            self._on_resync()
        except Exception:
            log.exception("broker on_resync callback failed")

    def _release_waiters(self) -> None:
        """The connection is gone: no pending subscription will be confirmed on it."""
        waiters, self._waiters = self._waiters, {}
        for queue in waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_result(False)

    async def _drop_connection(self) -> None:
        """Forget the pub/sub connection (the reader then reconnects) and close it."""
        ps, self._pubsub = self._pubsub, None
        self._release_waiters()
        if ps is not None:
            if self.on_lost is not None and not self._closed:
                try:
                    self.on_lost()
                except Exception:
                    log.exception("broker on_lost callback failed")
            await _aclose_quietly(ps)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _aclose_quietly(ps: PubSub) -> None:
    try:
        await ps.aclose()  # type: ignore[no-untyped-call]
    except Exception as exc:  # the connection is already broken; nothing to save
        log.debug("closing pub/sub connection: %r", exc)
