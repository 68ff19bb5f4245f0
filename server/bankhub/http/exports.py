"""HTTP handlers for eDiscovery exports (thin: decode, act, encode). See docs/compliance.md,
"eDiscovery export": request, dual-control approval, the background build, download."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import text
from ..actions import exports as export_actions
from ..actions.errors import ActionError
from ..policy import PRIVILEGED_READ_REASONS
from .handler import RouteTable, client_ip, read_json
from .paging import CURSOR_PARAM, PAGE_LIMIT, Cursor, cursor_page
from .params import TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths"]

ROUTES = RouteTable()
EXPORT_ID = TextParam("export_id", text.Id, "path")
EXPORT_CURSOR = Cursor[tuple[dt.datetime, str]](tuple[dt.datetime, str])

Keyword = Annotated[text.Line, Meta(min_length=1, max_length=export_actions.MAX_KEYWORD_CHARS)]
Time = Annotated[dt.datetime, Meta(tz=True)]


class ExportRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[text.Line, Meta(max_length=64)]  # a privileged-read reason code
    custodians: Annotated[list[text.Username], Meta(max_length=export_actions.MAX_CUSTODIANS)] = []
    conversation_ids: Annotated[list[text.Id], Meta(max_length=export_actions.MAX_CONVERSATIONS)] = []
    from_: Time | None = msgspec.field(name="from", default=None)
    to: Time | None = None
    keywords: Annotated[list[Keyword], Meta(max_length=export_actions.MAX_KEYWORDS)] = []
    case_ref: Annotated[text.Line, Meta(max_length=128)] | None = None


class ExportList(msgspec.Struct):
    exports: list[export_actions.ExportView]
    next_cursor: str | None  # more follow: pass it as ?cursor=


def _after(key: tuple[dt.datetime, str] | None) -> tuple[dt.datetime, str] | None:
    if key is None:
        return None
    try:
        uuid.UUID(key[1])
    except ValueError:
        raise ActionError("invalid_request", "cursor is not a next_cursor of this list") from None
    return key


def _deps(hub: Hub) -> export_actions.ExportDeps:
    return export_actions.ExportDeps.from_hub(hub)


@ROUTES.authenticated("POST", "/v1/compliance/exports")
async def request_export(request: Request, hub: Hub, session: Session) -> Response:
    body: ExportRequestBody = await read_json(request, ExportRequestBody)
    out = await export_actions.request_export(
        _deps(hub), session.user, custodians=body.custodians, conversation_ids=body.conversation_ids, since=body.from_,
        until=body.to, keywords=body.keywords, reason=body.reason, case_ref=body.case_ref, ip=client_ip(request),
    )
    return json_response(out, 201)


@ROUTES.authenticated("GET", "/v1/compliance/exports")
async def list_exports(request: Request, hub: Hub, session: Session) -> Response:
    page, next_cursor = await cursor_page(
        request,
        EXPORT_CURSOR,
        lambda after, limit: export_actions.list_exports(_deps(hub), session.user, _after(after), limit),
        lambda entry: entry[1],
    )
    return json_response(ExportList(exports=[v for v, _ in page], next_cursor=next_cursor))


@ROUTES.authenticated("GET", "/v1/compliance/exports/{export_id}")
async def get_export(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await export_actions.get_export(_deps(hub), session.user, EXPORT_ID.value(request)))


@ROUTES.authenticated("POST", "/v1/compliance/exports/{export_id}/approve")
async def approve_export(request: Request, hub: Hub, session: Session) -> Response:
    out = await export_actions.approve_export(_deps(hub), session.user, EXPORT_ID.value(request), client_ip(request))
    return json_response(out, 202)


@ROUTES.authenticated("POST", "/v1/compliance/exports/{export_id}/reject")
async def reject_export(request: Request, hub: Hub, session: Session) -> Response:
    return json_response(await export_actions.reject_export(_deps(hub), session.user, EXPORT_ID.value(request), client_ip(request)))


@ROUTES.authenticated("POST", "/v1/compliance/exports/{export_id}/retry")
async def retry_export(request: Request, hub: Hub, session: Session) -> Response:
    out = await export_actions.retry_export(_deps(hub), session.user, EXPORT_ID.value(request), client_ip(request))
    return json_response(out, 202)


@ROUTES.authenticated("GET", "/v1/compliance/exports/{export_id}/download", audited_read=True)
async def download_export(request: Request, hub: Hub, session: Session) -> Response:
    row, chunks = await export_actions.download_export(_deps(hub), session.user, EXPORT_ID.value(request), client_ip(request))
    headers = {
        "content-disposition": f'attachment; filename="bankhub-export-{row.id}.zip"',
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
    }
    if row.size is not None:
        headers["content-length"] = str(row.size)
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)


OPENAPI_TYPES = [ExportRequestBody, ExportList, export_actions.ExportView]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    # {export_id} is declared from openapi.PATH_PARAMETERS (a uuid; any other id answers 404)

    def said(o: dict[str, Any], *path: dict[str, Any], **codes: str) -> dict[str, Any]:
        for status, text_ in codes.items():
            o["responses"][status[1:]]["description"] = text_
        if path:
            o["parameters"] = [*path, *o.get("parameters", [])]
        return o

    officers = "`forbidden`: not an active compliance officer"
    missing = "`not_found`: no such export"
    listing = said(
        op("Export requests, newest first (compliance officers; metadata only)", 200, "ExportList", extra=(400, 403)),
        s400="`invalid_request`: a malformed cursor or limit",
        s403=officers,
    )
    listing["parameters"] = [CURSOR_PARAM, PAGE_LIMIT.openapi()]
    download = said(
        op("Download a ready export: the signed zip (its requester or approver only)", 200, None, extra=(400, 403, 404, 409, 410, 503)),
        s400="`invalid_request`: a malformed export id",
        s403=officers + ", or neither the requester nor the approver of this export",
        s404=missing,
        s409="`not_ready`: the export is pending approval, rejected, running or failed",
        s410="`gone`: the export expired (BANKHUB_EXPORT_RETENTION_DAYS), or the stored zip is missing or failed its "
        "integrity check (checked in full before the first byte is sent)",
        s503="`unavailable`: the key provider or the blob store is unavailable, retry",
    )
    download["responses"]["200"] = {
        "description": "The signed zip (manifest.json, manifest.sig and the files), streamed",
        "content": {"application/zip": {}},
        "headers": {
            "Content-Disposition": {
                "required": True,
                "schema": {"type": "string", "pattern": '^attachment; filename="bankhub-export-[0-9a-f-]+\\.zip"$'},
            },
            "X-Content-Type-Options": {"required": True, "schema": {"type": "string", "const": "nosniff"}},
            "Cache-Control": {"required": True, "schema": {"type": "string", "const": "no-store"}},
        },
    }
    download["description"] = (
        "Audited as export.downloaded before the first byte. Content-Disposition: attachment; "
        'filename="bankhub-export-<id>.zip". Verify it offline and authenticate the signer: '
        "`bankhub export verify FILE --key KEYS` (a saved GET /v1/signing-keys answer) or `--hub URL`."
    )
    request = said(
        op(
            "Request an eDiscovery export (a second officer must approve it)", 201, "ExportView", body=ref("ExportRequestBody"),
            extra=(400, 403, 404, 422),
        ),
        s400="`invalid_request`: no custodian and no conversation, over the bounds (50 custodians, 200 conversations, "
        "20 keywords of 1 to 64 characters, a case_ref of at most 128 characters: refused, never cut), a control "
        "character in a keyword or the case_ref, from not before to, or a reason code not one of "
        + ", ".join(sorted(PRIVILEGED_READ_REASONS)),
        s403=officers,
        s404="`not_found`: an unknown custodian username or conversation",
        s422="`sensitive_data`: a keyword is a card, resident ID or account number (or a CVV or code): "
        "find where one appeared with POST /v1/compliance/dlp/search, which keeps no copy of the value",
    )
    request["description"] = "Audited as export.requested (reason, case_ref, scope). The export is pending_approval."
    approve = said(
        op("Approve a requested export: the hub builds it in the background", 202, "ExportView", extra=(400, 403, 404, 409)),
        s400="`invalid_request`: a malformed export id",
        s403=officers + ", or the requester (a second compliance officer must approve)",
        s404=missing,
        s409="`conflict`: not pending approval, its requester is no longer an active compliance officer, or the "
        "request is older than BANKHUB_EXPORT_REQUEST_TTL_HOURS",
    )
    approve["description"] = (
        "Dual control. Audited as export.approved; then export.started and export.completed (counts, bytes, sha256) "
        "or export.failed. Poll GET /v1/compliance/exports/{export_id} for progress {done, total}."
    )
    return {
        "/v1/compliance/exports": {"post": request, "get": listing},
        "/v1/compliance/exports/{export_id}": {
            "get": said(
                op("One export request: state, scope, progress, result", 200, "ExportView", extra=(400, 403, 404)),
                s400="`invalid_request`: a malformed export id", s403=officers, s404=missing,
            )
        },
        "/v1/compliance/exports/{export_id}/approve": {"post": approve},
        "/v1/compliance/exports/{export_id}/reject": {
            "post": said(
                op("Reject a pending export (the requester: withdraw it)", 200, "ExportView", extra=(400, 403, 404, 409)),
                        s400="`invalid_request`: a malformed export id",
                s403=officers,
                s404=missing,
                s409="`conflict`: not pending approval",
            )
        },
        "/v1/compliance/exports/{export_id}/retry": {
            "post": said(
                op("Retry a failed export (interrupted, or a key or the blob store was unavailable)", 202, "ExportView",
                   extra=(400, 403, 404, 409)),
                        s400="`invalid_request`: a malformed export id",
                s403=officers + ", or neither the requester nor the approver of this export",
                s404=missing,
                s409="`conflict`: the export is not failed",
            )
        },
        "/v1/compliance/exports/{export_id}/download": {"get": download},
    }
