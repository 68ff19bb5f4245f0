"""Small, well-formed media files made in the tests: pictures (Pillow) and voice containers.

The voice files are built byte by byte from the container specifications — Ogg pages with
their CRC (RFC 3533), WebM/EBML elements as Chromium's MediaRecorder writes them (unknown-size
Segment and Clusters, no Duration), MP4 boxes plain or fragmented as Safari writes them — with
Opus or AAC packets that are only the right shape (no real audio: the hub never decodes it).
"""

from __future__ import annotations

import io
import struct

from PIL import Image

__all__ = [
    "jpeg_with_gps",
    "png_bytes",
    "webp_with_exif",
    "png_header_only",
    "ogg_opus",
    "webm_opus",
    "mp4_aac",
    "EICAR",
    "GPS_EXIF",
]

# the industry's harmless test "virus" (eicar.org), assembled here so no file in the tree holds it whole
EICAR = (
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
)


def _gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "TestCam"  # Make
    gps = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 51.0)}
    exif[0x8825] = gps  # GPSInfo IFD
    return exif


GPS_EXIF = _gps_exif


def jpeg_with_gps(width: int = 64, height: int = 32, orientation: int = 6) -> bytes:
    """A JPEG with EXIF GPS; ``orientation`` 6 means "rotate 90° clockwise to show"."""
    im = Image.new("RGB", (width, height), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, width // 2, height))  # left half blue: orientation is visible
    out = io.BytesIO()
    im.save(out, "JPEG", exif=_gps_exif(orientation).tobytes(), quality=90)
    return out.getvalue()


def png_bytes(width: int = 40, height: int = 30, *, text: str | None = None, mode: str = "RGBA") -> bytes:
    from PIL import PngImagePlugin

    im = Image.new(mode, (width, height), (10, 200, 10, 128) if mode == "RGBA" else (10, 200, 10))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    im.save(out, "PNG", pnginfo=info, exif=_gps_exif(1).tobytes())
    return out.getvalue()


def webp_with_exif(width: int = 48, height: int = 48) -> bytes:
    im = Image.new("RGB", (width, height), (1, 2, 3))
    out = io.BytesIO()
    im.save(out, "WEBP", exif=_gps_exif(1).tobytes())
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A "pixel bomb": a PNG whose header declares ``width`` × ``height`` with almost no data."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")


# --- Ogg ----------------------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC[((crc >> 24) & 0xFF) ^ b]) & 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], granule: int, seq: int, flags: int, serial: int = 0x1234) -> bytes:
    table = b""
    for p in packets:
        n = len(p)
        table += b"\xff" * (n // 255) + bytes([n % 255])
    header = b"OggS" + bytes([0, flags]) + struct.pack("<qIII", granule, serial, seq, 0) + bytes([len(table)]) + table
    page = header + b"".join(packets)
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def _opus_packet(size: int) -> bytes:
    # TOC 0xF8: CELT full-band, 20 ms, one frame
    return b"\xf8" + bytes((i * 7) & 0xFF for i in range(max(0, size - 1)))


def ogg_opus(duration_ms: int, *, loud_from: float = 0.5, extra: bytes = b"") -> bytes:
    """Opus in Ogg lasting ``duration_ms`` (20 ms packets); packets get bigger after ``loud_from``
    of the note. ``extra`` goes into the comment header (e.g. a test signature)."""
    pre_skip = 312
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", pre_skip, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 1 if extra else 0)
    if extra:
        tags += struct.pack("<I", len(extra)) + extra
    count = duration_ms // 20
    pages = [_ogg_page([head], 0, 0, 0x02), _ogg_page([tags], 0, 1, 0)]
    seq, samples = 2, 0
    for start in range(0, count, 40):
        batch = [_opus_packet(120 if i >= count * loud_from else 20) for i in range(start, min(count, start + 40))]
        samples += 960 * len(batch)
        last = start + 40 >= count
        pages.append(_ogg_page(batch, pre_skip + samples, seq, 0x04 if last else 0))
        seq += 1
    return b"".join(pages)


# --- WebM (EBML) -------------------------------------------------------------------------

_UNKNOWN = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _size(n: int) -> bytes:
    return b"\x01" + n.to_bytes(7, "big")


def _el(eid: int, payload: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _size(len(payload)) + payload


def _uint(eid: int, value: int) -> bytes:
    return _el(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def webm_opus(
    duration_ms: int, *, live: bool = True, codec: bytes = b"A_OPUS", video: bool = False, header_duration_ms: float | None = None
) -> bytes:
    """Opus in WebM as Chromium's MediaRecorder writes it (``live``: unknown-size Segment and
    Clusters, no Duration in Info), 20 ms blocks, a cluster per second."""
    ebml = _el(0x1A45DFA3, _uint(0x4286, 1) + _uint(0x42F7, 1) + _uint(0x42F2, 4) + _uint(0x42F3, 8) + _el(0x4282, b"webm") + _uint(0x4287, 4) + _uint(0x4285, 2))
    info_payload = _uint(0x2AD7B1, 1_000_000) + _el(0x4D80, b"Chrome") + _el(0x5741, b"Chrome")
    if header_duration_ms is not None:
        info_payload += _el(0x4489, struct.pack(">d", header_duration_ms))
    info = _el(0x1549A966, info_payload)
    audio = _el(0xAE, _uint(0xD7, 1) + _uint(0x73C5, 77) + _uint(0x83, 2) + _el(0x86, codec) + _el(0x63A2, b"OpusHead" + bytes(11)) + _el(0xE1, _el(0xB5, struct.pack(">d", 48000.0)) + _uint(0x9F, 1)))
    entries = audio
    if video:
        entries += _el(0xAE, _uint(0xD7, 2) + _uint(0x73C5, 78) + _uint(0x83, 1) + _el(0x86, b"V_VP8"))
    tracks = _el(0x1654AE6B, entries)
    clusters = b""
    count = duration_ms // 20
    for first in range(0, count, 50):
        body = _uint(0xE7, first * 20)
        for i in range(first, min(count, first + 50)):
            packet = _opus_packet(120 if i >= count // 2 else 20)
            block = b"\x81" + struct.pack(">h", (i - first) * 20) + b"\x80" + packet
            body += _el(0xA3, block)
        clusters += (b"\x1f\x43\xb6\x75" + _UNKNOWN + body) if live else _el(0x1F43B675, body)
    segment_body = info + tracks + clusters
    segment = (b"\x18\x53\x80\x67" + _UNKNOWN + segment_body) if live else _el(0x18538067, segment_body)
    return ebml + segment


# --- MP4 ---------------------------------------------------------------------------------

def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def mp4_aac(duration_ms: int, *, fragmented: bool = False, video: bool = False, entry: bytes = b"mp4a") -> bytes:
    """AAC in MP4 (1024-sample frames at 44.1 kHz): plain (``mvhd`` holds the duration) or
    fragmented as Safari's MediaRecorder writes it (``mvhd`` duration 0, the samples in ``moof``)."""
    rate = 44100
    frames = max(1, duration_ms * rate // 1000 // 1024)
    sizes = [40 if i < frames // 2 else 300 for i in range(frames)]
    ftyp = _box(b"ftyp", b"iso5" + struct.pack(">I", 512) + b"iso5iso6mp41")
    mvhd = _full(b"mvhd", struct.pack(">IIII", 0, 0, 1000, 0 if fragmented else duration_ms) + bytes(80))
    mdhd = _full(b"mdhd", struct.pack(">IIII", 0, 0, rate, 0 if fragmented else frames * 1024) + bytes(4))

    def trak(handler: bytes, sample_entry: bytes, track_id: int) -> bytes:
        hdlr = _full(b"hdlr", bytes(4) + handler + bytes(12) + b"\x00")
        stsd = _full(b"stsd", struct.pack(">I", 1) + _box(sample_entry, bytes(28)))
        stsz = _full(b"stsz", struct.pack(">II", 0, 0) if fragmented else struct.pack(">II", 0, len(sizes)) + struct.pack(f">{len(sizes)}I", *sizes))
        stbl = _box(b"stbl", stsd + _full(b"stts", bytes(4)) + _full(b"stsc", bytes(4)) + stsz + _full(b"stco", bytes(4)))
        minf = _box(b"minf", _full(b"smhd", bytes(4)) + stbl)
        tkhd = _full(b"tkhd", struct.pack(">IIII", 0, 0, track_id, 0) + bytes(64), flags=3)
        return _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))

    traks = trak(b"soun", entry, 1)
    if video:
        traks += trak(b"vide", b"avc1", 2)
    moov_payload = mvhd + traks
    if fragmented:
        moov_payload += _box(b"mvex", _full(b"trex", struct.pack(">IIIII", 1, 1, 1024, 0, 0)))
    out = ftyp + _box(b"moov", moov_payload)
    if fragmented:
        for start in range(0, frames, 43):
            chunk = sizes[start : start + 43]
            trun = _full(b"trun", struct.pack(">Ii", len(chunk), 0) + b"".join(struct.pack(">I", s) for s in chunk), flags=0x000201)
            moof = _box(b"moof", _full(b"mfhd", struct.pack(">I", start // 43 + 1)) + _box(b"traf", _full(b"tfhd", struct.pack(">I", 1), flags=0x020000) + trun))
            out += moof + _box(b"mdat", bytes(sum(chunk)))
    else:
        out += _box(b"mdat", bytes(sum(sizes)))
    return out
