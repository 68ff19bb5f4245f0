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

A single alert (``POST /v1/notifications``: :func:`authenticate_system_deferred`, then
:func:`ingest_single`) takes the same steps, but concurrent ones share one transaction (a
group commit): its signature is checked against the node's recent copy of the system's
credentials, and that transaction checks the system's state, the nonce, the system's rate
limit (for a fresh nonce only) and the key for each request in turn, each keeping its own
answer.
"""

from __future__ import annotations

import asyncio
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
from ..batching import Batcher
from ..broker import user_channel
from ..hub import Hub
from ..models import AlertSystem, User
from ..protocol.frames import InboxSynced, InboxUpdate
from ..ratelimit import Limit
from ..signals import AlertSignal, InboxSignal
from ..storage.alert_systems import SystemCredentials
from ..storage.alerts import AlertRecord, AlertStore, InboxCounts, IngestOutcome, PlannedAlert, Recipient
from ..storage.db import Database
from ..storage.service.rows import is_retryable
from ..text import Line, Username
from . import audit
from .errors import ActionError, require
from .limits import enforce


__all__ = [
    "NotificationIn",
    "BatchIn",
    "PreferencesIn",
    "authenticate_system",
    "authenticate_system_deferred",
    "ingest_single",
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
    signed, creds, _ = await _verified(hub, method, path, query, headers, body, ip, cached=False)
    system = creds.system
    if system.disabled:
        raise ActionError("system_disabled", f"system {system.name} is disabled")
    if not await hub.alerting.systems.use_nonce(system.id, signed.nonce):
        log.warning("refused a replayed request of system %s from %s", system.name, ip)
        raise ActionError("replayed_request", _REPLAYED)
    await enforce(hub, f"alerts:{system.id}", Limit(rate=system.rate_per_second, burst=system.burst), fail_closed=False)
    return system, signed


async def authenticate_system_deferred(
    hub: Hub, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, ip: str | None
) -> tuple[AlertSystem, signing.SignedHeaders, bytes]:
    """:func:`authenticate_system` for a single alert (:func:`ingest_single`): the signature
    is checked against the node's copy of the system's credentials (read at most
    ``CREDENTIALS_TTL`` seconds ago; read again when the signature does not match it), and
    what only storage can say is left to the ingest transaction, which commits nothing for
    a request it refuses: that the system is still enabled and the secret that matched
    still valid (the answers are then the same ``system_disabled``/``invalid_signature``),
    and that the nonce is new (``replayed_request``). Also returns the SHA-256 fingerprint
    of the secret that matched."""
    signed, creds, matched = await _verified(hub, method, path, query, headers, body, ip, cached=True)
    system = creds.system
    if system.disabled:
        raise ActionError("system_disabled", f"system {system.name} is disabled")
    # the system's rate limit is taken in the group's transaction, once the nonce is known to
    # be fresh: a replayed request never uses up the calling system's budget
    return system, signed, matched


_REPLAYED = "this nonce was used before: a request is accepted once; sign a new one"


async def _verified(
    hub: Hub, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, ip: str | None, *, cached: bool
) -> tuple[signing.SignedHeaders, SystemCredentials, bytes]:
    """The signed headers, the system's credentials and the fingerprint of the secret the
    signature matched; raises :class:`ActionError` (401) for a request that does not authenticate."""
    alerting = hub.alerting
    try:
        signed = signing.parse_headers(headers)
        signing.check_timestamp(signed.timestamp, time.time())
        canonical = signing.canonical_request(
            method, path, query, signed.timestamp, signed.nonce, signed.system, signed.idempotency_key, body
        )
        creds = alerting.cached_credentials(signed.system) if cached else None
        # a disabled system is read again: it may have been enabled since
        from_cache = creds is not None and not creds.system.disabled
        if not from_cache:
            creds = await alerting.systems.credentials(signed.system)
        matched = await _match(hub, creds, canonical, signed.signature)
        if matched is None and from_cache:
            # a secret rotated since the node read it: read again before refusing
            creds = await alerting.systems.credentials(signed.system)
            matched = await _match(hub, creds, canonical, signed.signature)
        if matched is None or creds is None:
            raise signing.SignatureError("invalid_signature", "the signature does not match (unknown system or wrong secret)")
    except signing.SignatureError as exc:
        # the claimed name is attacker-controlled: logged quoted (%r), never the signature
        log.warning("refused a signed request from %s: %s (system %r)", ip, exc.code, headers.get(signing.HEADER_SYSTEM, "")[:64])
        await enforce(hub, f"alert-auth-fail:{ip}", SIGNATURE_FAILURES_PER_IP, fail_closed=False)
        raise ActionError(exc.code, exc.message) from None
    if cached and not from_cache:
        alerting.keep_credentials(signed.system, creds)
    return signed, creds, matched


async def _match(hub: Hub, creds: SystemCredentials | None, canonical: bytes, signature: str) -> bytes | None:
    """The fingerprint of the secret under which ``signature`` is right, or None. An unknown system is
    checked against a throw-away key: it fails like a wrong secret, in about the same time."""
    if creds is None:
        signing.verify_which([_NO_SYSTEM], canonical, signature)
        return None
    keys = [await hub.alerting.secret(s.kek_id, s.wrapped) for s in creds.secrets]
    i = signing.verify_which(keys, canonical, signature)
    return None if i is None else _fingerprint(keys[i])


def _fingerprint(secret: str) -> bytes:
    """Names a secret without holding it (a KEK rotation re-wraps it: the blob changes, not this)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


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


# --- single alerts, group-committed -------------------------------------------------------


class _Single(msgspec.Struct):
    """A single alert (:func:`ingest_single`) waiting for its group commit."""

    system: AlertSystem
    matched: bytes  # the fingerprint of the secret its signature matched
    nonce: str
    idempotency_key: str
    body_sha256: bytes
    checked: _Checked
    ip: str | None
    charged: bool = False  # its token of the system's rate limit is taken (a group run again does not take another)


_AGAIN = object()  # the same key is already in this group: submit again (it lands in the next one)
_Answer = tuple[bool, list[AlertRecord]] | ActionError | object


async def ingest_single(
    hub: Hub, system: AlertSystem, signed: signing.SignedHeaders, matched: bytes, body: bytes, item: NotificationIn, ip: str | None
) -> tuple[bool, list[AlertRecord]]:
    """:func:`ingest` of one alert authenticated by :func:`authenticate_system_deferred`.

    Concurrent single alerts are committed together, one transaction per group (as
    messages are: :class:`~bankhub.batching.Batcher`), each request keeping its own answer:
    in that transaction, in this order, the system's state (refused: ``system_disabled``,
    or ``invalid_signature`` when the secret that matched is no longer valid), the nonce
    (``replayed_request``), the system's rate limit (``rate_limited``: taken only for a fresh
    nonce, so replays never use up the system's budget), the idempotency key (``replayed``,
    ``idempotency_conflict``), the recipient and the policy; a request refused there writes
    nothing (its nonce stays used). Two requests with one key never share a group: the later
    one waits for the earlier's commit. A request that fails for another reason (it cannot
    be written) fails alone (see :func:`_commit_singles`).
    """
    if signed.idempotency_key is None:
        raise ActionError("idempotency_key_required", "send an Idempotency-Key header: a retry with it never creates a second alert")
    if hub.draining:
        raise ActionError("unavailable", "this node is restarting: nothing was stored; retry (same Idempotency-Key)")
    single = _Single(system, matched, signed.nonce, signed.idempotency_key, hashlib.sha256(body).digest(), _check(None, item), ip)
    batcher = _batcher(hub)
    while True:
        try:
            answer = await batcher.submit(single)
        except RuntimeError:  # the node stopped its writers: it is shutting down
            raise ActionError("unavailable", "this node is restarting: nothing was stored; retry (same Idempotency-Key)") from None
        if answer is _AGAIN:
            continue
        if isinstance(answer, Exception):  # a refusal, or this request's own failure (M3: only its own)
            raise answer
        return answer  # type: ignore[return-value]


def _batcher(hub: Hub) -> Batcher[_Single, _Answer]:
    runtime = hub.alerting
    if runtime.ingest is None:
        batcher: Batcher[_Single, _Answer] = Batcher(
            lambda group: _commit_singles(hub, group),
            max_batch=hub.settings.alert_ingest_batch_max,
            writers=2,
            # one key always goes to one writer: its retries queue behind it
            shard=lambda s: (s.system.id, s.idempotency_key),
        )
        batcher.start()
        runtime.ingest = batcher
    return runtime.ingest


async def _commit_singles(hub: Hub, group: Sequence[_Single]) -> list[_Answer]:
    """One transaction for a group of single alerts; one answer per alert, in order.

    A group lost to a deadlock or a serialisation failure runs once more. A group that
    fails for any other reason (anything but the per-request refusals, which are answers)
    is committed again one request per transaction, so a request that cannot be written
    fails alone (its answer is its exception) and every other one keeps its own answer."""
    try:
        return await _commit_retrying(hub, group)
    except Exception as exc:
        if len(group) == 1:
            raise
        # the type only: an error's text may carry SQL or key detail
        log.warning("a group of %d alerts failed (%s); committing them one by one", len(group), type(exc).__name__)
    answers: list[_Answer] = []
    for s in group:
        try:
            answers += await _commit_retrying(hub, [s])
        except Exception as exc:
            log.warning("an alert of system %s could not be stored (%s)", s.system.name, type(exc).__name__)
            answers.append(exc)
    return answers


async def _commit_retrying(hub: Hub, group: Sequence[_Single]) -> list[_Answer]:
    """:func:`_commit_group`, run once more if it lost to a deadlock or serialisation failure."""
    try:
        return await _commit_group(hub, group)
    except Exception as exc:
        if not is_retryable(exc):
            raise
    return await _commit_group(hub, group)


async def _commit_group(hub: Hub, group: Sequence[_Single]) -> list[_Answer]:
    """One transaction for a group of single alerts (see :func:`_commit_singles`)."""
    answers: list[_Answer | None] = [None] * len(group)
    keys: set[tuple[str, str]] = set()
    todo: list[int] = []
    for i, s in enumerate(group):
        key = (s.system.id, s.idempotency_key)
        if key in keys:
            answers[i] = _AGAIN
        else:
            keys.add(key)
            todo.append(i)
    store = hub.alerting.store
    async with hub.transaction("alerts_ingest") as tx:
        conn = tx.conn
        states = await hub.alerting.systems.states_txn(conn, [group[i].system.id for i in todo])
        valid = {sid: {_fingerprint(await hub.alerting.secret(w.kek_id, w.wrapped)) for w in ws} for sid, (_, ws) in states.items()}
        live: list[int] = []
        nonces: set[tuple[str, str]] = set()  # of the requests whose nonce this transaction records
        for i in todo:
            s = group[i]
            state = states.get(s.system.id)
            if state is not None and state[0]:
                answers[i] = ActionError("system_disabled", f"system {s.system.name} is disabled")
            elif state is None or s.matched not in valid[s.system.id]:
                log.warning("refused a signed request from %s: invalid_signature (system %r)", s.ip, s.system.name)
                answers[i] = ActionError("invalid_signature", "the signature does not match (unknown system or wrong secret)")
            elif (s.system.id, s.nonce) in nonces:  # one nonce twice in the group: the later is the replay
                answers[i] = _replayed(s)
            else:
                nonces.add((s.system.id, s.nonce))
                live.append(i)
        fresh = await hub.alerting.systems.use_nonces_txn(conn, [(group[i].system.id, group[i].nonce) for i in live])
        unused: list[int] = []
        for i in live:
            if (group[i].system.id, group[i].nonce) in fresh:
                unused.append(i)
            else:
                answers[i] = _replayed(group[i])
        # the system's rate limit, for a fresh nonce only (a replay costs the system nothing);
        # a request refused here keeps its nonce used, as every refusal in this transaction
        charges = await asyncio.gather(*(_charge(hub, group[i]) for i in unused))
        claimed: list[int] = []
        for i, refusal in zip(unused, charges, strict=True):
            if refusal is None:
                claimed.append(i)
            else:
                answers[i] = refusal
        outcomes = await store.claim_requests_txn(
            conn, [(group[i].system.id, group[i].idempotency_key, group[i].body_sha256) for i in claimed]
        ) if claimed else {}
        new: list[int] = []
        for i in claimed:
            outcome = outcomes[(group[i].system.id, group[i].idempotency_key)]
            if outcome is None:
                new.append(i)
            elif outcome.status == "conflict":
                answers[i] = ActionError(
                    "idempotency_conflict", "this Idempotency-Key was used for a different request; use a new key for a new alert"
                )
            else:
                answers[i] = (True, outcome.alerts)
        written: list[int] = []
        planned: list[PlannedAlert] = []
        if new:
            recipients = await store.recipients_txn(conn, [group[i].checked.item.recipient for i in new])
            refused: list[int] = []
            for i in new:
                s = group[i]
                try:
                    planned += _plan(s.system, [s.checked], False, hub.alerting.fallback_after, recipients.by_username)
                    written.append(i)
                except ActionError as exc:
                    answers[i] = exc
                    refused.append(i)
            if refused:  # their keys stay free for a corrected request
                await store.release_requests_txn(conn, [(group[i].system.id, group[i].idempotency_key) for i in refused])
            if written:
                records = await store.write_many_txn(
                    conn, [(group[i].system.id, group[i].idempotency_key) for i in written], planned, recipients
                )
                for i, rec in zip(written, records, strict=True):
                    answers[i] = (False, [rec])
        # after the commit the alerts go out (a replay is published again, as in ingest)
        now = dt.datetime.now(dt.timezone.utc)
        for answer in answers:
            if isinstance(answer, tuple):
                for a in answer[1]:
                    if a.seq is not None and a.superseded_by is None and (a.expires_at is None or a.expires_at > now):
                        tx.emit(user_channel(a.user_id), AlertSignal(user_id=a.user_id, alert=to_frame(a)))
    return [a for a in answers]


async def _charge(hub: Hub, s: _Single) -> ActionError | None:
    """Take ``s``'s token of its system's rate limit (once); the refusal, or None."""
    if s.charged:
        return None
    system = s.system
    try:
        await enforce(hub, f"alerts:{system.id}", Limit(rate=system.rate_per_second, burst=system.burst), fail_closed=False)
    except ActionError as exc:
        return exc
    s.charged = True
    return None


def _replayed(s: _Single) -> ActionError:
    log.warning("refused a replayed request of system %s from %s", s.system.name, s.ip)
    return ActionError("replayed_request", _REPLAYED)


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
