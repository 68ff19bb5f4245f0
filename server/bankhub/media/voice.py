"""Voice notes: the container read (never decoded), its duration and a waveform summary.

The hub has no audio decoder (none is a dependency), so a voice note is stored and served
byte for byte as uploaded, after its container was read and checked here:

* **Opus in Ogg** (``audio/ogg``): pages are walked (one logical stream; the first packet
  ``OpusHead``); the duration is the last granule position minus the pre-skip, at 48 kHz.
* **Opus in WebM** (``audio/webm``, what Chromium's MediaRecorder makes): EBML elements are
  walked, unknown-size ``Segment`` and ``Cluster`` elements included (a live recording's
  header has no ``Duration``); one audio track, codec ``A_OPUS``, no video. The duration is
  computed from the blocks: the last block's time (cluster ``Timecode`` + block offset, in
  ``TimecodeScale``) plus that packet's own length from its Opus TOC byte. A header
  ``Duration`` is not trusted for the cap: the blocks are what plays.
* **AAC in MP4** (``audio/mp4``, Safari): boxes are walked; one ``soun`` track with an
  ``mp4a`` sample entry. The duration is ``mvhd``'s, or, in a fragmented file (``mvhd``
  duration 0, as recorders write), the sum of the ``trun`` sample durations (defaults from
  ``tfhd``/``trex``) in the track's ``mdhd`` timescale.

**Waveform.** Without decoding there are no sample amplitudes; the summary is made from
the sizes of the compressed packets instead (Opus and AAC spend more bytes on louder, busier
sound, and few on silence): the packets are split into at most :data:`WAVEFORM_BARS` equal
runs in order, each run's mean packet size is taken, and the means are scaled from the
smallest (0) to the largest (100); when every run is alike a flat line of 50 is given. It
is a picture of speech and pauses, not a level meter.

Anything that does not read as stated is :class:`InvalidMedia` (the upload is refused
``422 invalid_media``); another codec or a video track is :class:`UnsupportedMedia` (415).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["VoiceInfo", "InvalidMedia", "UnsupportedMedia", "read_voice", "waveform", "opus_packet_ms", "WAVEFORM_BARS"]

WAVEFORM_BARS = 64


class InvalidMedia(ValueError):
    """The file is not a well-formed instance of the type it sniffed as."""


class UnsupportedMedia(ValueError):
    """A well-formed container holding something not allowed (another codec, video)."""


@dataclass(frozen=True)
class VoiceInfo:
    duration_ms: int
    waveform: list[int]


def waveform(sizes: list[int], bars: int = WAVEFORM_BARS) -> list[int]:
    """At most ``bars`` values 0..100 from the packet sizes in order (see the module docstring)."""
    if not sizes:
        return []
    n = min(bars, len(sizes))
    means = []
    for i in range(n):
        run = sizes[i * len(sizes) // n : (i + 1) * len(sizes) // n]
        means.append(sum(run) / len(run))
    top, low = max(means), min(means)
    if top == low:
        return [50] * n
    return [max(0, min(100, round(100 * (m - low) / (top - low)))) for m in means]


def opus_packet_ms(packet: bytes) -> float:
    """The length of one Opus packet, from its TOC byte (RFC 6716 section 3.1)."""
    if not packet:
        return 0.0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (10.0, 20.0, 40.0, 60.0)[config % 4]
    elif config < 16:
        frame = (10.0, 20.0)[config % 2]
    else:
        frame = (2.5, 5.0, 10.0, 20.0)[config % 4]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = packet[1] & 0x3F if len(packet) > 1 else 0
    return frame * frames


# --- Ogg ------------------------------------------------------------------------------


def _ogg(data: bytes) -> VoiceInfo:
    pos = 0
    serial: int | None = None
    packets: list[bytes] = []
    current = bytearray()
    last_granule = -1
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or pos + 27 > len(data):
            raise InvalidMedia("not an Ogg page where one should start")
        if data[pos + 4] != 0:
            raise InvalidMedia("unknown Ogg version")
        granule, page_serial = struct.unpack_from("<qI", data, pos + 6)
        nseg = data[pos + 26]
        table = data[pos + 27 : pos + 27 + nseg]
        if len(table) != nseg:
            raise InvalidMedia("truncated Ogg page")
        if serial is None:
            serial = page_serial
        elif page_serial != serial:
            raise UnsupportedMedia("more than one stream in the Ogg file")
        body = pos + 27 + nseg
        end = body + sum(table)
        if end > len(data):
            raise InvalidMedia("truncated Ogg page")
        offset = body
        for lace in table:
            current += data[offset : offset + lace]
            offset += lace
            if lace < 255:
                packets.append(bytes(current))
                current.clear()
        if granule != -1:
            last_granule = granule
        pos = end
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead") or len(packets[0]) < 19:
        raise InvalidMedia("no Opus header")
    if not packets[1].startswith(b"OpusTags"):
        raise InvalidMedia("no Opus tags packet")
    pre_skip = struct.unpack_from("<H", packets[0], 10)[0]
    audio = packets[2:]
    if not audio or last_granule < 0:
        raise InvalidMedia("no audio in the Ogg file")
    duration_ms = max(0, (last_granule - pre_skip) * 1000 // 48000)
    return VoiceInfo(int(duration_ms), waveform([len(p) for p in audio]))


# --- WebM (EBML) ----------------------------------------------------------------------

_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_CLUSTER = 0x1F43B675
_INFO = 0x1549A966
_TRACKS = 0x1654AE6B
_TRACK_ENTRY = 0xAE
_BLOCK_GROUP = 0xA0
_MASTERS = {_SEGMENT, _CLUSTER, _INFO, _TRACKS, _TRACK_ENTRY, _BLOCK_GROUP}
_UNKNOWN_OK = {_SEGMENT, _CLUSTER}  # what a live recorder writes with an unknown size
_DOC_TYPE = 0x4282
_TIMECODE_SCALE = 0x2AD7B1
_TRACK_NUMBER = 0xD7
_TRACK_TYPE = 0x83
_CODEC_ID = 0x86
_CLUSTER_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK = 0xA1


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """``(value, next position, all ones)`` of the EBML variable-length integer at ``pos``."""
    if pos >= len(data):
        raise InvalidMedia("truncated EBML")
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        raise InvalidMedia("bad EBML number")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    all_ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, all_ones


def _uint(raw: bytes) -> int:
    return int.from_bytes(raw, "big") if raw else 0


def _webm(data: bytes) -> VoiceInfo:
    pos = 0
    doc_type = b""
    scale = 1_000_000  # ns per timecode tick (the default)
    tracks: dict[int, tuple[int, bytes]] = {}  # number -> (type, codec id)
    entry: dict[str, object] = {}
    cluster_tc: int | None = None
    blocks: list[tuple[int, int, bytes]] = []  # (track, absolute ticks, first bytes of the frame)
    sizes: list[int] = []
    seen_header = False

    def close_entry() -> None:
        if entry:
            number = entry.get("number")
            if isinstance(number, int):
                ttype = entry.get("type")
                codec = entry.get("codec")
                tracks[number] = (ttype if isinstance(ttype, int) else 0, codec if isinstance(codec, bytes) else b"")
            entry.clear()

    while pos < len(data):
        element, pos, _ = _vint(data, pos, keep_marker=True)
        size, pos, unknown = _vint(data, pos, keep_marker=False)
        if element == _EBML:
            seen_header = True
        if unknown:
            if element not in _UNKNOWN_OK:
                raise InvalidMedia("an EBML element of unknown size where one is not allowed")
            continue  # its children follow inline
        if element in _MASTERS or element == _EBML:
            if element == _TRACK_ENTRY:
                close_entry()
            if element == _EBML:
                # read the header's children here (DocType), then go on after it
                end = pos + size
                if end > len(data):
                    raise InvalidMedia("truncated EBML header")
                inner = pos
                while inner < end:
                    child, inner, _ = _vint(data, inner, keep_marker=True)
                    csize, inner, _ = _vint(data, inner, keep_marker=False)
                    if child == _DOC_TYPE:
                        doc_type = data[inner : inner + csize]
                    inner += csize
                pos = end
            continue  # descend: children follow inline
        end = pos + size
        if end > len(data):
            raise InvalidMedia("truncated EBML element")
        payload = data[pos:end]
        if element == _TIMECODE_SCALE:
            scale = _uint(payload) or scale
        elif element == _TRACK_NUMBER:
            entry["number"] = _uint(payload)
        elif element == _TRACK_TYPE:
            entry["type"] = _uint(payload)
        elif element == _CODEC_ID:
            entry["codec"] = payload.rstrip(b"\x00")
        elif element == _CLUSTER_TIMECODE:
            close_entry()
            cluster_tc = _uint(payload)
        elif element in (_SIMPLE_BLOCK, _BLOCK):
            close_entry()
            if cluster_tc is None:
                raise InvalidMedia("a block before its cluster's timecode")
            track, after, _ = _vint(payload, 0, keep_marker=False)
            if after + 3 > len(payload):
                raise InvalidMedia("truncated block")
            relative = struct.unpack_from(">h", payload, after)[0]
            blocks.append((track, cluster_tc + relative, payload[after + 3 : after + 5]))
            sizes.append(len(payload) - after - 3)
        pos = end
    close_entry()
    if not seen_header or doc_type != b"webm":
        raise InvalidMedia("not a WebM file")
    if not tracks:
        raise InvalidMedia("no tracks in the WebM file")
    if any(t != 2 for t, _ in tracks.values()) or len(tracks) != 1:
        raise UnsupportedMedia("a voice note has one audio track and nothing else")
    (number, (_, codec)), = tracks.items()
    if codec != b"A_OPUS":
        raise UnsupportedMedia("the WebM audio is not Opus")
    audio = [b for b in blocks if b[0] == number]
    if not audio:
        raise InvalidMedia("no audio in the WebM file")
    last = max(audio, key=lambda b: b[1])
    duration_ms = max(0.0, last[1] * scale / 1e6 + opus_packet_ms(last[2]))
    return VoiceInfo(int(round(duration_ms)), waveform(sizes))


# --- MP4 (ISO-BMFF) ------------------------------------------------------------------

_MAX_SAMPLES = 100_000  # sample sizes kept for the waveform; more are counted, not listed
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts", b"dinf"}


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of the boxes in ``data[start:end]``."""
    out = []
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise InvalidMedia("truncated MP4 box")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise InvalidMedia("truncated MP4 box")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise InvalidMedia("bad MP4 box size")
        out.append((kind, pos + header, pos + size))
        pos += size
    return out


def _mp4(data: bytes) -> VoiceInfo:
    found: dict[bytes, list[tuple[int, int]]] = {}

    def walk(start: int, end: int, depth: int) -> None:
        if depth > 8:
            raise InvalidMedia("MP4 boxes nested too deeply")
        for kind, s, e in _boxes(data, start, end):
            found.setdefault(kind, []).append((s, e))
            if kind in _CONTAINERS:
                walk(s, e, depth + 1)
            elif kind == b"stsd":
                # version/flags, entry count, then sample entries (boxes)
                for entry, _, _ in _boxes(data, s + 8, e):
                    found.setdefault(b"entry:" + entry, []).append((s, e))

    walk(0, len(data), 0)
    if b"ftyp" not in found or b"moov" not in found:
        raise InvalidMedia("not an MP4 file")
    handlers = [data[s + 8 : s + 12] for s, e in found.get(b"hdlr", []) if e - s >= 12]
    if b"vide" in handlers or len(found.get(b"trak", [])) != 1 or b"soun" not in handlers:
        raise UnsupportedMedia("a voice note has one audio track and nothing else")
    if b"entry:mp4a" not in found:
        raise UnsupportedMedia("the MP4 audio is not AAC")

    def full_box(kind: bytes) -> tuple[int, int, int] | None:
        boxes = found.get(kind)
        if not boxes:
            return None
        s, e = boxes[0]
        if e - s < 4:
            raise InvalidMedia(f"truncated {kind.decode()}")
        return data[s], s + 4, e

    def u32(at: int, end: int) -> int:
        if at + 4 > end:
            raise InvalidMedia("truncated MP4 box")
        return int(struct.unpack_from(">I", data, at)[0])

    def u64(at: int, end: int) -> int:
        if at + 8 > end:
            raise InvalidMedia("truncated MP4 box")
        return int(struct.unpack_from(">Q", data, at)[0])

    duration_s = 0.0
    mvhd = full_box(b"mvhd")
    if mvhd is None:
        raise InvalidMedia("no mvhd")
    version, s, e = mvhd
    if version == 1:
        timescale, duration = u32(s + 16, e), u64(s + 20, e)
    else:
        timescale, duration = u32(s + 8, e), u32(s + 12, e)
    if timescale and duration not in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        duration_s = duration / timescale
    sizes: list[int] = []
    stsz = full_box(b"stsz")
    if stsz is not None:
        _, s, e = stsz
        fixed, count = u32(s, e), u32(s + 4, e)
        if fixed == 0:
            if s + 8 + 4 * count > e:
                raise InvalidMedia("truncated stsz")
            sizes = list(struct.unpack_from(f">{count}I", data, s + 8))
        else:
            sizes = [fixed] * min(count, _MAX_SAMPLES)
    # a fragmented file: the fragments' sample durations and sizes
    mdhd = full_box(b"mdhd")
    track_scale = 0
    if mdhd is not None:
        version, s, e = mdhd
        track_scale = u32(s + 16, e) if version == 1 else u32(s + 8, e)
    default_duration = default_size = 0
    trex = full_box(b"trex")
    if trex is not None:
        _, s, e = trex
        default_duration, default_size = u32(s + 8, e), u32(s + 12, e)
    total_ticks = 0
    tfhds = found.get(b"tfhd", [])
    truns = found.get(b"trun", [])
    for index, (s, e) in enumerate(truns):
        frag_duration, frag_size = default_duration, default_size
        if index < len(tfhds):
            ts, te = tfhds[index]
            flags = int.from_bytes(data[ts + 1 : ts + 4], "big")
            at = ts + 8  # version/flags, track_ID
            if flags & 0x01:
                at += 8
            if flags & 0x02:
                at += 4
            if flags & 0x08:
                frag_duration = u32(at, te)
                at += 4
            if flags & 0x10:
                frag_size = u32(at, te)
        flags = int.from_bytes(data[s + 1 : s + 4], "big")
        count = u32(s + 4, e)
        at = s + 8
        if flags & 0x01:
            at += 4
        if flags & 0x04:
            at += 4
        per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
        if per == 0:
            # every sample takes the defaults: counted, never walked one by one (count is the file's word)
            total_ticks += frag_duration * count
            sizes.extend([frag_size] * max(0, min(count, _MAX_SAMPLES - len(sizes))))
            continue
        if at + per * count > e:
            raise InvalidMedia("truncated trun")
        for _ in range(count):
            d, z = frag_duration, frag_size
            if flags & 0x100:
                d = u32(at, e)
                at += 4
            if flags & 0x200:
                z = u32(at, e)
                at += 4
            at += 4 if flags & 0x400 else 0
            at += 4 if flags & 0x800 else 0
            total_ticks += d
            sizes.append(z)
    if total_ticks and track_scale:
        duration_s = max(duration_s, total_ticks / track_scale)
    if not sizes and duration_s <= 0:
        raise InvalidMedia("no audio in the MP4 file")
    return VoiceInfo(int(round(duration_s * 1000)), waveform(sizes))


def read_voice(content_type: str, data: bytes) -> VoiceInfo:
    """Read a voice note of ``content_type`` (already sniffed): its duration and waveform."""
    try:
        if content_type == "audio/ogg":
            return _ogg(data)
        if content_type == "audio/webm":
            return _webm(data)
        if content_type == "audio/mp4":
            return _mp4(data)
    except (struct.error, IndexError, OverflowError):
        raise InvalidMedia(f"malformed {content_type}") from None
    raise UnsupportedMedia(f"{content_type} is not a voice type")
