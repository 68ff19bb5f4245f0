"""What a file is, judged by its content: an allow-list of magic bytes.

The declared ``Content-Type`` of an upload is only a claim. :func:`sniff` looks at the
first bytes and answers one of :data:`CONTENT_TYPES` or None (not allowed). The upload is
refused (``415 unsupported_media_type``) unless the sniffed type equals the declared one,
so a file can never be stored as one type and served as another.

* ``image/jpeg``: ``FF D8 FF``;
* ``image/png``: the 8-byte PNG signature;
* ``image/webp``: ``RIFF....WEBP``;
* ``audio/ogg``: an Ogg page (``OggS``) whose first packet is an ``OpusHead`` (Opus in Ogg;
  Vorbis, FLAC or Speex in Ogg are not allowed);
* ``audio/webm``: the EBML magic ``1A 45 DF A3`` (the codec, Opus, is checked when the
  container is read: :mod:`bankhub.media.voice`);
* ``audio/mp4``: an ISO-BMFF ``ftyp`` box first (AAC, ``mp4a``, is checked when read).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["sniff", "declared_type", "CONTENT_TYPES", "IMAGE_TYPES", "VOICE_TYPES", "MediaKind", "kind_of"]

MediaKind = Literal["image", "voice"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
VOICE_TYPES = ("audio/ogg", "audio/webm", "audio/mp4")
CONTENT_TYPES = IMAGE_TYPES + VOICE_TYPES

_PNG = b"\x89PNG\r\n\x1a\n"


def kind_of(content_type: str) -> MediaKind:
    """``image`` or ``voice`` for one of :data:`CONTENT_TYPES`."""
    return "image" if content_type in IMAGE_TYPES else "voice"


def declared_type(header: str | None) -> str | None:
    """The media type of a ``Content-Type`` header (lower case, parameters such as
    ``;codecs=opus`` dropped), if it is one of :data:`CONTENT_TYPES`; else None."""
    if not header:
        return None
    base = header.split(";", 1)[0].strip().lower()
    return base if base in CONTENT_TYPES else None


def _ogg_opus(data: bytes) -> bool:
    # the first page: 27 header bytes, a segment table of data[26] entries, then the first packet
    if len(data) < 28 or data[:4] != b"OggS" or data[4] != 0:
        return False
    start = 27 + data[26]
    return data[start : start + 8] == b"OpusHead"


def sniff(data: bytes) -> str | None:
    """The allowed type ``data`` is, by its magic bytes; None when it is none of them."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == _PNG:
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if _ogg_opus(data):
        return "audio/ogg"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "audio/webm"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "audio/mp4"
    return None
