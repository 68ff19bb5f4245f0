"""The media pipeline without storage: type by content, pictures, voice containers, sealing,
signed URLs and the clamd client (against the INSTREAM stand-in of tests/support/clamd.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path
import random
import uuid

import pytest
from PIL import Image, ImageFile

from bankhub.crypto.keyring import DataKey
from bankhub.media import images, sniff, urls, voice
from bankhub.media.clamd import ScannerUnavailable, parse_address, scan
from bankhub.media.sealing import MediaUnreadable, open_sealed, seal

from ..support.clamd import start_clamd
from ..support.media_files import EICAR, jpeg_with_gps, mp4_aac, ogg_opus, png_bytes, png_header_only, webm_opus, webp_with_exif

# --- the type, by content -------------------------------------------------------------------


def test_each_allowed_type_is_recognised_by_its_magic_bytes() -> None:
    assert sniff.sniff(jpeg_with_gps()) == "image/jpeg"
    assert sniff.sniff(png_bytes()) == "image/png"
    assert sniff.sniff(webp_with_exif()) == "image/webp"
    assert sniff.sniff(ogg_opus(1000)) == "audio/ogg"
    assert sniff.sniff(webm_opus(1000)) == "audio/webm"
    assert sniff.sniff(mp4_aac(1000)) == "audio/mp4"


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a\x01\x00\x01\x00",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"<html><script>alert(1)</script>",
        b"%PDF-1.7",
        b"OggS\x00\x02" + bytes(20) + b"\x01\x1e" + b"\x01vorbis",  # Vorbis in Ogg, not Opus
        b"",
        os.urandom(64),
    ],
)
def test_anything_else_is_not_allowed(data: bytes) -> None:
    assert sniff.sniff(data) is None


def test_the_declared_type_is_read_without_parameters() -> None:
    assert sniff.declared_type("audio/webm;codecs=opus") == "audio/webm"
    assert sniff.declared_type(" IMAGE/JPEG ") == "image/jpeg"
    assert sniff.declared_type("image/svg+xml") is None
    assert sniff.declared_type("application/octet-stream") is None
    assert sniff.declared_type(None) is None


# --- pictures -------------------------------------------------------------------------------


def _exif_of(data: bytes) -> tuple[dict[int, object], dict[object, object]]:
    with Image.open(io.BytesIO(data)) as im:
        return dict(im.getexif()), dict(im.info)


def test_a_jpeg_is_re_encoded_without_exif_and_gps_and_stands_upright() -> None:
    original = jpeg_with_gps(64, 32, orientation=6)
    exif, _ = _exif_of(original)
    assert 0x8825 in exif and exif[0x0112] == 6  # the fixture really carries GPS and an orientation
    done = images.process("image/jpeg", original, max_pixels=10_000_000)
    assert (done.width, done.height) == (32, 64)  # turned upright: 90° as the orientation said
    for name in ("full", "preview", "thumb"):
        v = done.variants[name]
        exif, info = _exif_of(v.data)
        assert exif == {}, name
        assert "exif" not in info and "xmp" not in info
        assert v.content_type == "image/jpeg" and sniff.sniff(v.data) == "image/jpeg"
    with Image.open(io.BytesIO(done.variants["full"].data)) as im:
        top_left = im.convert("RGB").getpixel((16, 2))
    assert isinstance(top_left, tuple) and top_left[2] > 150  # the blue half is on top after the turn


def test_png_and_webp_lose_their_metadata_too() -> None:
    png = images.process("image/png", png_bytes(text="secret note"), max_pixels=10_000_000)
    exif, info = _exif_of(png.variants["full"].data)
    assert exif == {} and "Comment" not in info
    webp = images.process("image/webp", webp_with_exif(), max_pixels=10_000_000)
    exif, _ = _exif_of(webp.variants["full"].data)
    assert exif == {}


def test_thumbnails_fit_their_edges_and_never_grow() -> None:
    big = io.BytesIO()
    Image.new("RGB", (2000, 1000), (9, 9, 9)).save(big, "JPEG")
    done = images.process("image/jpeg", big.getvalue(), max_pixels=10_000_000)
    assert (done.variants["preview"].width, done.variants["preview"].height) == (images.PREVIEW_EDGE, images.PREVIEW_EDGE // 2)
    assert (done.variants["thumb"].width, done.variants["thumb"].height) == (images.THUMB_EDGE, images.THUMB_EDGE // 2)
    small = images.process("image/png", png_bytes(40, 30), max_pixels=10_000_000)
    assert (small.variants["thumb"].width, small.variants["thumb"].height) == (40, 30)


def test_a_pixel_bomb_is_refused_from_its_header_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # 81 million pixels declared in a file of ~100 bytes: under Pillow's own bomb guard, over the cap
    bomb = png_header_only(9_000, 9_000)
    assert len(bomb) < 200
    decoded: list[object] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(images.TooManyPixels):
        images.process("image/png", bomb, max_pixels=40_000_000)
    assert decoded == []  # never got as far as the pixels


def test_the_pixel_cap_is_the_setting_not_pillows_default() -> None:
    with pytest.raises(images.TooManyPixels):
        images.process("image/png", png_bytes(40, 30), max_pixels=40 * 30 - 1)
    assert images.process("image/png", png_bytes(40, 30), max_pixels=40 * 30).width == 40


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp"])
def test_a_truncated_or_lying_picture_is_invalid_media(content_type: str) -> None:
    data = {"image/jpeg": jpeg_with_gps(), "image/png": png_bytes(), "image/webp": webp_with_exif()}[content_type]
    with pytest.raises(voice.InvalidMedia):
        images.process(content_type, data[: len(data) // 3], max_pixels=10_000_000)
    other = "image/png" if content_type != "image/png" else "image/jpeg"
    with pytest.raises(voice.InvalidMedia):  # only the sniffed type's decoder is allowed
        images.process(other, data, max_pixels=10_000_000)


# --- voice ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type,make",
    [
        ("audio/ogg", lambda ms: ogg_opus(ms)),
        ("audio/webm", lambda ms: webm_opus(ms)),  # live recording: unknown sizes, no Duration
        ("audio/webm", lambda ms: webm_opus(ms, live=False)),
        ("audio/mp4", lambda ms: mp4_aac(ms)),
        ("audio/mp4", lambda ms: mp4_aac(ms, fragmented=True)),  # Safari's MediaRecorder
    ],
)
def test_each_voice_container_gives_its_duration_and_a_waveform(content_type: str, make: object) -> None:
    assert callable(make)
    info = voice.read_voice(content_type, make(4000))
    assert abs(info.duration_ms - 4000) <= 30
    assert 1 <= len(info.waveform) <= 64 and all(0 <= v <= 100 for v in info.waveform)
    # the fixtures are quiet, then loud: the summary shows it
    half = len(info.waveform) // 2
    assert max(info.waveform[: half - 1]) < min(info.waveform[half + 1 :])


def test_a_live_webm_duration_comes_from_its_blocks_not_a_header_claim() -> None:
    lying = webm_opus(5000, header_duration_ms=100.0)
    assert voice.read_voice("audio/webm", lying).duration_ms == 5000


def test_a_waveform_has_at_most_64_values_however_long_the_note() -> None:
    info = voice.read_voice("audio/ogg", ogg_opus(60_000))
    assert len(info.waveform) == 64


@pytest.mark.parametrize(
    "content_type,data",
    [
        ("audio/webm", webm_opus(1000, codec=b"A_VORBIS")),
        ("audio/webm", webm_opus(1000, video=True)),
        ("audio/mp4", mp4_aac(1000, video=True)),
        ("audio/mp4", mp4_aac(1000, entry=b"alac")),
    ],
)
def test_another_codec_or_a_video_track_is_unsupported(content_type: str, data: bytes) -> None:
    with pytest.raises(voice.UnsupportedMedia):
        voice.read_voice(content_type, data)


@pytest.mark.parametrize("content_type,data", [("audio/ogg", ogg_opus(2000)), ("audio/webm", webm_opus(2000, live=False)), ("audio/mp4", mp4_aac(2000))])
def test_damaged_voice_files_are_invalid_media_never_a_crash(content_type: str, data: bytes) -> None:
    with pytest.raises(voice.InvalidMedia):
        voice.read_voice(content_type, data[: len(data) // 2 - 3])
    rng = random.Random(14)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            voice.read_voice(content_type, bytes(mutated))
        except (voice.InvalidMedia, voice.UnsupportedMedia):
            pass


def test_opus_packet_lengths_follow_the_toc_byte() -> None:
    assert voice.opus_packet_ms(b"\xf8") == 20.0  # CELT FB 20 ms, one frame
    assert voice.opus_packet_ms(bytes([(3 << 3) | 0])) == 60.0  # SILK NB 60 ms
    assert voice.opus_packet_ms(bytes([(31 << 3) | 3, 3])) == 60.0  # 3 frames of 20 ms
    assert voice.waveform([]) == [] and voice.waveform([5, 5, 5]) == [50, 50, 50]


# --- sealing and signed URLs ------------------------------------------------------------------


def test_a_sealed_variant_opens_only_in_its_own_place() -> None:
    key, other = DataKey(os.urandom(32)), DataKey(os.urandom(32))
    conv, media = str(uuid.uuid4()), str(uuid.uuid4())
    blob = seal(key, conv, media, "full", b"picture")
    assert open_sealed(key, conv, media, "full", blob) == b"picture"
    for args in ((other, conv, media, "full"), (key, str(uuid.uuid4()), media, "full"), (key, conv, str(uuid.uuid4()), "full"), (key, conv, media, "thumb")):
        with pytest.raises(MediaUnreadable):
            open_sealed(*args, blob)
    with pytest.raises(MediaUnreadable):
        open_sealed(key, conv, media, "full", blob[:-1] + bytes([blob[-1] ^ 1]))


def test_a_url_signature_is_bound_to_user_media_variant_and_expiry() -> None:
    key = os.urandom(32)
    sig = urls.sign(key, "u1", "m1", "thumb", 1000)
    assert urls.verify([key], "u1", "m1", "thumb", 1000, sig)
    assert urls.verify([os.urandom(32), key], "u1", "m1", "thumb", 1000, sig)
    for user, media, variant, exp in (("u2", "m1", "thumb", 1000), ("u1", "m2", "thumb", 1000), ("u1", "m1", "full", 1000), ("u1", "m1", "thumb", 1001)):
        assert not urls.verify([key], user, media, variant, exp, sig)
    assert not urls.verify([os.urandom(32)], "u1", "m1", "thumb", 1000, sig)
    assert not urls.verify([key], "u1", "m1", "thumb", 1000, "not base64 !!")


def test_url_expiry_is_within_the_lifetime_and_stable_within_a_quarter() -> None:
    now = 1_700_000_123_456
    exp = urls.expiry(now, 300)
    assert now + 225_000 <= exp <= now + 300_000
    assert urls.expiry(now + 1000, 300) == exp or urls.expiry(now + 1000, 300) == exp + 75_000


# --- clamd ----------------------------------------------------------------------------------


async def test_the_clamd_client_reports_clean_and_found() -> None:
    clamd = await start_clamd()
    try:
        big = os.urandom(200_000)  # several INSTREAM chunks
        assert (await scan(clamd.address, big)).clean
        assert clamd.scanned[-1] == big
        found = await scan(clamd.address, b"prefix " + EICAR + b" suffix")
        assert not found.clean and found.signature == "Eicar-Test-Signature"
        clamd.failing = True
        with pytest.raises(ScannerUnavailable):
            await scan(clamd.address, b"x")
    finally:
        await clamd.stop()
    with pytest.raises(ScannerUnavailable):
        await scan(clamd.address, b"x", timeout=2)


async def test_the_clamd_client_speaks_over_a_unix_socket(tmp_path: Path) -> None:
    clamd = await start_clamd(str(tmp_path / "clamd.sock"))
    try:
        assert clamd.address.startswith("unix:/")
        assert (await scan(clamd.address, b"clean")).clean
        assert not (await scan(clamd.address, EICAR)).clean
    finally:
        await clamd.stop()


def test_clamd_addresses() -> None:
    assert parse_address("127.0.0.1:3310") == ("127.0.0.1", 3310)
    assert parse_address("[::1]:3310") == ("::1", 3310)
    assert parse_address("unix:/run/clamav/clamd.ctl") == ("unix", "/run/clamav/clamd.ctl")
    with pytest.raises(ValueError):
        parse_address("clamd")


def test_a_fragment_claiming_billions_of_samples_is_counted_not_walked() -> None:
    import struct
    import time

    data = bytearray(mp4_aac(1000, fragmented=True))
    # rewrite the first trun: no per-sample fields, 4 billion samples of the default 1024 ticks
    at = data.index(b"trun") + 4
    data[at : at + 8] = bytes([0, 0, 0, 0]) + struct.pack(">I", 0xFFFFFFFF)
    started = time.monotonic()
    info = voice.read_voice("audio/mp4", bytes(data))
    assert time.monotonic() - started < 1.0
    assert info.duration_ms > 10**9  # absurdly long: the duration cap refuses it
