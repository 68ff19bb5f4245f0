"""Transactional alerts: signed ingest from calling systems, inboxes, preferences, dead letters.

Ingest (:func:`authenticate_system`, then :func:`ingest`):

1. the signature headers are checked (timestamp within the window, HMAC under the
   system's current or — during a rotation's grace period — previous secret), then the
   system's state, then the nonce is recorded (a replay is refused), then the system's
   rate limit is taken;
2. every alert is checked before anything is written (template, typed variables, the
   card-number guard, TTL, collapse key), and all of a request's alerts are written in
   one transaction with its ``Idempotency-Key`` (:meth:`~bankhub.storage.alerts.AlertStore.ingest`):
   recipients and their preferences are read there, and each alert is authorised, given
   its disposition (:mod:`bankhub.alerts.rules`) and rendered in the recipient's language;
3. after the commit the stored alerts are published on their recipients' channels.

A request is all or nothing: one bad alert in a batch refuses the batch (the problem
names its index) and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .. import policy
from ..alerts import rules, signing, templates
from ..delivery.alerting import ms, to_frame
from ..broker import user_channel
from ..hub import Hub
from ..models import AlertSystem, User
from ..protocol.frames import InboxSynced, InboxUpdate
from ..ratelimit import Limit
from ..signals import AlertSignal, InboxSignal
from ..storage.alerts import AlertRecord, AlertStore, InboxCounts, IngestOutcome, PlannedAlert, Recipient
from ..storage.db import Database
from ..text import Line, Username
from . import audit
from .errors import ActionError, require
from .limits import enforce


__all__ = [
    "NotificationIn",
    "BatchIn",
    "PreferencesIn",
    "authenticate_system",
    "ingest",
    "alert_status",
    "delivery_status",
    "notification_json",
    "list_inbox",
    "mark",
    "unread_count",
    "sync_inbox",
    "get_preferences",
    "set_preferences",
    "preferences_json",
    "dead_letters",
    "replay_dead_letters",
    "replay",
    "MAX_BATCH",
    "SIGNATURE_FAILURES_PER_IP",
]

log = logging.getLogger("bankhub.actions.alerts")

MAX_BATCH = 100
SIGNATURE_FAILURES_PER_IP = Limit(rate=1.0, burst=30)
_NO_SYSTEM = secrets.token_urlsafe(32)
ALERTS_DEAD_LETTERS_REPLAYED = "alerts.dead_letters_replayed"



class NotificationIn(msgspec.Struct, forbid_unknown_fields=True):
    """One alert as a calling system sends it (see ``docs/alerts.md``)."""

    recipient: Username
    template: Annotated[Line, Meta(min_length=1, max_length=64)]
    # values are checked, cleaned and typed by the template (alerts.templates)
    variables: Annotated[dict[Annotated[Line, Meta(max_length=32)], Any], Meta(max_length=32)] = {}
    category: Literal["security", "transaction", "service", "marketing"] | None = None
    priority: Literal["high", "normal", "low"] | None = None
    ttl_seconds: Annotated[int, Meta(ge=1, le=30 * 86400)] | None = None
    collapse_key: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$(?!\n)")] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    notifications: Annotated[list[NotificationIn], Meta(min_length=1, max_length=MAX_BATCH)]


class QuietHoursIn(msgspec.Struct, forbid_unknown_fields=True):
    start: Annotated[Line, Meta(max_length=5)]
    end: Annotated[Line, Meta(max_length=5)]


class PreferencesIn(msgspec.Struct, forbid_unknown_fields=True):
    muted: Annotated[list[Annotated[Line, Meta(max_length=32)]], Meta(max_length=8)] = []
    quiet_hours: QuietHoursIn | None = None
    timezone: Annotated[Line, Meta(max_length=64)] = rules.DEFAULT_TIMEZONE
    locale: Literal["zh-CN", "en"] = "zh-CN"


# --- signed requests --------------------------------------------------------------------


async def authenticate_system(
    hub: Hub, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, ip: str | None
) -> tuple[AlertSystem, signing.SignedHeaders]:
    """The calling system of a signed request; raises :class:`ActionError` (401/403/429).

    Neither the secret nor the signature is ever logged; a failure is logged with the
    claimed system name and the reason only. Failures are rate-limited per address.
    """
    try:
        signed = signing.parse_headers(headers)
        signing.check_timestamp(signed.timestamp, time.time())
        creds = await hub.alerting.systems.credentials(signed.system)
        canonical = signing.canonical_request(
            method, path, query, signed.timestamp, signed.nonce, signed.system, signed.idempotency_key, body
        )
        # an unknown system is checked against a throw-away key: it fails like a wrong secret,
        # in about the same time
        keys = [await hub.alerting.secret(s.kek_id, s.wrapped) for s in creds.secrets] if creds else [_NO_SYSTEM]
        if not signing.verify(keys, canonical, signed.signature) or creds is None:
            raise signing.SignatureError("invalid_signature", "the signature does not match (unknown system or wrong secret)")
    except signing.SignatureError as exc:
        # the claimed name is attacker-controlled: logged quoted (%r), never the signature
        log.warning("refused a signed request from %s: %s (system %r)", ip, exc.code, headers.get(signing.HEADER_SYSTEM, "")[:64])
        await enforce(hub, f"alert-auth-fail:{ip}", SIGNATURE_FAILURES_PER_IP, fail_closed=False)
        raise ActionError(exc.code, exc.message) from None
    system = creds.system
    if system.disabled:
        raise ActionError("system_disabled", f"system {system.name} is disabled")
    if not await hub.alerting.systems.use_nonce(system.id, signed.nonce):
        log.warning("refused a replayed request of system %s from %s", system.name, ip)
        raise ActionError("replayed_request", "this nonce was used before: a request is accepted once; sign a new one")
    await enforce(hub, f"alerts:{system.id}", Limit(rate=system.rate_per_second, burst=system.burst), fail_closed=False)
    return system, signed


# --- ingest -----------------------------------------------------------------------------


class _Checked(msgspec.Struct):
    item: NotificationIn
    template: templates.Template
    values: dict[str, Any]
    category: str
    priority: str


def _check(index: int | None, item: NotificationIn) -> _Checked:
    where = "" if index is None else f"notifications[{index}]: "
    try:
        template, values = templates.prepare(item.template, item.variables)
    except templates.CardNumberFound as exc:
        raise ActionError("card_number_detected", f"{where}{exc}") from None
    except templates.TemplateError as exc:
        raise ActionError("invalid_alert", f"{where}{exc}") from None
    if item.category is not None and item.category != template.category:
        raise ActionError("invalid_alert", f"{where}template {template.id} sends {template.category} alerts, not {item.category}")
    return _Checked(item, template, values, template.category, item.priority or template.priority)


def _plan(
    system: AlertSystem, checked: list[_Checked], batch: bool, fallback_after: dt.timedelta | None, recipients: dict[str, Recipient]
) -> list[PlannedAlert]:
    """The alerts to write for the recipients that exist: the policy decides each one (a
    refusal refuses the whole request), the rules dispose it, the template renders it."""
    now = dt.datetime.now(dt.timezone.utc)
    out: list[PlannedAlert] = []
    for i, c in enumerate(checked):
        where = f"notifications[{i}]: " if batch else ""
        r = recipients.get(c.item.recipient)
        decision = policy.may_send_alert(system, c.category, r.user if r else None)
        if not decision.allowed:
            raise ActionError(decision.code or "forbidden", where + decision.reason)
        assert r is not None
        expires = now + dt.timedelta(seconds=c.item.ttl_seconds) if c.item.ttl_seconds else None
        disp = rules.dispose(c.category, c.priority, r.prefs, now, fallback_after=fallback_after, expires_at=expires)
        try:
            text = templates.render(c.template, c.values, r.prefs.locale, r.prefs.timezone)
        except templates.CardNumberFound as exc:
            raise ActionError("card_number_detected", f"{where}{exc}") from None
        out.append(
            PlannedAlert(
                id=uuid.uuid4(),
                user_id=r.user.id,
                category=c.category,
                priority=c.priority,
                template=c.template.id,
                locale=r.prefs.locale,
                title=text.title,
                body=text.body,
                collapse_key=c.item.collapse_key,
                silent=disp.silent,
                expires_at=expires,
                stored=disp.stored,
                fallback_at=disp.fallback_at,
            )
        )
    return out


async def ingest(
    hub: Hub, system: AlertSystem, idempotency_key: str | None, body: bytes, items: Sequence[NotificationIn], *, batch: bool
) -> tuple[bool, list[AlertRecord]]:
    """Store a request's alerts (or find the original ones); returns ``(replayed, alerts)``.

    Raises :class:`ActionError` for a missing key, a conflicting retry, an alert that may
    not be sent, or one that cannot be rendered; nothing is stored then.
    """
    if idempotency_key is None:
        raise ActionError("idempotency_key_required", "send an Idempotency-Key header: a retry with it never creates a second alert")
    if hub.draining:
        raise ActionError("unavailable", "this node is restarting: nothing was stored; retry (same Idempotency-Key)")
    checked = [_check(i if batch else None, item) for i, item in enumerate(items)]
    store = hub.alerting.store
    # one transaction (see AlertStore.claim_request_txn): claim the key, read the
    # recipients, plan (policy, rules, templates), write; the alerts go out after the commit
    async with hub.transaction("alerts_ingest") as tx:
        outcome = await store.claim_request_txn(tx.conn, system.id, idempotency_key, hashlib.sha256(body).digest())
        if outcome is None:
            recipients = await store.recipients_txn(tx.conn, [c.item.recipient for c in checked])
            planned = _plan(system, checked, batch, hub.alerting.fallback_after, recipients.by_username)
            outcome = IngestOutcome("created", await store.write_txn(tx.conn, system.id, idempotency_key, planned, recipients))
        if outcome.status == "conflict":
            raise ActionError(
                "idempotency_conflict", "this Idempotency-Key was used for a different request; use a new key for a new alert"
            )
        # a replay is published again: harmless (devices drop seen seqs), and it repairs a
        # delivery lost when the first attempt's node died between commit and publish
        now = dt.datetime.now(dt.timezone.utc)
        for a in outcome.alerts:
            if a.seq is not None and a.superseded_by is None and (a.expires_at is None or a.expires_at > now):
                tx.emit(user_channel(a.user_id), AlertSignal(user_id=a.user_id, alert=to_frame(a)))
    return outcome.status == "replayed", outcome.alerts


# --- status -----------------------------------------------------------------------------


def delivery_status(rec: AlertRecord, now: dt.datetime) -> str:
    """The one word a calling system sees: how far the alert got (see ``docs/alerts.md``)."""
    fallback = rec.fallback or {}
    if rec.state == "suppressed":
        return "suppressed"
    if rec.superseded_by is not None:
        return "superseded"
    if rec.read_at is not None:
        return "read"
    if rec.delivered_at is not None:
        return "delivered"
    if fallback.get("state") == "sent":
        return "delivered_fallback"
    if rec.expires_at is not None and rec.expires_at <= now:
        return "expired"
    if fallback.get("state") == "dead":
        return "dead_lettered"
    return "accepted"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()


def notification_json(rec: AlertRecord, recipient: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    fb = rec.fallback
    return {
        "alert_id": rec.id,
        "status": delivery_status(rec, now),
        "recipient": recipient,
        "category": rec.category,
        "priority": rec.priority,
        "template": rec.template,
        "created_at": _iso(rec.created_at),
        "expires_at": _iso(rec.expires_at),
        "expired": rec.expires_at is not None and rec.expires_at <= now,
        "suppressed_reason": "muted" if rec.state == "suppressed" else None,
        "delivered_at": _iso(rec.delivered_at),
        "read_at": _iso(rec.read_at),
        "superseded_by": rec.superseded_by,
        "replaces": rec.replaces,
        "silent": rec.silent,
        "fallback": None
        if fb is None
        else {
            "state": fb["state"],
            "attempts": fb["attempts"],
            "next_at": _iso(fb["next_at"]) if fb["state"] == "pending" else None,
            "last_error": fb["last_error"],
            "cancel_reason": fb["cancel_reason"],
            "sent_at": _iso(fb["sent_at"]),
            "dead_at": _iso(fb["dead_at"]),
        },
    }


async def alert_status(hub: Hub, system: AlertSystem, alert_id: str) -> dict[str, Any]:
    """The delivery status of an alert this system sent (``not_found`` for anyone else's)."""
    found = await hub.alerting.store.status(alert_id)
    require(policy.may_read_alert_status(system, found[0].system_id if found else None))
    assert found is not None
    return notification_json(*found)


# --- the customer's inbox ---------------------------------------------------------------

_STATE_FILTERS = {
    "inbox": ("unread", "read"),
    "unread": ("unread",),
    "read": ("read",),
    "archived": ("archived",),
    "all": ("unread", "read", "archived"),
}


async def list_inbox(hub: Hub, actor: User, state: str, before_seq: int | None, limit: int) -> dict[str, Any]:
    """A page of my alerts, newest first (``state``: inbox, unread, read, archived, all)."""
    require(policy.may_use_inbox(actor))
    states = _STATE_FILTERS.get(state)
    if states is None:
        raise ActionError("invalid_request", f"state must be one of {sorted(_STATE_FILTERS)}")
    if not 1 <= limit <= 200:
        raise ActionError("invalid_request", "limit must be within 1..200")
    page, has_more, counts = await hub.alerting.store.page(actor.id, states, before_seq, limit)
    hub.alerting.delivery.note_delivered(a.id for a in page if a.delivered_at is None)
    return {"alerts": [to_frame(a) for a in page], "has_more": has_more, "unread": counts.unread, "last_seq": counts.last_seq}


async def unread_count(hub: Hub, actor: User) -> InboxCounts:
    """My inbox's exact unread count and last seq."""
    require(policy.may_use_inbox(actor))
    return await hub.alerting.store.counts(actor.id)


async def mark(hub: Hub, actor: User, state: str, alert_ids: Sequence[str], up_to_seq: int | None, frame_id: str | None = None) -> InboxUpdate:
    """Mark my alerts read or archived; my other devices get an ``inbox_update`` too."""
    require(policy.may_use_inbox(actor))
    if not alert_ids and up_to_seq is None:
        raise ActionError("invalid_request", "name alert_ids, or up_to_seq, or both")
    async with hub.transaction("alert_inbox_mark") as tx:
        changed, counts = await hub.alerting.store.mark(tx.conn, actor.id, state, alert_ids, up_to_seq)
        if changed:
            update = InboxUpdate(state=state, unread=counts.unread, alert_ids=changed, up_to_seq=up_to_seq)
            tx.emit(user_channel(actor.id), InboxSignal(user_id=actor.id, update=update))
    return InboxUpdate(state=state, unread=counts.unread, alert_ids=changed, up_to_seq=up_to_seq, id=frame_id)


async def sync_inbox(hub: Hub, actor: User, frame_id: str, since: int, limit: int) -> InboxSynced:
    require(policy.may_use_inbox(actor))
    got = await hub.alerting.store.since(actor.id, since, limit)
    return InboxSynced(
        id=frame_id,
        alerts=[to_frame(a) for a in got.alerts],
        cursor=got.cursor,
        last_seq=got.last_seq,
        unread=got.unread,
        has_more=got.has_more,
    )


# --- preferences ------------------------------------------------------------------------


def preferences_json(prefs: rules.Preferences) -> dict[str, Any]:
    return {
        "muted": sorted(prefs.muted),
        "quiet_hours": None
        if prefs.quiet is None
        else {"start": rules.format_clock(prefs.quiet[0]), "end": rules.format_clock(prefs.quiet[1])},
        "timezone": prefs.timezone,
        "locale": prefs.locale,
        "categories": list(rules.CATEGORIES),
        "mutable": sorted(rules.MUTABLE),
    }


async def get_preferences(hub: Hub, actor: User) -> rules.Preferences:
    require(policy.may_use_inbox(actor))
    return await hub.alerting.store.preferences(actor.id)


async def set_preferences(hub: Hub, actor: User, body: PreferencesIn) -> rules.Preferences:
    require(policy.may_set_alert_preferences(actor, body.muted))
    try:
        prefs = rules.make_preferences(
            body.muted,
            body.quiet_hours.start if body.quiet_hours else None,
            body.quiet_hours.end if body.quiet_hours else None,
            body.timezone,
            body.locale,
        )
    except rules.PreferenceError as exc:
        raise ActionError("invalid_request", str(exc)) from None
    await hub.alerting.store.set_preferences(actor.id, prefs)
    return prefs


# --- dead letters -----------------------------------------------------------------------


async def dead_letters(
    hub: Hub, actor: User, limit: int, *, after: tuple[dt.datetime, uuid.UUID] | None = None
) -> tuple[list[dict[str, Any]], tuple[dt.datetime, uuid.UUID] | None]:
    """A page of up to ``limit`` dead letters, newest first, after the sort key ``after``;
    and the key to continue from (None: no more)."""
    require(policy.may_manage_alert_delivery(actor))
    rows = await hub.alerting.store.dead_letters(limit + 1, after=after)
    next_key = rows[limit - 1][2] if len(rows) > limit else None
    return [notification_json(rec, username) for rec, username, _ in rows[:limit]], next_key


async def replay_dead_letters(hub: Hub, actor: User, alert_ids: Sequence[str] | None, ip: str | None = None) -> list[str]:
    """Requeue dead letters (all when ``alert_ids`` is None), due now; audited."""
    require(policy.may_manage_alert_delivery(actor))
    return await replay(hub.alerting.store, hub, actor, alert_ids, ip=ip)


async def replay(
    store: AlertStore, where: Hub | Database, actor: audit.Actor, alert_ids: Sequence[str] | None, *, ip: str | None = None
) -> list[str]:
    """Requeue dead letters and record who did it (the HTTP handler and the CLI both end here)."""
    if alert_ids is not None:
        for a in alert_ids:
            try:
                uuid.UUID(a)
            except ValueError:
                raise ActionError("invalid_request", f"{a[:64]!r} is not an alert id") from None
    replayed = await store.replay(alert_ids)
    if replayed:
        await audit.record(
            where,
            actor=actor,
            action=ALERTS_DEAD_LETTERS_REPLAYED,
            target="alerts:fallback",
            ip=ip,
            details={"alert_ids": replayed[:100], "count": len(replayed)},
        )
    return replayed
