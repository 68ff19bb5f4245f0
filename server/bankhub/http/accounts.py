"""HTTP handlers for official accounts, notices and user creation (thin: decode, act, encode)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import accounts as account_actions
from ..actions import users as user_actions
from ..models import OfficialAccount
from ..protocol.frames import AccountId, Notice, NoticeBody, Seq, Signature
from ..actions.errors import ActionError
from ..models import AccountKey, NoticeRecord, NoticeStats, Target, account_key
from .. import text
from .handler import RouteTable, client_ip, read_json
from .problems import json_response
from .paging import BEFORE_SEQ, CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page, encode_cursor, next_page
from .params import ACCOUNT_ID, NOTICE_ID, NOTICE_STATUS, SEARCH
from .routes import RoleName, user_json

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

# a target list: 1 to actions.accounts.MAX_TARGET_VALUES values (the action checks the minimum)
_TargetList = Meta(max_length=account_actions.MAX_TARGET_VALUES)

NOTICE_STATUSES = ("pending_approval", "scheduled", "published", "recalled", "rejected")
OutboxKey = tuple[dt.datetime, uuid.UUID]
OUTBOX_CURSOR = Cursor[OutboxKey](OutboxKey)
ACCOUNT_CURSOR = Cursor[AccountKey](AccountKey)
ORG_CURSOR = Cursor[tuple[str]](tuple[str])


class AccountBody(msgspec.Struct, forbid_unknown_fields=True):
    handle: text.Username
    name: Annotated[text.Line, Meta(min_length=1, max_length=64)]
    audience: Literal["customer", "staff"] = "customer"
    description: Annotated[text.Text, Meta(max_length=1000)] = ""
    owner_org: text.OrgCode | None = None  # org code; default: my own org
    is_default: bool = False
    requires_approval: bool = False


class TargetBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who a notice is for; every dimension given must match (see docs/official-accounts.md)."""

    org_codes: Annotated[list[text.OrgCode], _TargetList] | None = None
    tags: Annotated[list[text.Tag], _TargetList] | None = None
    segments: Annotated[list[text.Tag], _TargetList] | None = None
    staff_only: bool = False


class NoticeInBody(msgspec.Struct, forbid_unknown_fields=True):
    body: NoticeBody
    target: TargetBody | None = None
    scheduled_at: Annotated[dt.datetime, Meta(extra_json_schema={"format": "date-time"})] | None = None


class AudienceBody(msgspec.Struct, forbid_unknown_fields=True):
    """A draft notice's target (as in NoticeInBody), to count its audience before sending."""

    target: TargetBody | None = None


class AudienceOut(msgspec.Struct):
    count: int  # current followers of the account the target reaches


class OrgOut(msgspec.Struct):
    id: str  # as in a notice's target.org_ids
    code: str
    name: str
    kind: str  # head_office, branch or sub_branch
    parent_code: str | None


class OrgList(msgspec.Struct):
    orgs: list[OrgOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class NoticeRecallBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[text.Line, Meta(min_length=1, max_length=500)]


class ReadBody(msgspec.Struct, forbid_unknown_fields=True):
    seq: Seq


class UserBody(msgspec.Struct, forbid_unknown_fields=True):
    username: text.Username
    display_name: Annotated[text.Line, Meta(min_length=1, max_length=64)]
    role: RoleName
    org: text.OrgCode  # org code
    password: text.Password
    rm: text.Username | None = None
    segment: text.Tag | None = None
    tags: Annotated[list[text.Tag], Meta(max_length=32)] | None = None


class AccountOut(msgspec.Struct):
    id: AccountId
    handle: str
    name: str
    description: str
    audience: str
    is_default: bool
    requires_approval: bool
    owner_org_id: str  # the owning org (GET /v1/orgs lists the orgs an administrator's accounts may belong to)
    following: bool | None = None


class FollowedOut(msgspec.Struct):
    account: AccountOut
    last_seq: int
    read_seq: int
    unread: int


class AccountList(msgspec.Struct):
    accounts: list[AccountOut]
    next_cursor: str | None  # more follow: pass it as ?cursor= (a page may be short, even empty)


class FollowedList(msgspec.Struct):
    accounts: list[FollowedOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class NoticePage(msgspec.Struct):
    notices: list[Notice]
    has_more: bool


class NoticeOut(msgspec.Struct):
    """A notice as its administrators see it: workflow state, audience, figures."""

    id: str
    account_id: str
    status: str
    body: NoticeBody
    target: Target
    author_id: str
    created_at: dt.datetime
    seq: int | None
    approved_by: str | None
    rejected_by: str | None
    scheduled_at: dt.datetime | None
    published_at: dt.datetime | None
    recall_seq: int | None
    recalled_at: dt.datetime | None
    recalled_by: str | None
    recall_reason: str | None
    delivered_online: int
    # the hub's signature, made at publication (null until published, and for notices published before delta 0017)
    signature: Signature | None = None


class NoticeList(msgspec.Struct):
    notices: list[NoticeOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class StatsOut(msgspec.Struct):
    notice: NoticeOut
    stats: NoticeStats


class AccountReadOut(msgspec.Struct):
    account_id: str
    read_seq: int
    unread: int


class CreatedUserOut(msgspec.Struct):
    user: dict[str, Any]
    followed_accounts: list[str]


def _account_out(a: OfficialAccount, following: bool | None = None) -> AccountOut:
    return AccountOut(
        id=a.id,
        handle=a.handle,
        name=a.name,
        description=a.description,
        audience=a.audience,
        is_default=a.is_default,
        requires_approval=a.requires_approval,
        owner_org_id=a.owner_org_id,
        following=following,
    )


def _notice_out(rec: NoticeRecord) -> NoticeOut:
    return NoticeOut(**msgspec.structs.asdict(rec))


@ROUTES.authenticated("GET", "/v1/accounts")
async def search_accounts(request: Request, hub: Hub, session: Session) -> Response:
    q = SEARCH.read(request) or ""  # SEARCH bounds its length (400 past it)
    found, next_key = await account_actions.search(hub, session.user, q, PAGE_LIMIT.read_default(request), after=ACCOUNT_CURSOR.read(request))
    mine = {f.account.id for f in await account_actions.following(hub, session.user)}
    return json_response(
        AccountList(
            accounts=[_account_out(a, a.id in mine) for a in found],
            next_cursor=None if next_key is None else encode_cursor(next_key),
        )
    )


@ROUTES.authenticated("GET", "/v1/me/accounts")
async def my_accounts(request: Request, hub: Hub, session: Session) -> Response:
    followed, next_cursor = await cursor_page(
        request,
        ACCOUNT_CURSOR,
        lambda after, limit: account_actions.following(hub, session.user, after=after, limit=limit),
        lambda f: account_key(f.account),
    )
    return json_response(
        FollowedList(
            accounts=[
                FollowedOut(account=_account_out(f.account, True), last_seq=f.account.last_seq, read_seq=f.read_seq, unread=f.unread)
                for f in followed
            ],
            next_cursor=next_cursor,
        )
    )


@ROUTES.authenticated("POST", "/v1/accounts")
async def create_account(request: Request, hub: Hub, session: Session) -> Response:
    body: AccountBody = await read_json(request, AccountBody)
    account = await account_actions.create_account(
        hub,
        session.user,
        handle=body.handle,
        name=body.name,
        description=body.description,
        owner_org_code=body.owner_org,
        audience=body.audience,
        is_default=body.is_default,
        requires_approval=body.requires_approval,
        ip=client_ip(request),
    )
    return json_response(_account_out(account), 201)


@ROUTES.authenticated("GET", "/v1/accounts/{account_id}")
async def get_account(request: Request, hub: Hub, session: Session) -> Response:
    account = await account_actions.visible_account(hub, session.user, ACCOUNT_ID.value(request))
    following = await hub.accounts.follow_state(account.id, session.user.id) is not None
    return json_response(_account_out(account, following))


@ROUTES.authenticated("PUT", "/v1/accounts/{account_id}/follow")
async def follow(request: Request, hub: Hub, session: Session) -> Response:
    account = await account_actions.follow(hub, session.user, ACCOUNT_ID.value(request))
    return json_response(_account_out(account, True))


@ROUTES.authenticated("DELETE", "/v1/accounts/{account_id}/follow")
async def unfollow(request: Request, hub: Hub, session: Session) -> Response:
    await account_actions.unfollow(hub, session.user, ACCOUNT_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("GET", "/v1/accounts/{account_id}/notices")
async def account_notices(request: Request, hub: Hub, session: Session) -> Response:
    limit = PAGE_LIMIT.read_default(request)
    page = await account_actions.history(hub, session.user, ACCOUNT_ID.value(request), BEFORE_SEQ.read(request), limit + 1)
    return json_response(NoticePage(notices=page[:limit], has_more=len(page) > limit))


@ROUTES.authenticated("PUT", "/v1/accounts/{account_id}/read")
async def read_account(request: Request, hub: Hub, session: Session) -> Response:
    body: ReadBody = await read_json(request, ReadBody)
    receipt = await account_actions.read(hub, session.user, ACCOUNT_ID.value(request), body.seq)
    return json_response(AccountReadOut(account_id=receipt.account_id, read_seq=receipt.read_seq, unread=receipt.unread))


@ROUTES.authenticated("POST", "/v1/accounts/{account_id}/notices")
async def publish_notice(request: Request, hub: Hub, session: Session) -> Response:
    body: NoticeInBody = await read_json(request, NoticeInBody)
    t = body.target or TargetBody()
    rec = await account_actions.publish(
        hub,
        session.user,
        ACCOUNT_ID.value(request),
        body.body,
        org_codes=t.org_codes,
        target=Target(tags=t.tags, segments=t.segments, staff_only=t.staff_only),
        scheduled_at=body.scheduled_at,
        ip=client_ip(request),
    )
    return json_response(_notice_out(rec), 201)


@ROUTES.authenticated("GET", "/v1/accounts/{account_id}/outbox")
async def account_outbox(request: Request, hub: Hub, session: Session) -> Response:
    limit = PAGE_LIMIT.read_default(request)
    status = NOTICE_STATUS.read(request) or None
    if status is not None and status not in NOTICE_STATUSES:
        raise ActionError("invalid_request", f"status must be one of {list(NOTICE_STATUSES)}")
    recs, next_cursor = next_page(
        await account_actions.outbox(hub, session.user, ACCOUNT_ID.value(request), status, limit + 1, after=OUTBOX_CURSOR.read(request)),
        limit,
        lambda r: (r.created_at, uuid.UUID(r.id)),
    )
    return json_response(NoticeList(notices=[_notice_out(r) for r in recs], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/notices/{notice_id}/approve")
async def approve_notice(request: Request, hub: Hub, session: Session) -> Response:
    rec = await account_actions.approve(hub, session.user, NOTICE_ID.value(request), ip=client_ip(request))
    return json_response(_notice_out(rec))


@ROUTES.authenticated("POST", "/v1/notices/{notice_id}/reject")
async def reject_notice(request: Request, hub: Hub, session: Session) -> Response:
    rec = await account_actions.reject(hub, session.user, NOTICE_ID.value(request), ip=client_ip(request))
    return json_response(_notice_out(rec))


@ROUTES.authenticated("POST", "/v1/notices/{notice_id}/recall")
async def recall_notice(request: Request, hub: Hub, session: Session) -> Response:
    body: NoticeRecallBody = await read_json(request, NoticeRecallBody)
    rec = await account_actions.recall(hub, session.user, NOTICE_ID.value(request), body.reason, ip=client_ip(request))
    return json_response(_notice_out(rec))


@ROUTES.authenticated("GET", "/v1/notices/{notice_id}/stats")
async def notice_stats(request: Request, hub: Hub, session: Session) -> Response:
    rec, figures = await account_actions.stats(hub, session.user, NOTICE_ID.value(request))
    return json_response(StatsOut(notice=_notice_out(rec), stats=figures))


@ROUTES.authenticated("POST", "/v1/accounts/{account_id}/audience")
async def notice_audience(request: Request, hub: Hub, session: Session) -> Response:
    body: AudienceBody = await read_json(request, AudienceBody)
    t = body.target or TargetBody()
    count = await account_actions.audience(
        hub,
        session.user,
        ACCOUNT_ID.value(request),
        org_codes=t.org_codes,
        target=Target(tags=t.tags, segments=t.segments, staff_only=t.staff_only),
    )
    return json_response(AudienceOut(count=count))


@ROUTES.authenticated("GET", "/v1/orgs")
async def list_orgs(request: Request, hub: Hub, session: Session) -> Response:
    rows, next_cursor = await cursor_page(
        request,
        ORG_CURSOR,
        lambda after, limit: account_actions.target_orgs(hub, session.user, limit, after=None if after is None else after[0]),
        lambda o: (o.code,),
    )
    return json_response(OrgList(orgs=[OrgOut(id=o.id, code=o.code, name=o.name, kind=o.kind, parent_code=o.parent_code) for o in rows], next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/users")
async def create_user(request: Request, hub: Hub, session: Session) -> Response:
    body: UserBody = await read_json(request, UserBody)
    created = await user_actions.create_user(
        hub,
        session.user,
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        org_code=body.org,
        password=body.password,
        rm=body.rm,
        segment=body.segment,
        tags=body.tags,
        ip=client_ip(request),
    )
    if isinstance(created, user_actions.AdminRequestView):  # an administrative role: a second administrator decides
        return json_response(created, 202)
    user, followed = created
    return json_response(CreatedUserOut(user=user_json(user), followed_accounts=followed), 201)


OPENAPI_TYPES: list[Any] = [
    AccountBody,
    NoticeInBody,
    NoticeRecallBody,
    AudienceBody,
    AudienceOut,
    OrgList,
    ReadBody,
    UserBody,
    AccountOut,
    AccountList,
    FollowedList,
    NoticePage,
    NoticeOut,
    NoticeList,
    StatsOut,
    AccountReadOut,
    CreatedUserOut,
]


def _user_post(op: Any, ref: Any) -> dict[str, Any]:
    post: dict[str, Any] = op(
        "Create a user (administrators); they follow the default accounts. An administrative or compliance "
        "account is only requested (202): a second administrator approves it at /v1/admin-requests",
        201,
        "CreatedUserOut",
        body=ref("UserBody"),
        extra=(400, 403, 409),
    )
    post["responses"]["202"] = {
        "description": "Accepted: the role is under dual control; the pending request a second administrator decides",
        "content": {"application/json": {"schema": ref("AdminRequestView")}},
    }
    post["responses"]["409"]["description"] = "`conflict`: the username is taken, or a request about it is already pending"
    return post


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""

    def paged(o: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
        o["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
        o["parameters"] = [*params, CURSOR_PARAM, PAGE_LIMIT.openapi()]
        return o

    def seq_paged(o: dict[str, Any]) -> dict[str, Any]:
        o["description"] = "Paged by seq: pass the oldest seq of this page as ?before_seq= while has_more is true."
        o["parameters"] = [BEFORE_SEQ.openapi(), PAGE_LIMIT.openapi()]
        return o

    search_q = {
        "name": "q",
        "in": "query",
        "required": False,
        "description": "part of the handle or name (case-insensitive)",
        "schema": SEARCH.openapi()["schema"],  # the text type the handler checks q with
    }
    status_q = {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(NOTICE_STATUSES)}}
    return {
        "/v1/users": {"post": _user_post(op, ref)},
        "/v1/accounts": {
            "get": paged(op("Official accounts I may follow (?q= searches handle and name)", 200, "AccountList"), search_q),
            "post": op("Create an official account (administrators)", 201, "AccountOut", body=ref("AccountBody"), extra=(400, 403, 409)),
        },
        "/v1/me/accounts": {"get": paged(op("The accounts I follow, with exact unread counts", 200, "FollowedList"))},
        "/v1/accounts/{account_id}": {"get": op("One account", 200, "AccountOut", extra=(404,))},
        "/v1/accounts/{account_id}/follow": {
            "put": op("Follow (idempotent)", 200, "AccountOut", extra=(404,)),
            "delete": op("Unfollow", 204, None, extra=(403, 404)),
        },
        "/v1/accounts/{account_id}/notices": {
            "get": seq_paged(op("Notices for me, newest first (?before_seq=&limit=)", 200, "NoticePage", extra=(403, 404))),
            "post": op(
                "Publish a notice: now, scheduled, or pending a second administrator's approval (422 sensitive_data: a "
                "text field carries a card, resident ID or account number, a CVV or a code and data-loss prevention "
                "refuses it for the followers; masked when the policy masks)",
                201,
                "NoticeOut",
                body=ref("NoticeInBody"),
                extra=(400, 403, 404, 422),
            ),
        },
        "/v1/accounts/{account_id}/read": {"put": op("Move my read position", 200, "AccountReadOut", body=ref("ReadBody"), extra=(404,))},
        "/v1/accounts/{account_id}/outbox": {
            "get": paged(op("An account's notices for its administrators (?status=), newest first", 200, "NoticeList", extra=(403, 404)), status_q)
        },
        "/v1/notices/{notice_id}/approve": {"post": op("Approve a pending notice (not its author)", 200, "NoticeOut", extra=(403, 404, 409))},
        "/v1/notices/{notice_id}/reject": {"post": op("Reject a pending notice (not its author)", 200, "NoticeOut", extra=(403, 404, 409))},
        "/v1/notices/{notice_id}/recall": {
            "post": op("Recall a published notice; followers see it withdrawn", 200, "NoticeOut", body=ref("NoticeRecallBody"), extra=(403, 404, 409))
        },
        "/v1/notices/{notice_id}/stats": {"get": op("Delivered-online and read figures", 200, "StatsOut", extra=(403, 404))},
        "/v1/accounts/{account_id}/audience": {
            "post": op(
                "Count the current followers a notice with this target would reach (administrators of the account; "
                "the same targeting and checks as publishing)",
                200,
                "AudienceOut",
                body=ref("AudienceBody"),
                extra=(400, 403, 404),
            )
        },
        "/v1/orgs": {
            "get": paged(
                op("The orgs I may target, by code: my org's subtree (administrators; head office sees the whole tree)", 200, "OrgList", extra=(403,))
            )
        },
    }
