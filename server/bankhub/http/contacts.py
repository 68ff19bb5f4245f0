"""HTTP handlers for contacts: lists, requests, blocks, invite codes (thin: decode, act, encode).

The rules are :mod:`bankhub.actions.contacts`'s: an add by username or phone is answered
``202`` with no body whatever became of it (an account's existence never leaks); invite
codes answer explicitly.
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
from ..actions import contacts as contact_actions
from ..protocol.frames import ContactUser
from ..storage.contacts import ContactRow
from .handler import RouteTable, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "USER_ID", "CONTACT_REQUEST_ID"]

ROUTES = RouteTable()

USER_ID = TextParam("user_id", text.Id, "path")
CONTACT_REQUEST_ID = TextParam("request_id", text.Id, "path")
NAME_CURSOR = Cursor[tuple[str]](tuple[str])
REQUEST_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])

# as typed: digits, blanks, dashes, dots, brackets and a leading + (normalized to E.164 by the action)
Phone = Annotated[str, Meta(min_length=6, max_length=32, pattern=r"^\+?[0-9 ().-]+$")]
# an invite code (16 characters, dashes and blanks allowed) or its bankhub://contact/ link
InviteCode = Annotated[str, Meta(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9:/ -]+$")]


class ContactRequestBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Whom to ask: exactly one of ``username`` and ``phone``."""

    username: text.Username | None = None
    phone: Phone | None = None


class RedeemBody(msgspec.Struct, forbid_unknown_fields=True):
    code: InviteCode


class ContactOut(msgspec.Struct):
    user: ContactUser
    since: dt.datetime  # when we became contacts (for a blocked user: when I blocked them)


class ContactList(msgspec.Struct):
    contacts: list[ContactOut]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class IncomingOut(msgspec.Struct):
    id: str  # accept or decline it by this id
    user: ContactUser
    created_at: dt.datetime


class IncomingList(msgspec.Struct):
    requests: list[IncomingOut]
    next_cursor: str | None


class OutgoingOut(msgspec.Struct):
    """A request I sent, as I addressed it: whether it reached anyone is never shown."""

    id: str  # withdraw it by this id
    handle: str  # the username or the phone number (E.164) I asked
    created_at: dt.datetime


class OutgoingList(msgspec.Struct):
    requests: list[OutgoingOut]
    next_cursor: str | None


class InviteOut(msgspec.Struct):
    code: str  # show it as text and as a QR code of `link`
    link: str  # bankhub://contact/<code>
    expires_at: dt.datetime


class RevokedInvitesOut(msgspec.Struct):
    revoked: Annotated[int, Meta(ge=0)]


def _contact_out(row: ContactRow) -> ContactOut:
    return ContactOut(user=contact_actions.contact_user(row.user), since=row.since)


@ROUTES.authenticated("GET", "/v1/contacts")
async def list_contacts(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        NAME_CURSOR,
        lambda after, limit: contact_actions.list_contacts(hub, session.user, after=after[0] if after else None, limit=limit),
        lambda row: (row.user.username,),
    )
    return json_response(ContactList(contacts=[_contact_out(r) for r in page], next_cursor=next_cursor))


@ROUTES.authenticated("DELETE", "/v1/contacts/{user_id}")
async def remove_contact(request: Request, hub: Hub, session: Session) -> Response:
    await contact_actions.remove(hub, session.user, USER_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("POST", "/v1/contacts/requests")
async def send_request(request: Request, hub: Hub, session: Session) -> Response:
    body: ContactRequestBody = await read_json(request, ContactRequestBody)
    await contact_actions.request(hub, session.user, username=body.username, phone=body.phone)
    return Response(status_code=202)


@ROUTES.authenticated("GET", "/v1/contacts/requests/incoming")
async def incoming(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        REQUEST_CURSOR,
        lambda after, limit: contact_actions.list_incoming(hub, session.user, after=after, limit=limit),
        lambda row: (row.created_at, uuid.UUID(row.id)),
    )
    out = [IncomingOut(id=r.id, user=contact_actions.contact_user(r.user), created_at=r.created_at) for r in page]
    return json_response(IncomingList(requests=out, next_cursor=next_cursor))


@ROUTES.authenticated("GET", "/v1/contacts/requests/outgoing")
async def outgoing(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        REQUEST_CURSOR,
        lambda after, limit: contact_actions.list_outgoing(hub, session.user, after=after, limit=limit),
        lambda row: (row.created_at, uuid.UUID(row.id)),
    )
    out = [OutgoingOut(id=r.id, handle=r.handle, created_at=r.created_at) for r in page]
    return json_response(OutgoingList(requests=out, next_cursor=next_cursor))


@ROUTES.authenticated("POST", "/v1/contacts/requests/{request_id}/accept")
async def accept_request(request: Request, hub: Hub, session: Session) -> Response:
    user = await contact_actions.accept(hub, session.user, CONTACT_REQUEST_ID.value(request))
    return json_response(ContactOut(user=contact_actions.contact_user(user), since=dt.datetime.now(dt.timezone.utc)))


@ROUTES.authenticated("POST", "/v1/contacts/requests/{request_id}/decline")
async def decline_request(request: Request, hub: Hub, session: Session) -> Response:
    await contact_actions.decline(hub, session.user, CONTACT_REQUEST_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("DELETE", "/v1/contacts/requests/{request_id}")
async def withdraw_request(request: Request, hub: Hub, session: Session) -> Response:
    await contact_actions.withdraw(hub, session.user, CONTACT_REQUEST_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("GET", "/v1/contacts/blocks")
async def list_blocked(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        NAME_CURSOR,
        lambda after, limit: contact_actions.list_blocked(hub, session.user, after=after[0] if after else None, limit=limit),
        lambda row: (row.user.username,),
    )
    return json_response(ContactList(contacts=[_contact_out(r) for r in page], next_cursor=next_cursor))


@ROUTES.authenticated("PUT", "/v1/contacts/blocks/{user_id}")
async def block_user(request: Request, hub: Hub, session: Session) -> Response:
    await contact_actions.block(hub, session.user, USER_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("DELETE", "/v1/contacts/blocks/{user_id}")
async def unblock_user(request: Request, hub: Hub, session: Session) -> Response:
    await contact_actions.unblock(hub, session.user, USER_ID.value(request))
    return Response(status_code=204)


@ROUTES.authenticated("POST", "/v1/contacts/invites")
async def create_invite(request: Request, hub: Hub, session: Session) -> Response:
    code, link, expires_at = await contact_actions.create_invite(hub, session.user)
    return json_response(InviteOut(code=code, link=link, expires_at=expires_at), 201)


@ROUTES.authenticated("POST", "/v1/contacts/invites/revoke")
async def revoke_invites(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(RevokedInvitesOut(revoked=await contact_actions.revoke_invites(hub, session.user)))


@ROUTES.authenticated("POST", "/v1/contacts/invites/redeem")
async def redeem_invite(request: Request, hub: Hub, session: Session) -> Response:
    body: RedeemBody = await read_json(request, RedeemBody)
    user = await contact_actions.redeem(hub, session.user, body.code)
    return json_response(ContactOut(user=contact_actions.contact_user(user), since=dt.datetime.now(dt.timezone.utc)))


OPENAPI_TYPES: list[Any] = [
    ContactRequestBody,
    RedeemBody,
    ContactOut,
    ContactList,
    IncomingList,
    OutgoingList,
    InviteOut,
    RevokedInvitesOut,
]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""

    def paged(o: dict[str, Any]) -> dict[str, Any]:
        o["description"] = "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
        o["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
        return o

    def described(o: dict[str, Any], description: str, statuses: dict[int, str]) -> dict[str, Any]:
        o["description"] = description
        for status, what in statuses.items():
            o["responses"][str(status)]["description"] = what
        return o

    no_request = "`not_found`: no such pending request for me"
    request_post = op("Ask a user to become my contact, by username or phone", 202, None, body=ref("ContactRequestBody"), extra=(400, 403, 409, 429))
    request_post["responses"]["202"]["description"] = (
        "Accepted, with no body: the same answer whether or not the account exists, may be added, blocks me, is "
        "separated from me by an information barrier or declines later (the request then lapses after "
        "BANKHUB_CONTACTS_REQUEST_TTL_DAYS)"
    )
    return {
        "/v1/contacts": {"get": paged(op("My contacts, by username", 200, "ContactList"))},
        "/v1/contacts/{user_id}": {
            "delete": described(
                op("End a contact (both sides' devices get a `contact` frame, event removed)", 204, None, extra=(404,)),
                "The direct conversation stays; customers reopen one only as contacts.",
                {404: "`not_found`: not my contact"},
            )
        },
        "/v1/contacts/requests": {
            "post": described(
                request_post,
                "Exactly one of username and phone (any common spelling; normalized to E.164, an 11-digit number "
                "starting with 1 is +86). Customers add customers and staff add staff (bankhub.policy.may_befriend). If "
                "they already asked me, we become contacts at once (a `contact` frame, event accepted). One request per "
                "handle typed: the same handle again changes nothing; a handle of someone I already asked, or of a "
                "contact, is listed like any other and reaches nobody. At most 20 requests at once, then one every 30 "
                "seconds.",
                {
                    400: "`invalid_request`: neither or both of username and phone, a malformed phone number, or my own account",
                    403: "`forbidden`: my account is disabled",
                    409: "`conflict`: I have BANKHUB_CONTACTS_MAX_PENDING requests that have not lapsed (withdrawn "
                    "ones count until they would have lapsed)",
                    429: "`rate_limited`: too many requests; retry after Retry-After seconds",
                },
            )
        },
        "/v1/contacts/requests/incoming": {"get": paged(op("Pending requests to me, newest first", 200, "IncomingList"))},
        "/v1/contacts/requests/outgoing": {
            "get": paged(op("Requests I sent that have not lapsed, newest first, as I addressed them", 200, "OutgoingList"))
        },
        "/v1/contacts/requests/{request_id}/accept": {
            "post": described(
                op("Accept a request to me: we become contacts", 200, "ContactOut", extra=(403, 404, 409)),
                "Both users are checked again now (policy, blocks, disabled accounts).",
                {
                    403: "`forbidden`: the policy refuses this contact now (a disabled account, a changed role, a block, "
                    "an information barrier)",
                    404: no_request,
                    409: "`conflict`: one of us has BANKHUB_CONTACTS_MAX_CONTACTS contacts",
                },
            )
        },
        "/v1/contacts/requests/{request_id}/decline": {
            "post": described(
                op("Decline a request to me", 204, None, extra=(404,)),
                "Its sender is not told: their request stays listed as sent until it lapses.",
                {404: no_request},
            )
        },
        "/v1/contacts/requests/{request_id}": {
            "delete": described(
                op("Withdraw a request I sent", 204, None, extra=(404,)),
                "Its addressee's devices drop it (a `contact` frame, event request_withdrawn). It still counts against "
                "BANKHUB_CONTACTS_MAX_PENDING until it would have lapsed.",
                {404: "`not_found`: no such request of mine"},
            )
        },
        "/v1/contacts/blocks": {"get": paged(op("Users I block, by username", 200, "ContactList"))},
        "/v1/contacts/blocks/{user_id}": {
            "put": described(
                op("Block a user (idempotent)", 204, None, extra=(403, 404, 409)),
                "They can no longer message me in our direct conversation (nor I them), open one with me, send me a "
                "request or see my presence; a contact between us ends, their request to me reads to them as declined, "
                "mine to them is withdrawn (event request_withdrawn on their devices). Customers "
                "block customers and staff block staff (bankhub.policy.may_block).",
                {
                    403: "`forbidden`: a customer and a member of staff do not block each other",
                    404: "`not_found`: no such user",
                    409: "`conflict`: I block BANKHUB_CONTACTS_MAX_BLOCKS users already",
                },
            ),
            "delete": described(
                op("Unblock a user (idempotent)", 204, None, extra=(404,)),
                "The contact is not restored: either side asks again.",
                {404: "`not_found`: not a user id"},
            ),
        },
        "/v1/contacts/invites": {
            "post": described(
                op("A new single-use invite code of mine, with its bankhub://contact/ link (show it as a QR code)", 201, "InviteOut", extra=(409,)),
                "Only its hash is stored; it works once, until expires_at (BANKHUB_CONTACTS_INVITE_TTL_SECONDS).",
                {409: "`conflict`: I hold BANKHUB_CONTACTS_MAX_INVITES usable codes: revoke them"},
            )
        },
        "/v1/contacts/invites/revoke": {"post": op("Revoke all my invite codes", 200, "RevokedInvitesOut")},
        "/v1/contacts/invites/redeem": {
            "post": described(
                op("Redeem an invite code (or its link): its owner and I become contacts", 200, "ContactOut", body=ref("RedeemBody"), extra=(400, 403, 404, 409)),
                "Explicit answers, since the holder was given the code. A refused redemption leaves the code usable.",
                {
                    400: "`invalid_request`: my own code, or a malformed body",
                    403: "`forbidden`: the policy refuses this contact (customers and staff, a disabled account, a block, an "
                    "information barrier)",
                    404: "`not_found`: no such code, or it was used or has expired (one answer)",
                    409: "`conflict`: one of us has BANKHUB_CONTACTS_MAX_CONTACTS contacts",
                },
            )
        },
    }
