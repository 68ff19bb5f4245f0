"""Data-loss prevention on every text before it is stored or delivered, and the investigators'
search of what was masked (docs/compliance.md, "Data-loss prevention").

The send path (:func:`bankhub.actions.messages.commit`) calls three steps around its append:

1. :func:`prescan` before the transaction: each send's text fields (a text, a picture's
   caption, a card's title, lines and button labels, an edit's new text) are scanned
   (:mod:`bankhub.compliance.dlp`, pure) and, when anything was found, the compliance key is
   loaded — so the transaction never waits on the key provider;
2. :func:`screen` under the conversations' row locks, right before the append: the verdict of
   :func:`bankhub.policy.dlp_action` for the sender and every other member (``allow``,
   ``mask``, ``refuse``); a masked body replaces the original (what is stored, delivered,
   signed and returned to the sender), a refusal replaces the decision (``sensitive_data``,
   naming what was found, never the value);
3. :func:`record_txn` right after the append, in the same transaction: the keyed fingerprints
   of the masked values of each stored message (``dlp_matches``), the refusal figures, and the
   notice for each sender's ``sent`` (``Appended.dlp``).

If the compliance key cannot be had, a send that would be masked is refused ``unavailable``
(nothing stored): never stored unmasked, never masked without its fingerprint.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from .. import policy
from ..compliance import dlp as core
from ..desk.system import SYSTEM_USER_ID
from ..hub import Hub
from ..models import Role, User
from ..protocol.frames import DlpNotice, ErrorCode, NoticeBody, TextNotice
from ..settings import Settings
from ..storage import Appended, NewMessage
from ..storage import dlp as store
from ..storage.db import Conn
from ..storage.messages import Locked
from ..ratelimit import Limit
from .audit import DLP_SEARCHED, record
from .errors import ActionError, require
from .sensitive import refuse_sensitive
from .limits import enforce

__all__ = [
    "Scan",
    "prescan",
    "screen",
    "record_txn",
    "screen_text",
    "screen_note",
    "screen_title_txn",
    "screen_notice",
    "screen_csat_comment",
    "screen_auto_reply",
    "configured",
    "search",
    "figures",
    "Figures",
    "MAX_PAGE",
]

log = logging.getLogger("bankhub.actions.dlp")

MAX_PAGE = 200
_NOTHING: tuple[core.Finding, ...] = ()
# the string fields of a body that carry text people type (what is scanned), per body kind
_TEXT_KEYS = ("text", "caption", "title", "label", "value")


class Scan(NamedTuple):
    """What :func:`prescan` found in one send: the findings, the body with all of them masked
    (None: nothing found), and the compliance key (None: nothing found, or unavailable)."""

    findings: tuple[core.Finding, ...]
    masked: bytes | None
    key: store.DlpKey | None


_CLEAN = Scan(_NOTHING, None, None)


def configured(settings: Settings) -> dict[str, str]:
    """The action of each direction, from the ``BANKHUB_DLP_*`` settings."""
    return {
        "customer_to_staff": settings.dlp_customer_to_staff,
        "staff_to_customer": settings.dlp_staff_to_customer,
        "customer_to_customer": settings.dlp_customer_to_customer,
        "staff_to_staff": settings.dlp_staff_to_staff,
    }


def _mask_tree(value: Any, found: list[core.Finding]) -> Any:
    """``value`` (a decoded body) with its text fields masked; findings appended to ``found``."""
    if isinstance(value, dict):
        label, val = value.get("label"), value.get("value")
        if isinstance(label, str) and isinstance(val, str):
            # a card line: its label is the value's context ("账号" / "6222…"); one scan of both,
            # split again where they were joined (a mask is as long as what it replaces)
            m = core.mask(f"{label}\uff1a{val}")
            found.extend(m.findings)
            value = {**value, "label": m.text[: len(label)], "value": m.text[len(label) + 1 :]}
            return {k: (_mask_tree(v, found) if k not in ("label", "value") and isinstance(v, (dict, list)) else v) for k, v in value.items()}
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and k in _TEXT_KEYS:
                m = core.mask(v)
                found.extend(m.findings)
                out[k] = m.text
            elif isinstance(v, (dict, list)) and k in ("body", "fields", "actions"):
                out[k] = _mask_tree(v, found)
            else:
                out[k] = v
        return out
    if isinstance(value, list):
        return [_mask_tree(v, found) for v in value]
    return value


def scan_body(kind: str, body: bytes) -> tuple[tuple[core.Finding, ...], bytes | None]:
    """The findings in a client body's text fields and the body with them masked (None: none)."""
    if kind not in ("text", "image", "card", "edit"):
        return _NOTHING, None
    decoded = msgspec.json.decode(body)
    found: list[core.Finding] = []
    masked = _mask_tree(decoded, found)
    if not found:
        return _NOTHING, None
    return tuple(found), msgspec.json.encode(masked)


async def _key(hub: Hub) -> store.DlpKey | None:
    try:
        return await hub.dlp.active()
    except store.DlpUnavailable:
        return None


async def prescan(hub: Hub, sends: Sequence[NewMessage]) -> list[Scan]:
    """Step 1, before the transaction: each send's findings and masked body, and the key."""
    scans: list[Scan] = []
    key: store.DlpKey | None = None
    loaded = False
    for n in sends:
        if n.sender.id == SYSTEM_USER_ID and n.kind != "card":  # the hub's own notices; a bank system's card is screened
            scans.append(_CLEAN)
            continue
        findings, masked = scan_body(n.kind, n.body)
        if not findings:
            scans.append(_CLEAN)
            continue
        if not loaded:
            key, loaded = await _key(hub), True
        scans.append(Scan(findings, masked, key))
    return scans


def _recipients(locked: Locked, conversation_id: str, sender_id: str) -> list[tuple[Role | str, bool]]:
    members = locked.members.get(conversation_id, {})
    return [(r["user_role"], bool(r["widget_visitor"])) for uid, r in members.items() if uid != sender_id]


_NO_KEY = policy.Decision(False, ErrorCode.UNAVAILABLE, "the compliance key is unavailable; nothing was stored, retry")


def screen(
    settings: Settings, sends: Sequence[NewMessage], scans: Sequence[Scan], locked: Locked, decisions: Sequence[policy.Decision]
) -> tuple[list[NewMessage], list[policy.Decision], list[policy.DlpVerdict | None]]:
    """Step 2, under the row locks right before the append: the sends with masked bodies, the
    decisions with refusals, and each send's verdict (None: nothing found, or already refused)."""
    actions = configured(settings)
    out_sends, out_decisions = list(sends), list(decisions)
    verdicts: list[policy.DlpVerdict | None] = []
    for i, (n, s, d) in enumerate(zip(sends, scans, decisions, strict=True)):
        if not s.findings or not d.allowed:
            verdicts.append(None)
            continue
        verdict = policy.dlp_action(
            n.sender, _recipients(locked, n.conversation_id, n.sender.id), {f.kind for f in s.findings}, actions
        )
        verdicts.append(verdict)
        if verdict.action == "refuse":
            out_decisions[i] = policy.dlp_refusal({f.kind for f in s.findings})
        elif verdict.action == "mask":
            if s.key is None or s.masked is None:
                out_decisions[i] = _NO_KEY
            else:
                out_sends[i] = msgspec.structs.replace(n, body=s.masked)
    return out_sends, out_decisions, verdicts


def notices(findings: Sequence[core.Finding]) -> list[DlpNotice]:
    """What the sender is told: each masked value's kind and mask."""
    return [DlpNotice(kind=f.kind, masked=f.masked) for f in findings]


def matches(scan: Scan, message_id: str, conversation_id: str) -> list[store.NewMatch]:
    """The fingerprint rows of one stored message's masked values (one per distinct value)."""
    key = scan.key
    assert key is not None
    rows, seen = [], set()
    for f in scan.findings:
        if (f.kind, f.canonical) in seen:
            continue
        seen.add((f.kind, f.canonical))
        if f.kind in core.SEARCHABLE_KINDS:
            rows.append(store.NewMatch(message_id, conversation_id, f.kind, key.key_id, core.fingerprint(key.secret, f.kind, f.canonical)))
        else:
            rows.append(store.NewMatch(message_id, conversation_id, f.kind, None, None))
    return rows


async def record_txn(
    conn: Conn, scans: Sequence[Scan], verdicts: Sequence[policy.DlpVerdict | None], results: Sequence[Appended]
) -> None:
    """Step 3, right after the append: fingerprints of what was masked in the stored messages,
    the refusal figures, and each masked send's notice (``Appended.dlp``)."""
    rows: list[store.NewMatch] = []
    refused: dict[tuple[str, str], int] = {}
    for s, v, r in zip(scans, verdicts, results, strict=True):
        if v is None:
            continue
        if v.action == "mask" and r.message is not None:
            r.dlp = notices(s.findings)
            if r.status == "stored":
                rows.extend(matches(s, r.message.message_id, r.message.conversation_id))
        elif v.action == "refuse" and r.code == ErrorCode.SENSITIVE_DATA:
            for kind in {f.kind for f in s.findings}:
                refused[(kind, v.direction)] = refused.get((kind, v.direction), 0) + 1
    await store.insert_matches_txn(conn, rows)
    await store.count_refusals_txn(conn, refused)


# --- one text outside the group committer (edits, agent notes, notices) -------------------------


def screen_text(settings: Settings, sender: User, recipients: Sequence[tuple[Role | str, bool]], text: str) -> str:
    """One text kept outside messages (a note, a notice): the text to store — masked when the
    policy says so, as sent when it allows; raises :class:`ActionError` ``sensitive_data`` when
    it refuses. No fingerprint is kept (fingerprints name a message)."""
    masked = core.mask(text)
    if not masked.findings:
        return text
    kinds = {f.kind for f in masked.findings}
    verdict = policy.dlp_action(sender, recipients, kinds, configured(settings))
    if verdict.action == "refuse":
        require(policy.dlp_refusal(kinds))
    return masked.text if verdict.action == "mask" else text


def screen_note(settings: Settings, author: User, text: str) -> str:
    """A service-desk note: read by agents and supervisors only (staff to staff)."""
    return screen_text(settings, author, [(Role.AGENT, False)], text)


async def screen_title_txn(settings: Settings, conn: Conn, actor: User, conversation_id: str, title: str) -> str:
    """A group's new title, read by every member: screened as a send from ``actor`` to the
    current members (read in the rename's transaction)."""
    sides = await store.member_sides_txn(conn, uuid.UUID(conversation_id), actor.id)
    return screen_text(settings, actor, sides, title)


def screen_notice(settings: Settings, actor: User, body: NoticeBody, *, staff_only: bool) -> NoticeBody:
    """An official-account notice's every text field (a text notice's text; an article's title,
    summary, body and button label), from staff to its followers — customers, or staff only:
    masked or refused (``sensitive_data``) as a send would be. Long article bodies are scanned
    whole (:func:`bankhub.compliance.dlp.scan` takes any length)."""
    readers: list[tuple[Role | str, bool]] = [(Role.AGENT, False)] if staff_only else [(Role.CUSTOMER, False)]
    if isinstance(body, TextNotice):
        return msgspec.structs.replace(body, text=screen_text(settings, actor, readers, body.text))
    fields = {name: getattr(body, name) for name in ("title", "summary", "body", "action_label")}
    found = {name: core.mask(v) for name, v in fields.items() if v}
    kinds = {f.kind for m in found.values() for f in m.findings}
    if not kinds:
        return body
    verdict = policy.dlp_action(actor, readers, kinds, configured(settings))
    if verdict.action == "refuse":
        require(policy.dlp_refusal(kinds))
    if verdict.action == "allow":
        return body
    return msgspec.structs.replace(body, **{name: m.text for name, m in found.items()})


def screen_csat_comment(settings: Settings, customer: User, comment: str) -> str:
    """A customer's satisfaction comment, read by the service desk (customer to staff)."""
    return screen_text(settings, customer, [(Role.AGENT, False)], comment)


def screen_auto_reply(settings: Settings, rm: User, text: str) -> str:
    """An RM's auto-reply, posted to each customer who writes while they are away (staff to
    customer: refused ``sensitive_data`` as the RM's own send would be)."""
    return screen_text(settings, rm, [(Role.CUSTOMER, False)], text)


# --- the investigators' search ------------------------------------------------------------------


class Figures(NamedTuple):
    masked: dict[str, int]
    refused: dict[tuple[str, str], int]


async def search(
    hub: Hub,
    actor: User,
    *,
    kind: str,
    value: str,
    reason: str,
    case_ref: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
    ip: str | None,
) -> tuple[list[store.MatchRow], bool]:
    """A page of the messages in which ``value`` (a card, resident ID or account number) was
    masked, newest first (metadata only), and whether more follow. Audited (``dlp.searched``: the
    kind, how many matched on this page, the case reference — never the value or its
    fingerprint) before anything is returned."""
    require(policy.may_search_dlp(actor, reason))
    if kind not in core.SEARCHABLE_KINDS:
        raise ActionError("invalid_value", f"kind must be one of {', '.join(core.SEARCHABLE_KINDS)}")
    canonical = core.canonical(kind, value)  # type: ignore[arg-type]
    if canonical is None:
        raise ActionError("invalid_value", _INVALID[kind])
    # the case reference is kept in the audit row: never a value (answered `invalid_value`, as before)
    refuse_sensitive("invalid_value", case_ref=case_ref)
    # a masked ID has ~3,300 candidates, a card with a known prefix ~100,000: each search is a
    # guess, so an officer's searches are bounded, and refused when the limiter cannot count them
    # (fail closed); the next page of a search already made is not a new guess
    if after is None:
        settings = hub.settings
        await enforce(
            hub, f"dlp-search:{actor.id}", Limit(rate=settings.dlp_search_per_hour / 3600, burst=settings.dlp_search_burst), fail_closed=True
        )
    limit = max(1, min(limit, MAX_PAGE))
    keys = await hub.dlp.every()
    hmacs = [core.fingerprint(k.secret, kind, canonical) for k in keys]  # type: ignore[arg-type]
    rows = await store.search(hub.db, kind, hmacs, after, limit + 1)
    page = rows[:limit]
    await record(
        hub,
        actor=actor,
        action=DLP_SEARCHED,
        target=f"dlp:{kind}",
        reason=reason,
        ip=ip,
        # the value's mask (a card's first and last four, an ID's region and last four): what a
        # masked message already shows, never the value — enough that a sweep of guesses sharing
        # one mask stands out in the audit trail
        details={"kind": kind, "mask": core.mask_value(kind, canonical), "matches": len(page),  # type: ignore[arg-type]
                 "case_ref": (case_ref or "")[:128] or None, "next_page": after is not None},
    )
    return page, len(rows) > limit


_INVALID = {
    "card": "value must be a card number: 13 to 19 digits (spaces and dashes allowed) passing the Luhn check",
    "resident_id": "value must be a resident ID number: 17 digits and a check character (0-9 or X) with a valid checksum",
    "bank_account": "value must be an account number: 10 to 25 digits (spaces and dashes allowed)",
}


async def figures(hub: Hub, actor: User) -> Figures:
    """Counts per kind of values masked and of sends refused (per direction): compliance only."""
    require(policy.may_read_dlp_figures(actor))
    masked, refused = await store.figures(hub.db)
    return Figures(masked, refused)
