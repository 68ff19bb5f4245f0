"""Transactional alerts in the SDK: the customer's side (inbox types) and a calling system's client.

Customers receive :class:`Alert` events from :meth:`Client.events` and use the inbox
methods of :class:`~bankhub_client.Api` and :class:`~bankhub_client.Client`. Internal
systems that *send* alerts use :class:`SystemClient`, which signs every request
(:mod:`bankhub_client.signing`) and retries safely with the same ``Idempotency-Key``::

    async with SystemClient("https://hub.example", "core-banking", secret) as core:
        n = await core.send("c.li", "card.debit", {
            "amount": {"amount": "128.00", "currency": "CNY"}, "account": "6222021234567890",
            "merchant": "Coffee Lab", "time": "2026-05-01T10:15:00+08:00"})
        print(n.alert_id, n.status)              # accepted, delivered, read, ...
        print((await core.status(n.alert_id)).status)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import msgspec
from msgspec import Struct

from ._mixin import HttpMixin
from .cards import NewCard
from ._version import __version__
from .errors import ApiError
from .signing import signed_headers

__all__ = [
    "SentCard",
    "Alert",
    "InboxUpdate",
    "InboxPage",
    "AlertPreferences",
    "Notification",
    "SystemClient",
    "AlertFrame",
    "InboxSyncedFrame",
    "InboxUpdateFrame",
    "SyncInboxFrame",
    "ReadAlertsFrame",
    "InboxCursor",
    "InboxCounts",
    "AlertsApi",
]


class Alert(Struct, frozen=True):
    """An alert in my inbox, rendered by the hub in my language and time zone.

    ``seq`` is its place in my inbox (gap-free); ``replaces``: drop the alert with that id;
    ``silent``: it arrived in my quiet hours; ``expires_at``: hide it after then (ms).
    """

    alert_id: str
    seq: int
    category: str
    priority: str
    template: str
    title: str
    text: str
    ts: int
    state: str = "unread"
    expires_at: int | None = None
    collapse_key: str | None = None
    replaces: str | None = None
    silent: bool = False


class InboxUpdate(Struct, frozen=True):
    """My alerts changed state (``read`` or ``archived``), here or on another device."""

    state: str
    unread: int
    alert_ids: list[str] = []
    up_to_seq: int | None = None
    id: str | None = None


class InboxPage(Struct, frozen=True):
    alerts: list[Alert]
    has_more: bool
    unread: int
    last_seq: int


class QuietHours(Struct, frozen=True):
    start: str
    end: str


class AlertPreferences(Struct, frozen=True):
    muted: list[str]
    quiet_hours: QuietHours | None
    timezone: str
    locale: str
    categories: list[str] = []
    mutable: list[str] = []


class Notification(Struct, frozen=True):
    """An alert as its calling system sees it: where it got to (``status``)."""

    alert_id: str
    status: str
    category: str
    priority: str
    template: str
    created_at: str
    recipient: str | None = None
    expires_at: str | None = None
    expired: bool = False
    suppressed_reason: str | None = None
    delivered_at: str | None = None
    read_at: str | None = None
    superseded_by: str | None = None
    replaces: str | None = None
    silent: bool = False
    fallback: dict[str, Any] | None = None
    replayed: bool = False  # the answer to a retry: the alert was stored by an earlier attempt


# --- wire frames ----------------------------------------------------------------------


class AlertFrame(Struct, tag="alert", tag_field="type"):
    alert: Alert


class InboxSyncedFrame(Struct, tag="inbox_synced", tag_field="type"):
    id: str
    alerts: list[Alert]
    cursor: int
    last_seq: int
    unread: int
    has_more: bool


class InboxUpdateFrame(Struct, tag="inbox_update", tag_field="type"):
    state: str
    unread: int
    alert_ids: list[str]
    up_to_seq: int | None = None
    id: str | None = None


class SyncInboxFrame(Struct, tag="sync_inbox", tag_field="type"):
    id: str
    since: int
    limit: int


class ReadAlertsFrame(Struct, tag="read_alerts", tag_field="type", omit_defaults=True):
    id: str
    alert_ids: list[str] = []
    up_to_seq: int | None = None


# --- the inbox position of a WebSocket client (pure) ------------------------------------------


class InboxCursor:
    """The last inbox seq a client holds, and which alerts to yield.

    Live alerts are yielded in seq order, each once; one that skips seqs means some were
    missed (yield nothing, sync the inbox). ``inbox_synced`` answers yield what is new and
    move the cursor to their ``cursor``. Unknown cursor (None): the first alert seen sets it.
    """

    def __init__(self, cursor: int | None = None) -> None:
        self.cursor = cursor

    def offer(self, alert: Alert) -> str:
        """``"yield"``, ``"drop"`` (held already) or ``"gap"`` (sync first)."""
        if self.cursor is None or alert.seq == self.cursor + 1:
            self.cursor = alert.seq
            return "yield"
        if alert.seq <= self.cursor:
            return "drop"
        return "gap"

    def on_synced(self, cursor: int, alerts: Sequence[Alert]) -> list[Alert]:
        """The alerts of an ``inbox_synced`` answer not yielded yet; the cursor moves to ``cursor``."""
        held = -1 if self.cursor is None else self.cursor
        fresh = [a for a in sorted(alerts, key=lambda a: a.seq) if a.seq > held]
        self.cursor = max(held, cursor, *(a.seq for a in fresh)) if fresh else max(held, cursor)
        return fresh


# --- the customer's HTTP inbox --------------------------------------------------------------


class InboxCounts(Struct, frozen=True):
    unread: int
    last_seq: int


class AlertsApi(HttpMixin):
    """The inbox and preference endpoints; mixed into :class:`~bankhub_client.Api`."""

    async def inbox(self, state: str = "inbox", before_seq: int | None = None, limit: int = 50) -> InboxPage:
        """``GET /v1/inbox``: my alerts, newest first. ``state``: ``inbox`` (unread and
        read), ``unread``, ``read``, ``archived`` or ``all``. Page back with
        ``before_seq = page.alerts[-1].seq`` while ``has_more``."""
        params: dict[str, str | int] = {"state": state, "limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        page: InboxPage = self._decode(await self._request("GET", "/v1/inbox", params=params), InboxPage)
        return page

    async def unread_alerts(self) -> InboxCounts:
        """``GET /v1/inbox/unread``: my exact unread count and my inbox's last seq."""
        counts: InboxCounts = self._decode(await self._request("GET", "/v1/inbox/unread"), InboxCounts)
        return counts

    async def mark_alerts_read(self, alert_ids: Sequence[str] = (), *, up_to_seq: int | None = None) -> InboxUpdate:
        """``POST /v1/inbox/read``: mark alerts read (those listed and/or all up to a seq)."""
        return await self._mark("/v1/inbox/read", alert_ids, up_to_seq)

    async def archive_alerts(self, alert_ids: Sequence[str] = (), *, up_to_seq: int | None = None) -> InboxUpdate:
        """``POST /v1/inbox/archive``: archive alerts (they leave the default inbox view)."""
        return await self._mark("/v1/inbox/archive", alert_ids, up_to_seq)

    async def _mark(self, path: str, alert_ids: Sequence[str], up_to_seq: int | None) -> InboxUpdate:
        body: dict[str, Any] = {"alert_ids": list(alert_ids)}
        if up_to_seq is not None:
            body["up_to_seq"] = up_to_seq
        update: InboxUpdate = self._decode(await self._request("POST", path, json=body), InboxUpdate)
        return update

    async def alert_preferences(self) -> AlertPreferences:
        """``GET /v1/me/alert-preferences``."""
        prefs: AlertPreferences = self._decode(await self._request("GET", "/v1/me/alert-preferences"), AlertPreferences)
        return prefs

    async def set_alert_preferences(
        self,
        *,
        muted: Sequence[str] = (),
        quiet_hours: tuple[str, str] | None = None,
        timezone: str = "Asia/Shanghai",
        locale: str = "zh-CN",
    ) -> AlertPreferences:
        """``PUT /v1/me/alert-preferences``: replace my preferences. ``muted``: categories
        among transaction, service, marketing (security cannot be muted: 400);
        ``quiet_hours``: ``("22:00", "07:00")`` local time."""
        body: dict[str, Any] = {"muted": list(muted), "timezone": timezone, "locale": locale}
        if quiet_hours is not None:
            body["quiet_hours"] = {"start": quiet_hours[0], "end": quiet_hours[1]}
        prefs: AlertPreferences = self._decode(await self._request("PUT", "/v1/me/alert-preferences", json=body), AlertPreferences)
        return prefs


# --- a calling system -------------------------------------------------------------------


class _Envelope(Struct):
    notification: Notification


class _List(Struct):
    notifications: list[Notification]


class _Problem(Struct):
    code: str | None = None
    detail: str | None = None
    title: str | None = None
    type: str | None = None


_RETRY_STATUS = frozenset({429, 502, 503, 504})


class SystemClient:
    """Signed requests to the alert API as calling system ``system``.

    ``retries``: how often a request that failed on the network or with 429/5xx is sent
    again (signed anew, same ``Idempotency-Key``: never a second alert), after
    ``backoff``, doubling. Errors raise :class:`~bankhub_client.ApiError` with the
    problem's ``code`` (``invalid_signature``, ``card_number_detected``, ...).
    """

    def __init__(
        self,
        base_url: str,
        system: str,
        secret: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        from .state import derive_endpoints  # here: models imports this module, state imports models

        self.base_url = derive_endpoints(base_url).http_base
        self.system = system
        self._secret = secret
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, headers={"user-agent": f"bankhub-client/{__version__}"}
        )

    async def __aenter__(self) -> SystemClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, body: bytes = b"", *, idempotency_key: str | None = None) -> httpx.Response:
        """One signed request, retried as described above; returns the final response."""
        attempt = 0
        while True:
            url = self.base_url + path
            headers = signed_headers(self._secret, self.system, method, url, body, idempotency_key=idempotency_key)
            if body:
                headers["content-type"] = "application/json"
            try:
                response = await self._http.request(method, path, content=body or None, headers=headers)
            except httpx.HTTPError as exc:
                if attempt >= self.retries:
                    raise ApiError(0, "network_error", f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUS or attempt >= self.retries:
                    return response
            await asyncio.sleep(self.backoff * 2**attempt)
            attempt += 1

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                p = msgspec.json.decode(response.content, type=_Problem)
            except msgspec.DecodeError:
                p = _Problem()
            raise ApiError(response.status_code, p.code or f"http_{response.status_code}", p.detail or response.text[:300], title=p.title, type=p.type)

    async def send(
        self,
        recipient: str,
        template: str,
        variables: Mapping[str, Any] | None = None,
        *,
        priority: str | None = None,
        ttl_seconds: int | None = None,
        collapse_key: str | None = None,
        category: str | None = None,
        idempotency_key: str | None = None,
    ) -> Notification:
        """Send one alert; returns it with its status. Pass your own ``idempotency_key``
        (e.g. the transaction id) so that a retry by *your* system is recognised too."""
        item = _item(recipient, template, variables, priority, ttl_seconds, collapse_key, category)
        key = idempotency_key or str(uuid.uuid4())
        response = await self.request("POST", "/v1/notifications", msgspec.json.encode(item), idempotency_key=key)
        self._check(response)
        n = msgspec.json.decode(response.content, type=_Envelope).notification
        return msgspec.structs.replace(n, replayed=response.headers.get("idempotent-replayed") == "true")

    async def send_batch(self, notifications: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None) -> list[Notification]:
        """Send up to 100 alerts at once, all or nothing (items as :meth:`send`'s arguments)."""
        items = [
            _item(
                n["recipient"],
                n["template"],
                n.get("variables"),
                n.get("priority"),
                n.get("ttl_seconds"),
                n.get("collapse_key"),
                n.get("category"),
            )
            for n in notifications
        ]
        key = idempotency_key or str(uuid.uuid4())
        response = await self.request("POST", "/v1/notifications/batch", msgspec.json.encode({"notifications": items}), idempotency_key=key)
        self._check(response)
        replayed = response.headers.get("idempotent-replayed") == "true"
        return [msgspec.structs.replace(n, replayed=replayed) for n in msgspec.json.decode(response.content, type=_List).notifications]

    async def send_card(self, recipient: str, card: NewCard, *, idempotency_key: str | None = None) -> SentCard:
        """Send a customer a service card (``POST /v1/cards``): the hub posts it into their
        conversation with their RM and signs it. This system must be registered for the
        template's category (offer: marketing, bill_reminder: transaction, appointment:
        service). Pass your own ``idempotency_key`` so a retry is recognised (``duplicate``)."""
        body = msgspec.json.encode({"recipient": recipient, "card": card})
        response = await self.request("POST", "/v1/cards", body, idempotency_key=idempotency_key or str(uuid.uuid4()))
        self._check(response)
        return msgspec.json.decode(response.content, type=SentCard)

    async def status(self, alert_id: str) -> Notification:
        """Where an alert this system sent got to."""
        response = await self.request("GET", f"/v1/notifications/{alert_id}")
        self._check(response)
        return msgspec.json.decode(response.content, type=_Envelope).notification


class SentCard(msgspec.Struct, frozen=True):
    """A card a system sent (:meth:`SystemClient.send_card`): where it is, and whether this
    answer is a retry's (``duplicate``)."""

    conversation_id: str
    message_id: str
    seq: int
    ts: int
    duplicate: bool = False


def _item(
    recipient: str,
    template: str,
    variables: Mapping[str, Any] | None,
    priority: str | None,
    ttl_seconds: int | None,
    collapse_key: str | None,
    category: str | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"recipient": recipient, "template": template, "variables": dict(variables or {})}
    for name, value in (("priority", priority), ("ttl_seconds", ttl_seconds), ("collapse_key", collapse_key), ("category", category)):
        if value is not None:
            item[name] = value
    return item
