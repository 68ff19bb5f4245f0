"""HTTP handlers of data-loss prevention's investigator side (thin: decode, act, encode). See
docs/compliance.md, "Data-loss prevention".

* ``POST /v1/compliance/dlp/search?cursor=&limit=`` ``{kind, value, reason, case_ref?}`` → 200
  ``{matches: [{conversation_id, message_id, seq, sender_id, created_at}], next_cursor}``:
  the messages in which that card, resident ID or account number was masked, newest first —
  metadata only (read the text through the reason-coded compliance read). Audited
  (``dlp.searched``); the value is never stored or logged. An invalid value: 422 ``invalid_value``.
* ``GET /v1/compliance/dlp/figures`` → values masked per kind, sends refused per kind and direction.

Compliance officers only: anyone else gets 403 ``forbidden``.
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
from ..actions import dlp as dlp_actions
from ..policy import DLP_DIRECTIONS, PRIVILEGED_READ_REASONS
from .handler import RouteTable, client_ip, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

MATCH_CURSOR = Cursor[tuple[dt.datetime, uuid.UUID]](tuple[dt.datetime, uuid.UUID])


class DlpSearchBody(msgspec.Struct, forbid_unknown_fields=True):
    """What to look for: a full card, resident ID or account number (spaces and dashes allowed),
    and why (a reason code of the compliance read; a case reference)."""

    kind: Literal["card", "resident_id", "bank_account"]
    value: Annotated[text.Line, Meta(min_length=1, max_length=64)]  # digits, spaces, dashes: checked by the action (422)
    reason: Annotated[text.Line, Meta(min_length=1, max_length=64, description=f"one of {', '.join(sorted(PRIVILEGED_READ_REASONS))}")]
    case_ref: Annotated[text.Line, Meta(min_length=1, max_length=128)] | None = None


class DlpMatch(msgspec.Struct):
    conversation_id: str
    message_id: str
    seq: int
    sender_id: str
    created_at: dt.datetime


class DlpMatchList(msgspec.Struct):
    matches: list[DlpMatch]
    next_cursor: str | None  # more follow: pass it as ?cursor=


class DlpKindFigures(msgspec.Struct):
    kind: str
    masked: int  # values masked in stored messages
    refused: dict[str, int]  # sends refused, per direction


class DlpFigures(msgspec.Struct):
    kinds: list[DlpKindFigures]


@ROUTES.authenticated("POST", "/v1/compliance/dlp/search", audited_read=True)
async def search(request: Request, hub: Hub, session: Session) -> Response:
    limit = PAGE_LIMIT.read_default(request)
    after = MATCH_CURSOR.read(request)
    body: DlpSearchBody = await read_json(request, DlpSearchBody)
    rows, more = await dlp_actions.search(
        hub,
        session.user,
        kind=body.kind,
        value=body.value,
        reason=body.reason,
        case_ref=body.case_ref,
        after=after,
        limit=limit,
        ip=client_ip(request),
    )
    cursor = MATCH_CURSOR.encode((rows[-1].created_at, uuid.UUID(rows[-1].message_id))) if more and rows else None
    return json_response(DlpMatchList(matches=[DlpMatch(*r) for r in rows], next_cursor=cursor))


@ROUTES.authenticated("GET", "/v1/compliance/dlp/figures")
async def figures(request: Request, hub: Hub, session: Session) -> Response:
    got = await dlp_actions.figures(hub, session.user)
    kinds = [
        DlpKindFigures(
            kind=k,
            masked=got.masked.get(k, 0),
            refused={d: got.refused[(k, d)] for d in DLP_DIRECTIONS if (k, d) in got.refused},
        )
        for k in ("card", "resident_id", "bank_account", "cvv", "otp")
    ]
    return json_response(DlpFigures(kinds=kinds))


OPENAPI_TYPES: list[Any] = [DlpSearchBody, DlpMatch, DlpMatchList, DlpKindFigures, DlpFigures]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    not_officer = "`forbidden`: not an active compliance officer"
    searching = op(
        "Find the messages in which a card, resident ID or account number was masked (compliance officers)",
        200, "DlpMatchList", body=ref("DlpSearchBody"), extra=(400, 403, 422, 503),
    )
    searching["description"] = (
        "Metadata only, newest first: read a conversation's text through GET /v1/compliance/conversations/{id}/messages "
        "(reason-coded). The hub keeps only keyed fingerprints (HMAC-SHA256 under its compliance key) of masked values: "
        "the value itself is never stored or logged, nor is it in the audit row (`dlp.searched`: kind, the value's mask, "
        "matches, case_ref). Each new search (not a next page) counts against the officer's limit "
        "(BANKHUB_DLP_SEARCH_BURST, BANKHUB_DLP_SEARCH_PER_HOUR): a sweep of candidates to rebuild a masked value is bounded. "
        "Paged: pass next_cursor (null on the last page) back unchanged as ?cursor= for the next page."
    )
    searching["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    searching["responses"]["400"]["description"] = "`invalid_request`: a missing or unknown reason code, a malformed body, cursor or limit"
    searching["responses"]["403"]["description"] = not_officer
    searching["responses"]["503"]["description"] = "`unavailable`: the rate limiter cannot be reached (searches fail closed), or the compliance key"
    searching["responses"]["422"]["description"] = (
        "`invalid_value`: not a valid value of its kind once separators (blanks, dashes, dots, slashes) are removed (a card: 13–19 digits passing "
        "Luhn; a resident ID: 17 digits and a check character with a valid checksum; an account: 10–25 digits), or a "
        "case_ref that itself carries such a value (it is kept in the audit row)"
    )
    figuring = op("Values masked and sends refused by data-loss prevention, per kind (compliance officers)", 200, "DlpFigures", extra=(403,))
    figuring["responses"]["403"]["description"] = not_officer
    return {
        "/v1/compliance/dlp/search": {"post": searching},
        "/v1/compliance/dlp/figures": {"get": figuring},
    }
