"""The fallback channel: alerts no device received in time go out another way (SMS, APNs, ...).

A :class:`FallbackChannel` is anything with an async ``send(message)`` that raises
:class:`ChannelError` on failure (``permanent=True`` when retrying cannot help) and an
async ``close()``. The hub ships :class:`WebhookChannel`, which POSTs each alert as JSON to
an HTTPS endpoint of the bank's SMS or push gateway; plug in another with
``BANKHUB_ALERT_CHANNEL=package.module:factory`` (called with the node's
:class:`~bankhub.settings.Settings`).

:class:`FallbackWorker` runs on every node. Each round it claims due jobs with ``FOR
UPDATE SKIP LOCKED`` (so several nodes never take the same alert), drops those that no
longer need sending (delivered online, read, replaced or expired meanwhile), sends the
rest, and records the outcome: sent, retry later (:mod:`bankhub.alerts.retry`), or the
dead-letter list an operator can replay (``bankhub alerts replay``). Delivery is
at-least-once: a node that dies after the gateway accepted an alert but before recording
it sends it again later, so each request carries the alert id as ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx
import msgspec

from ..alerts.retry import DeadLetter, RetryPolicy, next_step
from ..metrics import TALLY
from ..alerts.signing import canonical_request, signature

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage.alerts import AlertStore, FallbackJob

__all__ = [
    "FallbackMessage",
    "ChannelError",
    "FallbackChannel",
    "WebhookChannel",
    "FallbackWorker",
    "channel_from_settings",
    "WEBHOOK_SYSTEM",
]

log = logging.getLogger("bankhub.delivery.fallback")

WEBHOOK_SYSTEM = "bankhub"
"""The ``X-Bankhub-System`` the hub signs its outbound webhook requests as."""


class FallbackMessage(msgspec.Struct, omit_defaults=True):
    """What a fallback channel is given: the rendered alert and whom it is for.

    The hub holds no phone numbers or device tokens: the gateway maps ``user_id`` (or
    ``username``) to the customer's contact details.
    """

    alert_id: str
    user_id: str
    username: str
    category: str
    priority: str
    locale: str
    title: str
    text: str
    created_at: str
    attempt: int
    expires_at: str | None = None


class ChannelError(Exception):
    """A send failed; ``permanent`` when retrying cannot help (the gateway refused it)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class FallbackChannel(Protocol):
    name: str

    async def send(self, message: FallbackMessage) -> None:
        """Hand one alert over; return once the gateway accepted it, else raise :class:`ChannelError`."""
        ...

    async def close(self) -> None: ...


_encoder = msgspec.json.Encoder()
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookChannel:
    """POST each alert as JSON to ``url``; 2xx means accepted.

    408, 425, 429 and 5xx answers, timeouts and connection failures are retried; any other
    4xx is permanent (the dead-letter list). With ``secret`` every request is signed like
    a calling system's request to the hub (``docs/alerts.md``), as system ``bankhub``, so
    the gateway can check it came from the hub; the alert id is the ``Idempotency-Key``.
    """

    name = "webhook"

    def __init__(self, url: str, *, secret: str | None = None, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]")):
            raise ValueError("the alert webhook must be https:// (plain http only to loopback)")
        self.url = url
        self._secret = secret
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def send(self, message: FallbackMessage) -> None:
        body = _encoder.encode(message)
        headers = {"content-type": "application/json", "idempotency-key": message.alert_id}
        if self._secret:
            target = httpx.URL(self.url)
            ts, nonce = str(int(time.time())), secrets.token_urlsafe(18)
            canonical = canonical_request(
                "POST", target.path, target.query.decode(), ts, nonce, WEBHOOK_SYSTEM, message.alert_id, body
            )
            headers.update(
                {
                    "x-bankhub-system": WEBHOOK_SYSTEM,
                    "x-bankhub-timestamp": ts,
                    "x-bankhub-nonce": nonce,
                    "x-bankhub-signature": signature(self._secret, canonical),
                }
            )
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook unreachable: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in _RETRYABLE_STATUS
        raise ChannelError(f"webhook answered HTTP {status}", permanent=permanent)

    async def close(self) -> None:
        await self._http.aclose()


def channel_from_settings(settings: Settings) -> FallbackChannel | None:
    """The configured channel: ``BANKHUB_ALERT_CHANNEL`` (a factory), else the webhook, else none."""
    if settings.alert_channel:
        module_name, _, attr = settings.alert_channel.partition(":")
        if not module_name or not attr:
            raise ValueError(f"BANKHUB_ALERT_CHANNEL={settings.alert_channel!r}: want 'package.module:factory'")
        channel = getattr(importlib.import_module(module_name), attr)(settings)
        if not isinstance(channel, FallbackChannel):
            raise ValueError(f"{settings.alert_channel} returned {type(channel).__name__}, not a fallback channel")
        return channel
    if settings.alert_webhook_url:
        return WebhookChannel(settings.alert_webhook_url, secret=settings.alert_webhook_secret)
    return None


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()


class FallbackWorker:
    """Claims due fallback jobs and sends them through ``channel``; see the module docstring."""

    def __init__(
        self,
        store: AlertStore,
        channel: FallbackChannel,
        policy: RetryPolicy,
        *,
        batch: int = 50,
        lease: dt.timedelta = dt.timedelta(seconds=60),
        concurrency: int = 10,
    ) -> None:
        self.store = store
        self.channel = channel
        self.policy = policy
        self.batch = batch
        self.lease = lease
        self._slots = asyncio.Semaphore(concurrency)

    async def run_once(self) -> int:
        """One round: claim what is due and work it off. Returns how many jobs were claimed."""
        jobs = await self.store.claim_fallback(self.batch, self.lease)
        if jobs:
            await asyncio.gather(*(self._process(job) for job in jobs))
        return len(jobs)

    async def _process(self, job: FallbackJob) -> None:
        alert = job.alert
        reason = None
        if alert.superseded_by is not None:
            reason = "superseded"
        elif alert.delivered_at is not None or alert.state in ("read", "archived"):
            reason = "delivered_online"
        elif alert.expires_at is not None and alert.expires_at <= dt.datetime.now(dt.timezone.utc):
            reason = "expired"
        if reason is not None:
            await self.store.fallback_done(alert.id, state="cancelled", reason=reason)
            TALLY.alert_fallback["cancelled"] += 1
            return
        message = FallbackMessage(
            alert_id=alert.id,
            user_id=alert.user_id,
            username=job.username,
            category=alert.category,
            priority=alert.priority,
            locale=alert.locale,
            title=alert.title,
            text=alert.body,
            created_at=_iso(alert.created_at) or "",
            expires_at=_iso(alert.expires_at),
            attempt=job.attempts,
        )
        try:
            async with self._slots:
                await asyncio.wait_for(self.channel.send(message), self.lease.total_seconds() / 2)
        except Exception as exc:
            permanent = isinstance(exc, ChannelError) and exc.permanent
            error = str(exc)[:300] if isinstance(exc, ChannelError) else f"{type(exc).__name__}"
            step = next_step(self.policy, job.attempts, permanent=permanent, error=error, rand=random.random())
            if isinstance(step, DeadLetter):
                log.warning("alert %s dead-lettered: %s", alert.id, step.reason)
                await self.store.fallback_done(alert.id, state="dead", error=step.reason)
                TALLY.alert_fallback["dead_letter"] += 1
            else:
                await self.store.fallback_done(alert.id, state="pending", next_in=dt.timedelta(seconds=step.delay), error=error)
                TALLY.alert_fallback["retry"] += 1
            return
        await self.store.fallback_done(alert.id, state="sent")
        TALLY.alert_fallback["sent"] += 1
