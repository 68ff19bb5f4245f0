"""Transport hardening: TLS, no compression, and fuzzing a live gateway."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from bankhub.node import build_hub
from bankhub.runner import RunningNode, start_node
from bankhub.settings import Settings
from bankhub.tlsgen import self_signed

from bankhub.protocol.session import SessionLimits

from ..conftest import Nodes, login
from ..support.wsclient import RawClient


async def test_tls_with_the_generated_dev_certificate(dsn: str, tmp_path: Path, key_file: str) -> None:
    cert, key = self_signed(tmp_path / "tls")
    assert (Path(key).stat().st_mode & 0o077) == 0  # the private key is not readable by others
    hub = build_hub(Settings(database_url=dsn, node_name="tls", tls_cert=cert, tls_key=key, key_file=key_file))
    node = await start_node(hub)
    try:
        ctx = ssl.create_default_context(cafile=cert)
        base = f"https://localhost:{node.port}"
        async with httpx.AsyncClient(base_url=base, verify=ctx) as http:
            r = await http.post("/v1/sessions", json={"username": "c.li", "password": "bankhub-demo"})
            assert r.status_code == 201
            token = r.json()["token"]
        async with connect(
            f"wss://localhost:{node.port}/v1/ws", ssl=ctx, subprotocols=["bankhub.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
        async with httpx.AsyncClient(base_url=base, verify=True) as http:  # an unknown CA is refused by clients
            try:
                await http.get("/healthz")
                raise AssertionError("self-signed certificate accepted by a default client")
            except httpx.ConnectError:
                pass
    finally:
        await node.stop()


async def test_permessage_deflate_is_never_negotiated(node: RunningNode) -> None:
    token = await login(node, "c.li")
    async with connect(
        node.ws_url,
        subprotocols=["bankhub.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {token}"},
        extensions=[ClientPerMessageDeflateFactory()],
    ) as ws:
        assert ws.response is not None and "Sec-WebSocket-Extensions" not in ws.response.headers
        assert json.loads(await ws.recv())["type"] == "hello"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
frames = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["send", "read", "sync", "ping", "hello", "sent"]), "id": st.text(max_size=70)},
        optional={
            "conversation_id": st.text(max_size=40),
            "client_msg_id": st.text(max_size=70),
            "seq": st.integers(min_value=-(2**70), max_value=2**70),
            "since": st.dictionaries(st.text(max_size=40), st.integers(min_value=-5, max_value=2**63)),
            "limit": st.integers(min_value=-5, max_value=10**6),
            "body": json_values,
        },
    ).map(json.dumps),
)

DOCUMENTED_CLOSES = {1008, 1009}
ANSWERS = {"error", "pong", "sent", "receipt", "synced"}


def _examples(n: int) -> list[str]:
    """Draw ``n`` frames from the strategy (hypothesis runs synchronously; the socket work is async)."""
    drawn: list[str] = []

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(frames)
    def draw(frame: str) -> None:
        drawn.append(frame)

    draw()
    return drawn


async def test_fuzzed_frames_at_a_live_gateway_get_documented_answers(nodes: Nodes) -> None:
    # generous abuse limits, so that the fuzz reaches the parser and actions rather than the rate limiter
    node = await nodes.start(limits=SessionLimits(frames_per_second=10_000, frame_burst=10_000, max_strikes=10_000))
    token = await login(node, "c.li")
    state = {"client": await RawClient.connect(node.ws_url, token)}
    results = _examples(150)
    for frame in results:
        c = state["client"]
        await c.send_frame(frame)
        try:
            answer = await c.recv(timeout=5)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in DOCUMENTED_CLOSES, closed
            state["client"] = await RawClient.connect(node.ws_url, token)
            continue
        assert answer["type"] in ANSWERS, answer
        if answer["type"] == "error":
            assert answer["code"] in {"malformed", "unknown_type", "invalid_frame", "not_found", "rate_limited", "forbidden"}
    # the gateway is still healthy and nothing was logged as a crash
    assert (await state["client"].request({"type": "ping"}))["type"] == "pong"
    assert len(results) >= 100
