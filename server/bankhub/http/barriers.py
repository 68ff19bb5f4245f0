"""HTTP handlers for information barriers (thin: decode, act, encode). Compliance officers
only (403 ``forbidden`` for anyone else); every change is audited (``barrier.*``).

* ``GET``/``POST /v1/compliance/barriers/segments`` — the segments / a new one
  ``{name, title}`` (201);
* ``GET /v1/compliance/barriers/segments/{name}/members`` — its members;
  ``PUT``/``DELETE /v1/compliance/barriers/segments/{name}/members/{username}`` — put a user
  in it (200 ``{added}``: false when they were in it already) / take them out (204);
* ``GET``/``POST /v1/compliance/barriers/policies`` — the policies / a new one ``{a, b}``
  (201 new, 200 when it existed either way round); ``DELETE
  /v1/compliance/barriers/policies/{policy_id}`` (204).

The rules: :mod:`bankhub.compliance.barriers`; enforcement: docs/compliance.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import barriers as barrier_actions
from ..compliance.barriers import MAX_POLICIES, MAX_SEGMENTS, MAX_SEGMENTS_PER_USER, MAX_TITLE_CHARS, SEGMENT_NAME
from ..storage.barriers import PolicyRow, SegmentMemberRow, SegmentRow
from .handler import RouteTable, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import USERNAME, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

SegmentName = Annotated[str, Meta(min_length=2, max_length=32, pattern=SEGMENT_NAME.pattern)]
# the path segment: any short line (an unknown or malformed name is answered 404 like any unknown segment)
SEGMENT = TextParam("name", Annotated[text.Line, Meta(min_length=1, max_length=64)], "path", "the segment's name")
POLICY_ID = TextParam("policy_id", text.Id, "path")
NAME_CURSOR = Cursor[tuple[str]](tuple[str])
POLICY_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])


class SegmentBody(msgspec.Struct, forbid_unknown_fields=True):
    name: SegmentName  # ^[a-z][a-z0-9_-]{1,31}$
    title: Annotated[text.Line, Meta(min_length=1, max_length=MAX_TITLE_CHARS)]


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    """No communication between the members of segments ``a`` and ``b`` (either way)."""

    a: SegmentName
    b: SegmentName


class SegmentOut(msgspec.Struct):
    name: str
    title: str
    members: int
    created_by: str  # username
    created_at: dt.datetime


class SegmentList(msgspec.Struct):
    segments: list[SegmentOut]
    next_cursor: str | None


class SegmentMemberOut(msgspec.Struct):
    user_id: str
    username: str
    display_name: str
    added_at: dt.datetime


class SegmentMemberList(msgspec.Struct):
    members: list[SegmentMemberOut]
    next_cursor: str | None


class MemberAddedOut(msgspec.Struct):
    segment: str
    username: str
    added: bool  # false: they were in the segment already


class BarrierPolicyOut(msgspec.Struct):
    policy_id: str
    a: str  # segment names, a < b
    b: str
    created_by: str  # username
    created_at: dt.datetime


class BarrierPolicyList(msgspec.Struct):
    policies: list[BarrierPolicyOut]
    next_cursor: str | None


def _segment_out(s: SegmentRow) -> SegmentOut:
    return SegmentOut(name=s.name, title=s.title, members=s.members, created_by=s.created_by, created_at=s.created_at)


def _member_out(m: SegmentMemberRow) -> SegmentMemberOut:
    return SegmentMemberOut(user_id=m.user_id, username=m.username, display_name=m.display_name, added_at=m.added_at)


def _policy_out(p: PolicyRow) -> BarrierPolicyOut:
    return BarrierPolicyOut(policy_id=p.id, a=p.a, b=p.b, created_by=p.created_by, created_at=p.created_at)


@ROUTES.authenticated("GET", "/v1/compliance/barriers/segments")
async def list_segments(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        NAME_CURSOR,
        lambda after, limit: barrier_actions.list_segments(hub, session.user, after=after[0] if after else None, limit=limit),
        lambda row: (row.name,),
    )
    return json_response(SegmentList(segments=[_segment_out(s) for s in page], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/compliance/barriers/segments")
async def create_segment(request: Request, hub: Hub, session: Session) -> Response:
    body: SegmentBody = await read_json(request, SegmentBody)
    created = await barrier_actions.create_segment(hub, session.user, body.name, body.title)
    return json_response(_segment_out(created), 201)


@ROUTES.authenticated("GET", "/v1/compliance/barriers/segments/{name}/members")
async def list_members(request: Request, hub: Hub, session: Session) -> Response:
    name = SEGMENT.value(request)
    page, next_cursor = await cursor_page(
        request,
        NAME_CURSOR,
        lambda after, limit: barrier_actions.list_members(hub, session.user, name, after=after[0] if after else None, limit=limit),
        lambda row: (row.username,),
    )
    return json_response(SegmentMemberList(members=[_member_out(m) for m in page], next_cursor=next_cursor))


@ROUTES.authenticated("PUT", "/v1/compliance/barriers/segments/{name}/members/{username}")
async def add_member(request: Request, hub: Hub, session: Session) -> Response:
    name, username = SEGMENT.value(request), USERNAME.value(request)
    added = await barrier_actions.add_member(hub, session.user, name, username)
    return json_response(MemberAddedOut(segment=name, username=username, added=added))


@ROUTES.authenticated("DELETE", "/v1/compliance/barriers/segments/{name}/members/{username}")
async def remove_member(request: Request, hub: Hub, session: Session) -> Response:
    await barrier_actions.remove_member(hub, session.user, SEGMENT.value(request), USERNAME.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("GET", "/v1/compliance/barriers/policies")
async def list_policies(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        POLICY_CURSOR,
        lambda after, limit: barrier_actions.list_policies(hub, session.user, after=after, limit=limit),
        lambda row: (row.created_at, uuid.UUID(row.id)),
    )
    return json_response(BarrierPolicyList(policies=[_policy_out(p) for p in page], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/compliance/barriers/policies")
async def add_policy(request: Request, hub: Hub, session: Session) -> Response:
    body: PolicyBody = await read_json(request, PolicyBody)
    row, new = await barrier_actions.add_policy(hub, session.user, body.a, body.b)
    return json_response(_policy_out(row), 201 if new else 200)


@ROUTES.authenticated("DELETE", "/v1/compliance/barriers/policies/{policy_id}")
async def remove_policy(request: Request, hub: Hub, session: Session) -> Response:
    await barrier_actions.remove_policy(hub, session.user, POLICY_ID.value(request))
    return Response(status_code=204)


OPENAPI_TYPES: list[Any] = [
    SegmentBody,
    PolicyBody,
    SegmentOut,
    SegmentList,
    SegmentMemberList,
    MemberAddedOut,
    BarrierPolicyOut,
    BarrierPolicyList,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    officers = "Compliance officers only; every change is audited (barrier.*)."
    forbidden = "`forbidden`: not an active compliance officer"
    bad = "`invalid_request`: a malformed body, parameter or cursor"
    no_segment = "`not_found`: no such segment"

    def said(o: dict[str, Any], description: str, codes: dict[int, str], *params: dict[str, Any]) -> dict[str, Any]:
        o["description"] = description
        for status, what in codes.items():
            o["responses"][str(status)]["description"] = what
        if params:
            o["parameters"] = [*params, *o.get("parameters", [])]
        return o

    def paged(o: dict[str, Any]) -> dict[str, Any]:
        o["description"] = (
            o.get("description", "") + " Paged: pass next_cursor (null on the last page) back unchanged as ?cursor=."
        ).strip()
        o["parameters"] = [*o.get("parameters", []), CURSOR_PARAM, PAGE_LIMIT.openapi()]
        return o

    # {name} and {policy_id} are declared from openapi.PATH_PARAMETERS (the segment-name pattern, a uuid)
    user = USERNAME.openapi()
    new_policy = op("Forbid communication between two segments (symmetric)", 201, "BarrierPolicyOut", body=ref("PolicyBody"), extra=(400, 403, 404, 409))
    new_policy["responses"]["200"] = {
        "description": "The policy existed already between the two segments (either way round): unchanged",
        "content": {"application/json": {"schema": ref("BarrierPolicyOut")}},
    }
    return {
        "/v1/compliance/barriers/segments": {
            "get": paged(said(op("Information-barrier segments, by name", 200, "SegmentList", extra=(400, 403)), officers, {400: bad, 403: forbidden})),
            "post": said(
                op("Create a segment", 201, "SegmentOut", body=ref("SegmentBody"), extra=(400, 403, 409)),
                officers + " A name has 2 to 32 characters (the pattern above): lower-case letters, digits, _ and -, starting with a letter.",
                {400: bad + " (a name or title out of shape)", 403: forbidden,
                 409: f"`conflict`: a segment of that name exists, or the hub holds {MAX_SEGMENTS} segments"},
            ),
        },
        "/v1/compliance/barriers/segments/{name}/members": {
            "get": paged(said(op("A segment's members, by username", 200, "SegmentMemberList", extra=(400, 403, 404)),
                              officers, {400: bad, 403: forbidden, 404: no_segment})),
        },
        "/v1/compliance/barriers/segments/{name}/members/{username}": {
            "put": said(
                op("Put a user in a segment (idempotent; a user may be in several)", 200, "MemberAddedOut", extra=(400, 403, 404, 409)),
                officers + " Takes effect at once on every path, sends into existing conversations included. "
                "A user already in the segment is answered 200 (added false) before any limit is checked.",
                {400: bad + ", or the hub's system user (in no segment, ever)", 403: forbidden, 404: no_segment + ", or no such user",
                 409: f"`conflict`: the user is in {MAX_SEGMENTS_PER_USER} segments, the most allowed, or in a segment a "
                 "policy separates from this one (a user on both sides of a policy would be barred from their own segment)"},
                user,
            ),
            "delete": said(
                op("Take a user out of a segment", 204, None, extra=(400, 403, 404)),
                officers,
                {400: bad, 403: forbidden, 404: no_segment + ", no such user, or the user is not in it"},
                user,
            ),
        },
        "/v1/compliance/barriers/policies": {
            "get": paged(said(op("Barrier policies, oldest first", 200, "BarrierPolicyList", extra=(400, 403)), officers, {400: bad, 403: forbidden})),
            "post": said(
                new_policy,
                officers + " 200 with the existing policy when one exists between the two (either way round). From its "
                "commit on, the members of the two segments cannot add each other as contacts, open a direct "
                "conversation, share a group, find each other in directories, see each other's presence or read "
                "positions, be served by each other on the service desk, or send, edit, rename a group or type in a "
                "conversation they share (one that existed before the policy included). A policy between two segments "
                "that share a user is refused, and an existing policy is answered 200 before any limit is checked.",
                {400: bad + ", or a policy between a segment and itself", 403: forbidden, 404: no_segment,
                 409: f"`conflict`: the hub holds {MAX_POLICIES} policies, or some user is in both segments "
                 "(take them out of one first)"},
            ),
        },
        "/v1/compliance/barriers/policies/{policy_id}": {
            "delete": said(
                op("Remove a barrier policy", 204, None, extra=(400, 403, 404)),
                officers,
                {400: bad, 403: forbidden, 404: "`not_found`: no such policy"},
            ),
        },
    }
