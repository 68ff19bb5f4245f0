"""Supervision: rules flag messages into a review queue, plus random sampling of RMs and agents.

**In the send transaction.** :func:`flag_txn` runs inside the group committer's transaction
(:func:`bankhub.actions.messages.commit`, right after the media are marked attached) and in
the edit transaction (:mod:`bankhub.actions.revise`): it evaluates the node's compiled rules
(``hub.supervision``) on the text as stored — after data-loss prevention masked it — and
writes the flags in that same transaction, so nothing a client is told was sent escapes
supervision. The rules apply to what people write (:func:`bankhub.policy.supervised`); a
message of an RM or a service-desk agent is also sampled at ``BANKHUB_SUPERVISION_SAMPLE_RATE``
(:func:`bankhub.compliance.supervision.sampled`). No query is added while the rules did not
change and nothing is flagged.

**Reviewers.** Compliance officers manage the rules (each change audited and the node's rule
set reloaded at once; other nodes within ``BANKHUB_SUPERVISION_RELOAD_SECONDS``), page the
queue (metadata only), read a flagged message with its context only through the reason-coded
path (``privileged_read`` audited first, as :mod:`bankhub.actions.compliance`), and decide:
escalate or close, each audited. A closed flag is final; nobody decides a flag on their own
message, and an escalated flag is closed by another officer than the one who escalated it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from .. import policy
from ..compliance.supervision import KINDS, MAX_PATTERN_RULES, MAX_RULES, RuleError, RuleSpec, compile_rule, sampled
from ..hub import Hub
from ..models import MessageRevision, User
from ..protocol.frames import CardBody, EditBody, ImageBody, Message, MessageBody, RecallBody, TextBody
from ..storage import Appended, NewMessage
from ..storage.db import Conn
from ..storage.supervision import FlagRow, NameTaken, NewFlag, RuleFigures, RuleRow, SampleFigures
from . import audit
from .errors import ActionError, require
from .sensitive import refuse_sensitive

__all__ = [
    "CONTEXT",
    "MAX_NOTE_CHARS",
    "texts_of",
    "flag_txn",
    "flag_title_txn",
    "list_rules",
    "add_rule",
    "change_rule",
    "remove_rule",
    "queue",
    "read_flag",
    "decide",
    "figures",
]

CONTEXT = 5
"""Messages shown before and after a flagged one."""
MAX_NOTE_CHARS = 2000
MAX_FIGURE_SENDERS = 500
STATES = ("open", "escalated", "closed")


def texts_of(body: MessageBody) -> list[str]:
    """The text a stored body carries: a text, a caption, a card's title, fields and action
    labels, an edit's new text."""
    if isinstance(body, TextBody):
        return [body.text]
    if isinstance(body, ImageBody):
        return [body.caption] if body.caption else []
    if isinstance(body, CardBody):
        # each a text of its own: a term never spans a label and its value
        return [body.title, *(text for f in body.fields for text in (f.label, f.value)), *(a.label for a in body.actions)]
    if isinstance(body, EditBody):
        return [body.body.text] if isinstance(body.body, TextBody) else []
    return []


async def flag_txn(hub: Hub, conn: Conn, sends: Sequence[NewMessage], results: Sequence[Appended]) -> int:
    """Flag the batch's stored messages (in the caller's transaction); returns how many flags."""
    rules = None
    flags: list[NewFlag] = []
    rate = hub.settings.supervision_sample_rate
    for new, result in zip(sends, results, strict=True):
        m = result.message
        if result.status != "stored" or m is None:
            continue  # a duplicate was flagged when it was stored
        by_rules, by_sample = policy.supervised(new.sender)
        if not (by_rules or by_sample):
            continue
        if rules is None:
            rules = await hub.supervision.current_txn(conn)
        if by_rules:
            flags.extend(_flag(m, rule_id, matched) for rule_id, matched in rules.matches_all(texts_of(m.body)))
        # a recall withdraws, it says nothing: not a sample of what the sender writes
        if by_sample and not isinstance(m.body, RecallBody) and sampled(rules.sample_key, m.message_id, rate):
            flags.append(_flag(m, None))
    await hub.supervision.flag_txn(conn, flags)
    return len(flags)


async def flag_title_txn(hub: Hub, conn: Conn, actor: User, conversation_id: str, title: str) -> int:
    """Flag a group's title as it is set (a group created or renamed by ``actor``), in the
    caller's transaction: a title is free text every member reads, so it meets the rules as a
    message does (``subject`` ``group_title``, the actor as the sender; never sampled)."""
    by_rules, _ = policy.supervised(actor)
    if not by_rules:
        return 0
    rules = await hub.supervision.current_txn(conn)
    flags = [
        NewFlag(message_id=None, conversation_id=conversation_id, seq=0, sender_id=actor.id, rule_id=rule_id, matched=matched, subject="group_title")
        for rule_id, matched in rules.matches(title)
    ]
    await hub.supervision.flag_txn(conn, flags)
    return len(flags)


def _flag(m: Message, rule_id: str | None, matched: str | None = None) -> NewFlag:
    return NewFlag(
        message_id=m.message_id, conversation_id=m.conversation_id, seq=m.seq, sender_id=m.sender_id, rule_id=rule_id, matched=matched
    )


# --- rules -------------------------------------------------------------------------------------


def _checked(kind: str, terms: Sequence[str] | None, pattern: str | None) -> tuple[list[str], str | None]:
    """The terms or pattern of a rule of ``kind``, as stored; ``invalid_rule`` when refused."""
    if kind not in KINDS:
        raise ActionError("invalid_rule", f"kind must be one of {list(KINDS)}")
    if kind == "lexicon" and pattern is not None:
        raise ActionError("invalid_rule", "a lexicon rule has terms, not a pattern")
    if kind == "pattern" and terms:
        raise ActionError("invalid_rule", "a pattern rule has a pattern, not terms")
    spec = RuleSpec("", "", kind, tuple(terms or ()), pattern)
    try:
        compile_rule(spec)
    except RuleError as exc:
        raise ActionError("invalid_rule", str(exc)) from None
    return (list(terms or ()), None) if kind == "lexicon" else ([], pattern)


def _rule_details(rule: RuleRow) -> dict[str, object]:
    # the whole rule, so what a past flag's rule said stays recoverable from the audit chain
    # after a change or removal (terms and patterns are the rule's words, never message text)
    return {"name": rule.name, "kind": rule.kind, "enabled": rule.enabled, "terms": list(rule.terms), "pattern": rule.pattern}


def _rule_id(rule_id: str) -> str:
    try:
        return str(uuid.UUID(rule_id))
    except ValueError:
        raise ActionError("not_found", "no such rule") from None


async def list_rules(hub: Hub, actor: User, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int) -> list[RuleRow]:
    require(policy.may_supervise(actor))
    return await hub.supervision.list_rules(after, limit)


async def add_rule(
    hub: Hub, actor: User, *, name: str, kind: str, terms: Sequence[str] | None, pattern: str | None, enabled: bool, ip: str | None
) -> RuleRow:
    """A new rule; applies to the next message this node commits."""
    require(policy.may_supervise(actor))
    terms_, pattern_ = _checked(kind, terms, pattern)
    async with hub.transaction("supervision_rule_add") as tx:
        # the state row serialises additions: the count below cannot be raced past the bound
        await tx.conn.execute("SELECT version FROM supervision_state FOR UPDATE")
        if await hub.supervision.count_rules_txn(tx.conn) >= MAX_RULES:
            raise ActionError("conflict", f"there are {MAX_RULES} rules already: remove one first")
        # the pattern work per text is bounded by their number (docs/compliance.md)
        if kind == "pattern" and await hub.supervision.count_rules_txn(tx.conn, "pattern") >= MAX_PATTERN_RULES:
            raise ActionError("conflict", f"there are {MAX_PATTERN_RULES} pattern rules already: remove one first")
        try:
            rule = await hub.supervision.add_rule_txn(
                tx.conn, name=name, kind=kind, terms=terms_, pattern=pattern_, enabled=enabled, created_by=actor.id
            )
        except NameTaken:
            raise ActionError("conflict", "a rule of this name exists") from None
        await audit.record(
            hub, actor=actor, action=audit.SUPERVISION_RULE_ADDED, target=f"supervision_rule:{rule.rule_id}", ip=ip,
            details=_rule_details(rule), conn=tx.conn,
        )
    await hub.supervision.reload()
    return rule


async def change_rule(
    hub: Hub,
    actor: User,
    rule_id: str,
    *,
    name: str | None,
    terms: Sequence[str] | None,
    pattern: str | None,
    enabled: bool | None,
    ip: str | None,
) -> RuleRow:
    """Change a rule's name, terms or pattern, or switch it on or off (its kind stays)."""
    require(policy.may_supervise(actor))
    rid = _rule_id(rule_id)
    async with hub.transaction("supervision_rule_change") as tx:
        current = await hub.supervision.lock_rule_txn(tx.conn, rid)
        if current is None:
            raise ActionError("not_found", "no such rule")
        if current.kind == "lexicon":
            if pattern is not None:
                raise ActionError("invalid_rule", "a lexicon rule has terms, not a pattern")
            terms_, pattern_ = _checked("lexicon", current.terms if terms is None else terms, None)
        else:
            if terms is not None:
                raise ActionError("invalid_rule", "a pattern rule has a pattern, not terms")
            terms_, pattern_ = _checked("pattern", None, current.pattern if pattern is None else pattern)
        try:
            rule = await hub.supervision.change_rule_txn(
                tx.conn,
                rid,
                name=current.name if name is None else name,
                terms=terms_,
                pattern=pattern_,
                enabled=current.enabled if enabled is None else enabled,
            )
        except NameTaken:
            raise ActionError("conflict", "a rule of this name exists") from None
        details = _rule_details(rule) | {"was": _rule_details(current)}
        await audit.record(
            hub, actor=actor, action=audit.SUPERVISION_RULE_CHANGED, target=f"supervision_rule:{rid}", ip=ip, details=details, conn=tx.conn
        )
    await hub.supervision.reload()
    return rule


async def remove_rule(hub: Hub, actor: User, rule_id: str, *, ip: str | None) -> None:
    """Remove a rule: it flags nothing more; its flags stay in the queue and the figures."""
    require(policy.may_supervise(actor))
    rid = _rule_id(rule_id)
    async with hub.transaction("supervision_rule_remove") as tx:
        current = await hub.supervision.lock_rule_txn(tx.conn, rid)
        if current is None:
            raise ActionError("not_found", "no such rule")
        await hub.supervision.remove_rule_txn(tx.conn, rid)
        await audit.record(
            hub, actor=actor, action=audit.SUPERVISION_RULE_REMOVED, target=f"supervision_rule:{rid}", ip=ip,
            details=_rule_details(current), conn=tx.conn,
        )
    await hub.supervision.reload()


# --- the queue, reads, decisions, figures --------------------------------------------------------


async def queue(hub: Hub, actor: User, state: str, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int) -> list[FlagRow]:
    """Flags in ``state`` (open, escalated, closed), oldest first: metadata, never text."""
    require(policy.may_supervise(actor))
    if state not in STATES:
        raise ActionError("invalid_request", f"state must be one of {list(STATES)}")
    return await hub.supervision.queue(state, after, limit)


def _flag_id(flag_id: str) -> str:
    try:
        return str(uuid.UUID(flag_id))
    except ValueError:
        raise ActionError("not_found", "no such flag") from None


async def read_flag(
    hub: Hub, actor: User, flag_id: str, *, reason: str, case_ref: str | None, ip: str | None
) -> tuple[FlagRow, Message | None, list[Message], list[MessageRevision], str | None]:
    """The flag, its message and up to :data:`CONTEXT` messages before and after it, with the
    bodies edits and recalls replaced in them (a flagged message its sender recalled or edited
    since is still reviewable) — a privileged read: a reason code, and the audit row committed
    before any text is read. A group title's flag answers the group's title as it stands and
    the group's first messages for context (the last item; None for a message's flag)."""
    require(policy.may_read_privileged(actor, reason))
    refuse_sensitive(case_ref=case_ref)  # kept in the privileged_read audit row
    flag = await hub.supervision.flag(_flag_id(flag_id))
    if flag is None:
        raise ActionError("not_found", "no such flag")
    await audit.record(
        hub,
        actor=actor,
        action=audit.PRIVILEGED_READ,
        target=f"conversation:{flag.conversation_id}",
        reason=reason,
        ip=ip,
        details={
            "case_ref": (case_ref or "")[:128] or None,
            "supervision_flag": flag.flag_id,
            "from_seq": max(1, flag.seq - CONTEXT),
            "to_seq": flag.seq + CONTEXT,
        },
    )
    title: str | None = None
    if flag.subject == "group_title":
        title = await hub.supervision.title(flag.conversation_id)
    around = await hub.messages.range(flag.conversation_id, max(0, flag.seq - CONTEXT - 1), flag.seq + CONTEXT)
    message = next((m for m in around if m.message_id == flag.message_id), None)
    # an edit's text lives on in its target's revisions once the target is edited again or
    # recalled (a later edit rewrites the earlier edit messages to the current body): ask for
    # the targets of the edits in the window too, wherever the target stands
    ids = dict.fromkeys(m.message_id for m in around)
    ids.update(dict.fromkeys(m.body.message_id for m in around if isinstance(m.body, EditBody)))
    revisions = await hub.revisions.for_compliance(flag.conversation_id, list(ids))
    return flag, message, around, revisions, title


async def decide(hub: Hub, actor: User, flag_id: str, decision: str, note: str | None, *, ip: str | None) -> FlagRow:
    """Escalate or close a flag (:func:`bankhub.policy.may_decide_flag`); audited."""
    require(policy.may_supervise(actor))
    refuse_sensitive(note=note)  # kept in the audit row of the decision
    fid = _flag_id(flag_id)
    async with hub.transaction("supervision_decide") as tx:
        current = await hub.supervision.lock_flag_txn(tx.conn, fid)
        if current is None:
            raise ActionError("not_found", "no such flag")
        require(policy.may_decide_flag(actor, current.state, decision, sender_id=current.sender_id, escalated_by=current.escalated_by_id))
        state = policy.SUPERVISION_DECISIONS[decision]
        flag = await hub.supervision.decide_txn(tx.conn, fid, state, actor.id, note)
        await audit.record(
            hub,
            actor=actor,
            action=audit.SUPERVISION_FLAG_ESCALATED if state == "escalated" else audit.SUPERVISION_FLAG_CLOSED,
            target=f"supervision_flag:{fid}",
            ip=ip,
            details={
                "from": current.state,
                "rule_id": flag.rule_id,
                "conversation_id": flag.conversation_id,
                "message_id": flag.message_id,
                "note": note,
            },
            conn=tx.conn,
        )
    return flag


async def figures(hub: Hub, actor: User) -> tuple[list[RuleFigures], list[SampleFigures], bool]:
    """Counts per rule and per sampled RM or agent (see :meth:`SupervisionStore.figures`)."""
    require(policy.may_supervise(actor))
    return await hub.supervision.figures(MAX_FIGURE_SENDERS)
