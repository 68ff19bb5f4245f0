"""The node's connections by user, and the dispatch of broker signals to them.

The registry subscribes a user's channel when that user's first connection arrives on
this node and unsubscribes it when the last one leaves. Each received signal is decoded
once and its frame encoded and framed once (:func:`~bankhub.protocol.wire.text_frame`),
however many of the user's devices are connected here; a group message's signal, which
arrives once per member channel with the same bytes, is decoded and framed once for all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import tracing
from ..broker import BROADCAST_CHANNEL, Broker, user_channel
from ..metrics import TALLY, frame_type, observe_fanout
from ..protocol.frames import AccountReceipt, CloseCode, Message, MessageEvent, Receipt, encode
from ..protocol.wire import text_frame
from ..signals import (
    AccountReadSignal,
    AlertSignal,
    InboxSignal,
    FollowSignal,
    MessageSignal,
    AccessSignal,
    NoticeSignal,
    PushSignal,
    ReceiptSignal,
    RevokeSignal,
    Signal,
    decode_signal,
)
from .alerts import AlertDelivery
from .connection import Connection
from .notices import NoticeFanout

__all__ = ["ConnectionRegistry", "SocketCounts"]

log = logging.getLogger("bankhub.delivery")

_PREFIX = user_channel("")
_PRESENCE_PREFIX = "bh:p:"  # bankhub.delivery.presence.PRESENCE_PREFIX (which imports this module's types)


class SocketCounts:
    """Open sockets on this node per client address and per user, for the handshake caps.

    Synchronous (no await between the check and the count), so parallel handshakes
    cannot pass a cap together. An entry exists only while its count is above zero: the
    maps are bounded by the number of open sockets.
    """

    __slots__ = ("by_ip", "by_user")

    def __init__(self) -> None:
        self.by_ip: dict[str, int] = {}
        self.by_user: dict[str, int] = {}

    @staticmethod
    def _take(counts: dict[str, int], key: str, cap: int) -> bool:
        held = counts.get(key, 0)
        if held >= cap:
            return False
        counts[key] = held + 1
        return True

    @staticmethod
    def _release(counts: dict[str, int], key: str) -> None:
        held = counts.get(key, 0) - 1
        if held > 0:
            counts[key] = held
        else:
            counts.pop(key, None)

    def take_ip(self, ip: str, cap: int) -> bool:
        """Count one more socket from ``ip``; False (nothing counted) if it holds ``cap`` already."""
        return self._take(self.by_ip, ip, cap)

    def take_user(self, user_id: str, cap: int) -> bool:
        """Count one more socket of ``user_id``; False (nothing counted) if it holds ``cap`` already."""
        return self._take(self.by_user, user_id, cap)

    def release_ip(self, ip: str) -> None:
        self._release(self.by_ip, ip)

    def release_user(self, user_id: str) -> None:
        self._release(self.by_user, user_id)


class ConnectionRegistry:
    def __init__(
        self,
        broker: Broker,
        catch_up: Callable[[str, dict[str, int]], Awaitable[list[Message]]],
        fanout: NoticeFanout | None = None,
    ) -> None:
        self.broker = broker
        self._catch_up = catch_up
        self.fanout = fanout
        self.alerts: AlertDelivery | None = None  # set by the hub: alert delivery per connection
        # other listeners of the broadcast channel (RM availability, for auto-replies)
        self.broadcast_handlers: list[Callable[[Signal], None]] = []
        # presence channels (set by the hub): changes of users this node's connections watch
        self.presence_handler: Callable[[str, bytes], None] | None = None
        self.by_user: dict[str, set[Connection]] = {}
        # sockets per address and per user, including handshakes not yet registered here
        self.sockets = SocketCounts()
        self._locks: dict[str, asyncio.Lock] = {}
        # a group message arrives once per member channel with the same bytes: decode it and
        # encode its frame once, not once per member
        self._last_payload = b""
        self._last: tuple[Signal, bytes | None] | None = None  # the signal, its framed message frame
        self.open = 0  # registered connections, kept by add/remove: metrics read it each second without a scan

    def __len__(self) -> int:
        return self.open

    def connections(self) -> list[Connection]:
        return [c for conns in self.by_user.values() for c in conns]

    async def add(self, conn: Connection) -> bool:
        """Register ``conn``; returns once its user's channel is subscribed on this node.
        True when it is its user's first connection on this node."""
        uid = conn.user.id
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            conns = self.by_user.setdefault(uid, set())
            first = not conns
            conns.add(conn)
            self.open += 1
            if self.fanout is not None:
                self.fanout.add(conn)
            if first:
                try:
                    await self.broker.subscribe(user_channel(uid))
                except BaseException:
                    conns.discard(conn)
                    self.open -= 1
                    if self.fanout is not None:
                        self.fanout.remove(conn)
                    if not conns:
                        del self.by_user[uid]
                    raise
            return first

    async def remove(self, conn: Connection) -> bool:
        """Unregister ``conn``; True when it was its user's last connection on this node."""
        uid = conn.user.id
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            conns = self.by_user.get(uid)
            if conns is None or conn not in conns:
                return False
            conns.discard(conn)
            self.open -= 1
            if self.fanout is not None:
                self.fanout.remove(conn)
            if not conns:
                del self.by_user[uid]
                self._locks.pop(uid, None)
                try:
                    await self.broker.unsubscribe(user_channel(uid))
                except Exception:
                    log.debug("unsubscribe failed for %s", uid, exc_info=True)
                return True
            return False

    # --- broker callbacks (plain functions: must not block) ----------------------------

    def on_signal(self, channel: str, payload: bytes) -> None:
        if channel == BROADCAST_CHANNEL:
            self._on_broadcast(payload)
            return
        if not channel.startswith(_PREFIX):
            if self.presence_handler is not None and channel.startswith(_PRESENCE_PREFIX):
                self.presence_handler(channel, payload)
            return
        conns = self.by_user.get(channel[len(_PREFIX) :])
        if not conns:
            return
        if self._last is not None and payload == self._last_payload:
            signal, wire = self._last
        else:
            try:
                signal = decode_signal(payload)
            except Exception:
                log.warning("undecodable signal on %s dropped", channel)
                return
            # framed once: server frames are unmasked, so every receiver gets the same bytes
            wire = text_frame(encode(MessageEvent(message=signal.message))) if isinstance(signal, MessageSignal) else None
            self._last_payload, self._last = payload, (signal, wire)
            if isinstance(signal, MessageSignal):  # metrics: once per message per node, not per delivery
                observe_fanout(signal.message.ts)
        if isinstance(signal, MessageSignal):
            TALLY.messages_out += len(conns)  # metrics: one add per signal, not per delivery
            # deliver never adds or removes a connection (that is the endpoint's, after an await)
            if tracing.enabled:  # tracing: one check while off; one span per signal per node, not per recipient
                tracing.delivered(self, signal, len(conns))
            for conn in conns:
                conn.deliver(signal.message, wire, signal.origin)
        elif isinstance(signal, ReceiptSignal):
            TALLY.frames_out["receipt"] += len(conns)
            for conn in list(conns):
                mine = signal.user_id == conn.user.id
                frame = Receipt(
                    conversation_id=signal.conversation_id,
                    user_id=signal.user_id,
                    read_seq=signal.read_seq,
                    unread=signal.last_seq - signal.read_seq if mine else None,
                )
                conn.push(encode(frame).decode())
        elif isinstance(signal, RevokeSignal):
            for conn in list(conns):
                if signal.session_ids is None or conn.session.id in signal.session_ids:
                    conn.close(CloseCode.POLICY_VIOLATION, signal.reason)
        elif isinstance(signal, FollowSignal):
            if self.fanout is not None:
                for conn in list(conns):
                    self.fanout.follow(conn, signal.account_id, signal.following)
        elif isinstance(signal, AccountReadSignal):
            wire = text_frame(encode(AccountReceipt(account_id=signal.account_id, read_seq=signal.read_seq, unread=signal.unread)))
            TALLY.frames_out["account_receipt"] += len(conns)
            for conn in list(conns):
                conn.send_wire(wire)
        elif isinstance(signal, PushSignal):
            TALLY.frames_out[frame_type(signal.frame)] += len(conns)
            wire = text_frame(signal.frame.encode())
            for conn in list(conns):
                conn.send_wire(wire)
        elif isinstance(signal, AccessSignal):
            TALLY.frames_out[frame_type(signal.frame)] += len(conns)
            wire = text_frame(signal.frame.encode())
            for conn in list(conns):
                if signal.granted:
                    conn.cursors.restore(signal.conversation_id)
                else:
                    conn.cursors.revoke(signal.conversation_id)
                conn.send_wire(wire)
        elif isinstance(signal, (AlertSignal, InboxSignal)):
            if self.alerts is not None:
                self.alerts.on_signal(list(conns), signal)

    def _on_broadcast(self, payload: bytes) -> None:
        try:
            signal = decode_signal(payload)
        except Exception:
            log.warning("undecodable broadcast signal dropped")
            return
        if isinstance(signal, NoticeSignal) and self.fanout is not None:
            self.fanout.on_signal(signal)
            return
        for handler in self.broadcast_handlers:
            handler(signal)

    def on_resync(self) -> None:
        """The broker was away: every connection catches up from storage."""
        if self.fanout is not None:
            self.fanout.resync()
        if self.alerts is not None:
            self.alerts.resync(self.connections())
        for conn in self.connections():
            uid = conn.user.id
            conn.catch_up(lambda cursors, uid=uid: self._catch_up(uid, cursors))  # type: ignore[misc]

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)
