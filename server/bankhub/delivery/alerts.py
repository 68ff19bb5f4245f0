"""Alerts on this node's connections: once each, in inbox-seq order, gaps filled from Postgres.

:class:`AlertDelivery` is called by the registry for every alert signal on a user's channel.
Each connection has an inbox position (the last seq handed to it): unknown until the
client syncs its inbox or the first alert arrives, then advanced by every push. A signal
for the next seq is pushed at once; one already held is dropped; one beyond the next
means signals were lost or reordered, and the missing seqs are read from storage first
(signals arriving meanwhile wait, as :class:`~bankhub.delivery.connection.Connection` does
for messages). Expired and replaced alerts in a gap are skipped, not pushed: each
connection's inbox is a sparse :class:`~bankhub.protocol.streams.StreamFollower` (a
fetched range is complete), filled by :func:`~bankhub.delivery.following.fill`.

Pushing an alert to an open socket (or returning it in ``inbox_synced``) counts as
delivered online: the ids are collected and written in one statement per flush, which
is what tells the fallback worker not to send the alert by SMS.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

from ..metrics import TALLY
from ..protocol.frames import Alert, AlertEvent, encode
from ..protocol.streams import Decision, Fetch, StreamFollower
from ..signals import AlertSignal, InboxSignal
from .connection import Connection
from .following import fill

__all__ = ["AlertDelivery"]

log = logging.getLogger("bankhub.delivery.alerts")

FetchRange = Callable[[str, int, int | None], Awaitable[list[Alert]]]
"""``(user_id, after, upto)``: deliverable alerts with ``after < seq <= upto`` (no upper bound: None)."""


def _alert_seq(alert: Alert) -> int:
    return alert.seq


class AlertDelivery:
    def __init__(self, fetch: FetchRange) -> None:
        self._fetch = fetch
        # per connection, its inbox stream (one key: the user's id); gone with the connection
        self._inboxes: weakref.WeakKeyDictionary[Connection, StreamFollower[Alert]] = weakref.WeakKeyDictionary()
        self._delivered: set[str] = set()

    def _inbox(self, conn: Connection) -> StreamFollower[Alert]:
        inbox = self._inboxes.get(conn)
        if inbox is None:
            inbox = self._inboxes[conn] = StreamFollower(_alert_seq, gap_free=False)
        return inbox

    def held(self, conn: Connection) -> int | None:
        """The last inbox seq handed to ``conn`` (None: not known yet)."""
        inbox = self._inboxes.get(conn)
        return None if inbox is None else inbox.cursors.get(conn.user.id)

    # --- broker callbacks (plain functions: must not block) ------------------------------

    def on_signal(self, conns: Iterable[Connection], signal: AlertSignal | InboxSignal) -> None:
        if isinstance(signal, InboxSignal):
            text = encode(signal.update).decode()
            for conn in conns:
                conn.push(text)
            return
        alert = signal.alert
        text = encode(AlertEvent(alert=alert)).decode()
        for conn in conns:
            inbox = self._inbox(conn)
            decision = inbox.offer(conn.user.id, alert.seq, alert)
            if decision is Decision.DELIVER:
                self._push(conn, alert, text)
            elif isinstance(decision, Fetch):
                self._fill(conn, inbox, decision)
            # else: held behind a fill in flight, or already held (a duplicate or a late signal)

    def resync(self, conns: Iterable[Connection]) -> None:
        """After a broker outage: each connection with a known position reads what it missed."""
        for conn in conns:
            inbox = self._inboxes.get(conn)
            if inbox is not None:
                for fetch in inbox.resync():
                    self._fill(conn, inbox, fetch)

    # --- positions ---------------------------------------------------------------------

    def synced(self, conn: Connection, cursor: int, alerts: Iterable[Alert]) -> None:
        """The client got the inbox up to ``cursor`` in ``inbox_synced``: its position, and deliveries."""
        self._inbox(conn).cursors.set(conn.user.id, cursor)
        for alert in alerts:
            self._delivered.add(alert.alert_id)

    def _push(self, conn: Connection, alert: Alert, text: str | None) -> None:
        if conn.close_code is not None:
            return
        conn.push(text if text is not None else encode(AlertEvent(alert=alert)).decode())
        TALLY.frames_out["alert"] += 1  # metrics
        self._delivered.add(alert.alert_id)

    def _fill(self, conn: Connection, inbox: StreamFollower[Alert], fetch: Fetch) -> None:
        async def read(f: Fetch) -> list[Alert]:
            return await self._fetch(f.key, f.after, f.upto)

        def hand_over(alerts: list[Alert]) -> None:
            for alert in alerts:
                self._push(conn, alert, None)

        def failed(f: Fetch) -> None:
            log.warning("alert gap fill failed for connection %s (attempt %d); retrying", conn.id, f.attempt + 1, exc_info=True)

        conn._spawn(fill(inbox, fetch, read, hand_over, failed, lambda: conn.close_code is not None))

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
