"""HTTP handlers of the compliance console's audit-chain check (thin: decode, act, encode).

* ``GET /v1/compliance/audit/head`` → ``{seq, hash}`` (hex): the head to anchor outside the
  hub (write it in the case file or a signed email; compare later with
  ``bankhub audit verify --expect-head SEQ:HEX``).
* ``POST /v1/compliance/audit/verify`` (optional body ``{"expect_head": "SEQ:HEX"}``) →
  ``{ok, rows, head, first_bad_seq, problem}``; recorded as ``audit.verified``. One at a
  time across the hub (409 ``verify_running``) and at most 3 in a row, then one per 20 s,
  per officer (429 ``rate_limited``), both with ``Retry-After``.

Compliance officers only (403 ``forbidden`` for anyone else). The console page itself is
served by :mod:`bankhub.web` at ``/compliance/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from ..actions import compliance_console as console_actions
from ..actions.errors import ActionError
from ..storage.audit import Head
from .handler import RouteTable, client_ip, decode_json, read_body, require_json
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()

# SEQ:HEX as printed by `bankhub audit verify` (a SHA-256 hash: 64 hex digits)
AnchoredHead = Annotated[str, Meta(min_length=3, max_length=90, pattern=r"^[0-9]{1,19}:[0-9a-fA-F]{64}$")]


class VerifyBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Optional: a head anchored earlier, so a removed tail or a rewritten chain is caught."""

    expect_head: AnchoredHead | None = None


class AuditHeadOut(msgspec.Struct):
    seq: int  # 0 for an empty log
    hash: str  # hex SHA-256 of the last row


class AuditVerifyOut(msgspec.Struct):
    ok: bool
    rows: int  # rows verified (before the problem, when there is one)
    head: AuditHeadOut  # the last row that verified: the real head when ok
    first_bad_seq: int | None
    problem: str | None  # altered | missing | broken_link | bad_seq | undecodable | truncated | anchor_mismatch


def _head_out(head: Head) -> AuditHeadOut:
    return AuditHeadOut(seq=head.seq, hash=head.hash.hex())


@ROUTES.authenticated("GET", "/v1/compliance/audit/head")
async def audit_head(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(_head_out(await console_actions.head(hub, session.user)))


@ROUTES.authenticated("POST", "/v1/compliance/audit/verify")
async def audit_verify(request: Request, hub: Hub, session: Session) -> Response:
    raw = await read_body(request, 1024)
    expect: Head | None = None
    if raw.strip():
        require_json(request)
        body = decode_json(raw, VerifyBody)
        if body.expect_head is not None:
            try:
                expect = Head.parse(body.expect_head)
            except ValueError:
                raise ActionError("invalid_request", "expect_head must be SEQ:HEX") from None
    report = await console_actions.verify(hub, session.user, expect_head=expect, ip=client_ip(request))
    return json_response(
        AuditVerifyOut(
            ok=report.ok,
            rows=report.rows,
            head=_head_out(report.head),
            first_bad_seq=None if report.problem is None else report.problem.seq,
            problem=None if report.problem is None else report.problem.kind,
        )
    )


OPENAPI_TYPES: list[Any] = [VerifyBody, AuditHeadOut, AuditVerifyOut]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    head = op("The audit chain's head to anchor outside the hub (compliance officers)", 200, "AuditHeadOut", extra=(403,))
    head["description"] = (
        "Write the head down outside the hub (case file, signed email) and compare later with "
        "`bankhub audit verify --expect-head SEQ:HEX`."
    )
    verify = op(
        "Re-verify the whole audit chain; recorded as audit.verified (compliance officers)",
        200,
        "AuditVerifyOut",
        extra=(400, 403, 409, 413, 415, 429),
    )
    verify["description"] = (
        "Without expect_head the answer only says the chain is consistent with itself: a log rewritten from some "
        "row onwards (and re-hashed) verifies too. Send the head anchored earlier (SEQ:HEX) to catch that. "
        "One verification runs at a time across the hub, and each officer may start 3 in a row, then one every 20 s."
    )
    verify["responses"]["409"]["description"] = "`verify_running`: another verification is walking the chain; retry after Retry-After seconds"
    verify["responses"]["409"]["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    verify["responses"]["429"]["description"] = "`rate_limited`: this officer started verifications too often; retry after Retry-After seconds"
    verify["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref("VerifyBody")}}}
    return {
        "/v1/compliance/audit/head": {"get": head},
        "/v1/compliance/audit/verify": {"post": verify},
    }
