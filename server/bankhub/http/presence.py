"""HTTP handlers for privacy, presence and read positions (thin: decode, act, encode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import liveness as liveness_actions
from ..protocol.frames import PresenceInfo
from ..storage.privacy import Privacy
from .handler import RouteTable, read_json
from .params import CONVERSATION_ID, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "USER_IDS"]

ROUTES = RouteTable()

LastSeen = Literal["everyone", "contacts", "nobody"]

USER_IDS = TextParam(
    "user_ids",
    Annotated[str, Meta(min_length=1, max_length=8000, pattern=r"^[0-9A-Za-z,-]+$")],
    "query",
    "Comma-separated user ids, at most BANKHUB_PRESENCE_MAX_WATCH (default 100)",
)


class PrivacyOut(msgspec.Struct):
    """My privacy. ``share_read_receipts`` false: others do not see my read position and
    I do not see theirs (my own devices still do). ``last_seen``: who of my related users
    (contacts, my RM, my customers) sees when I was last online."""

    share_read_receipts: bool
    last_seen: LastSeen


class PrivacyBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What to change; a field left out keeps its value."""

    share_read_receipts: bool | None = None
    last_seen: LastSeen | None = None


class PresenceOut(msgspec.Struct):
    """One entry per asked id, in the order asked (``online`` null: unknown or hidden)."""

    users: list[PresenceInfo]


class ReadPosition(msgspec.Struct):
    user_id: str
    read_seq: int


class ReadPositions(msgspec.Struct):
    """The members' read positions I may see: mine always; the others' only in a
    conversation of at most BANKHUB_RECEIPTS_MAX_MEMBERS members where both of us share
    read receipts."""

    conversation_id: str
    receipts: list[ReadPosition]


def _privacy_json(p: Privacy) -> PrivacyOut:
    return PrivacyOut(share_read_receipts=p.share_read_receipts, last_seen=p.last_seen)  # type: ignore[arg-type]


@ROUTES.authenticated("GET", "/v1/me/privacy")
async def get_privacy(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(_privacy_json(await liveness_actions.get_privacy(hub, session.user)))


@ROUTES.authenticated("PUT", "/v1/me/privacy")
async def put_privacy(request: Request, hub: Hub, session: Session) -> Response:
    body: PrivacyBody = await read_json(request, PrivacyBody)
    updated = await liveness_actions.set_privacy(hub, session.user, body.share_read_receipts, body.last_seen)
    return json_response(_privacy_json(updated))


@ROUTES.authenticated("GET", "/v1/presence")
async def get_presence(request: Request, hub: Hub, session: Session) -> Response:
    raw = USER_IDS.value(request)
    ids = [i for i in raw.split(",") if i]
    users = await liveness_actions.presence(hub, session.user, ids)
    return json_response(PresenceOut(users=users))


@ROUTES.authenticated("GET", "/v1/conversations/{conversation_id}/receipts")
async def read_positions(request: Request, hub: Hub, session: Session) -> Response:
    cid = CONVERSATION_ID.value(request)
    positions = await liveness_actions.read_positions(hub, session.user, cid)
    return json_response(
        ReadPositions(conversation_id=cid, receipts=[ReadPosition(user_id=u, read_seq=s) for u, s in positions])
    )


OPENAPI_TYPES: list[Any] = [PrivacyOut, PrivacyBody, PresenceOut, ReadPositions]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    presence = op(
        "Whether related users are online, and when last seen (as their privacy lets me)",
        200,
        "PresenceOut",
        extra=(400,),
    )
    presence["description"] = (
        "Presence travels only along relationships: accepted contacts, my RM, my customers, with no block "
        "either way and no information barrier between us. Any other id (unrelated, blocked, unknown, malformed) is answered with online null, "
        "exactly like a hidden one. 400 invalid_request: more ids than BANKHUB_PRESENCE_MAX_WATCH. Live "
        "changes: the WebSocket frame watch_presence."
    )
    presence["parameters"] = [{**USER_IDS.openapi(), "required": True}]
    presence["responses"]["400"]["description"] = (
        "`invalid_request`: user_ids missing or malformed, or more ids than BANKHUB_PRESENCE_MAX_WATCH"
    )
    receipts = op("The members' read positions I may see in a conversation of mine", 200, "ReadPositions", extra=(400, 404))
    receipts["description"] = (
        "Mine always; another member's only in a conversation of at most BANKHUB_RECEIPTS_MAX_MEMBERS members "
        "where both of us share read receipts, never across a block in a direct conversation, and never of a "
        "member an information barrier separates from me."
    )
    receipts["responses"]["400"]["description"] = "`invalid_request`: conversation_id malformed"
    receipts["responses"]["404"]["description"] = "`not_found`: no such conversation, or I am not a member (the same answer)"
    put = op(
        "Change my read-receipt and last-seen privacy (fields left out keep their value)",
        200,
        "PrivacyOut",
        body=ref("PrivacyBody"),
        extra=(400,),
    )
    put["responses"]["400"]["description"] = (
        "`invalid_request`: a body that is not JSON or not a PrivacyBody (an unknown field, or last_seen not one of "
        "everyone, contacts, nobody)"
    )
    return {
        "/v1/me/privacy": {
            "get": op("My read-receipt and last-seen privacy", 200, "PrivacyOut"),
            "put": put,
        },
        "/v1/presence": {"get": presence},
        "/v1/conversations/{conversation_id}/receipts": {"get": receipts},
    }

