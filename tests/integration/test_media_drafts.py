"""Unsent uploads: the uploader's drafts, capped per user, deleted when never sent.

A real node (Postgres, the local blob store in the test's own directory). An upload no
message carries is seen by its uploader only, counts against the uploader's cap
(``media_max_pending``, ``media_max_pending_bytes``), and the sweep deletes its row and
blobs once it is older than ``media_unattached_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bankhub.actions import media as media_actions
from bankhub.blobs import BlobNotFound
from bankhub.media import urls
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.media_files import ogg_opus, png_bytes
from ..support.wsclient import RawClient
from .test_media import Party


async def _pair(node: RunningNode) -> tuple[Party, Party, str]:
    li = Party(node, await login(node, "c.li"))
    wang = Party(node, await login(node, "rm.wang"))
    return li, wang, await open_direct(node, li.token, "rm.wang")


async def test_an_unsent_item_is_seen_by_its_uploader_only(nodes: Nodes, tmp_path: Path) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"))
    li, wang, conv = await _pair(node)
    try:
        media_id = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
        mine = await li.info(media_id)
        assert mine.status_code == 200 and set(mine.json()["urls"]) == {"full", "preview", "thumb"}
        assert (await li.http.get(mine.json()["urls"]["thumb"])).status_code == 200
        # the other member, who learnt the id: the same 404 as for an id that does not exist
        theirs = await wang.info(media_id)
        assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
        me = (await wang.http.get("/v1/me")).json()["id"]
        exp = urls.expiry(int(time.time() * 1000), 300)
        url = urls.media_path(media_id, "full", exp, urls.sign(await node.hub.media.url_key(), me, media_id, "full", exp))
        assert (await wang.http.get(url)).status_code == 404, "never the bytes of another user's draft"
        # sent: a message carries it, every member sees it
        await li.share(conv, media_id)
        shared = await wang.info(media_id)
        assert shared.status_code == 200, shared.text
        assert (await wang.http.get(shared.json()["urls"]["full"])).status_code == 200
        assert (await wang.http.get(url)).status_code == 200
    finally:
        await li.http.aclose()
        await wang.http.aclose()


async def test_unsent_uploads_are_capped_per_user(nodes: Nodes, tmp_path: Path) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"), media_max_pending=2)
    li, wang, conv = await _pair(node)
    try:
        first = (await li.upload(conv, png_bytes(8, 8), "image/png")).json()
        assert (await li.upload(conv, png_bytes(8, 8), "image/png")).status_code == 201
        over = await li.upload(conv, png_bytes(8, 8), "image/png")
        assert over.status_code == 409 and over.json()["code"] == "media_quota", over.text
        assert over.headers["content-type"].startswith("application/problem+json")
        assert (await wang.upload(conv, png_bytes(8, 8), "image/png")).status_code == 201  # per user
        # sending one frees its place
        await li.share(conv, first["media_id"])
        assert (await li.upload(conv, png_bytes(8, 8), "image/png")).status_code == 201
        assert (await li.upload(conv, png_bytes(8, 8), "image/png")).status_code == 409
    finally:
        await li.http.aclose()
        await wang.http.aclose()


async def test_unsent_upload_bytes_are_capped_per_user(nodes: Nodes, tmp_path: Path) -> None:
    note = ogg_opus(1000)
    node = await nodes.start(media_dir=str(tmp_path / "media"), media_max_pending_bytes=len(note) + 1)
    li, wang, conv = await _pair(node)
    try:
        first = (await li.upload(conv, note, "audio/ogg")).json()
        assert (await li.upload(conv, note, "audio/ogg")).status_code == 201  # under the cap before it
        over = await li.upload(conv, note, "audio/ogg")
        assert over.status_code == 409 and over.json()["code"] == "media_quota", over.text
        await li.share(conv, first["media_id"], "voice")  # sent: its bytes no longer count
        assert (await li.upload(conv, note, "audio/ogg")).status_code == 201
        assert (await li.upload(conv, note, "audio/ogg")).status_code == 409
    finally:
        await li.http.aclose()
        await wang.http.aclose()


async def test_the_sweep_deletes_never_sent_items_and_their_blobs(nodes: Nodes, tmp_path: Path) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"), media_unattached_seconds=0.5)
    li, wang, conv = await _pair(node)
    hub = node.hub
    assert "media-unattached-sweep" in {job.name for job in hub._jobs}  # every node runs it
    try:
        sent = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
        await li.share(conv, sent)
        draft = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]
        draft_row = await hub.media.store.get(draft)
        assert draft_row is not None and set(draft_row.variants) == {"full", "preview", "thumb"}
        await asyncio.sleep(0.7)
        fresh = (await li.upload(conv, png_bytes(), "image/png")).json()["media_id"]  # younger than the limit
        assert await media_actions.unattached_sweep(hub) == 1
        # an upload still within its time stays (checked at once: it is only 0.5 s young)
        assert await media_actions.unattached_sweep(hub) == 0
        assert await hub.media.store.get(fresh) is not None
        assert await hub.media.store.get(draft) is None
        assert (await li.info(draft)).status_code == 404
        for variant in draft_row.variants.values():
            with pytest.raises(BlobNotFound):
                await hub.media.blobs.get(variant.key)
        # what a message carries stays
        got = await wang.info(sent)
        assert got.status_code == 200 and (await wang.http.get(got.json()["urls"]["full"])).status_code == 200
        # a draft swept away cannot be sent
        await asyncio.sleep(0.7)
        assert await media_actions.unattached_sweep(hub) == 1
        ws = await RawClient.connect(node.ws_url, li.token)
        try:
            answer = await ws.request({"type": "send", "conversation_id": conv, "client_msg_id": "late", "body": {"kind": "image", "media_id": fresh}})
        finally:
            await ws.close()
        assert answer["type"] == "error" and answer["code"] == "not_found", answer
    finally:
        await li.http.aclose()
        await wang.http.aclose()

