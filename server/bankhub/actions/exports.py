"""eDiscovery exports: request, dual-control approval, the background build, download.

A compliance officer requests an export (custodians and/or conversations, a date range,
keywords, a reason code and a case reference); a DIFFERENT active compliance officer
approves it (:func:`bankhub.policy.may_approve_export`), and the node that took the approval
builds it in the background (:func:`run_build`) — or ``bankhub export run`` builds it
locally. The build reads every message in scope through the stores that members and the
reason-coded compliance path use (bodies opened under each conversation's key; what edits
and recalls replaced from :meth:`~bankhub.storage.revisions.RevisionStore.for_compliance`),
writes the signed zip (:mod:`bankhub.compliance.export_format`) and keeps it in the blob
store sealed under a fresh data key (:mod:`bankhub.compliance.export_sealing`). Only the
requester or the approver may download it.

Every step is audited, in the transaction of the change it records: ``export.requested``,
``export.approved`` / ``export.rejected``, ``export.started``, ``export.completed`` (counts,
bytes, sha256) or ``export.failed`` (a fixed error text, never a database error or message
text), ``export.downloaded`` (before the first byte is sent), ``export.retried``,
``export.expired``.

A build holds a lease on its row (:func:`build_and_store`: a build token and a heartbeat), so
two builds never mix their copies; a node runs one build at a time and never holds the export
in memory (files spooled to disk, the zip to a temporary file, sealed chunk by chunk into blobs
of their own); :func:`sweep` marks silent builds interrupted and expires old exports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import re
import tempfile
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple

import msgspec

from .. import policy, text
from ..blobs import BlobStore
from ..blobs.base import BlobError, BlobNotFound, BlobUnavailable
from ..compliance.export_format import (
    AttachmentRecord,
    ConversationRecord,
    ExportBuilder,
    ExportTooLarge,
    MessageRecord,
    Person,
    RevisionRecord,
    Stay,
    matches_keywords,
    members_at_time,
    rfc3339,
    searchable_text,
)
from ..compliance import dlp
from ..compliance.export_sealing import CHUNK_BYTES, EXPORT_KEY_ID, ExportUnreadable, chunk_key, open_chunk, seal_chunk
from ..crypto.keyring import Keyring, KeyringError
from ..media.sealing import MediaUnreadable, open_sealed
from ..models import User
from ..settings import Settings
from ..storage.alerts import AlertStore
from ..storage.db import Database
from ..storage.exports import BLOB_PREFIX, INTERRUPTED, ExportRow, ExportStore, PersonRow, StoredCopy
from ..storage.keys import KeyUnavailable
from ..storage.media import MediaStore
from ..storage.messages import MessageStore
from ..storage.revisions import RevisionStore
from ..storage.signing_keys import SigningKeyStore, SigningUnavailable
from ..storage.users import UserStore
from .audit import (
    EXPORT_APPROVED,
    EXPORT_COMPLETED,
    EXPORT_DOWNLOADED,
    EXPORT_EXPIRED,
    EXPORT_FAILED,
    EXPORT_REJECTED,
    EXPORT_REQUESTED,
    EXPORT_RETRIED,
    EXPORT_STARTED,
    SYSTEM,
    record,
)
from .errors import ActionError, require
from .sensitive import refuse_sensitive

__all__ = [
    "SIZE_CAP_PROBLEM",
    "ExportDeps",
    "ExportView",
    "Progress",
    "ScopeView",
    "MAX_CUSTODIANS",
    "MAX_CONVERSATIONS",
    "MAX_KEYWORDS",
    "MAX_KEYWORD_CHARS",
    "request_export",
    "approve_export",
    "reject_export",
    "list_exports",
    "get_export",
    "download_export",
    "build_export",
    "build_and_store",
    "retry_export",
    "sweep",
    "run_build",
    "run_here",
    "sensitive_keyword",
    "view",
]

# the `problem` of an attachment past BANKHUB_EXPORT_MAX_ATTACHMENT_BYTES (the setting's doc quotes it)
SIZE_CAP_PROBLEM = "size cap (BANKHUB_EXPORT_MAX_ATTACHMENT_BYTES)"

log = logging.getLogger("bankhub.actions.exports")

MAX_CUSTODIANS = 50
MAX_CONVERSATIONS = 200
MAX_KEYWORDS = 20
MAX_KEYWORD_CHARS = 64
MAX_CASE_REF_CHARS = 128


class ExportDeps(NamedTuple):
    """What an export needs: a node's (:meth:`from_hub`) or the CLI's own."""

    db: Database
    keyring: Keyring
    settings: Settings
    store: ExportStore
    users: UserStore
    messages: MessageStore
    revisions: RevisionStore
    media: MediaStore
    blobs: BlobStore
    signing: SigningKeyStore
    alerts: AlertStore
    auditor: Any  # the hub (its audit store) or the database (the CLI)

    @classmethod
    def from_hub(cls, hub: Any) -> ExportDeps:
        return cls(
            db=hub.db,
            keyring=hub.keyring,
            settings=hub.settings,
            store=hub.exports,
            users=hub.users,
            messages=hub.messages,
            revisions=hub.revisions,
            media=hub.media.store,
            blobs=hub.media.blobs,
            signing=hub.signing,
            alerts=hub.alerting.store,
            auditor=hub,
        )


class Progress(msgspec.Struct):
    done: int
    total: int


class Custodian(msgspec.Struct):
    user_id: str
    username: str


class ScopeView(msgspec.Struct):
    custodians: list[Custodian]
    conversation_ids: list[str]
    # RFC 3339; null: unbounded
    from_: str | None = msgspec.field(name="from", default=None)
    to: str | None = None
    keywords: list[str] = []


class ExportView(msgspec.Struct):
    """An export request as officers see it (metadata only)."""

    export_id: str
    state: str  # pending_approval | rejected | running | ready | failed | expired
    requested_by: str
    approved_by: str | None
    rejected_by: str | None
    scope: ScopeView
    reason: str
    case_ref: str | None
    created_at: str
    decided_at: str | None
    started_at: str | None
    finished_at: str | None
    progress: Progress
    bytes: int | None
    sha256: str | None
    counts: dict[str, int] | None
    error: str | None


_scope_decoder = msgspec.json.Decoder(ScopeView)


def _t(ts: dt.datetime | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def view(row: ExportRow) -> ExportView:
    return ExportView(
        export_id=row.id,
        state=row.state,
        requested_by=row.requested_by_name,
        approved_by=row.approved_by_name,
        rejected_by=row.rejected_by_name,
        scope=_scope_decoder.decode(msgspec.json.encode(row.scope)),
        reason=row.reason,
        case_ref=row.case_ref,
        created_at=rfc3339(row.created_at),
        decided_at=_t(row.decided_at),
        started_at=_t(row.started_at),
        finished_at=_t(row.finished_at),
        progress=Progress(row.progress_done, row.progress_total),
        bytes=row.size,
        sha256=row.sha256,
        counts=row.counts,
        error=row.error,
    )


def _target(export_id: str) -> str:
    return f"export:{export_id}"


# --- request and decisions ------------------------------------------------------------------------


_MOBILE = re.compile(r"1[3-9][0-9]{9}")


def sensitive_keyword(keyword: str) -> bool:
    """Whether a keyword is (or carries) a value the DLP detector finds — a card, resident ID,
    account number, CVV or code — or is a bare account-shaped number (10 to 25 digits once
    blanks and dashes are removed, not a mainland mobile number). Such a value must not go into an export's scope: the scope
    is kept in the audit log (append-only), the manifest and every list of exports. An
    investigator finds it with the DLP search, which keeps no copy of it."""
    if dlp.scan(keyword):
        return True
    digits = dlp.canonical("bank_account", keyword)
    # a mainland mobile number is not an account (the detector's rule too)
    return digits is not None and _MOBILE.fullmatch(digits) is None


def _keywords(keywords: Sequence[str]) -> list[str]:
    """The keywords, checked once here for every caller (HTTP and ``bankhub export request``)."""
    if len(keywords) > MAX_KEYWORDS:
        raise ActionError("invalid_request", f"at most {MAX_KEYWORDS} keywords")
    out: list[str] = []
    for k in keywords:
        if not text.is_line(k):
            raise ActionError("invalid_request", "a keyword is a single line without control characters")
        if not 1 <= len(k.strip()) <= MAX_KEYWORD_CHARS:
            raise ActionError("invalid_request", f"a keyword is 1 to {MAX_KEYWORD_CHARS} characters")
        if sensitive_keyword(k):
            # never echo the value: the refusal itself may be logged or shown
            raise ActionError(
                "sensitive_data",
                "a keyword may not be a card, resident ID or account number: find where one appeared with "
                "POST /v1/compliance/dlp/search (it keeps no copy of the value)",
            )
        if k.strip() not in out:
            out.append(k.strip())
    return out


def _case_ref(case_ref: str | None) -> str | None:
    """The case reference: a single line of at most :data:`MAX_CASE_REF_CHARS` characters
    (longer is refused, never cut); blank is none."""
    if case_ref is None:
        return None
    if not text.is_line(case_ref):
        raise ActionError("invalid_request", "case_ref is a single line without control characters")
    ref = case_ref.strip()
    if len(ref) > MAX_CASE_REF_CHARS:
        raise ActionError("invalid_request", f"case_ref is at most {MAX_CASE_REF_CHARS} characters")
    refuse_sensitive(case_ref=ref)  # kept in the audit rows, the manifest and every list of exports
    return ref or None


async def request_export(
    deps: ExportDeps,
    actor: User,
    *,
    custodians: Sequence[str],
    conversation_ids: Sequence[str],
    since: dt.datetime | None,
    until: dt.datetime | None,
    keywords: Sequence[str],
    reason: str,
    case_ref: str | None,
    ip: str | None,
    via: Mapping[str, str] | None = None,
) -> ExportView:
    """File a request (``pending_approval``); audited ``export.requested``. ``via`` is added to
    the audit details (``bankhub export request``: ``{"via": "cli", "os_user": ...}``)."""
    require(policy.may_request_export(actor, reason))
    if not custodians and not conversation_ids:
        raise ActionError("invalid_request", "name at least one custodian or conversation")
    if len(custodians) > MAX_CUSTODIANS:
        raise ActionError("invalid_request", f"at most {MAX_CUSTODIANS} custodians")
    if len(conversation_ids) > MAX_CONVERSATIONS:
        raise ActionError("invalid_request", f"at most {MAX_CONVERSATIONS} conversations")
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise ActionError("invalid_request", "from and to are RFC 3339 times with an offset")
    if since is not None and until is not None and not since < until:
        raise ActionError("invalid_request", "from must be before to")
    try:
        since_text, until_text = _t(since), _t(until)
    except (OverflowError, ValueError):
        raise ActionError("invalid_request", "from and to must lie within the years 1 to 9999 in UTC") from None
    words = _keywords(keywords)
    ref = _case_ref(case_ref)
    convs: list[str] = []
    for c in conversation_ids:
        try:
            cid = str(uuid.UUID(c))
        except ValueError:
            raise ActionError("invalid_request", "conversation_ids are conversation ids (UUIDs)") from None
        if cid not in convs:
            convs.append(cid)
    names = list(dict.fromkeys(custodians))
    found = await deps.store.users_by_name(names) if names else {}
    if len(found) != len(names):
        raise ActionError("not_found", "no such custodian: " + ", ".join(n for n in names if n not in found)[:300])
    if convs and len(await deps.store.existing_conversations(convs)) != len(convs):
        raise ActionError("not_found", "no such conversation")
    scope = {
        "custodians": [{"user_id": found[n].id, "username": n} for n in names],
        "conversation_ids": convs,
        "from": since_text,
        "to": until_text,
        "keywords": words,
    }
    async with deps.db.transaction("export_request") as conn:
        export_id = await deps.store.insert_txn(conn, scope=scope, reason=reason, case_ref=ref, requested_by=actor.id)
        await record(
            deps.auditor, actor=actor, action=EXPORT_REQUESTED, target=_target(export_id), reason=reason, ip=ip,
            details={"case_ref": ref, "scope": scope, **(via or {})}, conn=conn,
        )
        row = await deps.store.get(export_id, conn)
    assert row is not None
    return view(row)


async def _locked(deps: ExportDeps, conn: Any, actor: User, export_id: str) -> ExportRow:
    require(policy.may_view_exports(actor))
    row = await deps.store.lock_txn(conn, export_id)
    if row is None:
        raise ActionError("not_found", "no such export")
    return row


async def approve_export(deps: ExportDeps, actor: User, export_id: str, ip: str | None, *, build: bool = True) -> ExportView:
    """A second officer approves: ``running``; the build starts on this node (``build``)."""
    async with deps.db.transaction("export_approve") as conn:
        row = await _locked(deps, conn, actor, export_id)
        # both officers as they are now, share-locked until this commits: one disabled or moved
        # out of compliance before this point is seen here, and none can be until it commits
        users = await UserStore.lock_shared(conn, [actor.id, row.requested_by])
        approver = users.get(actor.id)
        if approver is None:
            raise ActionError("forbidden", "eDiscovery exports are for compliance officers")
        ttl = dt.timedelta(hours=deps.settings.export_request_ttl_hours)
        expired = row.created_at < dt.datetime.now(dt.timezone.utc) - ttl
        require(policy.may_approve_export(approver, users.get(row.requested_by), state=row.state, expired=expired))
        await deps.store.decide_txn(conn, row.id, approved_by=approver.id)
        await record(
            deps.auditor, actor=approver, action=EXPORT_APPROVED, target=_target(row.id), reason=row.reason, ip=ip,
            details={"requested_by": row.requested_by_name, "case_ref": row.case_ref}, conn=conn,
        )
    if build:
        deps.store.spawn(run_build(deps, row.id, by=f"node {deps.settings.node_name}"))
    got = await deps.store.get(row.id)
    assert got is not None
    return view(got)


async def reject_export(deps: ExportDeps, actor: User, export_id: str, ip: str | None, via: Mapping[str, str] | None = None) -> ExportView:
    """Reject a pending request (its requester: withdraw it); audited ``export.rejected``."""
    async with deps.db.transaction("export_reject") as conn:
        row = await _locked(deps, conn, actor, export_id)
        require(policy.may_reject_export(actor, state=row.state))
        await deps.store.decide_txn(conn, row.id, rejected_by=actor.id)
        await record(
            deps.auditor, actor=actor, action=EXPORT_REJECTED, target=_target(row.id), reason=row.reason, ip=ip,
            details={"withdrawn": actor.id == row.requested_by, "case_ref": row.case_ref, **(via or {})}, conn=conn,
        )
        got = await deps.store.get(row.id, conn)
    assert got is not None
    return view(got)


async def list_exports(deps: ExportDeps, actor: User, after: tuple[dt.datetime, str] | None, limit: int) -> list[tuple[ExportView, tuple[dt.datetime, str]]]:
    """Export requests, newest first: ``limit`` at most (the HTTP list passes one more than it shows)."""
    require(policy.may_view_exports(actor))
    return [(view(r), (r.created_at, r.id)) for r in await deps.store.page(after, limit)]


async def get_export(deps: ExportDeps, actor: User, export_id: str) -> ExportView:
    require(policy.may_view_exports(actor))
    row = await deps.store.get(export_id)
    if row is None:
        raise ActionError("not_found", "no such export")
    return view(row)


async def download_export(
    deps: ExportDeps, actor: User, export_id: str, ip: str | None, via: Mapping[str, str] | None = None
) -> tuple[ExportRow, AsyncIterator[bytes]]:
    """The built zip, streamed a sealed chunk at a time: every chunk is authenticated by a first
    pass before anything is sent (a damaged or missing copy: ``gone``, 410); audited
    ``export.downloaded`` before the first byte; only the requester or the approver;
    ``not_ready`` (409) before it is ready, ``gone`` once it expired."""
    require(policy.may_view_exports(actor))
    row = await deps.store.get(export_id)
    if row is None:
        raise ActionError("not_found", "no such export")
    require(policy.may_download_export(actor, requested_by=row.requested_by, approved_by=row.approved_by, state=row.state))
    key, count = await _stored_chunks(deps, row)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(count):
            yield await _read_chunk(deps, row, key, i, count)

    # a damaged copy is refused before anything is sent or audited: a first pass opens (and
    # authenticates) every chunk, keeping none of them, then the download streams them again
    try:
        async for _ in chunks():
            pass
    except BlobNotFound:
        raise ActionError("gone", "the stored export is missing") from None
    except BlobUnavailable:
        raise ActionError("unavailable", "the blob store is unavailable, retry") from None
    except ExportUnreadable:
        log.warning("export %s: the stored zip failed its integrity check", row.id)
        raise ActionError("gone", "the stored export failed its integrity check") from None
    await record(
        deps.auditor, actor=actor, action=EXPORT_DOWNLOADED, target=_target(row.id), reason=row.reason, ip=ip,
        details={"bytes": row.size, "sha256": row.sha256, "case_ref": row.case_ref, **(via or {})},
    )

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks():
                yield chunk
        except (ExportUnreadable, BlobError):
            # changed after the check: the client gets a short zip whose manifest check fails; never a wrong byte
            log.warning("export %s: a chunk of the stored zip became unreadable during a download", row.id)

    return row, stream()


def _write_out(f: IO[bytes], chunk: bytes) -> None:
    """Write one chunk through to the file: the buffer never gathers chunks (in a worker thread)."""
    f.write(chunk)
    f.flush()


async def run_here(
    deps: ExportDeps,
    actor: User,
    export_id: str,
    out: str | os.PathLike[str],
    *,
    via: Mapping[str, str],
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportRow:
    """``bankhub export run``: build an approved export in this process and hand the zip to
    ``actor``, its requester or its approver (:func:`bankhub.policy.may_run_export`), as the
    file ``out``. A ``ready`` export is refused (``conflict``): it is never rebuilt.

    The zip is never held whole: its sealed chunks are opened (authenticated) and written one
    at a time to a temporary file beside ``out`` (mode 0600), checked against the recorded size
    and SHA-256, and only then is the handover audited ``export.downloaded`` (``via`` in the
    details) and the file renamed to ``out`` — a failure before that leaves no file and no
    download row (a missing or damaged copy: ``gone``; the blob store down: ``unavailable``).
    Returns the ready row."""
    require(policy.may_view_exports(actor))
    row = await deps.store.get(export_id)
    if row is None:
        raise ActionError("not_found", "no such export")
    require(policy.may_run_export(actor, requested_by=row.requested_by, approved_by=row.approved_by, state=row.state))
    row = await build_and_store(deps, row.id, by="bankhub export run", on_progress=on_progress)
    key, count = await _stored_chunks(deps, row)
    target = os.fspath(out)
    partial = os.path.join(os.path.dirname(target) or ".", f".{os.path.basename(target)}.{uuid.uuid4().hex}.part")
    try:
        digest, size = hashlib.sha256(), 0
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            for i in range(count):
                chunk = await _read_chunk(deps, row, key, i, count)
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(_write_out, f, chunk)
        if size != row.size or digest.hexdigest() != row.sha256:
            raise ExportUnreadable()
        await record(
            deps.auditor, actor=actor, action=EXPORT_DOWNLOADED, target=_target(row.id), reason=row.reason,
            details={"bytes": size, "sha256": digest.hexdigest(), "case_ref": row.case_ref, **via},
        )
        os.replace(partial, target)
    except BlobNotFound:
        raise ActionError("gone", "the stored export is missing") from None
    except BlobUnavailable:
        raise ActionError("unavailable", "the blob store is unavailable, retry") from None
    except ExportUnreadable:
        log.warning("export %s: the stored zip failed its integrity check", row.id)
        raise ActionError("gone", "the stored export failed its integrity check") from None
    finally:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass  # renamed (handed over) or never created
    return row


# --- the build ----------------------------------------------------------------------------------


class _Refused(Exception):
    """The build cannot go on; the message is the row's safe ``error`` text."""


_SAFE_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (KeyUnavailable, "a data key was unavailable: retry later"),
    (KeyringError, "a data key was unavailable: retry later"),
    (SigningUnavailable, "the signing key was unavailable: retry later"),
    (BlobUnavailable, "the blob store was unavailable: retry later"),
    (ExportTooLarge, "the export is too large (BANKHUB_EXPORT_MAX_ZIP_BYTES): narrow the scope"),
)


_UNKNOWN_ERROR = "internal error (see the node's log)"


def _safe_error(exc: BaseException) -> str:
    if isinstance(exc, _Refused):
        return str(exc)
    for kind, text in _SAFE_ERRORS:
        if isinstance(exc, kind):
            return text
    return _UNKNOWN_ERROR


def _person(p: PersonRow | None, user_id: str) -> Person:
    if p is None:
        return Person(user_id=user_id, username="unknown", display_name="", role="")
    return Person(user_id=p.id, username=p.username, display_name=p.display_name, role=p.role)


def _time(text: Any) -> dt.datetime | None:
    return None if not isinstance(text, str) else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _builtins(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def _attachment(deps: ExportDeps, conversation_id: str, media_id: str, room: int) -> tuple[AttachmentRecord, bytes | None]:
    row = await deps.media.get(media_id)
    if row is None or row.conversation_id != conversation_id:
        return AttachmentRecord(media_id=media_id, content_type="", path=None, problem="not found"), None
    rec = AttachmentRecord(media_id=media_id, content_type=row.content_type, path=None, bytes=row.size)
    if row.shredded or row.kek_id is None or row.wrapped_dek is None:
        rec.problem = "shredded"
        return rec, None
    if row.size > room:
        rec.problem = SIZE_CAP_PROBLEM
        return rec, None
    key = await deps.keyring.unwrap(row.kek_id, row.wrapped_dek)
    try:
        stored = await deps.blobs.get(row.variants["full"].key)
        data = await asyncio.to_thread(open_sealed, key, row.conversation_id, row.id, "full", stored)
        del stored
    except (BlobNotFound, KeyError):
        rec.problem = "missing from the blob store"
        return rec, None
    except MediaUnreadable:
        log.warning("export: media %s failed its integrity check", media_id)
        rec.problem = "failed its integrity check"
        return rec, None
    rec.bytes = len(data)
    return rec, data


async def _build(
    deps: ExportDeps, row: ExportRow, lease: _Lease, builder: ExportBuilder, on_progress: Callable[[int, int], None] | None
) -> None:
    """Read everything in scope into ``builder`` (its files go to disk as they come)."""
    scope = row.scope
    custodian_ids = [c["user_id"] for c in scope.get("custodians", [])]
    named = list(scope.get("conversation_ids", []))
    since, until = _time(scope.get("from")), _time(scope.get("to"))
    keywords: list[str] = list(scope.get("keywords", []))
    convs = await deps.store.conversations(custodian_ids, named)
    bounds = await deps.store.seq_bounds([c.id for c in convs], since, until)
    total = sum(b[2] for b in bounds.values())
    if total > deps.settings.export_max_messages:
        raise _Refused(f"too many messages in scope ({total} > BANKHUB_EXPORT_MAX_MESSAGES): narrow the scope")
    await lease.progress(0, total)
    if on_progress is not None:
        on_progress(0, total)
    people: dict[str, Person] = {}
    batch = deps.settings.export_batch_messages
    room = deps.settings.export_max_attachment_bytes
    done = 0
    for conv in convs:
        timed = [
            (s.joined_at, s.left_at, Stay(user_id=s.user_id, username=s.username, joined_at=rfc3339(s.joined_at), left_at=_t(s.left_at)))
            for s in await deps.store.membership(conv.id)
        ]
        stays = [t[2] for t in timed]
        unknown_members = {s.user_id for s in stays} - people.keys()
        if unknown_members:
            found_members = await deps.store.people(sorted(unknown_members))
            people.update({u: _person(found_members.get(u), u) for u in unknown_members})
        for s in stays:
            builder.person(people[s.user_id])  # the transcript's To: names every member
        record_ = ConversationRecord(
            conversation_id=conv.id, kind=conv.kind, title=conv.title, created_at=rfc3339(conv.created_at), membership=stays
        )
        kept = 0
        if conv.id in bounds:
            first, last, _ = bounds[conv.id]
            after = first - 1
            while after < last:
                upto = min(after + batch, last)
                page = await deps.messages.range(conv.id, after, upto)
                # the exact commit times: the range filter and "members when sent" compare them
                # with membership_log's, at the database's precision
                times = await deps.store.created_at(conv.id, after, upto)
                after = upto
                page = [
                    m for m in page
                    if m.message_id in times and (since is None or times[m.message_id] >= since) and (until is None or times[m.message_id] < until)
                ]
                unknown = {m.sender_id for m in page} - people.keys()
                if unknown:
                    found = await deps.store.people(sorted(unknown))
                    people.update({u: _person(found.get(u), u) for u in unknown})
                revisions: dict[str, list[RevisionRecord]] = {}
                for r in await deps.revisions.for_compliance(conv.id, [m.message_id for m in page]):
                    revisions.setdefault(r.message_id, []).append(
                        RevisionRecord(
                            revision=r.revision, kind=r.kind, changed_at=rfc3339(r.ts), change_seq=r.change_seq,
                            replaced=msgspec.to_builtins(r.body),
                        )
                    )
                for m in page:
                    body = msgspec.to_builtins(m.body)
                    revs = revisions.get(m.message_id, [])
                    if not matches_keywords([searchable_text(body), *(searchable_text(r.replaced) for r in revs)], keywords):
                        continue
                    created = rfc3339(times[m.message_id])
                    attachments: list[AttachmentRecord] = []
                    media_id = body.get("media_id") if body.get("kind") in ("image", "voice") else None
                    if isinstance(media_id, str):
                        rec, data = await _attachment(deps, conv.id, media_id, room)
                        if data is not None:
                            # written (and hashed) to the work directory in a worker thread
                            rec.path = await asyncio.to_thread(builder.add_attachment, media_id, rec.content_type, data)
                            room -= len(data)
                            del data
                        attachments.append(rec)
                    builder.add_message(
                        MessageRecord(
                            conversation_id=conv.id,
                            conversation_kind=conv.kind,
                            conversation_title=conv.title,
                            seq=m.seq,
                            message_id=m.message_id,
                            sender=people[m.sender_id],
                            created_at=created,
                            kind=str(body.get("kind")),
                            body=body,
                            members_at_send=members_at_time(timed, times[m.message_id]),
                            revisions=revs,
                            attachments=attachments,
                            edited_at=None if m.edited_ts is None else rfc3339(m.edited_ts),
                        )
                    )
                    kept += 1
                done += len(page)
                await lease.progress(done, total)
                if on_progress is not None:
                    on_progress(done, total)
        if kept or conv.id in named:
            # its transcript is written now (and its records dropped), in a worker thread
            await asyncio.to_thread(builder.add_conversation, record_)
    if custodian_ids:
        # one over the bound is fetched: more than the bound fails the build, never a silent cut
        cap = deps.settings.export_max_messages
        notices = await deps.store.notices(custodian_ids, since, until, cap + 1)
        if len(notices) > cap:
            raise _Refused(f"too many notices in scope (> {cap}, BANKHUB_EXPORT_MAX_MESSAGES): narrow the scope")
        alerts = await deps.alerts.for_compliance(custodian_ids, since, until, cap + 1)
        if len(alerts) > cap:
            raise _Refused(f"too many alerts in scope (> {cap}, BANKHUB_EXPORT_MAX_MESSAGES): narrow the scope")
        for n in notices:
            body = msgspec.json.decode(n.pop("body"))
            sig = n.pop("signature")
            words = [str(v) for k, v in body.items() if k != "kind" and isinstance(v, str)] if isinstance(body, dict) else []
            if keywords and not matches_keywords(words, keywords):
                continue
            builder.add_notice(
                {**{k: _builtins(v) for k, v in n.items()}, "body": body, "signature": None if sig is None else msgspec.json.decode(sig)}
            )
        for a in alerts:
            if keywords and not matches_keywords([a.title, a.body], keywords):
                continue
            fields = msgspec.to_builtins(a)
            fields.pop("fallback", None)
            builder.add_alert({k: _builtins(v) for k, v in fields.items()})
    lease.check()


class _Superseded(Exception):
    """The build lost its lease (another build took over, or the row was marked interrupted)."""


class _Lease:
    """The build's hold on its row: progress and completion only count while ``token`` is the
    row's ``build_token``; a heartbeat (every third of BANKHUB_EXPORT_STALE_SECONDS, and with
    every progress write) keeps the sweeps from marking it interrupted while it works."""

    def __init__(self, deps: ExportDeps, export_id: str, token: str) -> None:
        self.deps, self.export_id, self.token = deps, export_id, token
        self.lost = False

    def check(self) -> None:
        if self.lost:
            raise _Superseded()

    async def progress(self, done: int, total: int) -> None:
        if not await self.deps.store.progress(self.export_id, self.token, done, total):
            self.lost = True
        self.check()

    async def keep(self) -> None:
        interval = self.deps.settings.export_stale_seconds / 3
        while not self.lost:
            await asyncio.sleep(interval)
            try:
                if not await self.deps.store.heartbeat(self.export_id, self.token):
                    self.lost = True
            except Exception:
                log.warning("export %s: a heartbeat was not saved; the next one retries", self.export_id)


def _seal_next(src: IO[bytes], digest: Any, key: Any, export_id: str, index: int, last: bool) -> bytes:
    """Read, hash and seal the next chunk of the zip (in a worker thread)."""
    data = src.read(CHUNK_BYTES)
    digest.update(data)
    return seal_chunk(key, export_id, index, last, data)


async def _delete_copy(blobs: BlobStore, copy: StoredCopy | None) -> None:
    """Delete a stored copy's chunks (best effort: its key is destroyed or superseded anyway)."""
    if copy is None:
        return
    for i in range(copy.chunks):
        try:
            await blobs.delete(chunk_key(copy.prefix, i))
        except BlobError:
            log.warning("export chunk %s/%d was not deleted", copy.prefix, i)


async def _store_sealed(deps: ExportDeps, lease: _Lease, src: IO[bytes], size: int, prefix: str, key: Any) -> tuple[str, int]:
    """Seal the zip in ``src`` chunk by chunk into blobs ``<prefix>/<n>``: ``(sha256, chunks)``.
    One chunk in memory at a time; the hashing and sealing run in a worker thread."""
    src.seek(0)
    digest = hashlib.sha256()
    count = max(1, -(-size // CHUNK_BYTES))
    for i in range(count):
        lease.check()
        sealed = await asyncio.to_thread(_seal_next, src, digest, key, lease.export_id, i, i == count - 1)
        await deps.blobs.put(chunk_key(prefix, i), sealed)
    return digest.hexdigest(), count


async def _fail(deps: ExportDeps, row: ExportRow, token: str, error: str, by: str) -> None:
    """Record the build's failure (``export.failed``), if it still holds the lease."""
    async with deps.db.transaction("export_fail") as conn:
        if await deps.store.fail_txn(conn, row.id, error, token):
            await record(deps.auditor, actor=SYSTEM, action=EXPORT_FAILED, target=_target(row.id), details={"error": error, "by": by}, conn=conn)


async def build_and_store(
    deps: ExportDeps, export_id: str, *, by: str, on_progress: Callable[[int, int], None] | None = None
) -> ExportRow:
    """Build an approved export now, under a lease of its own: ``export.started``; every file
    spooled to a work directory (digests computed as it is written); the signed zip written
    to a temporary file, then sealed chunk by chunk into blobs ``exports/<id>/<token>/<n>``;
    ``export.completed`` only while the build still holds the lease, and only then is the
    copy it replaces deleted. Fails with a safe error and ``export.failed`` (then
    :class:`ActionError` ``conflict``); cancelled (a node's shutdown): ``export.failed``
    (``interrupted``). A row another build holds (a fresh heartbeat) is refused (``conflict``).
    Returns the ready row."""
    token = str(uuid.uuid4())
    async with deps.db.transaction("export_start") as conn:
        row = await deps.store.lock_txn(conn, export_id)
        if row is None:
            raise ActionError("not_found", "no such export")
        # a ready export is never rebuilt: new bytes would no longer match earlier downloads
        if row.approved_by is None or row.state not in ("running", "failed"):
            raise ActionError("conflict", f"the export is {row.state.replace('_', ' ')}: only an approved export is built")
        if await deps.store.lease_held_txn(conn, row.id, deps.settings.export_stale_seconds):
            raise ActionError("conflict", "another build of this export is running: wait for it, or retry it if it fails")
        await deps.store.start_txn(conn, row.id, token)
        await record(deps.auditor, actor=SYSTEM, action=EXPORT_STARTED, target=_target(row.id), details={"by": by}, conn=conn)
    lease = _Lease(deps, row.id, token)
    keeper = asyncio.get_running_loop().create_task(lease.keep(), name="export-heartbeat")
    prefix = f"{BLOB_PREFIX}/{row.id}/{token}"
    mine: StoredCopy | None = None
    try:
        with ExportBuilder(row.id, max_bytes=deps.settings.export_max_zip_bytes) as builder:
            await _build(deps, row, lease, builder, on_progress)
            signing_key = await deps.signing.ready()
            created_at = dt.datetime.now(dt.timezone.utc)
            # the zip goes to a temporary file (in memory only while small), deflated in a worker thread
            with tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES * 4) as zipped:
                await asyncio.to_thread(builder.write, zipped, created_at=created_at, scope=row.scope, key=signing_key)
                counts = dict(builder.counts)  # complete once written (the conversations are counted then)
                builder.close()  # the staged files are in the zip now
                size = zipped.tell()
                if size > deps.settings.export_max_zip_bytes:
                    raise ExportTooLarge("zip")
                kek_id, wrapped, key = await deps.keyring.create()
                mine = StoredCopy(prefix, max(1, -(-size // CHUNK_BYTES)))
                digest, chunks = await _store_sealed(deps, lease, zipped, size, prefix, key)
        async with deps.db.transaction("export_complete") as conn:
            done, old = await deps.store.complete_txn(
                conn, row.id, token=token, blob_key=prefix, chunks=chunks, key_id=EXPORT_KEY_ID, kek_id=kek_id,
                wrapped_dek=wrapped, size=size, sha256=digest, counts=counts,
            )
            if not done:
                raise _Superseded()
            await record(
                deps.auditor, actor=SYSTEM, action=EXPORT_COMPLETED, target=_target(row.id),
                details={"counts": counts, "bytes": size, "sha256": digest, "by": by}, conn=conn,
            )
        # only now that the new copy is recorded: the one it replaces
        await _delete_copy(deps.blobs, old)
        got = await deps.store.get(row.id)
        assert got is not None
        return got
    except _Superseded:
        await _delete_copy(deps.blobs, mine)
        log.warning("export %s: the build lost its lease (another build took over); its result was discarded", row.id)
        raise ActionError("conflict", "another build of this export took over: this build's result was discarded") from None
    except asyncio.CancelledError:
        # the node is shutting down: the row says so (the build never resumes by itself)
        await _delete_copy(deps.blobs, mine)
        await _fail(deps, row, token, INTERRUPTED, by)
        raise
    except Exception as exc:
        error = _safe_error(exc)
        if error == _UNKNOWN_ERROR:
            # the traceback (frames and types) at error level, never the exception's text: it
            # may quote a database error or message text
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("export %s failed: %s\nTraceback (most recent call last):\n%s", row.id, type(exc).__name__, frames.rstrip())
        else:
            log.error("export %s failed: %s", row.id, type(exc).__name__)
        await _delete_copy(deps.blobs, mine)
        await _fail(deps, row, token, error, by)
        raise ActionError("conflict", f"the export failed: {error}") from None
    finally:
        keeper.cancel()


async def _stored_chunks(deps: ExportDeps, row: ExportRow) -> tuple[Any, int]:
    """The export's key and chunk count; :class:`ActionError` when there is no stored copy."""
    if row.blob_key is None or row.kek_id is None or row.wrapped_dek is None:
        raise ActionError("not_ready", "the export has no stored result")
    try:
        key = await deps.keyring.unwrap(row.kek_id, row.wrapped_dek)
    except KeyringError:
        raise ActionError("unavailable", "the export's key is unavailable, retry") from None
    return key, row.chunks or 1


async def _read_chunk(deps: ExportDeps, row: ExportRow, key: Any, index: int, count: int) -> bytes:
    assert row.blob_key is not None
    stored = await deps.blobs.get(chunk_key(row.blob_key, index))
    return await asyncio.to_thread(open_chunk, key, row.id, index, index == count - 1, stored)


async def build_export(
    deps: ExportDeps, export_id: str, *, by: str, on_progress: Callable[[int, int], None] | None = None
) -> bytes:
    """:func:`build_and_store`, then the zip read back from its sealed chunks (what a download
    gives): the whole zip in memory, so for ``bankhub export run`` and tests; a node's builds
    (:func:`run_build`) never hold it."""
    row = await build_and_store(deps, export_id, by=by, on_progress=on_progress)
    key, count = await _stored_chunks(deps, row)
    return b"".join([await _read_chunk(deps, row, key, i, count) for i in range(count)])


async def _queued_heartbeat(deps: ExportDeps, export_id: str) -> None:
    while True:
        await asyncio.sleep(deps.settings.export_stale_seconds / 3)
        try:
            await deps.store.heartbeat(export_id, None)
        except Exception:
            log.warning("export %s: a heartbeat was not saved; the next one retries", export_id)


async def run_build(deps: ExportDeps, export_id: str, *, by: str) -> None:
    """:func:`build_and_store` as a background task: its outcome is in the row and the audit
    log. One build at a time per node (``store.build_slot``): the others wait, their rows
    ``running`` with a heartbeat and no lease yet. Cancelled while waiting (a shutdown): the
    row is marked failed (``interrupted``), audited."""
    waiting = asyncio.get_running_loop().create_task(_queued_heartbeat(deps, export_id), name="export-queued")
    try:
        async with deps.store.build_slot:
            waiting.cancel()
            await build_and_store(deps, export_id, by=by)
    except ActionError:
        pass  # recorded as failed (or another build holds it)
    except asyncio.CancelledError:
        if not waiting.cancelled():
            try:
                async with deps.db.transaction("export_fail_queued") as conn:
                    if await deps.store.fail_unclaimed_txn(conn, export_id, INTERRUPTED):
                        await record(
                            deps.auditor, actor=SYSTEM, action=EXPORT_FAILED, target=_target(export_id),
                            details={"error": INTERRUPTED, "by": by}, conn=conn,
                        )
            except Exception:
                log.warning("export %s: its interruption was not recorded; the sweep marks it", export_id)
        raise
    except Exception:
        log.exception("export %s: the build could not record its outcome", export_id)
    finally:
        waiting.cancel()


async def retry_export(deps: ExportDeps, actor: User, export_id: str, ip: str | None, *, build: bool = True) -> ExportView:
    """Rebuild a failed export: its requester or approver (:func:`bankhub.policy.may_retry_export`);
    ``running`` again, audited ``export.retried``; the build starts on this node (``build``)."""
    async with deps.db.transaction("export_retry") as conn:
        row = await _locked(deps, conn, actor, export_id)
        require(policy.may_retry_export(actor, requested_by=row.requested_by, approved_by=row.approved_by, state=row.state))
        await deps.store.retry_txn(conn, row.id)
        await record(
            deps.auditor, actor=actor, action=EXPORT_RETRIED, target=_target(row.id), reason=row.reason, ip=ip,
            details={"previous_error": row.error, "case_ref": row.case_ref}, conn=conn,
        )
    if build:
        deps.store.spawn(run_build(deps, row.id, by=f"node {deps.settings.node_name}"))
    got = await deps.store.get(row.id)
    assert got is not None
    return view(got)


async def sweep(deps: ExportDeps) -> tuple[list[str], list[str]]:
    """The node's periodic export job (and at start-up): mark ``running`` exports whose build
    showed no sign of life for BANKHUB_EXPORT_STALE_SECONDS failed (``interrupted``, audited
    ``export.failed``), and expire ``ready`` exports older than BANKHUB_EXPORT_RETENTION_DAYS
    (the wrapped data key destroyed in the transaction, audited ``export.expired``; then the
    sealed chunks deleted). Returns ``(interrupted ids, expired ids)``."""
    by = f"sweep on node {deps.settings.node_name}"
    async with deps.db.transaction("export_sweep_stale") as conn:
        stale = await deps.store.stale_txn(conn, deps.settings.export_stale_seconds)
        for export_id in stale:
            await record(
                deps.auditor, actor=SYSTEM, action=EXPORT_FAILED, target=_target(export_id), details={"error": INTERRUPTED, "by": by},
                conn=conn,
            )
    async with deps.db.transaction("export_sweep_expire") as conn:
        expired = await deps.store.expire_txn(conn, deps.settings.export_retention_days)
        for export_id, reason, _ in expired:
            await record(
                deps.auditor, actor=SYSTEM, action=EXPORT_EXPIRED, target=_target(export_id), reason=reason,
                details={"retention_days": deps.settings.export_retention_days, "by": by}, conn=conn,
            )
    for _, _, copy in expired:
        await _delete_copy(deps.blobs, copy)
    if stale:
        log.warning("exports marked interrupted (no sign of life from their build): %d", len(stale))
    return stale, [e[0] for e in expired]
