"""HTTP routes of pictures and voice notes (docs/protocol.md, "Pictures and voice").

* ``POST /v1/conversations/{conversation_id}/media`` — the file as the body, its type as
  ``Content-Type``; 201 :class:`MediaOut`.
* ``GET /v1/media/{media_id}`` — :class:`MediaInfoOut`: the facts and signed URLs.
* ``GET /v1/media/{media_id}/{variant}?exp=&sig=`` — the bytes, for the user the URL was
  signed for, with the exact type, ``nosniff``, a safe ``Content-Disposition`` and
  ``Cache-Control: private``.

Thin handlers: the checks are :mod:`bankhub.actions.media`'s and :mod:`bankhub.policy`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from .. import text
from ..actions import media as media_actions
from ..actions.errors import ActionError
from ..media import sniff
from ..storage.media import MediaRow
from .handler import RouteTable
from .params import CONVERSATION_ID, TextParam
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Session

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "MediaOut", "MediaInfoOut", "MediaUrls", "media_json", "MEDIA_CONTENT_SECURITY_POLICY"]

ROUTES = RouteTable()

MEDIA_ID = TextParam("media_id", text.Id, "path")
VARIANT = TextParam("variant", Annotated[text.Line, Meta(max_length=16)], "path")
EXP = TextParam("exp", Annotated[text.Line, Meta(max_length=16)], "query", "expiry, milliseconds since the epoch (signed)")
SIG = TextParam("sig", Annotated[text.Line, Meta(max_length=128)], "query", "the URL's signature")

MEDIA_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"
"""Served media are data, never a document: nothing in them may run or load anything."""


class MediaOut(msgspec.Struct, omit_defaults=True):
    """A picture or voice note. ``width``/``height`` (pictures, upright) or ``duration_ms`` and
    ``waveform`` (voice: at most 64 values 0..100). ``state``: ``ready`` (served), ``quarantined``
    (waiting for the virus scanner), ``rejected`` (the scanner found something; never served)."""

    media_id: str
    conversation_id: str
    kind: Literal["image", "voice"]
    content_type: Literal["image/jpeg", "image/png", "image/webp", "audio/ogg", "audio/webm", "audio/mp4"]
    bytes: Annotated[int, Meta(ge=0)]
    state: Literal["ready", "quarantined", "rejected"]
    width: Annotated[int, Meta(ge=1)] | None = None
    height: Annotated[int, Meta(ge=1)] | None = None
    duration_ms: Annotated[int, Meta(ge=0)] | None = None
    waveform: Annotated[list[Annotated[int, Meta(ge=0, le=100)]], Meta(max_length=64)] | None = None


class MediaUrls(msgspec.Struct, omit_defaults=True):
    """Signed URLs (relative to the hub) by variant: pictures ``full``, ``preview`` (longest edge
    1280) and ``thumb`` (320); voice ``full``. Empty while the item is not ready."""

    full: str | None = None
    preview: str | None = None
    thumb: str | None = None


class MediaInfoOut(MediaOut, kw_only=True):
    """:class:`MediaOut` with its signed URLs, valid until ``expires_at`` (ms; null while not ready)."""

    urls: MediaUrls
    expires_at: int | None


OPENAPI_TYPES: list[Any] = [MediaOut, MediaInfoOut, MediaUrls]


def _out(row: MediaRow) -> dict[str, Any]:
    return {
        "media_id": row.id,
        "conversation_id": row.conversation_id,
        "kind": row.kind,
        "content_type": row.content_type,
        "bytes": row.size,
        "state": row.state,
        "width": row.width,
        "height": row.height,
        "duration_ms": row.duration_ms,
        "waveform": row.waveform,
    }


def media_json(row: MediaRow) -> MediaOut:
    """The row as answers show it."""
    return MediaOut(**_out(row))


async def _read_capped(request: Request, cap: int) -> bytes:
    """The body, refused ``413 too_large`` as soon as it is over ``cap`` (by its declared length, before reading)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise ActionError("too_large", f"over the upload limit of {cap} bytes for this type")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > cap:
            raise ActionError("too_large", f"over the upload limit of {cap} bytes for this type")
    if not buf:
        raise ActionError("invalid_request", "the body is empty: send the file as the body")
    return bytes(buf)


@ROUTES.authenticated("POST", "/v1/conversations/{conversation_id}/media")
async def upload(request: Request, hub: Hub, session: Session) -> Response:
    conversation_id = CONVERSATION_ID.value(request)
    declared = sniff.declared_type(request.headers.get("content-type"))
    cap = await media_actions.check_upload(hub, session.user, conversation_id, declared)
    assert declared is not None
    data = await _read_capped(request, cap)
    row = await media_actions.upload(hub, session.user, conversation_id, declared, data)
    return json_response(media_json(row), 201)


@ROUTES.authenticated("GET", "/v1/media/{media_id}")
async def media_info(request: Request, hub: Hub, session: Session) -> Response:
    view = await media_actions.info(hub, session.user, MEDIA_ID.value(request))
    out = MediaInfoOut(**_out(view.row), urls=MediaUrls(**view.urls), expires_at=view.expires_at)
    return json_response(out)


@ROUTES.authenticated("GET", "/v1/media/{media_id}/{variant}")
async def media_bytes(request: Request, hub: Hub, session: Session) -> Response:
    served = await media_actions.fetch(
        hub, session.user, MEDIA_ID.value(request), VARIANT.value(request), EXP.read(request), SIG.read(request)
    )
    headers = {
        "Content-Disposition": f'inline; filename="{served.filename}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": f"private, max-age={served.max_age}",
        "Content-Security-Policy": MEDIA_CONTENT_SECURITY_POLICY,
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    body = b"" if request.method == "HEAD" else served.data
    response = Response(body, status_code=200, media_type=served.variant.content_type, headers=headers)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(served.data))
    return response


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    post = op(
        "Upload a picture or voice note into a conversation (members); send it afterwards as an image or voice body",
        201,
        "MediaOut",
        extra=(400, 404, 409, 410, 413, 415, 422),
    )
    post["requestBody"] = {"required": True, "content": {t: dict(binary) for t in sniff.CONTENT_TYPES}}
    post["description"] = (
        "The raw file is the body; Content-Type declares its type, and the type is judged by content: they must agree. "
        "Pictures are re-encoded (EXIF, GPS and every other metadata gone, orientation applied) with two thumbnails; "
        "voice notes are stored as sent, with their duration and a waveform. Size caps: BANKHUB_MEDIA_MAX_IMAGE_BYTES, "
        "BANKHUB_MEDIA_MAX_VOICE_BYTES. With a virus scanner (BANKHUB_MEDIA_CLAMD) the item may come back quarantined: "
        "GET /v1/media/{media_id} until it is ready. Uploads are rate-limited per user besides the API limit. "
        "Until a message carries it the item is my draft: nobody else sees it, it counts against my cap of unsent "
        "uploads (BANKHUB_MEDIA_MAX_PENDING items, BANKHUB_MEDIA_MAX_PENDING_BYTES bytes), and it is deleted "
        "(row and bytes) once BANKHUB_MEDIA_UNATTACHED_SECONDS old."
    )
    for status, text_ in {
        400: "`invalid_request`: an empty body or a malformed conversation id",
        404: "`not_found`: no such conversation, or I am not a member",
        409: "`media_quota`: I already hold as many unsent uploads (or bytes of them) as allowed; send or wait",
        410: "`gone`: the conversation was erased (crypto-shredded)",
        413: "`too_large`: over the type's size cap; `too_many_pixels`: the picture's header declares more pixels "
        "than BANKHUB_MEDIA_MAX_PIXELS (refused before decoding)",
        415: "`unsupported_media_type`: the declared type is not one of those listed, the content is not that type, "
        "or the container holds another codec or a video track",
        422: "`invalid_media`: the file does not read as its type; `too_long`: a voice note over BANKHUB_MEDIA_MAX_VOICE_SECONDS",
    }.items():
        post["responses"][str(status)]["description"] = text_
    info = op("A media item of one of my conversations, with URLs signed for me", 200, "MediaInfoOut", extra=(404, 410))
    info["responses"]["404"]["description"] = (
        "`not_found`: no such media, not in a conversation I am a member of, or another member's upload that no "
        "message carries yet (the same answer)"
    )
    info["responses"]["410"]["description"] = "`gone`: its conversation was erased; the media can no longer be read"
    served = op("The bytes of one variant, from a signed URL of GET /v1/media/{media_id}", 200, None, extra=(400, 403, 404, 410))
    served["responses"]["200"] = {
        "description": "The variant's bytes with its exact Content-Type, X-Content-Type-Options: nosniff, "
        "Content-Disposition: inline with a filename made by the hub, Cache-Control: private",
        "content": {t: {} for t in sniff.CONTENT_TYPES},
        "headers": {
            "Content-Disposition": {"required": True, "schema": {"type": "string", "pattern": '^inline; filename="[0-9a-f-]+-[a-z]+\\.[a-z0-9]+"$'}},
            "X-Content-Type-Options": {"required": True, "schema": {"type": "string", "const": "nosniff"}},
            "Cache-Control": {"required": True, "schema": {"type": "string", "pattern": "^private"}},
        },
    }
    served["responses"]["400"]["description"] = "`invalid_request`: exp or sig missing or malformed"
    served["responses"]["403"]["description"] = (
        "`media_url_invalid`: the signature is not that of this URL for the signed-in user (another user's URL, "
        "another variant, altered); `media_url_expired`: past exp — get fresh URLs"
    )
    served["responses"]["404"]["description"] = (
        "`not_found`: no such media or variant, not a member (any more), or the item is not ready (quarantined or rejected)"
    )
    served["responses"]["410"]["description"] = "`gone`: its conversation was erased; the media can no longer be read"
    served["parameters"] = [
        EXP.openapi() | {"required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"}},
        SIG.openapi() | {"required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}},
    ]
    return {
        "/v1/conversations/{conversation_id}/media": {"post": post},
        "/v1/media/{media_id}": {"get": info},
        "/v1/media/{media_id}/{variant}": {"get": served},
    }
