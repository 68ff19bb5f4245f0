"""Pictures and voice notes (hub feature ``media``): upload, facts and URLs, download, bodies.

* :class:`MediaApi` — mixed into :class:`~bankhub_client.Api`:
  :meth:`~MediaApi.upload_media` (``POST /v1/conversations/{id}/media``, the file as the
  body), :meth:`~MediaApi.media_info` (the facts and URLs signed for me),
  :meth:`~MediaApi.download_media` (the bytes of one variant) and
  :meth:`~MediaApi.fetch_media_url` (the bytes behind a URL of :class:`MediaInfo`).
* :class:`ImageBody` / :class:`VoiceBody` — message bodies naming a media item; the hub
  fills in ``content_type``, ``width``/``height`` or ``duration_ms``/``waveform``. Send one
  with :meth:`Client.send_media <bankhub_client.Client.send_media>`.

The hub judges the type by content: declare the file's real type (``image/jpeg``,
``image/png``, ``image/webp``, ``audio/ogg``, ``audio/webm``, ``audio/mp4``). A picture is
served re-encoded without EXIF/GPS; ``width``/``height`` are its upright size. Refusals are
:class:`~bankhub_client.ApiError` with the hub's ``code`` (``unsupported_media_type``,
``too_large``, ``too_many_pixels``, ``too_long``, ``invalid_media``, ``not_found``,
``gone``, ``media_url_invalid``, ``media_url_expired``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
from msgspec import Struct

from ._mixin import HttpMixin

__all__ = [
    "MEDIA_TYPES",
    "ImageBody",
    "VoiceBody",
    "Media",
    "MediaInfo",
    "MediaUrls",
    "MediaApi",
    "decode_media_body",
    "media_body",
]

MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "audio/ogg", "audio/webm", "audio/mp4")
Variant = Literal["full", "preview", "thumb"]


class ImageBody(Struct, frozen=True, tag="image", tag_field="kind", omit_defaults=True):
    """A picture: ``{"kind": "image", "media_id": ..., "caption"?: ...}`` plus what the hub fills in."""

    media_id: str
    caption: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


class VoiceBody(Struct, frozen=True, tag="voice", tag_field="kind", omit_defaults=True):
    """A voice note: ``{"kind": "voice", "media_id": ...}`` plus what the hub fills in
    (``waveform``: at most 64 values 0..100, loudness over time)."""

    media_id: str
    content_type: str | None = None
    duration_ms: int | None = None
    waveform: list[int] | None = None


class Media(Struct, frozen=True):
    """An uploaded item. ``state``: ``ready``, ``quarantined`` (the hub's virus scanner has
    not cleared it yet: ask :meth:`MediaApi.media_info` again later) or ``rejected``."""

    media_id: str
    conversation_id: str
    kind: str
    content_type: str
    bytes: int
    state: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    waveform: list[int] | None = None


class MediaUrls(Struct, frozen=True):
    """URLs (relative to the hub) signed for me: pictures ``full``, ``preview``, ``thumb``; voice ``full``."""

    full: str | None = None
    preview: str | None = None
    thumb: str | None = None


class MediaInfo(Media, frozen=True, kw_only=True):
    """:class:`Media` with its URLs, valid until ``expires_at`` (ms; None while not ready: ``urls`` empty)."""

    urls: MediaUrls = MediaUrls()
    expires_at: int | None = None


def media_body(media: Media, caption: str | None = None) -> ImageBody | VoiceBody:
    """The body the hub stores for a send of ``media`` (the facts filled in as it does)."""
    if media.kind == "image":
        return ImageBody(media_id=media.media_id, caption=caption, content_type=media.content_type, width=media.width, height=media.height)
    if caption is not None:
        raise ValueError("a voice note has no caption")
    return VoiceBody(media_id=media.media_id, content_type=media.content_type, duration_ms=media.duration_ms, waveform=media.waveform or [])


def decode_media_body(obj: Mapping[str, Any]) -> ImageBody | VoiceBody | None:
    """An ``image``/``voice`` body from its JSON object; None when it does not have that shape."""
    media_id = obj.get("media_id")
    if not isinstance(media_id, str):
        return None

    def opt(name: str, type_: type) -> Any:
        value = obj.get(name)
        return value if isinstance(value, type_) and not isinstance(value, bool) else None

    if obj.get("kind") == "image":
        return ImageBody(media_id=media_id, caption=opt("caption", str), content_type=opt("content_type", str), width=opt("width", int), height=opt("height", int))
    if obj.get("kind") == "voice":
        wave = obj.get("waveform")
        waveform = [v for v in wave if isinstance(v, int) and not isinstance(v, bool)] if isinstance(wave, list) else None
        return VoiceBody(media_id=media_id, content_type=opt("content_type", str), duration_ms=opt("duration_ms", int), waveform=waveform)
    return None


class MediaApi(HttpMixin):
    """Pictures and voice over HTTP; mixed into :class:`~bankhub_client.Api`."""

    token: str | None
    _http: httpx.AsyncClient

    async def _raw(self, method: str, path: str, *, content: bytes | None = None, content_type: str | None = None) -> httpx.Response:
        from .api import _problem  # the HTTP error mapping of Api (no import cycle at module load)
        from .errors import ApiError

        if not self.token:
            raise ApiError(401, "unauthenticated", "no session token: log in first")
        headers = {"authorization": f"Bearer {self.token}"}
        if content_type is not None:
            headers["content-type"] = content_type
        try:
            response = await self._http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(0, "network_error", f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _problem(response)
        return response

    async def upload_media(self, conversation_id: str, data: bytes, content_type: str) -> Media:
        """Upload a picture or voice note into a conversation I am a member of (``201``)."""
        if content_type.split(";", 1)[0].strip().lower() not in MEDIA_TYPES:
            raise ValueError(f"content_type must be one of {', '.join(MEDIA_TYPES)}")
        response = await self._raw("POST", f"/v1/conversations/{conversation_id}/media", content=data, content_type=content_type)
        media: Media = self._decode(response, Media)
        return media

    async def media_info(self, media_id: str) -> MediaInfo:
        """``GET /v1/media/{media_id}``: the facts, and URLs signed for me while it is ready."""
        info: MediaInfo = self._decode(await self._request("GET", f"/v1/media/{media_id}"), MediaInfo)
        return info

    async def fetch_media_url(self, url: str) -> bytes:
        """The bytes behind a URL of :class:`MediaInfo` (signed for me; short-lived)."""
        return (await self._raw("GET", url)).content

    async def download_media(self, media_id: str, variant: Variant = "full") -> bytes:
        """The bytes of one variant (fresh URLs first). ``ApiError`` ``media_not_ready`` while it is not ready."""
        from .errors import ApiError

        info = await self.media_info(media_id)
        url = getattr(info.urls, variant)
        if url is None:
            state = info.state if info.state != "ready" else "no such variant"
            raise ApiError(409 if info.state != "ready" else 404, "media_not_ready" if info.state != "ready" else "not_found", state)
        return await self.fetch_media_url(url)
