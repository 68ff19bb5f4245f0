"""Pictures and voice end to end: upload, signed URLs, serving, scanning, sending, shredding.

A real node (Postgres, the in-process broker) with the local blob store in the test's own
directory; every answer is also checked against /openapi.json by the ``nodes`` fixture.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bankhub.actions import keys as key_actions
from bankhub.actions import media as media_actions
from bankhub.media import urls
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.clamd import FakeClamd, start_clamd
from ..support.media_files import EICAR, jpeg_with_gps, mp4_aac, ogg_opus, png_bytes, png_header_only, webm_opus
from ..support.wsclient import RawClient


@pytest.fixture
async def media_node(nodes: Nodes, tmp_path: Path) -> RunningNode:
    return await nodes.start(media_dir=str(tmp_path / "media"), media_max_image_bytes=200_000, media_max_voice_seconds=30)


class Party:
    """A signed-in user's HTTP client."""

    def __init__(self, node: RunningNode, token: str) -> None:
        self.node = node
        self.token = token
        self.http = httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})

    async def upload(self, conversation_id: str, data: bytes, content_type: str) -> httpx.Response:
        return await self.http.post(f"/v1/conversations/{conversation_id}/media", content=data, headers={"content-type": content_type})

    async def info(self, media_id: str) -> httpx.Response:
        return await self.http.get(f"/v1/media/{media_id}")

    async def share(self, conversation_id: str, media_id: str, kind: str = "image") -> dict[str, Any]:
        """Send the item as a message: until then it is the uploader's draft, seen by nobody else."""
        ws = await RawClient.connect(self.node.ws_url, self.token)
        try:
            answer = await ws.request(
                {"type": "send", "conversation_id": conversation_id, "client_msg_id": f"share-{media_id}", "body": {"kind": kind, "media_id": media_id}}
            )
        finally:
            await ws.close()
        assert answer["type"] == "sent", answer
        return answer


@pytest.fixture
async def people(media_node: RunningNode) -> AsyncIterator[dict[str, Any]]:
    li = Party(media_node, await login(media_node, "c.li"))
    wang = Party(media_node, await login(media_node, "rm.wang"))
    zhou = Party(media_node, await login(media_node, "c.zhou"))
    conv = await open_direct(media_node, li.token, "rm.wang")
    yield {"li": li, "wang": wang, "zhou": zhou, "conv": conv}
    for p in (li, wang, zhou):
        await p.http.aclose()


async def test_a_photo_round_trip_serves_it_upright_with_its_exif_gone(media_node: RunningNode, people: dict[str, Any], tmp_path: Path) -> None:
    li, wang, conv = people["li"], people["wang"], people["conv"]
    original = jpeg_with_gps(64, 32, orientation=6)
    r = await li.upload(conv, original, "image/jpeg")
    assert r.status_code == 201, r.text
    media = r.json()
    assert media["kind"] == "image" and media["content_type"] == "image/jpeg" and media["state"] == "ready"
    assert (media["width"], media["height"]) == (32, 64)
    await li.share(conv, media["media_id"])
    info = (await wang.info(media["media_id"])).json()
    assert set(info["urls"]) == {"full", "preview", "thumb"} and info["expires_at"] > time.time() * 1000
    for variant, url in info["urls"].items():
        got = await wang.http.get(url)
        assert got.status_code == 200, (variant, got.text)
        assert got.headers["content-type"] == "image/jpeg"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"] == f'inline; filename="{media["media_id"]}-{variant}.jpg"'
        assert got.headers["cache-control"].startswith("private")
        with Image.open(io.BytesIO(got.content)) as im:
            exif = im.getexif()
            assert dict(exif) == {} and 0x8825 not in exif, variant  # no EXIF at all, so no GPS
            assert im.height >= im.width
    # at rest: only ciphertext in the blob store
    stored = list((tmp_path / "media").rglob("*~"))
    assert len(stored) == 3
    assert all(b"\xff\xd8\xff" not in p.read_bytes()[:16] and b"Exif" not in p.read_bytes() for p in stored)


async def test_a_non_member_gets_404_for_the_facts_and_the_bytes(media_node: RunningNode, people: dict[str, Any]) -> None:
    li, zhou, conv = people["li"], people["zhou"], people["conv"]
    media_id = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
    r = await zhou.info(media_id)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    unknown = await zhou.info("01939f4e-0000-7000-8000-000000000000")
    assert unknown.status_code == 404 and unknown.json()["detail"] == r.json()["detail"]  # the same answer
    # even with a URL correctly signed for c.zhou, serving re-checks membership
    me = await zhou.http.get("/v1/me")
    exp = urls.expiry(int(time.time() * 1000), 300)
    sig = urls.sign(await media_node.hub.media.url_key(), me.json()["id"], media_id, "full", exp)
    served = await zhou.http.get(urls.media_path(media_id, "full", exp, sig))
    assert served.status_code == 404 and served.json()["code"] == "not_found"


async def test_another_users_url_is_refused(media_node: RunningNode, people: dict[str, Any]) -> None:
    li, wang, zhou, conv = people["li"], people["wang"], people["zhou"], people["conv"]
    media_id = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
    await li.share(conv, media_id)
    url = (await wang.info(media_id)).json()["urls"]["full"]
    for other in (zhou, li):  # another user, a member too: the URL was signed for rm.wang
        r = await other.http.get(url)
        assert r.status_code == 403 and r.json()["code"] == "media_url_invalid"
    assert (await wang.http.get(url)).status_code == 200
    async with httpx.AsyncClient(base_url=str(media_node.http_url)) as anonymous:
        assert (await anonymous.get(url)).status_code == 401


async def test_an_expired_or_altered_url_is_refused(media_node: RunningNode, people: dict[str, Any]) -> None:
    li, wang, conv = people["li"], people["wang"], people["conv"]
    media_id = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
    await li.share(conv, media_id)
    url = (await wang.info(media_id)).json()["urls"]["thumb"]
    me = (await wang.http.get("/v1/me")).json()["id"]
    past = int(time.time() * 1000) - 1000
    expired = urls.media_path(media_id, "thumb", past, urls.sign(await media_node.hub.media.url_key(), me, media_id, "thumb", past))
    r = await wang.http.get(expired)
    assert r.status_code == 403 and r.json()["code"] == "media_url_expired"
    path, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    for bad in (
        f"{path}?exp={int(params['exp']) + 60_000}&sig={params['sig']}",  # a later expiry: not what was signed
        f"{path.replace('/thumb', '/full')}?{query}",  # another variant
        f"{path}?exp={params['exp']}&sig={params['sig'][:-2]}AA",  # a forged signature
    ):
        r = await wang.http.get(bad)
        assert r.status_code == 403 and r.json()["code"] == "media_url_invalid", bad
    for malformed in (path, f"{path}?exp=soon&sig=x", f"{path}?exp=1"):
        r = await wang.http.get(malformed)
        assert r.status_code == 400 and r.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    "declared,data",
    [
        ("image/png", jpeg_with_gps()),  # content and declaration disagree
        ("image/jpeg", b"GIF89a" + bytes(40)),  # not an allowed type at all
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
        ("text/html", b"<html><script>alert(1)</script></html>"),
        ("audio/webm", webm_opus(1000, video=True)),  # a video track is not a voice note
        ("audio/mp4", mp4_aac(1000, entry=b"alac")),  # not AAC
    ],
)
async def test_a_wrong_type_is_refused_415(people: dict[str, Any], declared: str, data: bytes) -> None:
    r = await people["li"].upload(people["conv"], data, declared)
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type", r.text


async def test_over_the_size_cap_is_413_declared_or_streamed(people: dict[str, Any]) -> None:
    li, conv = people["li"], people["conv"]
    big = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))  # noise does not compress
    out = io.BytesIO()
    big.save(out, "PNG")
    assert len(out.getvalue()) > 200_000
    r = await li.upload(conv, out.getvalue(), "image/png")
    assert r.status_code == 413 and r.json()["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(50):
            yield b"\x89PNG\r\n\x1a\n" + bytes(8000)

    r = await li.http.post(f"/v1/conversations/{conv}/media", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


async def test_a_pixel_bomb_is_refused_before_decoding(people: dict[str, Any]) -> None:
    r = await people["li"].upload(people["conv"], png_header_only(9_000, 9_000), "image/png")
    assert r.status_code == 413 and r.json()["code"] == "too_many_pixels"


async def test_a_broken_file_or_a_too_long_note_is_422(people: dict[str, Any]) -> None:
    li, conv = people["li"], people["conv"]
    r = await li.upload(conv, ogg_opus(2000)[:300], "audio/ogg")
    assert r.status_code == 422 and r.json()["code"] == "invalid_media"
    r = await li.upload(conv, ogg_opus(31_000), "audio/ogg")
    assert r.status_code == 422 and r.json()["code"] == "too_long"


async def test_a_non_member_cannot_upload(people: dict[str, Any]) -> None:
    r = await people["zhou"].upload(people["conv"], png_bytes(), "image/png")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "content_type,make",
    [("audio/webm", lambda: webm_opus(3000)), ("audio/ogg", lambda: ogg_opus(3000)), ("audio/mp4", lambda: mp4_aac(3000, fragmented=True))],
)
async def test_a_voice_note_round_trip(people: dict[str, Any], content_type: str, make: Any) -> None:
    li, wang, conv = people["li"], people["wang"], people["conv"]
    data = make()
    r = await li.upload(conv, data, content_type + (";codecs=opus" if content_type == "audio/webm" else ""))
    assert r.status_code == 201, r.text
    media = r.json()
    assert media["kind"] == "voice" and abs(media["duration_ms"] - 3000) <= 30
    assert 1 <= len(media["waveform"]) <= 64
    await li.share(conv, media["media_id"], "voice")
    info = (await wang.info(media["media_id"])).json()
    assert set(info["urls"]) == {"full"}
    got = await wang.http.get(info["urls"]["full"])
    assert got.status_code == 200 and got.content == data and got.headers["content-type"] == content_type


async def test_sending_a_picture_fills_the_body_from_the_item(media_node: RunningNode, people: dict[str, Any]) -> None:
    li, wang, conv = people["li"], people["wang"], people["conv"]
    media = (await li.upload(conv, jpeg_with_gps(64, 32), "image/jpeg")).json()
    voice_note = (await li.upload(conv, ogg_opus(2000), "audio/ogg")).json()
    li_ws = await RawClient.connect(media_node.ws_url, li.token)
    wang_ws = await RawClient.connect(media_node.ws_url, wang.token)
    try:
        sent = await li_ws.request(
            {
                "type": "send",
                "conversation_id": conv,
                "client_msg_id": "photo-1",
                # a client's own width is replaced by the item's
                "body": {"kind": "image", "media_id": media["media_id"], "caption": "my card", "width": 9999},
            }
        )
        assert sent["type"] == "sent", sent
        (msg,) = await wang_ws.messages(1)
        assert msg["body"] == {
            "kind": "image", "media_id": media["media_id"], "caption": "my card", "content_type": "image/jpeg", "width": 32, "height": 64
        }
        sent = await li_ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "voice-1", "body": {"kind": "voice", "media_id": voice_note["media_id"]}})
        assert sent["type"] == "sent", sent
        (msg,) = await wang_ws.messages(1)
        assert msg["body"]["duration_ms"] == voice_note["duration_ms"] and msg["body"]["waveform"] == voice_note["waveform"]
        # history says the same
        page = (await wang.http.get(f"/v1/conversations/{conv}/messages")).json()
        assert [m["body"]["kind"] for m in page["messages"][:2]] == ["voice", "image"]
        # the wrong kind, someone else's item, an unknown id
        wrong = await li_ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "x1", "body": {"kind": "voice", "media_id": media["media_id"]}})
        assert wrong["type"] == "error" and wrong["code"] == "invalid_frame"
        theirs = await wang_ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "x2", "body": {"kind": "image", "media_id": media["media_id"]}})
        assert theirs["type"] == "error" and theirs["code"] == "not_found"
        unknown = await li_ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "x3", "body": {"kind": "image", "media_id": "nope"}})
        assert unknown["type"] == "error" and unknown["code"] == "not_found"
    finally:
        await li_ws.close()
        await wang_ws.close()


async def test_an_item_cannot_be_sent_into_another_conversation(media_node: RunningNode, people: dict[str, Any]) -> None:
    wang, conv = people["wang"], people["conv"]
    other = (await wang.http.post("/v1/conversations", json={"kind": "direct", "peer": "c.zhang"})).json()["conversation"]["id"]
    wang_media = (await wang.upload(conv, png_bytes(), "image/png")).json()
    ws = await RawClient.connect(media_node.ws_url, wang.token)
    try:
        moved = await ws.request({"type": "send", "conversation_id": other, "client_msg_id": "m1", "body": {"kind": "image", "media_id": wang_media["media_id"]}})
        assert moved["type"] == "error" and moved["code"] == "not_found"
        here = await ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "m2", "body": {"kind": "image", "media_id": wang_media["media_id"]}})
        assert here["type"] == "sent"
    finally:
        await ws.close()


async def test_a_shredded_conversation_makes_its_media_unreadable(media_node: RunningNode, people: dict[str, Any], tmp_path: Path) -> None:
    li, wang, conv = people["li"], people["wang"], people["conv"]
    media_id = (await li.upload(conv, jpeg_with_gps(), "image/jpeg")).json()["media_id"]
    await li.share(conv, media_id)
    url = (await wang.info(media_id)).json()["urls"]["full"]
    assert (await wang.http.get(url)).status_code == 200
    assert await key_actions.shred_conversation(media_node.hub.db, conv) == "shredded"
    got = await wang.http.get(url)  # a URL handed out before: still signed, still in time
    assert got.status_code == 410 and got.json()["code"] == "gone"
    info = await wang.info(media_id)
    assert info.status_code == 410 and info.json()["code"] == "gone"
    again = await li.upload(conv, png_bytes(), "image/png")
    assert again.status_code == 410 and again.json()["code"] == "gone"
    # the ciphertext is still on disk, but nothing the hub holds opens it any more
    assert len(list((tmp_path / "media").rglob("*~"))) == 3
    row = await media_node.hub.media.store.get(media_id)
    assert row is not None and row.shredded and row.wrapped_dek is None


# --- the virus scanner ------------------------------------------------------------------------


@pytest.fixture
async def clamd() -> AsyncIterator[FakeClamd]:
    server = await start_clamd()
    yield server
    await server.stop()


async def test_quarantine_until_clean_and_rejected_when_infected(nodes: Nodes, tmp_path: Path, clamd: FakeClamd) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"), media_clamd=clamd.address, media_scan_seconds=3600)
    li = Party(node, await login(node, "c.li"))
    wang = Party(node, await login(node, "rm.wang"))
    conv = await open_direct(node, li.token, "rm.wang")
    try:
        clean = (await li.upload(conv, ogg_opus(1000), "audio/ogg")).json()
        assert clean["state"] == "ready" and len(clamd.scanned) == 1
        infected = (await li.upload(conv, ogg_opus(1000, extra=EICAR), "audio/ogg")).json()
        assert infected["state"] == "rejected"
        # the scanner fails: the item waits in quarantine, served to nobody, not sendable
        clamd.failing = True
        waiting = (await li.upload(conv, jpeg_with_gps(), "image/jpeg")).json()
        assert waiting["state"] == "quarantined"
        for held in (infected, waiting):
            # unsent: the uploader's draft (the other member sees nothing of it)
            assert (await wang.info(held["media_id"])).status_code == 404
            info = (await li.info(held["media_id"])).json()
            assert info["urls"] == {} and info["expires_at"] is None
            me = (await li.http.get("/v1/me")).json()["id"]
            exp = urls.expiry(int(time.time() * 1000), 300)
            forged = urls.media_path(held["media_id"], "full", exp, urls.sign(await node.hub.media.url_key(), me, held["media_id"], "full", exp))
            served = await li.http.get(forged)
            assert served.status_code == 404, "never the bytes of a quarantined or rejected item"
        ws = await RawClient.connect(node.ws_url, li.token)
        try:
            for held, code in ((waiting, "media_not_ready"), (infected, "media_rejected")):
                kind = "image" if held["kind"] == "image" else "voice"
                answer = await ws.request({"type": "send", "conversation_id": conv, "client_msg_id": f"q-{code}", "body": {"kind": kind, "media_id": held["media_id"]}})
                assert answer["type"] == "error" and answer["code"] == code
            # a sweep while the scanner still fails decides nothing and gives the item back ...
            assert await media_actions.scan_sweep(node.hub) == 0
            # ... so once the scanner is back the next sweep scans it, from the sealed blobs
            clamd.failing = False
            assert await media_actions.scan_sweep(node.hub) == 1
            assert (await li.info(waiting["media_id"])).json()["state"] == "ready"
            assert (await li.info(infected["media_id"])).json()["state"] == "rejected"  # a verdict is final
            answer = await ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "q-ok", "body": {"kind": "image", "media_id": waiting["media_id"]}})
            assert answer["type"] == "sent"
        finally:
            await ws.close()
    finally:
        await li.http.aclose()
        await wang.http.aclose()


async def test_uploads_are_rate_limited_per_user(people: dict[str, Any]) -> None:
    li, conv = people["li"], people["conv"]
    burst = media_actions.MEDIA_UPLOADS_PER_USER.burst
    answers = await asyncio.gather(*(li.upload(conv, png_bytes(8, 8), "image/png") for _ in range(burst + 5)))
    statuses = sorted(r.status_code for r in answers)
    assert burst <= statuses.count(201) <= burst + 1  # the bucket refills a little meanwhile
    limited = [r for r in answers if r.status_code == 429]
    assert limited and all(r.json()["code"] == "rate_limited" and r.headers["retry-after"] for r in limited)
    # another user's uploads are their own
    assert (await people["wang"].upload(conv, png_bytes(8, 8), "image/png")).status_code == 201


async def test_a_url_from_one_node_is_served_by_another_sharing_the_volume(
    nodes: Nodes, tmp_path: Path, valkey_url: str, cluster_key: str
) -> None:
    shared = str(tmp_path / "volume")
    a = await nodes.start("node-a", redis_url=valkey_url, cluster_key=cluster_key, media_dir=shared)
    b = await nodes.start("node-b", redis_url=valkey_url, cluster_key=cluster_key, media_dir=shared)
    li_a = Party(a, await login(a, "c.li"))
    wang_b = Party(b, await login(b, "rm.wang"))
    wang_a = Party(a, await login(a, "rm.wang"))
    try:
        conv = await open_direct(a, li_a.token, "rm.wang")
        media_id = (await li_a.upload(conv, jpeg_with_gps(), "image/jpeg")).json()["media_id"]
        await li_a.share(conv, media_id)
        url = (await wang_a.info(media_id)).json()["urls"]["thumb"]  # signed on node A ...
        got = await wang_b.http.get(url)  # ... served by node B, from the shared volume
        assert got.status_code == 200 and got.content[:3] == b"\xff\xd8\xff"
    finally:
        for p in (li_a, wang_b, wang_a):
            await p.http.aclose()


async def test_a_hanging_scanner_holds_the_upload_no_longer_than_the_scan_timeout(
    nodes: Nodes, tmp_path: Path, clamd: FakeClamd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_actions, "_SCAN_TIMEOUT", 0.5)
    node = await nodes.start(media_dir=str(tmp_path / "media"), media_clamd=clamd.address, media_scan_seconds=3600)
    li = Party(node, await login(node, "c.li"))
    try:
        conv = await open_direct(node, li.token, "rm.wang")
        clamd.hanging = True
        started = time.monotonic()
        r = await li.upload(conv, jpeg_with_gps(), "image/jpeg")
        assert r.status_code == 201 and r.json()["state"] == "quarantined"
        assert time.monotonic() - started < 5
    finally:
        await li.http.aclose()
