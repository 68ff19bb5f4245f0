"""The Python SDK's pictures and voice against a real hub: upload, send, receive, download."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from bankhub.runner import RunningNode
from bankhub_client import Api, ApiError, Client, ImageBody, Message, ProtocolError, VoiceBody, login

from ..conftest import Nodes
from ..support.media_files import jpeg_with_gps, ogg_opus


async def _next_message(c: Client, timeout: float = 5.0) -> Message:
    async def first() -> Message:
        async for event in c.events():
            if isinstance(event, Message):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_a_photo_and_a_voice_note_through_the_sdk(nodes: Nodes, tmp_path: Path) -> None:
    node: RunningNode = await nodes.start(media_dir=str(tmp_path))
    li = await login(node.http_url, "c.li", "bankhub-demo")
    wang = await login(node.http_url, "rm.wang", "bankhub-demo")
    async with Api(node.http_url, li.token) as li_api, Api(node.http_url, wang.token) as wang_api, Client.connect(
        node.http_url, token=li.token
    ) as c, Client.connect(node.http_url, token=wang.token) as r:
        conv = await c.open_direct("rm.wang")
        photo = await li_api.upload_media(conv, jpeg_with_gps(64, 32), "image/jpeg")
        assert photo.state == "ready" and (photo.width, photo.height) == (32, 64)
        sent = await c.send_media(conv, photo, caption="the receipt")
        assert sent.body == ImageBody(media_id=photo.media_id, caption="the receipt", content_type="image/jpeg", width=32, height=64)
        got = await _next_message(r)
        assert got.message_id == sent.message_id and got.body == sent.body
        assert isinstance(got.body, ImageBody)
        full = await wang_api.download_media(got.body.media_id)
        thumb = await wang_api.download_media(got.body.media_id, "thumb")
        with Image.open(io.BytesIO(full)) as im:
            assert dict(im.getexif()) == {} and im.size == (32, 64)
        assert thumb[:3] == b"\xff\xd8\xff"

        note = await li_api.upload_media(conv, ogg_opus(2500), "audio/ogg")
        sent = await c.send_media(conv, note)
        got = await _next_message(r)
        assert isinstance(got.body, VoiceBody) and got.body.duration_ms == note.duration_ms == 2500
        assert got.body.waveform == note.waveform
        assert await wang_api.download_media(note.media_id) == ogg_opus(2500)

        with pytest.raises(ValueError):
            await c.send_media(conv, note, caption="voice notes have none")
        with pytest.raises(ProtocolError) as refused:
            await r.send_media(conv, photo)  # not rm.wang's upload
        assert refused.value.code == "not_found"
        with pytest.raises(ApiError) as bad:
            await li_api.upload_media(conv, b"GIF89a" + bytes(32), "image/png")
        assert bad.value.status == 415 and bad.value.code == "unsupported_media_type"
