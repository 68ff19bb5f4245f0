"""HTTP handlers for groups (thin: decode, act, encode). See docs/protocol.md, "Groups"."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import groups as group_actions
from ..actions.errors import ActionError
from .handler import RouteTable, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import CONVERSATION_ID, USERNAME
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()
MEMBER_CURSOR = Cursor[tuple[int, str]](tuple[int, str])

Title = Annotated[text.Line, Meta(min_length=1, max_length=group_actions.MAX_TITLE_CHARS)]


class NewGroupBody(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    # the other members (a customer: their contacts; staff: staff, an RM also their own book's customers)
    members: Annotated[list[text.Username], Meta(max_length=group_actions.MAX_INVITE)]


class NewOrgGroupBody(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    org: text.OrgCode  # every active member of staff of this org and below is a member


class GroupTitleBody(msgspec.Struct, forbid_unknown_fields=True):
    title: Title


class GroupInviteBody(msgspec.Struct, forbid_unknown_fields=True):
    members: Annotated[list[text.Username], Meta(min_length=1, max_length=group_actions.MAX_INVITE)]


class GroupRoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["owner", "admin", "member"]  # owner: hand ownership on (I become an admin)


class GroupMemberList(msgspec.Struct):
    members: list[group_actions.MemberView]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class GroupLeftOut(msgspec.Struct):
    conversation_id: str
    left: bool


def _after(key: tuple[int, str] | None) -> tuple[int, str] | None:
    """A member cursor's key, checked: join time in ms and a user id."""
    if key is None:
        return None
    try:
        uuid.UUID(key[1])
    except ValueError:
        raise ActionError("invalid_request", "cursor is not a next_cursor of this list") from None
    if not 0 <= key[0] <= 2**53:
        raise ActionError("invalid_request", "cursor is not a next_cursor of this list")
    return key


@ROUTES.authenticated("POST", "/v1/groups")
async def create_group(request: Request, hub: Hub, session: Session) -> Response:
    body: NewGroupBody = await read_json(request, NewGroupBody)
    summary = await group_actions.create_group(hub, session.user, body.title, body.members)
    return json_response(await group_actions.view(hub, session.user, summary.id), 201)


@ROUTES.authenticated("POST", "/v1/org-groups")
async def create_org_group(request: Request, hub: Hub, session: Session) -> Response:
    body: NewOrgGroupBody = await read_json(request, NewOrgGroupBody)
    return json_response(await group_actions.create_org_group(hub, session.user, body.title, body.org), 201)


@ROUTES.authenticated("GET", "/v1/groups/{conversation_id}")
async def get_group(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await group_actions.view(hub, session.user, CONVERSATION_ID.value(request)))


@ROUTES.authenticated("PUT", "/v1/groups/{conversation_id}/title")
async def rename_group(request: Request, hub: Hub, session: Session) -> Response:
    conv = CONVERSATION_ID.value(request)
    body: GroupTitleBody = await read_json(request, GroupTitleBody)
    return json_response(await group_actions.rename(hub, session.user, conv, body.title))


@ROUTES.authenticated("GET", "/v1/groups/{conversation_id}/members")
async def list_members(request: Request, hub: Hub, session: Session) -> Response:
    conv = CONVERSATION_ID.value(request)
    page, next_cursor = await cursor_page(
        request,
        MEMBER_CURSOR,
        lambda after, limit: group_actions.members(hub, session.user, conv, after=_after(after), limit=limit),
        lambda entry: entry[1],
    )
    return json_response(GroupMemberList(members=[m for m, _ in page], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/groups/{conversation_id}/members")
async def invite_members(request: Request, hub: Hub, session: Session) -> Response:
    conv = CONVERSATION_ID.value(request)
    body: GroupInviteBody = await read_json(request, GroupInviteBody)
    return json_response(await group_actions.invite(hub, session.user, conv, body.members))


@ROUTES.authenticated("DELETE", "/v1/groups/{conversation_id}/members/{username}")
async def remove_member(request: Request, hub: Hub, session: Session) -> Response:
    conv, username = CONVERSATION_ID.value(request), USERNAME.value(request)
    return json_response(await group_actions.remove(hub, session.user, conv, username))


@ROUTES.authenticated("PUT", "/v1/groups/{conversation_id}/members/{username}/role")
async def set_member_role(request: Request, hub: Hub, session: Session) -> Response:
    conv, username = CONVERSATION_ID.value(request), USERNAME.value(request)
    body: GroupRoleBody = await read_json(request, GroupRoleBody)
    return json_response(await group_actions.set_role(hub, session.user, conv, username, body.role))


@ROUTES.authenticated("POST", "/v1/groups/{conversation_id}/leave")
async def leave_group(request: Request, hub: Hub, session: Session) -> Response:
    conv = CONVERSATION_ID.value(request)
    await group_actions.leave(hub, session.user, conv)
    return json_response(GroupLeftOut(conversation_id=conv, left=True))


OPENAPI_TYPES = [
    NewGroupBody,
    NewOrgGroupBody,
    GroupTitleBody,
    GroupInviteBody,
    GroupRoleBody,
    GroupMemberList,
    GroupLeftOut,
    group_actions.GroupView,
    group_actions.MemberView,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    conv = {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    user = USERNAME.openapi()

    def params(o: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
        o["parameters"] = [conv, *more, *o.get("parameters", [])]
        return o

    def said(o: dict[str, Any], **codes: str) -> dict[str, Any]:
        """``o`` with what each of its problem statuses means (keys ``s400``... name the status)."""
        for status, text in codes.items():
            o["responses"][status[1:]]["description"] = text
        return o

    bad = "`invalid_request`: the body or a parameter is malformed (a title of 1 to 100 characters"
    dlp_title = "`sensitive_data`: the title carries a card, resident ID or account number, a CVV or a one-time code and data-loss prevention refuses it for these members (BANKHUB_DLP_*; when the policy masks, the title is stored masked)"
    no_group = "`not_found`: no such group, or I am not a member (the same answer: its existence does not leak)"
    listing = said(
        op("A group's members in join order, with names and roles (members only)", 200, "GroupMemberList", extra=(400, 404)),
        s400="`invalid_request`: a malformed cursor or limit, or conversation id",
        s404=no_group,
    )
    listing["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
    listing["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    return {
        "/v1/groups": {
            "post": said(
                op(
                    "Create a group I own: customers with their contacts, staff with staff (409 group_full over the size cap)",
                    201,
                    "GroupView",
                    body=ref("NewGroupBody"),
                    extra=(400, 403, 404, 409, 422),
                ),
                s400=bad + ")",
                s403="`forbidden`: a member I may not put in a group (a customer: not my contact, blocked, disabled or "
                "unknown, one answer for all; staff: a customer not in my book, or disabled), or two members an "
                "information barrier separates",
                s404="`not_found`: staff named an unknown username",
                s409="`group_full`: more members than BANKHUB_GROUP_MAX_MEMBERS, the creator counted",
                s422=dlp_title,
            )
        },
        "/v1/org-groups": {
            "post": said(
                op(
                    "Administrators: a group of all active staff of an org and below, kept in step with the org tree",
                    201,
                    "GroupView",
                    body=ref("NewOrgGroupBody"),
                    extra=(400, 403, 404, 422),
                ),
                s400=bad + ")",
                s403="`forbidden`: not an administrator, or (a branch admin) an org outside my subtree or an unknown "
                "org code: one answer, so other branches' org codes do not leak",
                s404="`not_found`: (head office) no org with that code",
                s422=dlp_title,
            )
        },
        "/v1/groups/{conversation_id}": {
            "get": params(
                said(op("A group: title, org, size, my role", 200, "GroupView", extra=(400, 404)), s400="`invalid_request`: a malformed conversation id", s404=no_group)
            )
        },
        "/v1/groups/{conversation_id}/title": {
            "put": params(
                said(
                    op("Rename (owner and admins; an org group: its administrators)", 200, "GroupView", body=ref("GroupTitleBody"), extra=(400, 403, 404, 422)),
                    s400=bad + ")",
                    s403="`forbidden`: a member who is neither owner nor admin (an org group: not an administrator of its org)",
                    s404=no_group,
                    s422=dlp_title,
                )
            )
        },
        "/v1/groups/{conversation_id}/members": {
            "get": params(listing),
            "post": params(
                said(
                    op("Invite members (owner and admins; not in an org group)", 200, "GroupView", body=ref("GroupInviteBody"), extra=(400, 403, 404, 409)),
                    s400=bad.replace("a title of 1 to 100 characters", "1 to 100 usernames") + ")",
                    s403="`forbidden`: not the owner or an admin, an org group, or an invitee I may not bring in (as at "
                    "creation; a customer into a group with staff: only customers in the book of every staff member in it), "
                    "or an invitee an information barrier separates from a member or another invitee",
                    s404=no_group + "; staff named an unknown username",
                    s409="`conflict`: an invitee is a member already; `group_full`: the group would be over its cap",
                )
            ),
        },
        "/v1/groups/{conversation_id}/members/{username}": {
            "delete": params(
                said(
                    op("Remove a member (owner: anyone else; admins: members)", 200, "GroupView", extra=(400, 403, 404)),
                    s400="`invalid_request`: a malformed id or username, or removing myself (leave instead)",
                    s403="`forbidden`: not the owner or an admin, an admin removing the owner or an admin, or an org group",
                    s404=no_group + "; or no such member of it",
                ),
                user,
            )
        },
        "/v1/groups/{conversation_id}/members/{username}/role": {
            "put": params(
                said(
                    op("The owner promotes to admin, demotes, or hands ownership on", 200, "GroupView", body=ref("GroupRoleBody"), extra=(400, 403, 404)),
                    s400="`invalid_request`: a malformed id, username or role, or a role change of my own",
                    s403="`forbidden`: not the owner, or an org group",
                    s404=no_group + "; or no such member of it",
                ),
                user,
            )
        },
        "/v1/groups/{conversation_id}/leave": {
            "post": params(
                said(
                    op("Leave a group (not an org group); an owner hands ownership on", 200, "GroupLeftOut", extra=(400, 403, 404)),
                    s400="`invalid_request`: a malformed conversation id",
                    s403="`forbidden`: an org group (its members follow the org tree)",
                    s404=no_group,
                )
            )
        },
    }
