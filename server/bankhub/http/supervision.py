"""HTTP handlers for supervision (thin: decode, act, encode). See docs/compliance.md, "Supervision".

Compliance officers only (403 ``forbidden`` for everyone else): the rules, the review queue
(metadata only), a flag's message with its context through the reason-coded privileged read,
the decisions and the figures.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import supervision as supervision_actions
from ..compliance.supervision import MAX_PATTERN_CHARS, MAX_TERM_CHARS, MAX_TERMS
from ..policy import PRIVILEGED_READ_REASONS
from ..models import MessageRevision
from ..protocol.frames import Message
from ..storage.supervision import FlagRow, RuleRow
from .handler import RouteTable, client_ip, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import CASE_REF, PRIVILEGED_READ_REASON, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

RULE_ID = TextParam("rule_id", text.Id, "path")
FLAG_ID = TextParam("flag_id", text.Id, "path")
STATE = TextParam("state", Annotated[text.Line, Meta(max_length=16)], "query", "open (the default), escalated or closed")
KEY_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])

RuleName = Annotated[text.Line, Meta(min_length=1, max_length=80)]
Term = Annotated[text.Line, Meta(min_length=1, max_length=MAX_TERM_CHARS)]
Terms = Annotated[list[Term], Meta(min_length=1, max_length=MAX_TERMS)]
Pattern = Annotated[text.Line, Meta(min_length=1, max_length=MAX_PATTERN_CHARS)]
Note = Annotated[text.Text, Meta(max_length=supervision_actions.MAX_NOTE_CHARS)]


class NewRuleBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A rule: ``lexicon`` with ``terms`` (``!phrase``: an exception), or ``pattern`` with ``pattern``."""

    name: RuleName
    kind: Literal["lexicon", "pattern"]
    terms: Terms | None = None
    pattern: Pattern | None = None
    enabled: bool = True


class RuleChangeBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What to change (the kind stays): absent fields keep their value."""

    name: RuleName | None = None
    terms: Terms | None = None
    pattern: Pattern | None = None
    enabled: bool | None = None


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    decision: Literal["escalate", "close"]
    note: Note | None = None


class RuleOut(msgspec.Struct):
    rule_id: str
    name: str
    kind: str
    terms: list[str]
    pattern: str | None
    enabled: bool
    created_by: str | None  # username; null: seeded with the demo data
    created_at: dt.datetime
    updated_at: dt.datetime


class RuleList(msgspec.Struct):
    rules: list[RuleOut]
    next_cursor: str | None


class FlagSender(msgspec.Struct):
    user_id: str
    username: str


class FlagOut(msgspec.Struct):
    """A flag's metadata: never the message's text."""

    flag_id: str
    rule_id: str | None  # null: sampled
    rule_name: str  # "sample" for a sampled message
    conversation_id: str
    message_id: str | None  # null: a group title's flag (subject group_title, seq 0)
    seq: int
    sender: FlagSender
    created_at: dt.datetime
    state: Literal["open", "escalated", "closed"]
    decided_by: str | None  # username of the latest decision (escalation, then close)
    decided_at: dt.datetime | None
    note: str | None
    escalated_by: str | None = None  # username; kept when an escalated flag is closed
    escalated_at: dt.datetime | None = None
    escalation_note: str | None = None
    subject: Literal["message", "group_title"] = "message"


class FlagQueue(msgspec.Struct):
    flags: list[FlagOut]
    next_cursor: str | None


class FlagRead(msgspec.Struct):
    """A flag, its message (null when it is no longer readable), the messages around it, and
    the bodies edits and recalls replaced in those messages and in the messages the edits
    among them changed (as the compliance read has them); ``matched``: the term or pattern
    the rule matched when it flagged (null for a sample) — part of the read, not the queue,
    since it says what the text contains."""

    flag: FlagOut
    message: Message | None
    context: list[Message]
    revisions: list[MessageRevision]
    matched: str | None = None
    title: str | None = None  # a group title's flag: the group's title as it stands


class RuleFiguresOut(msgspec.Struct):
    rule_id: str
    name: str
    kind: str
    enabled: bool
    removed: bool
    flagged: int
    open: int
    escalated: int
    closed: int


class SampleFiguresOut(msgspec.Struct):
    sender: FlagSender
    role: str
    sampled: int
    open: int
    escalated: int
    closed: int


class SamplingOut(msgspec.Struct):
    rate: float
    by_sender: list[SampleFiguresOut]
    truncated: bool  # more senders than listed (the most sampled are listed)


class FiguresOut(msgspec.Struct):
    rules: list[RuleFiguresOut]
    sampling: SamplingOut


def _rule_out(r: RuleRow) -> RuleOut:
    return RuleOut(r.rule_id, r.name, r.kind, r.terms, r.pattern, r.enabled, r.created_by, r.created_at, r.updated_at)


def _flag_out(f: FlagRow) -> FlagOut:
    return FlagOut(
        flag_id=f.flag_id,
        rule_id=f.rule_id,
        rule_name=f.rule_name,
        conversation_id=f.conversation_id,
        message_id=f.message_id,
        seq=f.seq,
        sender=FlagSender(f.sender_id, f.sender_username),
        created_at=f.created_at,
        state=f.state,  # type: ignore[arg-type]  # the table's CHECK holds it to the three
        decided_by=f.decided_by,
        decided_at=f.decided_at,
        note=f.note,
        escalated_by=f.escalated_by,
        escalated_at=f.escalated_at,
        escalation_note=f.escalation_note,
        subject=f.subject,  # type: ignore[arg-type]  # the table's CHECK holds it to the two
    )


@ROUTES.authenticated("GET", "/v1/compliance/supervision/rules")
async def list_rules(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        KEY_CURSOR,
        lambda after, limit: supervision_actions.list_rules(hub, session.user, after=after, limit=limit),
        lambda r: (r.created_at, uuid.UUID(r.rule_id)),
    )
    return json_response(RuleList(rules=[_rule_out(r) for r in page], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/compliance/supervision/rules")
async def add_rule(request: Request, hub: Hub, session: Session) -> Response:
    body: NewRuleBody = await read_json(request, NewRuleBody)
    rule = await supervision_actions.add_rule(
        hub, session.user, name=body.name, kind=body.kind, terms=body.terms, pattern=body.pattern, enabled=body.enabled,
        ip=client_ip(request),
    )
    return json_response(_rule_out(rule), 201)


@ROUTES.authenticated("PATCH", "/v1/compliance/supervision/rules/{rule_id}")
async def change_rule(request: Request, hub: Hub, session: Session) -> Response:
    rule_id = RULE_ID.value(request)
    body: RuleChangeBody = await read_json(request, RuleChangeBody)
    rule = await supervision_actions.change_rule(
        hub, session.user, rule_id, name=body.name, terms=body.terms, pattern=body.pattern, enabled=body.enabled,
        ip=client_ip(request),
    )
    return json_response(_rule_out(rule))


@ROUTES.authenticated("DELETE", "/v1/compliance/supervision/rules/{rule_id}")
async def remove_rule(request: Request, hub: Hub, session: Session) -> Response:
    await supervision_actions.remove_rule(hub, session.user, RULE_ID.value(request), ip=client_ip(request))
    return Response(status_code=204)


@ROUTES.authenticated("GET", "/v1/compliance/supervision/queue")
async def queue(request: Request, hub: Hub, session: Session) -> Response:
    state = STATE.read(request) or "open"
    page, next_cursor = await cursor_page(
        request,
        KEY_CURSOR,
        lambda after, limit: supervision_actions.queue(hub, session.user, state, after=after, limit=limit),
        lambda f: (f.created_at, uuid.UUID(f.flag_id)),
    )
    return json_response(FlagQueue(flags=[_flag_out(f) for f in page], next_cursor=next_cursor))


@ROUTES.authenticated("GET", "/v1/compliance/supervision/flags/{flag_id}", audited_read=True)
async def read_flag(request: Request, hub: Hub, session: Session) -> Response:
    flag_id = FLAG_ID.value(request)
    flag, message, context, revisions, title = await supervision_actions.read_flag(
        hub,
        session.user,
        flag_id,
        reason=PRIVILEGED_READ_REASON.read(request) or "",
        case_ref=CASE_REF.read(request),
        ip=client_ip(request),
    )
    return json_response(FlagRead(flag=_flag_out(flag), message=message, context=context, revisions=revisions, matched=flag.matched, title=title))


@ROUTES.authenticated("POST", "/v1/compliance/supervision/flags/{flag_id}/decision")
async def decide(request: Request, hub: Hub, session: Session) -> Response:
    flag_id = FLAG_ID.value(request)
    body: DecisionBody = await read_json(request, DecisionBody)
    flag = await supervision_actions.decide(hub, session.user, flag_id, body.decision, body.note, ip=client_ip(request))
    return json_response(_flag_out(flag))


@ROUTES.authenticated("GET", "/v1/compliance/supervision/figures")
async def figures(request: Request, hub: Hub, session: Session) -> Response:
    rules, senders, truncated = await supervision_actions.figures(hub, session.user)
    return json_response(
        FiguresOut(
            rules=[RuleFiguresOut(r.rule_id, r.name, r.kind, r.enabled, r.removed, r.flagged, r.open, r.escalated, r.closed) for r in rules],
            sampling=SamplingOut(
                rate=hub.settings.supervision_sample_rate,
                by_sender=[
                    SampleFiguresOut(FlagSender(s.user_id, s.username), s.role, s.sampled, s.open, s.escalated, s.closed)
                    for s in senders
                ],
                truncated=truncated,
            ),
        )
    )


OPENAPI_TYPES: list[Any] = [
    NewRuleBody,
    RuleChangeBody,
    DecisionBody,
    RuleOut,
    RuleList,
    FlagOut,
    FlagQueue,
    FlagRead,
    FiguresOut,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""

    def paged(o: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
        o["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
        o["parameters"] = [*extra, CURSOR_PARAM, PAGE_LIMIT.openapi()]
        return o

    def described(o: dict[str, Any], description: str, statuses: dict[int, str]) -> dict[str, Any]:
        o["description"] = description
        for status, what in statuses.items():
            o["responses"][str(status)]["description"] = what
        return o

    officers = "`forbidden`: not an active compliance officer"
    no_rule = "`not_found`: no such rule (or it was removed)"
    no_flag = "`not_found`: no such flag"
    bad_rule = (
        "`invalid_rule`: no term, too many or an empty one; a pattern that does not compile under RE2 (no "
        "backreferences, no lookaround), compiles to more than 1,000 RE2 instructions, or matches an empty text or "
        "ordinary chat; `invalid_request`: a malformed body"
    )
    state_param = STATE.openapi()
    state_param["schema"] = {"type": "string", "enum": ["open", "escalated", "closed"], "default": "open"}
    reason_param = {
        "name": "reason",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": sorted(PRIVILEGED_READ_REASONS)},
    }
    change = op("Change a rule (name, terms or pattern, enabled); its kind stays", 200, "RuleOut", body=ref("RuleChangeBody"), extra=(400, 403, 404, 409))
    remove = op("Remove a rule: it flags nothing more; its flags stay", 204, None, extra=(403, 404))
    read = op("A flag with its message and up to 5 messages before and after it (privileged read)", 200, "FlagRead", extra=(400, 403, 404))
    read["parameters"] = [reason_param, CASE_REF.openapi()]
    decision = op("Escalate or close a flag, with an optional note", 200, "FlagOut", body=ref("DecisionBody"), extra=(400, 403, 404, 409))
    return {
        "/v1/compliance/supervision/rules": {
            "get": described(paged(op("The supervision rules, oldest first", 200, "RuleList", extra=(403,))), "Paged.", {403: officers}),
            "post": described(
                op("Add a rule (lexicon or pattern)", 201, "RuleOut", body=ref("NewRuleBody"), extra=(400, 403, 409)),
                "Audited (supervision.rule_added). It applies to the next message this node commits, and on the other "
                "nodes within BANKHUB_SUPERVISION_RELOAD_SECONDS. Lexicon terms are matched after NFKC normalisation "
                "with invisible characters removed, punctuation and symbols read as spaces and Cyrillic/Greek look-alikes "
                "read as Latin, case-insensitively, CJK whitespace-insensitively, Latin terms between non-letters; "
                "`!phrase` is an exception. A pattern (RE2 syntax) is at most 200 characters and is matched "
                "case-insensitively by RE2 (linear time). The audit details hold the whole rule.",
                {400: bad_rule, 403: officers, 409: "`conflict`: a rule of this name exists, or there are 200 rules, or 20 pattern rules"},
            ),
        },
        "/v1/compliance/supervision/rules/{rule_id}": {
            "patch": described(change, "Audited (supervision.rule_changed).", {400: bad_rule, 403: officers, 404: no_rule, 409: "`conflict`: a rule of this name exists"}),
            "delete": described(remove, "Audited (supervision.rule_removed).", {403: officers, 404: no_rule}),
        },
        "/v1/compliance/supervision/queue": {
            "get": described(
                paged(op("The review queue: flags in a state, oldest first (metadata, never text)", 200, "FlagQueue", extra=(400, 403)), state_param),
                "Paged. rule_name is \"sample\" (rule_id null) for a sampled message.",
                {400: "`invalid_request`: an unknown state or a bad cursor", 403: officers},
            )
        },
        "/v1/compliance/supervision/flags/{flag_id}": {
            "get": described(
                read,
                "A privileged read: the reason code is required and the read is audited (privileged_read, target the "
                "conversation, details.supervision_flag) before any message is read. revisions holds the bodies edits "
                "and recalls replaced in the messages shown and in the messages the edits among them changed; matched "
                "the term or pattern that raised the flag.",
                {400: "`invalid_request`: no or an unknown reason code", 403: officers, 404: no_flag},
            )
        },
        "/v1/compliance/supervision/flags/{flag_id}/decision": {
            "post": described(
                decision,
                "open → escalated or closed; escalated → closed. Audited (supervision.flag_escalated, "
                "supervision.flag_closed). Four eyes: an escalated flag is closed by another officer than the one who "
                "escalated it (the escalation stays in escalated_by/escalated_at/escalation_note), and nobody decides "
                "a flag raised on their own message.",
                {
                    400: "`invalid_request`: a malformed body",
                    403: officers + "; `forbidden`: the flag is on your own message, or you escalated it and would close it",
                    404: no_flag,
                    409: "`conflict`: the flag is closed (final), or escalating an escalated flag",
                },
            )
        },
        "/v1/compliance/supervision/figures": {
            "get": described(
                op("Figures per rule (flagged, open, escalated, closed) and per sampled RM or agent", 200, "FiguresOut", extra=(403,)),
                "Rules not removed, and removed ones that flagged something; the 500 most sampled senders.",
                {403: officers},
            )
        },
    }
