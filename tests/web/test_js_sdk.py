"""The JavaScript SDK (``clients/web/``): its type check, its unit tests and a live chat in Node.

* ``tsc --noEmit`` (JSDoc types, ``checkJs`` + ``strict``) must be clean;
* ``node --test clients/web/test/`` (the pure state machine fed with frames, and the client
  against a fake WebSocket) must pass, and run a sensible number of tests;
* ``clients/web/live/chat.mjs`` (outside ``test/``: ``node --test`` runs every script under a
  ``test`` directory) chats c.li <-> rm.wang on a real node, through forced
  reconnects with sends in flight: every text arrives once, in order, and is stored once;
* the protocol change the browser SDK needed (``sync`` with ``listed_only``, announced in
  ``hello.features``) is checked on the wire.

Node.js (20.10 or later) is required: these tests fail, never skip, without it. The
TypeScript compiler comes from ``clients/web/package-lock.json`` (``npm ci`` when
``node_modules`` is missing).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "clients" / "web"
TSC = WEB / "node_modules" / ".bin" / "tsc"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("the JavaScript SDK tests need Node.js 20.10+ (`node` on PATH)", pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 10):
        pytest.fail(f"the JavaScript SDK tests need Node.js 20.10+, found {version}", pytrace=False)
    return node


@pytest.fixture(scope="module")
def node_bin() -> str:
    """``node``, with ``clients/web/node_modules`` installed from the lock file when missing."""
    node = _node()
    if not os.access(TSC, os.X_OK):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("`npm` is needed once to install the TypeScript compiler (npm ci in clients/web)", pytrace=False)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return node


def test_js_sdk_typechecks(node_bin: str) -> None:
    """The public API's JSDoc types hold under ``tsc --noEmit`` (checkJs, strict)."""
    done = subprocess.run([node_bin, str(TSC), "--noEmit", "-p", str(WEB)], capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stdout.splitlines() if "error TS" in line]
    assert done.returncode == 0 and not errors, "tsc found type errors:\n" + (done.stdout + done.stderr)[-4000:]


def test_js_sdk_unit_tests(node_bin: str) -> None:
    """``node --test clients/web/test/``: the pure state machine and the client on a fake WebSocket."""
    done = subprocess.run([node_bin, "--test", "clients/web/test/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|cancelled) (\d+)$", out, re.MULTILINE)}
    failed = [line for line in out.splitlines() if line.startswith("not ok")]
    assert done.returncode == 0 and counts.get("fail") == 0 and counts.get("cancelled") == 0, (
        f"node --test failed: {failed}\n{out[-6000:]}"
    )
    # the live script is not a unit test, and every unit file ran
    assert counts.get("pass", 0) >= 25, f"only {counts.get('pass')} tests ran:\n{out[-3000:]}"


async def test_js_sdk_live_chat_survives_reconnects(node_bin: str, node: RunningNode) -> None:
    """c.li and rm.wang chat both ways through the SDK in Node on a real node; each is forced
    through a reconnect with sends in flight; nothing is lost or delivered/stored twice."""
    proc = await asyncio.create_subprocess_exec(
        node_bin,
        "--experimental-websocket",
        "--no-warnings",
        str(WEB / "live" / "chat.mjs"),
        cwd=ROOT,
        env={**os.environ, "BANKHUB_URL": node.http_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the live SDK script did not finish in 90 s") from None
    assert proc.returncode == 0, f"live SDK script failed (exit {proc.returncode}):\n{err.decode()[-4000:]}\n{out.decode()[-2000:]}"
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["delivered"] == {"customer": 2, "rm": 7}
    assert result["reconnects"]["customer"] >= 1 and result["reconnects"]["rm"] >= 1


async def test_sync_listed_only_answers_listed_conversations_only(node: RunningNode) -> None:
    """Protocol v1.1: ``sync`` with ``listed_only`` answers only the listed conversations.

    Without the flag an unlisted conversation comes back from seq 1, so a gap fill in one
    conversation rereads every other one the client did not list, and a client with more
    conversations than fit in one frame cannot split its resume over several frames.
    """
    token = await login(node, "rm.wang")
    customer = await login(node, "c.li")
    other = await login(node, "c.zhang")
    li_conv = await open_direct(node, customer, "rm.wang")
    zhang_conv = await open_direct(node, other, "rm.wang")
    for peer_token, cid in ((customer, li_conv), (other, zhang_conv)):
        peer = await RawClient.connect(node.ws_url, peer_token)
        for i in range(2):
            answer = await peer.request({"type": "send", "conversation_id": cid, "client_msg_id": f"k{i}", "body": {"kind": "text", "text": f"m{i}"}})
            assert answer["type"] == "sent", answer
        await peer.ws.close()

    rm = await RawClient.connect(node.ws_url, token)
    try:
        assert "sync.listed_only" in rm.hello.get("features", []), rm.hello
        # the flag: only c.li's conversation, from the cursor given
        listed = await rm.request({"type": "sync", "since": {li_conv: 1}, "listed_only": True})
        assert listed["type"] == "synced", listed
        assert [c["conversation_id"] for c in listed["conversations"]] == [li_conv]
        assert [m["seq"] for m in listed["conversations"][0]["messages"]] == [2]
        # a listed 0 reads from seq 1
        zero = await rm.request({"type": "sync", "since": {zhang_conv: 0}, "listed_only": True})
        assert [c["conversation_id"] for c in zero["conversations"]] == [zhang_conv]
        assert [m["seq"] for m in zero["conversations"][0]["messages"]] == [1, 2]
        # without it (the v1 default, unchanged) the unlisted conversation comes back from seq 1
        plain = await rm.request({"type": "sync", "since": {li_conv: 1}})
        by_id = {c["conversation_id"]: c for c in plain["conversations"]}
        assert zhang_conv in by_id and [m["seq"] for m in by_id[zhang_conv]["messages"]][:2] == [1, 2]
        # a bad flag is refused like any ill-typed field
        bad = await rm.request({"type": "sync", "since": {}, "listed_only": "yes"})
        assert bad["type"] == "error" and bad["code"] == "invalid_frame", bad
    finally:
        await rm.ws.close()
