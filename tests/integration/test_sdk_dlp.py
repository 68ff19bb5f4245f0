"""The Python SDK and data-loss prevention against a real hub: ``Client.send``/``Client.edit``
return the masked message the members see with ``dlp`` saying what was masked; a refused send
raises :class:`ProtocolError` ``sensitive_data``; ``Client.send_media`` returns the masked caption."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankhub.runner import RunningNode
from bankhub_client import Api, Client, DlpNotice, EditBody, ImageBody, ProtocolError, TextBody, login

from ..conftest import Nodes
from ..support.media_files import jpeg_with_gps
from .test_dlp import CARD, MASKED, SPACED


async def test_send_and_edit_return_the_masked_message_and_what_was_masked(node: RunningNode) -> None:
    li = await login(node.http_url, "c.li", "bankhub-demo")
    wang = await login(node.http_url, "rm.wang", "bankhub-demo")
    async with Client.connect(node.http_url, token=li.token) as c, Client.connect(node.http_url, token=wang.token) as r:
        conv = await c.open_direct("rm.wang")
        sent = await c.send(conv, f"card {SPACED} CVV 123")
        assert sent.text == f"card {MASKED} CVV ***"
        assert sent.dlp == (DlpNotice(kind="card", masked=MASKED), DlpNotice(kind="cvv", masked="***"))
        plain = await c.send(conv, "thanks")
        assert plain.text == "thanks" and plain.dlp == ()
        edit = await c.edit(conv, plain.message_id, f"thanks, card {CARD}")
        assert edit.body == EditBody(message_id=plain.message_id, body=TextBody(text=f"thanks, card {CARD[:4]}********{CARD[-4:]}"))
        assert [d.kind for d in edit.dlp] == ["card"]
        with pytest.raises(ProtocolError) as refused:
            await r.send(conv, f"your card {CARD}")
        assert refused.value.code == "sensitive_data" and CARD not in str(refused.value)


async def test_send_media_returns_the_masked_caption(nodes: Nodes, tmp_path: Path) -> None:
    node: RunningNode = await nodes.start(media_dir=str(tmp_path))
    li = await login(node.http_url, "c.li", "bankhub-demo")
    async with Api(node.http_url, li.token) as li_api, Client.connect(node.http_url, token=li.token) as c:
        conv = await c.open_direct("rm.wang")
        photo = await li_api.upload_media(conv, jpeg_with_gps(64, 32), "image/jpeg")
        sent = await c.send_media(conv, photo, caption=f"卡号 {SPACED}")
        assert isinstance(sent.body, ImageBody) and sent.body.caption == f"卡号 {MASKED}"
        assert sent.dlp == (DlpNotice(kind="card", masked=MASKED),)
