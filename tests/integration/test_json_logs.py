"""A node with ``BANKHUB_LOG_FORMAT=json``: every line is one JSON object with the ids of its
work, and no body, password or token ever reaches a line."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from bankhub import logs
from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD, Nodes, open_direct
from ..support.nodeproc import poll_ready
from ..support.wsclient import RawClient

REQUIRED = {"timestamp", "level", "logger", "event", "node"}


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the node's JSON handler writes (its stream swapped for a buffer once the node
    has configured it); the process's logging is restored afterwards."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("", "bankhub", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    yield buffer
    logs.reset()
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _capture(buffer: io.StringIO) -> None:
    (handler,) = [h for h in logging.getLogger().handlers if h.name == logs.HANDLER_NAME]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # its WebSocket handshake lines
    logging.getLogger("bankhub").setLevel(logging.DEBUG)  # the connection lines too


def _parse(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buffer.getvalue().splitlines() if line]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all(isinstance(r, dict) for r in records)
    return records


async def test_json_lines_carry_request_and_connection_ids_and_no_secret(nodes: Nodes, json_lines: io.StringIO) -> None:
    node: RunningNode = await nodes.start("json-node", log_format="json")
    _capture(json_lines)
    body = f"zebra-body-{uuid.uuid4().hex}"
    password = f"Wrong-Pass-{uuid.uuid4().hex}"
    bogus_token = f"tok{uuid.uuid4().hex}{uuid.uuid4().hex}"

    async with httpx.AsyncClient(base_url=node.http_url) as http:
        # a valid incoming id is echoed; the sign-in's lines carry it
        r = await http.post(
            "/v1/sessions", json={"username": "c.li", "password": DEMO_PASSWORD}, headers={"X-Request-Id": "lb-7f3a.9_x"}
        )
        assert r.status_code == 201 and r.headers["x-request-id"] == "lb-7f3a.9_x"
        token = r.json()["token"]
        # an invalid one is replaced by a new id
        bad = await http.post("/v1/sessions", json={"username": "c.li", "password": password}, headers={"X-Request-Id": "no spaces"})
        assert bad.status_code == 401
        generated = bad.headers["x-request-id"]
        assert generated != "no spaces" and logs.valid_request_id(generated)
        denied = await http.get("/v1/me", headers={"Authorization": f"Bearer {bogus_token}"})
        denied_id = denied.headers["x-request-id"]
        assert denied.status_code == 401 and logs.valid_request_id(denied_id) and denied_id != generated
    conv = await open_direct(node, token, "rm.wang")

    client = await RawClient.connect(node.ws_url, token)
    await client.expect("sent", frame_id=await client.send_text(conv, body))
    # a browser's ticket travels in the URL: uvicorn's handshake line must not show it
    async with httpx.AsyncClient(base_url=node.http_url, headers={"Authorization": f"Bearer {token}"}) as http:
        ticket = (await http.post("/v1/ws-tickets")).json()["ticket"]
    async with connect(f"{node.ws_url}?ticket={ticket}", subprotocols=["bankhub.v1"]) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["type"] == "hello"
    await client.close()
    await nodes.stop_all()

    records = _parse(json_lines)
    for rec in records:
        assert REQUIRED <= rec.keys(), rec
        assert dt.datetime.fromisoformat(rec["timestamp"]).utcoffset() == dt.timedelta(0)
        assert rec["level"] in {"debug", "info", "warning", "error", "critical"}
    assert any("WebSocket /v1/ws?ticket=[redacted]" in rec["event"] for rec in records if rec["logger"] == "uvicorn.error")
    hub_lines = [rec for rec in records if rec["logger"].startswith(("bankhub", "uvicorn"))]
    assert hub_lines and all(rec["node"] == "json-node" for rec in hub_lines)
    # the HTTP lines: one per request, with the id the response carried
    access = [rec for rec in records if rec["logger"] == "bankhub.access"]
    by_id = {rec.get("request_id"): rec["event"] for rec in access}
    assert by_id["lb-7f3a.9_x"].startswith("POST /v1/sessions 201 ")
    assert by_id[generated].startswith("POST /v1/sessions 401 ")
    assert by_id[denied_id].startswith("GET /v1/me 401 ")
    assert all(rec.get("request_id") for rec in access)
    # the WebSocket lines: connection and user bound for the connection's task
    opened = [rec for rec in records if rec["event"] == "connection opened"]
    assert len(opened) == 2 and opened[0]["logger"] == "bankhub.gateway"
    assert len(opened[0]["connection_id"]) == 32 and opened[0]["user_id"]
    closed = [rec for rec in records if rec["event"].startswith("connection closed")]
    assert {rec["connection_id"] for rec in closed} == {rec["connection_id"] for rec in opened}
    assert {rec["user_id"] for rec in closed} == {opened[0]["user_id"]}
    # nothing a client wrote as a secret or a body
    text = json_lines.getvalue()
    for secret in (body, password, bogus_token, token, ticket):
        assert secret not in text


async def test_a_text_node_writes_no_json(nodes: Nodes, json_lines: io.StringIO) -> None:
    """``text`` (the default) leaves the standard library's lines as they are: a JSON
    handler of an earlier node in the process is removed."""
    await nodes.start("json-node", log_format="json")
    assert any(h.name == logs.HANDLER_NAME for h in logging.getLogger().handlers)
    await nodes.start("text-node")
    assert not any(h.name == logs.HANDLER_NAME for h in logging.getLogger().handlers)


async def test_bankhub_serve_writes_only_json_lines(dsn: str, key_file: str) -> None:
    """``bankhub serve`` with ``BANKHUB_LOG_FORMAT=json``: the command line's own text handler
    and uvicorn's are replaced, so every line on stderr — start-up, requests, shutdown — is JSON."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    env.update(
        BANKHUB_DATABASE_URL=dsn, BANKHUB_KEY_FILE=key_file, BANKHUB_PORT=str(port), BANKHUB_LOG_FORMAT="json",
        BANKHUB_NODE_NAME="serve-json",
    )
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("bankhub")), "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await poll_ready(http, 600)
            r = await http.post("/v1/sessions", json={"username": "c.li", "password": "not-the-password-4711"})
            assert r.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines and all(REQUIRED <= line.keys() and line["node"] == "serve-json" for line in lines)
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's start-up lines too
    (access,) = [line for line in lines if line["logger"] == "bankhub.access" and "/v1/sessions" in line["event"]]
    assert access["request_id"] == r.headers["x-request-id"]
    assert "not-the-password-4711" not in err.decode()


def test_the_documented_keys_are_the_keys_a_line_can_have() -> None:
    import re

    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = operations.split("### Log lines", 1)[1].split("No other key is ever written", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert documented == list(logs._KEYS)
