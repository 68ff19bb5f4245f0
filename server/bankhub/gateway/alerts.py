"""Alerts on this node's connections: once each, in inbox-seq order, gaps filled from Postgres.

:class:`AlertDelivery` is called by the registry for every alert signal on a user's channel.
Each connection has an inbox position (the last seq handed to it): unknown until the
client syncs its inbox or the first alert arrives, then advanced by every push. A signal
for the next seq is pushed at once; one already held is dropped; one beyond the next
means signals were lost or reordered, and the missing seqs are read from storage first
(signals arriving meanwhile wait, as :class:`~bankhub.gateway.connection.Connection` does
for messages). Expired and replaced alerts in a gap are skipped, not pushed.

Pushing an alert to an open socket (or returning it in ``inbox_synced``) counts as
delivered online: the ids are collected and written in one statement per flush, which
is what tells the fallback worker not to send the alert by SMS.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ..protocol.frames import Alert, AlertEvent, encode
from ..signals import AlertSignal, InboxSignal
from .connection import Connection

__all__ = ["AlertDelivery", "FILL_RETRY_MIN", "FILL_RETRY_MAX"]

log = logging.getLogger("bankhub.gateway.alerts")

FetchRange = Callable[[str, int, int | None], Awaitable[list[Alert]]]
"""``(user_id, after, upto)``: deliverable alerts with ``after < seq <= upto`` (no upper bound: None)."""

FILL_RETRY_MIN, FILL_RETRY_MAX = 0.05, 1.0


@dataclass(eq=False)
class _Position:
    held: int | None = None
    filling: bool = False
    waiting: list[Alert] = field(default_factory=list)


class AlertDelivery:
    def __init__(self, fetch: FetchRange) -> None:
        self._fetch = fetch
        self._pos: weakref.WeakKeyDictionary[Connection, _Position] = weakref.WeakKeyDictionary()
        self._delivered: set[str] = set()

    def _position(self, conn: Connection) -> _Position:
        pos = self._pos.get(conn)
        if pos is None:
            pos = self._pos[conn] = _Position()
        return pos

    def held(self, conn: Connection) -> int | None:
        """The last inbox seq handed to ``conn`` (None: not known yet)."""
        pos = self._pos.get(conn)
        return None if pos is None else pos.held

    # --- broker callbacks (plain functions: must not block) ------------------------------

    def on_signal(self, conns: Iterable[Connection], signal: AlertSignal | InboxSignal) -> None:
        if isinstance(signal, InboxSignal):
            text = encode(signal.update).decode()
            for conn in conns:
                conn.push(text)
            return
        text = encode(AlertEvent(alert=signal.alert)).decode()
        for conn in conns:
            self._offer(conn, self._position(conn), signal.alert, text)

    def resync(self, conns: Iterable[Connection]) -> None:
        """After a broker outage: each connection with a known position reads what it missed."""
        for conn in conns:
            pos = self._pos.get(conn)
            if pos is not None and pos.held is not None and not pos.filling:
                pos.filling = True
                conn._spawn(self._fill(conn, pos, pos.held, None))

    # --- positions ---------------------------------------------------------------------

    def synced(self, conn: Connection, cursor: int, alerts: Iterable[Alert]) -> None:
        """The client got the inbox up to ``cursor`` in ``inbox_synced``: its position, and deliveries."""
        pos = self._position(conn)
        if pos.held is None or cursor > pos.held:
            pos.held = cursor
        for alert in alerts:
            self._delivered.add(alert.alert_id)

    def _offer(self, conn: Connection, pos: _Position, alert: Alert, text: str | None) -> None:
        if pos.filling:
            pos.waiting.append(alert)
            return
        if pos.held is None or alert.seq == pos.held + 1:
            pos.held = alert.seq
            self._push(conn, alert, text)
        elif alert.seq > pos.held + 1:
            pos.filling = True
            pos.waiting.append(alert)
            conn._spawn(self._fill(conn, pos, pos.held, alert.seq))
        # else: already held (a duplicate or a late signal): drop it

    def _push(self, conn: Connection, alert: Alert, text: str | None) -> None:
        if conn.close_code is not None:
            return
        conn.push(text if text is not None else encode(AlertEvent(alert=alert)).decode())
        self._delivered.add(alert.alert_id)

    async def _fill(self, conn: Connection, pos: _Position, held: int, upto: int | None) -> None:
        attempt = 0
        while True:
            if conn.close_code is not None:
                return
            try:
                fetched = await self._fetch(conn.user.id, held, upto)
                break
            except Exception:
                attempt += 1
                log.warning("alert gap fill failed for connection %s (attempt %d); retrying", conn.id, attempt, exc_info=True)
                await asyncio.sleep(min(FILL_RETRY_MAX, FILL_RETRY_MIN * 2 ** (attempt - 1)))
        for alert in fetched:
            if pos.held is None or alert.seq > pos.held:
                pos.held = alert.seq
                self._push(conn, alert, None)
        if upto is not None and (pos.held is None or pos.held < upto):
            pos.held = upto  # the rest of the gap expired or was replaced: nothing to show
        waiting, pos.waiting, pos.filling = pos.waiting, [], False
        for alert in sorted(waiting, key=lambda a: a.seq):
            self._offer(conn, pos, alert, None)

    # --- delivery records ----------------------------------------------------------------

    def note_delivered(self, ids: Iterable[str]) -> None:
        """Alerts handed to a device another way (an HTTP inbox listing)."""
        self._delivered.update(ids)

    def take_delivered(self) -> list[str]:
        """The alerts delivered online since the last call (to be written to storage)."""
        taken, self._delivered = list(self._delivered), set()
        return taken

    def give_back(self, ids: Iterable[str]) -> None:
        """A write failed: keep them for the next flush."""
        self._delivered.update(ids)
