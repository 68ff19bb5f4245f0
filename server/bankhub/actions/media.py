"""Pictures and voice notes: upload, facts and signed URLs, serving, scanning, attaching to a send.

The pipeline of an upload (:func:`upload`), each step refusing with a stable code:

1. the uploader is a member of the conversation (``not_found`` otherwise) and within the
   upload rate (``rate_limited``) and the cap of unsent uploads (``media_quota``); the declared type is allowed and the body within the
   type's size cap (the HTTP layer: ``unsupported_media_type``, ``too_large``);
2. the type is judged by content (:mod:`bankhub.media.sniff`): it must be the declared one
   (``unsupported_media_type``);
3. pictures: the pixel cap from the header before decoding (``too_many_pixels``), then
   re-encoded without metadata with two thumbnails (:mod:`bankhub.media.images`); voice:
   the container read, the duration cap (``too_long``), the waveform
   (:mod:`bankhub.media.voice`); a file that does not read is ``invalid_media``;
4. every variant sealed under the conversation's data key (``gone`` if it was shredded) and
   put in the blob store, then the row stored: ``ready``, or ``quarantined`` when a scanner
   is configured — scanned at once, and by the sweep (:func:`scan_sweep`) if the scanner
   could not answer then.

Serving (:func:`fetch`): the URL's signature is checked for the requesting user first, then
its expiry, then membership *now* and the item's state; bytes are opened only for a
``ready`` item of a conversation whose key exists.

Until a committed message carries it (the send's transaction marks it attached), an item
is its uploader's draft: nobody else sees it, and :func:`unattached_sweep` deletes it (row,
then blobs) once it is older than ``media_unattached_seconds``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import uuid
from dataclasses import dataclass

import msgspec

from .. import policy
from ..blobs import BlobNotFound, BlobUnavailable
from ..hub import Hub
from ..ids import uuid7
from ..media import images, sniff, urls, voice
from ..media.clamd import ScannerUnavailable, scan
from ..media.sealing import MEDIA_KEY_ID, MediaUnreadable, open_sealed, seal
from ..models import User
from ..protocol.frames import ImageBody, VoiceBody
from ..ratelimit import Limit
from ..storage.keys import ConversationKeyStore
from ..storage.media import MediaRow, NewMedia, VariantRow
from ..crypto.keyring import KeyringError
from .errors import ActionError, require
from .limits import enforce

__all__ = [
    "upload",
    "info",
    "fetch",
    "attach",
    "scan_sweep",
    "unattached_sweep",
    "carried",
    "check_upload",
    "MediaView",
    "Served",
    "MEDIA_UPLOADS_PER_USER",
    "VARIANTS",
    "EXTENSIONS",
]

log = logging.getLogger("bankhub.actions.media")

MEDIA_UPLOADS_PER_USER = Limit(rate=0.5, burst=20)
"""Uploads per user (besides the API limit every call spends): 30 a minute, bursts of 20."""

VARIANTS = {"image": ("full", "preview", "thumb"), "voice": ("full",)}
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
}
_EXP = re.compile(r"[0-9]{1,16}")
_SIG = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SCAN_TIMEOUT = 10.0
_SWEEP_BATCH = 20
_CLAIM_STALE = dt.timedelta(seconds=120)
_UNATTACHED_BATCH = 100
_UNATTACHED_ROUNDS = 10  # at most this many batches a run; the next run goes on


class _MediaRef(msgspec.Struct, gc=False):
    media_id: str


_media_ref = msgspec.json.Decoder(_MediaRef)


@dataclass(frozen=True)
class MediaView:
    """An item as its viewer sees it: the row, and its signed URLs when it is ready."""

    row: MediaRow
    urls: dict[str, str]
    expires_at: int | None


@dataclass(frozen=True)
class Served:
    data: bytes
    variant: VariantRow
    filename: str
    max_age: int


def _now_ms() -> int:
    return int(time.time() * 1000)


def blob_key(conversation_id: str, media_id: str, variant: str) -> str:
    return f"media/{conversation_id}/{media_id}/{variant}"


async def check_upload(hub: Hub, actor: User, conversation_id: str, declared: str | None) -> int:
    """What is checked before the body is read: membership, the upload rate, the declared
    type. Returns the size cap for the body."""
    membership = await hub.conversations.membership(conversation_id, actor.id)
    require(policy.may_upload_media(actor, membership))
    await enforce(hub, f"media:{actor.id}", MEDIA_UPLOADS_PER_USER, fail_closed=False)
    # unsent uploads are drafts kept in the blob store: a user holds a bounded number (and bytes) of them
    count, held = await hub.media.store.pending(actor.id)
    if count >= hub.settings.media_max_pending or held >= hub.settings.media_max_pending_bytes:
        raise ActionError(
            "media_quota",
            f"you hold {count} uploads ({held} bytes) that no message carries yet, the most allowed "
            f"({hub.settings.media_max_pending} items, {hub.settings.media_max_pending_bytes} bytes): send them, or "
            "wait until unsent ones are deleted",
        )
    if declared is None:
        raise ActionError(
            "unsupported_media_type", "send Content-Type: one of " + ", ".join(sniff.CONTENT_TYPES) + " and the file as the body"
        )
    return hub.settings.media_max_image_bytes if sniff.kind_of(declared) == "image" else hub.settings.media_max_voice_bytes


def _process(content_type: str, data: bytes, max_pixels: int) -> images.ProcessedImage | voice.VoiceInfo:
    if sniff.kind_of(content_type) == "image":
        return images.process(content_type, data, max_pixels=max_pixels)
    return voice.read_voice(content_type, data)


async def upload(hub: Hub, actor: User, conversation_id: str, declared: str, data: bytes) -> MediaRow:
    """Store an upload (see the module docstring); the caller ran :func:`check_upload` and read the body within its cap."""
    sniffed = sniff.sniff(data)
    if sniffed is None:
        allowed = ", ".join(sniff.CONTENT_TYPES)
        raise ActionError("unsupported_media_type", f"the content is not {declared}, nor any allowed type ({allowed})")
    if sniffed != declared:
        raise ActionError("unsupported_media_type", f"the content is {sniffed}, not {declared} as declared")
    kind = sniff.kind_of(sniffed)
    try:
        async with hub.media.processing:
            processed = await asyncio.to_thread(_process, sniffed, data, hub.settings.media_max_pixels)
    except images.TooManyPixels as exc:
        raise ActionError("too_many_pixels", str(exc)) from None
    except voice.UnsupportedMedia as exc:
        raise ActionError("unsupported_media_type", str(exc)) from None
    except voice.InvalidMedia as exc:
        raise ActionError("invalid_media", str(exc)) from None
    plain: dict[str, tuple[bytes, VariantRow]] = {}
    media_id = str(uuid7())
    width = height = duration_ms = None
    waveform: list[int] | None = None
    if isinstance(processed, images.ProcessedImage):
        width, height = processed.width, processed.height
        for name, v in processed.variants.items():
            plain[name] = (v.data, VariantRow(blob_key(conversation_id, media_id, name), v.content_type, len(v.data), v.width, v.height))
    else:
        if processed.duration_ms > hub.settings.media_max_voice_seconds * 1000:
            raise ActionError(
                "too_long", f"the voice note lasts {processed.duration_ms / 1000:.1f} s, over {hub.settings.media_max_voice_seconds:g} s"
            )
        duration_ms, waveform = processed.duration_ms, processed.waveform
        plain["full"] = (data, VariantRow(blob_key(conversation_id, media_id, "full"), sniffed, len(data)))
    async with hub.db.transaction("media_data_key") as conn:
        keys = await ConversationKeyStore.data_keys(conn, hub.keyring, [conversation_id])
    if conversation_id in keys.shredded:
        raise ActionError("gone", "this conversation was erased; it takes no more media")
    key = keys.keys.get(conversation_id)
    if key is None:
        raise ActionError("unavailable", "the conversation's key is unavailable; nothing was stored, retry")
    try:
        for name, (raw, variant) in plain.items():
            await hub.media.blobs.put(variant.key, seal(key, conversation_id, media_id, name, raw))
    except BlobUnavailable as exc:
        log.error("media not stored: %s", exc)
        await _discard(hub, [v for _, v in plain.values()])
        raise ActionError("unavailable", "media storage is unavailable; nothing was stored, retry") from None
    scanning = bool(hub.settings.media_clamd)
    new = NewMedia(
        id=media_id,
        conversation_id=conversation_id,
        uploader_id=actor.id,
        kind=kind,
        content_type=sniffed,
        size=plain["full"][1].bytes,
        uploaded_bytes=len(data),
        width=width,
        height=height,
        duration_ms=duration_ms,
        waveform=waveform,
        state="quarantined" if scanning else "ready",
        variants={name: v for name, (_, v) in plain.items()},
        key_id=MEDIA_KEY_ID,
    )
    try:
        stored = await hub.media.store.insert(new)
    except BaseException:
        await _discard(hub, [v for _, v in plain.values()])
        raise
    if stored != "stored":  # shredded, or the uploader left, while the variants were being written
        await _discard(hub, [v for _, v in plain.values()])
        if stored == "gone":
            raise ActionError("gone", "this conversation was erased; it takes no more media")
        raise ActionError("not_found", "no such conversation")
    if scanning:
        # scanned now, within one bounded wait; if the scanner cannot answer in time the sweep does it later
        try:
            async with asyncio.timeout(_SCAN_TIMEOUT):
                verdict = await _scan_all(hub, [raw for raw, _ in plain.values()])
        except (ScannerUnavailable, TimeoutError) as exc:
            log.warning("media %s stays in quarantine: %s", media_id, type(exc).__name__ if isinstance(exc, TimeoutError) else exc)
        else:
            await hub.media.store.decide(media_id, verdict)
    row = await hub.media.store.get(media_id, actor.id)
    if row is None:  # pragma: no cover - just stored
        raise ActionError("unavailable", "media storage is unavailable; retry")
    return row


async def _discard(hub: Hub, variants: list[VariantRow]) -> None:
    """Remove the blobs of an upload that was not stored (best effort: they are ciphertext, and unreferenced)."""
    for variant in variants:
        try:
            await hub.media.blobs.delete(variant.key)
        except BlobUnavailable:
            log.warning("an unreferenced media blob was left in the blob store")


async def _scan_all(hub: Hub, parts: list[bytes]) -> str:
    """``ready`` if clamd finds every part clean, ``rejected`` at the first finding."""
    address = hub.settings.media_clamd
    assert address
    for data in parts:
        result = await scan(address, data, timeout=_SCAN_TIMEOUT)
        if not result.clean:
            log.warning("media rejected by the scanner: %s", result.signature)
            return "rejected"
    return "ready"


async def scan_sweep(hub: Hub) -> int:
    """Scan media still in quarantine (claimed, so nodes do not scan one twice at once);
    returns how many got a verdict. A periodic job of each node with a scanner."""
    if not hub.settings.media_clamd:
        return 0
    rows = await hub.media.store.claim_quarantined(_SWEEP_BATCH, _CLAIM_STALE)
    decided = 0
    failed: list[str] = []
    try:
        for row in rows:
            try:
                parts = [await _open_variant(hub, row, name) for name in VARIANTS[row.kind] if name in row.variants]
                verdict = await _scan_all(hub, parts)
            except (ScannerUnavailable, ActionError) as exc:
                log.warning("media %s stays in quarantine: %s", row.id, getattr(exc, "message", exc))
                failed.append(row.id)
                continue
            if await hub.media.store.decide(row.id, verdict):
                decided += 1
    finally:
        await hub.media.store.release(failed)  # the next sweep tries them again (a crash leaves the claim to go stale)
    return decided


async def unattached_sweep(hub: Hub) -> int:
    """Delete uploads no message carried within ``media_unattached_seconds`` (never sent,
    quarantined for good, refused by the scanner): the rows first (a send in flight holds its
    row locked and is skipped), then their blobs. Returns how many items were deleted. A
    periodic job of every node."""
    older_than = dt.timedelta(seconds=hub.settings.media_unattached_seconds)
    deleted = 0
    for _ in range(_UNATTACHED_ROUNDS):
        batches = await hub.media.store.delete_unattached(older_than, _UNATTACHED_BATCH)
        for keys in batches:
            await _discard(hub, [VariantRow(key, "", 0) for key in keys])
        deleted += len(batches)
        if len(batches) < _UNATTACHED_BATCH:
            break
    if deleted:
        log.info("deleted %d unsent media uploads", deleted)
    return deleted


def carried(kind: str, body: bytes) -> str | None:
    """The media id an encoded message body of ``kind`` carries (``image``, ``voice``), else None."""
    return _media_ref.decode(body).media_id if kind in ("image", "voice") else None


async def _open_variant(hub: Hub, row: MediaRow, name: str) -> bytes:
    if row.shredded or row.wrapped_dek is None or row.kek_id is None:
        raise ActionError("gone", "this conversation was erased: its media can no longer be read")
    try:
        key = await hub.keyring.unwrap(row.kek_id, row.wrapped_dek)
    except KeyringError:
        raise ActionError("unavailable", "the conversation's key is unavailable, retry") from None
    try:
        stored = await hub.media.blobs.get(row.variants[name].key)
    except BlobNotFound:
        log.warning("media %s: variant %s missing from the blob store", row.id, name)
        raise ActionError("gone", "this media can no longer be read") from None
    except BlobUnavailable as exc:
        log.error("media read failed: %s", exc)
        raise ActionError("unavailable", "media storage is unavailable, retry") from None
    try:
        return open_sealed(key, row.conversation_id, row.id, name, stored)
    except MediaUnreadable:
        log.warning("media %s: variant %s failed its integrity check", row.id, name)
        raise ActionError("gone", "this media can no longer be read") from None


async def _visible(hub: Hub, actor: User, media_id: str) -> MediaRow:
    row = await hub.media.store.get(media_id, actor.id)
    require(
        policy.may_view_media(
            actor,
            member=row is not None and row.member,
            visible=True,
            uploader_id=row.uploader_id if row is not None else "",
            attached=row is not None and row.attached,
        )
    )
    assert row is not None
    return row


async def info(hub: Hub, actor: User, media_id: str) -> MediaView:
    """The item's facts, and (when ready) URLs for each variant signed for ``actor``."""
    row = await _visible(hub, actor, media_id)
    if row.shredded:
        raise ActionError("gone", "this conversation was erased: its media can no longer be read")
    if row.state != "ready":
        return MediaView(row, {}, None)
    exp = urls.expiry(_now_ms(), hub.settings.media_url_ttl_seconds)
    key = await hub.media.url_key()
    signed = {
        name: urls.media_path(row.id, name, exp, urls.sign(key, actor.id, row.id, name, exp))
        for name in VARIANTS[row.kind]
        if name in row.variants
    }
    return MediaView(row, signed, exp)


async def fetch(hub: Hub, actor: User, media_id: str, variant: str, exp_text: str | None, sig: str | None) -> Served:
    """The bytes of one variant, for a request authenticated as the user the URL was signed for."""
    if not exp_text or not sig or not _EXP.fullmatch(exp_text) or not _SIG.fullmatch(sig):
        raise ActionError("invalid_request", "a media URL has exp (milliseconds) and sig: get one from GET /v1/media/{media_id}")
    exp = int(exp_text)
    try:
        canonical = str(uuid.UUID(media_id))
    except ValueError:
        raise ActionError("not_found", "no such media") from None
    # the signature first: a URL not made for this user, item and variant learns nothing more
    if not urls.verify(await hub.media.url_keys(), actor.id, canonical, variant, exp, sig):
        raise ActionError("media_url_invalid", "this media URL is not valid for you: get a fresh one from GET /v1/media/{media_id}")
    now = _now_ms()
    if exp <= now:
        raise ActionError("media_url_expired", "this media URL has expired: get a fresh one from GET /v1/media/{media_id}")
    row = await hub.media.store.get(canonical, actor.id)
    # membership re-checked now; never a quarantined or rejected item's bytes
    require(
        policy.may_view_media(
            actor,
            member=row is not None and row.member,
            visible=row is not None and row.state == "ready",
            uploader_id=row.uploader_id if row is not None else "",
            attached=row is not None and row.attached,
        )
    )
    assert row is not None
    if variant not in row.variants or variant not in VARIANTS[row.kind]:
        raise ActionError("not_found", "no such media")
    data = await _open_variant(hub, row, variant)
    v = row.variants[variant]
    return Served(data, v, f"{row.id}-{variant}.{EXTENSIONS[v.content_type]}", max(0, (exp - now) // 1000))


async def attach(hub: Hub, actor: User, conversation_id: str, body: ImageBody | VoiceBody) -> ImageBody | VoiceBody:
    """The body to store for a send of ``body``: checked against the item (mine, this
    conversation, ready) and filled in from it."""
    row = await hub.media.store.get(body.media_id)
    if row is None:
        raise ActionError("not_found", "no such media")
    require(
        policy.may_attach_media(
            actor, uploader_id=row.uploader_id, media_conversation_id=row.conversation_id, conversation_id=conversation_id, state=row.state
        )
    )
    if isinstance(body, ImageBody):
        if row.kind != "image":
            raise ActionError("invalid_frame", "this media is a voice note: send it with kind voice")
        return ImageBody(media_id=row.id, caption=body.caption, content_type=row.content_type, width=row.width, height=row.height)
    if row.kind != "voice":
        raise ActionError("invalid_frame", "this media is a picture: send it with kind image")
    return VoiceBody(media_id=row.id, content_type=row.content_type, duration_ms=row.duration_ms, waveform=row.waveform or [])
