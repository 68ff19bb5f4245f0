"""HTTP handlers of retention, purge and erasure (thin: decode, act, encode).
See docs/compliance.md, "Retention".

* ``GET /v1/compliance/retention/policies`` → ``{policies, floor_days, next_cursor}``;
* ``POST /v1/compliance/retention/policies`` ``{scope, value, days}`` → 201 the policy when it
  lengthens an existing one; 202 a pending ``RetentionRequest`` when it is new or shorter
  (a second officer approves it); below the floor: 422 ``below_floor``;
* ``DELETE /v1/compliance/retention/policies/{policy_id}`` → 202 a pending ``RetentionRequest``;
* ``POST /v1/compliance/retention/purges`` ``{batch_size?}`` (body optional) → 202 ``PurgeRun``
  (the run goes on in the background on this node; 409 ``purge_running`` while one runs);
* ``GET /v1/compliance/retention/purges`` → ``{runs, next_cursor}``, newest first;
* ``GET /v1/compliance/retention/purges/{run_id}`` → ``PurgeRun``;
* ``POST /v1/compliance/retention/purges/{run_id}/resume`` ``{batch_size?}`` → 202 ``PurgeRun``;
* ``POST /v1/compliance/erasures`` ``{username, reason}`` → 202 a pending ``RetentionRequest``;
* ``GET /v1/compliance/retention/requests?state=`` → ``{requests, next_cursor}``, newest first;
* ``GET /v1/compliance/retention/requests/{request_id}`` → ``RetentionRequest``;
* ``POST /v1/compliance/retention/requests/{request_id}/approve`` → 200 ``{request, policy, erasure}``
  (a second officer; the requester: 403; expired or not pending: 409 ``conflict``);
* ``POST /v1/compliance/retention/requests/{request_id}/reject`` → 200 ``RetentionRequest``.

Compliance officers only: anyone else gets 403 ``forbidden``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import policy, text
from ..actions import retention as retention_actions
from ..actions.errors import ActionError, require
from ..compliance.retention import MAX_DAYS
from ..storage.retention import PolicyRow, RequestRow, RetentionStore, RunRow
from .handler import RouteTable, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import LIST_STATE, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "PolicyView", "PurgeRun", "RetentionRequest"]

log = logging.getLogger("bankhub.http.retention")

ROUTES = RouteTable()
POLICY_ID = TextParam("policy_id", text.Id, "path")
RUN_ID = TextParam("run_id", text.Id, "path")
REQUEST_ID = TextParam("request_id", text.Id, "path")
REQUEST_STATES = ("pending", "approved", "rejected")
REQUEST_CURSOR = Cursor[tuple[dt.datetime, str]](tuple[dt.datetime, str])
POLICY_CURSOR = Cursor[tuple[str, str]](tuple[str, str])
RUN_CURSOR = Cursor[tuple[dt.datetime, str]](tuple[dt.datetime, str])


class NewPolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    """``scope`` kind (value: direct, group, service), role (value: a role) or user (value: a username)."""

    scope: Literal["kind", "role", "user"]
    value: Annotated[text.Line, Meta(min_length=1, max_length=64)]
    days: Annotated[int, Meta(ge=1, le=MAX_DAYS)]


class PurgeBody(msgspec.Struct, forbid_unknown_fields=True):
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] | None = None


class ErasureBody(msgspec.Struct, forbid_unknown_fields=True):
    username: text.Username
    reason: Annotated[text.Line, Meta(min_length=1, max_length=retention_actions.MAX_REASON_CHARS)]


class PolicyView(msgspec.Struct):
    policy_id: str
    scope: str
    value: str  # a kind, a role, or (scope user) the account's username
    days: int
    created_by: str  # username
    created_at: dt.datetime


class PolicyList(msgspec.Struct):
    policies: list[PolicyView]
    floor_days: int
    next_cursor: str | None


class PurgeCursor(msgspec.Struct):
    conversation_id: str | None
    seq: int


class PurgeRun(msgspec.Struct):
    run_id: str
    state: str  # running | done | failed | interrupted
    started_by: str | None  # username; null: the node's periodic purge
    started_at: dt.datetime
    finished_at: dt.datetime | None
    now_at: dt.datetime  # the database clock every cutoff of the run is measured from
    batch_size: int
    floor_days: int  # the records floor in force when it started: nothing is kept for less
    batches: int
    scanned: int
    deleted_messages: int
    deleted_media: int
    refused_held: int
    cursor: PurgeCursor
    error: str | None


class PurgeRunList(msgspec.Struct):
    runs: list[PurgeRun]
    next_cursor: str | None


class RetentionRequest(msgspec.Struct):
    """A change that waits for a second compliance officer: ``kind`` policy_set (scope, value,
    days), policy_remove (policy_id and what it was) or erasure (username, reason)."""

    request_id: str
    kind: Literal["policy_set", "policy_remove", "erasure"]
    state: Literal["pending", "approved", "rejected"]
    requested_by: str  # username
    requested_at: dt.datetime
    expires_at: dt.datetime  # not approved by then: it can no longer be (reject it and ask again)
    scope: str | None
    value: str | None  # a kind, a role, or (scope user) a username
    days: int | None
    policy_id: str | None
    username: str | None  # the erasure's customer (or a user policy's account)
    reason: str | None
    decided_by: str | None
    decided_at: dt.datetime | None
    result_id: str | None  # approved: the policy set or removed, or the erasure's id


class RetentionRequestList(msgspec.Struct):
    requests: list[RetentionRequest]
    next_cursor: str | None


class ApprovalOutcome(msgspec.Struct):
    request: RetentionRequest
    policy: PolicyView | None  # policy_set: the policy now in force
    erasure: retention_actions.ErasureReport | None  # erasure: what was shredded and refused


def policy_view(row: PolicyRow) -> PolicyView:
    value = row.username if row.scope == "user" and row.username else row.value
    return PolicyView(row.id, row.scope, value, row.days, row.created_by, row.created_at)


def request_view(r: RequestRow, ttl_hours: int) -> RetentionRequest:
    return RetentionRequest(
        request_id=r.id,
        kind=r.kind,  # type: ignore[arg-type]  # the table's CHECK
        state=r.state,  # type: ignore[arg-type]
        requested_by=r.requested_by,
        requested_at=r.requested_at,
        expires_at=r.requested_at + dt.timedelta(hours=ttl_hours),
        scope=r.scope,
        value=r.value,
        days=r.days,
        policy_id=r.policy_id,
        username=r.username,
        reason=r.reason,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        result_id=r.result_id,
    )


def run_view(r: RunRow) -> PurgeRun:
    return PurgeRun(
        run_id=r.id,
        state=r.state,
        started_by=r.started_by,
        started_at=r.started_at,
        finished_at=r.finished_at,
        now_at=r.now_at,
        batch_size=r.batch_size,
        floor_days=r.floor_days,
        batches=r.batches,
        scanned=r.scanned,
        deleted_messages=r.deleted_messages,
        deleted_media=r.deleted_media,
        refused_held=r.refused_held,
        cursor=PurgeCursor(r.cursor_conversation, r.cursor_seq),
        error=r.error,
    )


async def _optional_body(request: Request) -> PurgeBody:
    if not await request.body():
        return PurgeBody()
    body: PurgeBody = await read_json(request, PurgeBody)
    return body


def _run_in_background(hub: Hub, session: Session, run: RunRow) -> None:
    async def go() -> None:
        try:
            await retention_actions.run_purge(
                hub.db, hub.media.blobs, run, actor=session.user, floor_days=hub.settings.retention_floor_days
            )
        except Exception:
            # recorded on the run (failed, audited) by run_purge; resumable
            log.warning("purge run %s stopped", run.id)

    hub.purges.spawn(go())


@ROUTES.authenticated("GET", "/v1/compliance/retention/policies")
async def list_policies(request: Request, hub: Hub, session: Session) -> Response:
    # the page parameters are checked first (400), then the officer (in the action)
    page, next_cursor = await cursor_page(
        request,
        POLICY_CURSOR,
        lambda after, limit: retention_actions.list_policies(hub.db, session.user, after, limit),
        lambda row: (row.scope, row.value),
    )
    floor = await retention_actions.floor(hub.db, hub.settings)
    return json_response(PolicyList([policy_view(r) for r in page], floor, next_cursor))


@ROUTES.authenticated("POST", "/v1/compliance/retention/policies")
async def set_policy(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    body: NewPolicyBody = await read_json(request, NewPolicyBody)
    row = await retention_actions.set_policy(hub.db, hub.settings, session.user, body.scope, body.value, body.days)
    if isinstance(row, RequestRow):
        return json_response(request_view(row, hub.settings.retention_request_ttl_hours), 202)
    return json_response(policy_view(row), 201)


@ROUTES.authenticated("DELETE", "/v1/compliance/retention/policies/{policy_id}")
async def remove_policy(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    asked = await retention_actions.remove_policy(hub.db, session.user, POLICY_ID.value(request))
    assert asked is not None  # an officer's removal is a request
    return json_response(request_view(asked, hub.settings.retention_request_ttl_hours), 202)


@ROUTES.authenticated("POST", "/v1/compliance/retention/purges")
async def start_purge(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    body = await _optional_body(request)
    run = await retention_actions.start_purge(hub.db, hub.settings, session.user, body.batch_size)
    _run_in_background(hub, session, run)
    return json_response(run_view(run), 202)


@ROUTES.authenticated("GET", "/v1/compliance/retention/purges")
async def list_purges(request: Request, hub: Hub, session: Session) -> Response:
    async def fetch(after: tuple[dt.datetime, str] | None, limit: int) -> list[RunRow]:
        # after the page parameters were read (400 first), as every list does
        require(policy.may_manage_retention(session.user))
        if after is not None:
            try:
                uuid.UUID(after[1])
            except ValueError:
                raise ActionError("invalid_request", "cursor is not a next_cursor of this list") from None
        return await RetentionStore(hub.db).runs(after, limit)

    page, next_cursor = await cursor_page(request, RUN_CURSOR, fetch, lambda r: (r.started_at, r.id))
    return json_response(PurgeRunList([run_view(r) for r in page], next_cursor))


@ROUTES.authenticated("GET", "/v1/compliance/retention/purges/{run_id}")
async def get_purge(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    run = await RetentionStore(hub.db).get_run(RUN_ID.value(request))
    if run is None:
        raise ActionError("not_found", "no such purge run")
    return json_response(run_view(run))


@ROUTES.authenticated("POST", "/v1/compliance/retention/purges/{run_id}/resume")
async def resume_purge(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    run_id = RUN_ID.value(request)
    body = await _optional_body(request)
    run = await retention_actions.resume_purge(hub.db, hub.settings, session.user, run_id, body.batch_size)
    _run_in_background(hub, session, run)
    return json_response(run_view(run), 202)


@ROUTES.authenticated("POST", "/v1/compliance/erasures")
async def erase(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    body: ErasureBody = await read_json(request, ErasureBody)
    asked = await retention_actions.request_erasure(hub.db, session.user, body.username, body.reason)
    return json_response(request_view(asked, hub.settings.retention_request_ttl_hours), 202)


@ROUTES.authenticated("GET", "/v1/compliance/retention/requests")
async def list_requests(request: Request, hub: Hub, session: Session) -> Response:
    state = LIST_STATE.read(request)
    if state is not None and state not in REQUEST_STATES:
        raise ActionError("invalid_request", f"state must be one of {', '.join(REQUEST_STATES)}")

    async def fetch(after: tuple[dt.datetime, str] | None, limit: int) -> list[RequestRow]:
        # after the page parameters were read (400 first), as every list does
        require(policy.may_manage_retention(session.user))
        if after is not None:
            try:
                uuid.UUID(after[1])
            except ValueError:
                raise ActionError("invalid_request", "cursor is not a next_cursor of this list") from None
        return await retention_actions.list_requests(hub.db, session.user, state, after, limit)

    page, next_cursor = await cursor_page(request, REQUEST_CURSOR, fetch, lambda r: (r.requested_at, r.id))
    ttl = hub.settings.retention_request_ttl_hours
    return json_response(RetentionRequestList([request_view(r, ttl) for r in page], next_cursor))


@ROUTES.authenticated("GET", "/v1/compliance/retention/requests/{request_id}")
async def get_request(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    row = await retention_actions.get_request(hub.db, session.user, REQUEST_ID.value(request))
    return json_response(request_view(row, hub.settings.retention_request_ttl_hours))


@ROUTES.authenticated("POST", "/v1/compliance/retention/requests/{request_id}/approve")
async def approve_request(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    done = await retention_actions.approve_request(hub.db, hub.settings, session.user, REQUEST_ID.value(request))
    ttl = hub.settings.retention_request_ttl_hours
    return json_response(
        ApprovalOutcome(
            request_view(done.request, ttl), None if done.policy is None else policy_view(done.policy), done.erasure
        )
    )


@ROUTES.authenticated("POST", "/v1/compliance/retention/requests/{request_id}/reject")
async def reject_request(request: Request, hub: Hub, session: Session) -> Response:
    require(policy.may_manage_retention(session.user))
    row = await retention_actions.reject_request(hub.db, session.user, REQUEST_ID.value(request))
    return json_response(request_view(row, hub.settings.retention_request_ttl_hours))


OPENAPI_TYPES = [
    NewPolicyBody,
    PurgeBody,
    ErasureBody,
    PolicyView,
    PolicyList,
    PurgeCursor,
    PurgeRun,
    PurgeRunList,
    retention_actions.ErasureReport,
    retention_actions.ErasureRefusal,
    RetentionRequest,
    RetentionRequestList,
    ApprovalOutcome,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""

    def said(o: dict[str, Any], **codes: str) -> dict[str, Any]:
        for status, txt in codes.items():
            o["responses"][status[1:]]["description"] = txt
        return o

    officers = "`forbidden`: not an active compliance officer"
    listing = said(
        op("Retention policies, by scope and value, with the records floor", 200, "PolicyList", extra=(400, 403)),
        s400="`invalid_request`: a malformed cursor or limit",
        s403=officers,
    )
    listing["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    runs = said(
        op("Purge runs, newest first", 200, "PurgeRunList", extra=(400, 403)),
        s400="`invalid_request`: a malformed cursor or limit",
        s403=officers,
    )
    runs["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    delete = said(op("Ask to remove a retention policy: a request a second compliance officer approves (a removal "
                     "may shorten retention; audited)", 202, "RetentionRequest", extra=(400, 403, 404)),
                  s400="`invalid_request`: a malformed id", s403=officers, s404="`not_found`: no such policy")
    get_run = said(op("One purge run: state, counts, cursor", 200, "PurgeRun", extra=(400, 403, 404)),
                   s400="`invalid_request`: a malformed id", s403=officers, s404="`not_found`: no such run")
    resume = said(
        op("Resume an interrupted or failed purge run from its cursor (audited)", 202, "PurgeRun",
           body=ref("PurgeBody"), extra=(400, 403, 404, 409)),
        s400="`invalid_request`: a malformed id or batch size", s403=officers, s404="`not_found`: no such run",
        s409="`purge_running`: it (or another run) is running with a live worker; `conflict`: the run is done",
    )
    resume["requestBody"]["required"] = False  # the body is optional: no batch size keeps the run's
    start = said(
        op("Start a purge: runs in batches on this node in the background (body optional; audited)",
           202, "PurgeRun", body=ref("PurgeBody"), extra=(400, 403, 409)),
        s400="`invalid_request`: a malformed batch size", s403=officers,
        s409="`purge_running`: a purge is running (resume it if it was interrupted)",
    )
    start["requestBody"]["required"] = False  # no body: BANKHUB_RETENTION_PURGE_BATCH
    set_policy_op = said(
        op("Set a retention policy: one that lengthens the existing policy of that scope and value applies at once "
           "(201); a new or shorter one is a request a second compliance officer approves (202; audited)",
           201, "PolicyView", body=ref("NewPolicyBody"), extra=(400, 403, 422)),
        s400="`invalid_request`: a malformed body, an unknown kind or role, or a user value that is not a username",
        s403=officers,
        s422="`below_floor`: fewer days than the records floor (BANKHUB_RETENTION_FLOOR_DAYS, or higher if any node ran with more)",
    )
    set_policy_op["responses"]["202"] = {
        "description": "a new or shorter policy: pending until a second compliance officer approves it",
        "content": {"application/json": {"schema": ref("RetentionRequest")}},
    }
    requests = said(
        op("Retention requests waiting for (or decided by) a second compliance officer, newest first",
           200, "RetentionRequestList", extra=(400, 403)),
        s400="`invalid_request`: a state other than pending, approved, rejected; a malformed cursor or limit",
        s403=officers,
    )
    requests["parameters"] = [
        {"name": "state", "in": "query", "required": False, "schema": {"type": "string", "enum": list(REQUEST_STATES)}},
        CURSOR_PARAM,
        PAGE_LIMIT.openapi(),
    ]
    get_request = said(op("One retention request", 200, "RetentionRequest", extra=(400, 403, 404)),
                       s400="`invalid_request`: a malformed id", s403=officers, s404="`not_found`: no such request")
    approve = said(
        op("Approve a retention request (a second compliance officer): the policy change takes effect, or the "
           "erasure runs (audited)", 200, "ApprovalOutcome", extra=(400, 403, 404, 409, 422)),
        s400="`invalid_request`: a malformed id",
        s403="`forbidden`: not an active compliance officer, or the officer who filed the request",
        s404="`not_found`: no such request",
        s409="`conflict`: not pending, filed by someone no longer an active compliance officer, older than "
        "BANKHUB_RETENTION_REQUEST_TTL_HOURS, or the policy to remove is gone",
        s422="`below_floor`: the records floor has risen above the requested days",
    )
    reject = said(
        op("Reject (or, for the requester, withdraw) a pending retention request (audited)", 200, "RetentionRequest",
           extra=(400, 403, 404, 409)),
        s400="`invalid_request`: a malformed id", s403=officers, s404="`not_found`: no such request",
        s409="`conflict`: not pending",
    )
    return {
        "/v1/compliance/retention/requests": {"get": requests},
        "/v1/compliance/retention/requests/{request_id}": {"get": get_request},
        "/v1/compliance/retention/requests/{request_id}/approve": {"post": approve},
        "/v1/compliance/retention/requests/{request_id}/reject": {"post": reject},
        "/v1/compliance/retention/policies": {
            "get": listing,
            "post": set_policy_op,
        },
        "/v1/compliance/retention/policies/{policy_id}": {"delete": delete},
        "/v1/compliance/retention/purges": {
            "get": runs,
            "post": start,
        },
        "/v1/compliance/retention/purges/{run_id}": {"get": get_run},
        "/v1/compliance/retention/purges/{run_id}/resume": {"post": resume},
        "/v1/compliance/erasures": {
            "post": said(
                op("File a data subject's erasure request (PIPL art. 47); once a second compliance officer approves "
                   "it, what holds no record and no held data is crypto-shredded and the approval answers the report "
                   "of what was refused and why (audited)", 202, "RetentionRequest",
                   body=ref("ErasureBody"), extra=(400, 403, 404)),
                s400="`invalid_request`: a malformed body",
                s403=officers,
                s404="`not_found`: no customer account with that username",
            )
        },
    }
