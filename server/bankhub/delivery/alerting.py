"""One node's alert machinery: stores, calling systems' secrets, delivery, fallback, sweeps.

The :class:`~bankhub.hub.Hub` builds one :class:`AlertRuntime` and starts and stops it
with itself. Background loops, each on every node (all safe to run on many nodes at once):

* flush online deliveries to storage (every ``alert_delivered_seconds``, 0.2 s);
* the fallback worker (every ``alert_worker_seconds``, when a channel is configured);
* the expiry sweep (every ``alert_sweep_seconds``, 10 s) and pruning of old nonces and
  idempotency keys (every 60th sweep: ~10 minutes).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..alerts.retry import RetryPolicy
from ..alerts.signing import MAX_SKEW_SECONDS
from ..crypto import Keyring
from ..protocol.frames import Alert
from ..settings import Settings
from ..batching import Batcher
from ..storage.alert_systems import AlertSystemStore, SystemCredentials
from ..storage.alerts import AlertRecord, AlertStore
from ..storage.db import Database
from .alerts import AlertDelivery
from .fallback import FallbackChannel, FallbackWorker, channel_from_settings

__all__ = ["AlertRuntime", "to_frame", "ms", "secret_text", "IDEMPOTENCY_RETENTION"]

log = logging.getLogger("bankhub.delivery.alerting")

CREDENTIALS_TTL = 30.0
"""Seconds a node checks signatures of single alerts against credentials it read before; the
ingest transaction then re-reads whether the system is enabled and the secret still valid."""
IDEMPOTENCY_RETENTION = dt.timedelta(days=7)
"""How long an ``Idempotency-Key`` is remembered: a retry within it never creates a second alert."""
_SECRET_PREFIX = "bhs_"


def secret_text(raw: bytes) -> str:
    """The printed form of a system's 32-byte secret; its UTF-8 bytes are the HMAC key."""
    return _SECRET_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def to_frame(rec: AlertRecord) -> Alert:
    """An alert as its recipient's devices see it."""
    assert rec.seq is not None, "suppressed alerts are never shown"
    return Alert(
        alert_id=rec.id,
        seq=rec.seq,
        category=rec.category,
        priority=rec.priority,
        template=rec.template,
        title=rec.title,
        text=rec.body,
        ts=ms(rec.created_at) or 0,
        state=rec.state,
        expires_at=ms(rec.expires_at),
        collapse_key=rec.collapse_key,
        replaces=rec.replaces,
        silent=rec.silent,
    )


class AlertRuntime:
    def __init__(self, db: Database, keyring: Keyring, settings: Settings, *, channel: FallbackChannel | None = None) -> None:
        self.settings = settings
        self.provider = keyring.provider
        self.store = AlertStore(db, keyring)
        self.systems = AlertSystemStore(db)
        self.delivery = AlertDelivery(self._fetch_range)
        self.channel = channel if channel is not None else channel_from_settings(settings)
        self.fallback_after = (
            dt.timedelta(seconds=settings.alert_fallback_after_seconds) if self.channel is not None else None
        )
        self.retry = RetryPolicy(
            base=settings.alert_retry_base_seconds,
            cap=max(settings.alert_retry_cap_seconds, settings.alert_retry_base_seconds),
            max_attempts=settings.alert_retry_max_attempts,
        )
        self.worker = FallbackWorker(self.store, self.channel, self.retry) if self.channel is not None else None
        self._secrets: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        # systems' credentials by name, for signatures checked before a group commit that
        # re-reads the system's state (disabled, secrets still valid) in its transaction
        self._credentials: OrderedDict[str, tuple[float, SystemCredentials]] = OrderedDict()
        # the group commit of single alerts (actions.alerts creates it on first use)
        self.ingest: Batcher[Any, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeps = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loops: list[tuple[str, float, Callable[[], Awaitable[object]]]] = [
            ("alert-deliveries", self.settings.alert_delivered_seconds, self.flush_delivered),
            # the exact unread count never waits for the sweep (readers subtract expired alerts
            # themselves), so it need not run often
            ("alert-sweep", self.settings.alert_sweep_seconds, self.sweep),
        ]
        if self.worker is not None:
            loops.append(("alert-fallback", self.settings.alert_worker_seconds, self.worker.run_once))
        self._tasks = [asyncio.create_task(self._every(s, job), name=name) for name, s, job in loops]

    async def stop(self) -> None:
        if self.ingest is not None:
            await self.ingest.stop()  # commits what was submitted
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.flush_delivered()
        except Exception:
            log.warning("online alert deliveries not saved at shutdown", exc_info=True)
        if self.channel is not None:
            await self.channel.close()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.warning("%s failed; retrying in %.1f s", getattr(job, "__name__", "job"), seconds, exc_info=True)

    # --- jobs ----------------------------------------------------------------------------

    async def flush_delivered(self) -> None:
        ids = self.delivery.take_delivered()
        if not ids:
            return
        try:
            await self.store.mark_delivered(ids)
        except Exception:
            self.delivery.give_back(ids)
            raise

    async def sweep(self) -> None:
        """Expire unread alerts past their time; every 60th round forget old nonces and keys."""
        while await self.store.sweep_expired() >= 500:
            pass
        self._sweeps += 1
        if self._sweeps % 60 == 1:
            await self.systems.prune(dt.timedelta(seconds=4 * MAX_SKEW_SECONDS), IDEMPOTENCY_RETENTION)

    # --- helpers for actions -------------------------------------------------------------

    async def secret(self, kek_id: str, wrapped: bytes) -> str:
        """A system's secret in the form it was printed, unwrapped by the key provider (cached)."""
        key = (kek_id, wrapped)
        cached = self._secrets.get(key)
        if cached is not None:
            self._secrets.move_to_end(key)
            return cached
        if getattr(self.provider, "blocking", True):
            raw = await asyncio.to_thread(self.provider.unwrap, kek_id, wrapped)
        else:
            raw = self.provider.unwrap(kek_id, wrapped)
        text = secret_text(raw)
        self._secrets[key] = text
        while len(self._secrets) > 1000:
            self._secrets.popitem(last=False)
        return text

    def cached_credentials(self, name: str) -> SystemCredentials | None:
        """The credentials of ``name`` read within :data:`CREDENTIALS_TTL` seconds, or None."""
        found = self._credentials.get(name)
        if found is None:
            return None
        if time.monotonic() - found[0] >= CREDENTIALS_TTL:
            del self._credentials[name]
            return None
        return found[1]

    def keep_credentials(self, name: str, creds: SystemCredentials) -> None:
        self._credentials[name] = (time.monotonic(), creds)
        self._credentials.move_to_end(name)
        while len(self._credentials) > 1000:
            self._credentials.popitem(last=False)

    async def _fetch_range(self, user_id: str, after: int, upto: int | None) -> list[Alert]:
        return [to_frame(r) for r in await self.store.range(user_id, after, upto if upto is not None else 2**62)]
