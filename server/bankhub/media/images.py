"""Pictures: a pixel cap read from the header, then re-encoded clean, with two thumbnails.

:func:`process` takes an upload that sniffed as JPEG, PNG or WebP:

1. **Header first.** The file is opened with only the sniffed format's decoder allowed
   (``Image.open(..., formats=[...])``); Pillow reads the header, not the pixels. Its width ×
   height is checked against the pixel cap *before anything is decoded*
   (:class:`TooManyPixels`): a "pixel bomb" — a small file declaring a huge canvas — costs a
   header read. Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``) stands behind it.
2. **Re-encoded.** The first frame is decoded, turned upright from its EXIF orientation
   (``ImageOps.exif_transpose``), and written afresh in the same format with no metadata
   at all — no EXIF (GPS, camera, time), no XMP, no text chunks; only an ICC colour profile
   is kept. An animation keeps its first frame.
3. **Thumbnails.** ``preview`` (longest edge :data:`PREVIEW_EDGE`) and ``thumb``
   (:data:`THUMB_EDGE`), never larger than the picture, from the upright image.

The work is CPU-bound: callers run it in a worker thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .voice import InvalidMedia

__all__ = ["Variant", "ProcessedImage", "TooManyPixels", "process", "THUMB_EDGE", "PREVIEW_EDGE"]

THUMB_EDGE = 320
PREVIEW_EDGE = 1280
_MAX_ICC_BYTES = 64 * 1024
_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


class TooManyPixels(ValueError):
    """The header declares more pixels than the cap allows; nothing was decoded."""


@dataclass(frozen=True)
class Variant:
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class ProcessedImage:
    """``variants``: ``full``, ``preview``, ``thumb``. ``width``/``height`` of ``full`` (upright)."""

    variants: dict[str, Variant]
    width: int
    height: int


def _open(content_type: str, data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=[_FORMATS[content_type]])
    except Image.DecompressionBombError:
        raise TooManyPixels("the picture declares too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidMedia(f"not a readable {content_type} ({type(exc).__name__})") from None


def _encode(im: Image.Image, fmt: str, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    extra: dict[str, object] = {}
    if icc:
        extra["icc_profile"] = icc
    if fmt == "JPEG":
        im.save(out, "JPEG", quality=85, optimize=True, **extra)
    elif fmt == "PNG":
        im.save(out, "PNG", optimize=True, **extra)
    else:
        im.save(out, "WEBP", quality=85, **extra)
    return out.getvalue()


def _clean_mode(im: Image.Image, fmt: str) -> Image.Image:
    if fmt == "JPEG":
        return im if im.mode in ("RGB", "L") else im.convert("RGB")
    if im.mode in ("RGB", "RGBA", "L", "LA") and fmt == "PNG":
        return im
    if fmt == "WEBP" and im.mode in ("RGB", "RGBA"):
        return im
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    return im.convert("RGBA" if has_alpha else "RGB")


def process(content_type: str, data: bytes, *, max_pixels: int) -> ProcessedImage:
    """See the module docstring. Raises :class:`TooManyPixels` or :class:`InvalidMedia`."""
    fmt = _FORMATS[content_type]
    with _open(content_type, data) as im:
        width, height = im.size
        if width < 1 or height < 1:
            raise InvalidMedia("the picture has no pixels")
        if width * height > max_pixels:
            raise TooManyPixels(f"the picture has {width}x{height} pixels, over the cap of {max_pixels}")
        icc = im.info.get("icc_profile")
        icc = icc if isinstance(icc, bytes) and len(icc) <= _MAX_ICC_BYTES else None
        try:
            im.seek(0)
            im.load()
            upright = ImageOps.exif_transpose(im)
            clean = _clean_mode(upright if upright is not None else im, fmt).copy()
        except Image.DecompressionBombError:
            raise TooManyPixels("the picture declares too many pixels") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidMedia(f"not a readable {content_type} ({type(exc).__name__})") from None
    # a new image's info carries nothing from the file: no EXIF, XMP or text chunks to write back
    clean.info = {}
    variants = {"full": Variant(_encode(clean, fmt, icc), content_type, clean.width, clean.height)}
    for name, edge in (("preview", PREVIEW_EDGE), ("thumb", THUMB_EDGE)):
        small = clean.copy()
        small.thumbnail((edge, edge), Image.Resampling.LANCZOS)
        small.info = {}
        variants[name] = Variant(_encode(small, fmt, icc), content_type, small.width, small.height)
    return ProcessedImage(variants, clean.width, clean.height)
