"""The export build's robustness on the live hub: its lease, interruption and retry, expiry.

Two builds of one export never corrupt the stored copy (each writes its own chunks; the one
that lost its lease is refused at completion and its chunks deleted); a build that stops
(the node shuts down, or it shows no sign of life) is recorded failed ``interrupted`` and
audited, and its requester or approver retries it over HTTP; a ready export expires after
BANKHUB_EXPORT_RETENTION_DAYS (key destroyed, chunks deleted, download 410). Real Postgres,
real blob store, real audit chain; a build is paused with :class:`_PausedBlobs`, the real
blob store whose first write waits until the test lets it go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.actions import exports as export_actions
from bankhub.actions.errors import ActionError
from bankhub.blobs import BlobStore
from bankhub.compliance import export_format as fmt
from bankhub.runner import RunningNode
from bankhub.storage.exports import INTERRUPTED

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


class _PausedBlobs:
    """The node's blob store; its first ``put`` (a build's first sealed chunk) waits for ``go``."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.paused = asyncio.Event()
        self.go = asyncio.Event()
        self._first = True

    async def put(self, key: str, data: bytes) -> None:
        if self._first:
            self._first = False
            self.paused.set()
            await self.go.wait()
        await self.inner.put(key, data)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def close(self) -> None:
        return None


def _http(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}, timeout=30)


def _deps(node: RunningNode, **changes: Any) -> export_actions.ExportDeps:
    return export_actions.ExportDeps.from_hub(node.hub)._replace(**changes)


async def _approved(node: RunningNode) -> str:
    """An approved export of a small chat (c.li and rm.wang), not built yet."""
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        for i in range(3):
            sent = await li.expect("sent", frame_id=await li.send_text(conv, f"about the charge, part {i}"))
            assert sent["type"] == "sent"
    finally:
        await li.close()
    sun, qian = await node.hub.users.by_username("co.sun"), await node.hub.users.by_username("co.qian")
    assert sun is not None and qian is not None
    deps = _deps(node)
    view = await export_actions.request_export(
        deps, sun, custodians=[], conversation_ids=[conv], since=None, until=None, keywords=[], reason="internal_audit",
        case_ref="LEASE-1", ip=None,
    )
    await export_actions.approve_export(deps, qian, view.export_id, None, build=False)
    return view.export_id


async def _sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _trail(dsn: str, export_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await _sql(dsn, "SELECT action, details FROM audit_log WHERE target = $1 ORDER BY seq", f"export:{export_id}")
    return [(r["action"], json.loads(r["details"]) if r["details"] else {}) for r in rows]


async def _download(node: RunningNode, export_id: str, who: str = "co.sun") -> httpx.Response:
    async with _http(node, await login(node, who)) as http:
        return await http.get(f"/v1/compliance/exports/{export_id}/download")


async def _stored_keys(node: RunningNode, prefix: str, chunks: int) -> list[bool]:
    return [await node.hub.media.blobs.exists(f"{prefix}/{i:08d}") for i in range(chunks)]


async def test_two_builds_racing_never_corrupt_the_stored_copy(node: RunningNode, dsn: str) -> None:
    eid = await _approved(node)
    paused = _PausedBlobs(node.hub.media.blobs)
    # build A writes its zip, then stalls at its first sealed chunk
    first = asyncio.create_task(export_actions.build_and_store(_deps(node, blobs=paused), eid, by="build A"))
    await asyncio.wait_for(paused.paused.wait(), 30)
    [row] = await _sql(dsn, "SELECT build_token FROM exports WHERE id = $1", uuid.UUID(eid))
    token_a = str(row["build_token"])
    # while A shows signs of life, a second build is refused
    with pytest.raises(ActionError) as refused:
        await export_actions.build_and_store(_deps(node), eid, by="build B")
    assert refused.value.code == "conflict" and "another build" in refused.value.message
    # A looks dead (no heartbeat for an hour): B takes the lease over and completes
    await _sql(dsn, "UPDATE exports SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(eid))
    ready = await export_actions.build_and_store(_deps(node), eid, by="build B")
    assert ready.state == "ready" and ready.blob_key is not None and ready.blob_key.startswith(f"exports/{eid}/")
    assert token_a not in (ready.blob_key or "")
    # A wakes up: its progress no longer counts, its completion is refused, its chunks are deleted
    assert not await node.hub.exports.progress(eid, token_a, 1, 1)
    paused.go.set()
    with pytest.raises(ActionError) as lost:
        await first
    assert lost.value.code == "conflict" and "took over" in lost.value.message
    assert not any(await _stored_keys(node, f"exports/{eid}/{token_a}", 4))
    after = await node.hub.exports.get(eid)
    assert after is not None and (after.state, after.blob_key, after.sha256) == ("ready", ready.blob_key, ready.sha256)
    # the stored copy is B's, whole: it downloads and verifies
    got = await _download(node, eid)
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == ready.sha256 and fmt.verify_export(got.content).ok
    actions = [a for a, _ in await _trail(dsn, eid)]
    assert actions.count("export.completed") == 1 and actions.count("export.started") == 2


async def test_two_builds_started_at_once_one_wins_and_the_copy_verifies(node: RunningNode, dsn: str) -> None:
    eid = await _approved(node)
    results = await asyncio.gather(
        export_actions.build_and_store(_deps(node), eid, by="one"),
        export_actions.build_and_store(_deps(node), eid, by="two"),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], ActionError) and lost[0].code == "conflict"
    got = await _download(node, eid)
    result = fmt.verify_export(got.content)
    assert got.status_code == 200 and result.ok
    # the row (and export.completed) count what the manifest counts
    row = await node.hub.exports.get(eid)
    assert row is not None and row.counts == result.counts and result.counts["conversations"] == 1


async def test_a_stale_build_is_marked_interrupted_and_its_officers_retry_it(node: RunningNode, dsn: str) -> None:
    eid = await _approved(node)
    # approved, but no build ever claimed it (its node died): stale after BANKHUB_EXPORT_STALE_SECONDS
    await _sql(dsn, "UPDATE exports SET decided_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(eid))
    stale, expired = await export_actions.sweep(_deps(node))
    assert stale == [eid] and expired == []
    row = await node.hub.exports.get(eid)
    assert row is not None and row.state == "failed" and row.error == INTERRUPTED
    assert (await export_actions.sweep(_deps(node))) == ([], [])  # once
    failed = [d for a, d in await _trail(dsn, eid) if a == "export.failed"]
    assert failed == [{"error": INTERRUPTED, "by": f"sweep on node {node.hub.settings.node_name}"}]
    # a fresh one is left alone
    other = await _approved(node)
    assert (await export_actions.sweep(_deps(node)))[0] == []
    assert (await node.hub.exports.get(other)).state == "running"  # type: ignore[union-attr]

    sun, qian, wang = [_http(node, await login(node, u)) for u in ("co.sun", "co.qian", "rm.wang")]
    try:
        assert (await wang.post(f"/v1/compliance/exports/{eid}/retry")).status_code == 403
        r = await sun.post(f"/v1/compliance/exports/{eid}/retry")
        assert r.status_code == 202, r.text
        for _ in range(300):
            state = (await sun.get(f"/v1/compliance/exports/{eid}")).json()
            if state["state"] in ("ready", "failed"):
                break
            await asyncio.sleep(0.05)
        assert state["state"] == "ready" and state["error"] is None, state
        # only from failed
        again = await qian.post(f"/v1/compliance/exports/{eid}/retry")
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        bogus = await sun.post(f"/v1/compliance/exports/{uuid.uuid4()}/retry")
        assert bogus.status_code == 404
        got = await sun.get(f"/v1/compliance/exports/{eid}/download")
        assert got.status_code == 200 and fmt.verify_export(got.content).ok
    finally:
        for c in (sun, qian, wang):
            await c.aclose()
    trail = await _trail(dsn, eid)
    assert [a for a, _ in trail][-5:] == ["export.failed", "export.retried", "export.started", "export.completed", "export.downloaded"]
    rows = await _sql(dsn, "SELECT actor, reason FROM audit_log WHERE target = $1 AND action = 'export.retried'", f"export:{eid}")
    assert [(r["actor"], r["reason"]) for r in rows] == [("co.sun", "internal_audit")]


async def test_a_build_cancelled_at_shutdown_is_recorded_interrupted(node: RunningNode, dsn: str) -> None:
    building, queued = await _approved(node), await _approved(node)
    paused = _PausedBlobs(node.hub.media.blobs)
    deps = _deps(node, blobs=paused)
    node.hub.exports.spawn(export_actions.run_build(deps, building, by="node test"))
    await asyncio.wait_for(paused.paused.wait(), 30)
    # one build per node: the second waits, its row honestly running with no lease yet
    node.hub.exports.spawn(export_actions.run_build(deps, queued, by="node test"))
    await asyncio.sleep(0.2)
    [row] = await _sql(dsn, "SELECT state, build_token, progress_total FROM exports WHERE id = $1", uuid.UUID(queued))
    assert (row["state"], row["build_token"], row["progress_total"]) == ("running", None, 0)
    # what the hub's stop does with the builds running on it
    await node.hub.exports.stop()
    assert not node.hub.exports.tasks
    for eid in (building, queued):
        row_ = await node.hub.exports.get(eid)
        assert row_ is not None and (row_.state, row_.error) == ("failed", INTERRUPTED), eid
        assert [d["error"] for a, d in await _trail(dsn, eid) if a == "export.failed"] == [INTERRUPTED]


async def test_one_build_at_a_time_per_node_and_the_next_follows(node: RunningNode, dsn: str) -> None:
    first, second = await _approved(node), await _approved(node)
    paused = _PausedBlobs(node.hub.media.blobs)
    deps = _deps(node, blobs=paused)
    a = node.hub.exports.spawn(export_actions.run_build(deps, first, by="node test"))
    await asyncio.wait_for(paused.paused.wait(), 30)
    b = node.hub.exports.spawn(export_actions.run_build(deps, second, by="node test"))
    await asyncio.sleep(0.3)
    [row] = await _sql(dsn, "SELECT build_token, started_at FROM exports WHERE id = $1", uuid.UUID(second))
    assert row["build_token"] is None and row["started_at"] is None  # waiting for the slot
    paused.go.set()
    await asyncio.wait_for(asyncio.gather(a, b), 60)
    for eid in (first, second):
        assert (await node.hub.exports.get(eid)).state == "ready"  # type: ignore[union-attr]


async def test_an_export_expires_after_its_retention(node: RunningNode, dsn: str) -> None:
    eid = await _approved(node)
    ready = await export_actions.build_and_store(_deps(node), eid, by="test")
    assert ready.blob_key is not None and ready.chunks
    # not due yet
    assert (await export_actions.sweep(_deps(node)))[1] == []
    days = node.hub.settings.export_retention_days
    await _sql(dsn, "UPDATE exports SET finished_at = now() - make_interval(days => $2) - interval '1 minute' WHERE id = $1", uuid.UUID(eid), days)
    stale, expired = await export_actions.sweep(_deps(node))
    assert expired == [eid]
    [row] = await _sql(dsn, "SELECT state, kek_id, wrapped_dek, expired_at FROM exports WHERE id = $1", uuid.UUID(eid))
    assert row["state"] == "expired" and row["kek_id"] is None and row["wrapped_dek"] is None and row["expired_at"]
    assert not any(await _stored_keys(node, ready.blob_key, ready.chunks))
    got = await _download(node, eid)
    assert got.status_code == 410 and got.json()["code"] == "gone", got.text
    trail = await _trail(dsn, eid)
    assert [a for a, _ in trail][-1] == "export.expired" and trail[-1][1]["retention_days"] == days
    # a shorter retention (bounded) applies to what is older than it
    settings = dataclasses.replace(node.hub.settings, export_retention_days=1)
    other = await _approved(node)
    await export_actions.build_and_store(_deps(node), other, by="test")
    await _sql(dsn, "UPDATE exports SET finished_at = now() - interval '2 days' WHERE id = $1", uuid.UUID(other))
    assert (await export_actions.sweep(_deps(node, settings=settings)))[1] == [other]


async def test_a_damaged_later_chunk_is_refused_before_the_first_byte(node: RunningNode, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bankhub.compliance import export_sealing

    # small chunks: this export is sealed into several, so the damage is past the first one
    monkeypatch.setattr(export_sealing, "CHUNK_BYTES", 512)
    monkeypatch.setattr(export_actions, "CHUNK_BYTES", 512)
    eid = await _approved(node)
    ready = await export_actions.build_and_store(_deps(node), eid, by="test")
    assert ready.blob_key is not None and ready.chunks is not None and ready.chunks >= 3
    whole = await _download(node, eid)
    assert whole.status_code == 200 and fmt.verify_export(whole.content).ok
    last = f"{ready.blob_key}/{ready.chunks - 1:08d}"
    sealed = bytearray(await node.hub.media.blobs.get(last))
    sealed[-1] ^= 1
    await node.hub.media.blobs.put(last, bytes(sealed))
    damaged = await _download(node, eid)
    assert damaged.status_code == 410 and damaged.json()["code"] == "gone", damaged.status_code
    # a missing chunk too
    await node.hub.media.blobs.delete(f"{ready.blob_key}/00000001")
    missing = await _download(node, eid)
    assert missing.status_code == 410 and missing.json()["code"] == "gone"
    # neither was audited as a download
    assert [a for a, _ in await _trail(dsn, eid)].count("export.downloaded") == 1


async def test_a_node_records_its_build_at_shutdown_and_a_starting_node_marks_silent_ones(nodes: Nodes, dsn: str) -> None:
    first = await nodes.start("n1")
    eid = await _approved(first)
    paused = _PausedBlobs(first.hub.media.blobs)
    first.hub.exports.spawn(export_actions.run_build(_deps(first, blobs=paused), eid, by="node n1"))
    await asyncio.wait_for(paused.paused.wait(), 30)
    await first.stop()  # the node's own shutdown cancels the build, which records it
    [row] = await _sql(dsn, "SELECT state, error FROM exports WHERE id = $1", uuid.UUID(eid))
    assert (row["state"], row["error"]) == ("failed", INTERRUPTED)
    # a build whose node vanished without a word: the next node to start marks it
    second = await nodes.start("n2")
    silent = await _approved(second)
    await second.stop()
    await _sql(dsn, "UPDATE exports SET decided_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(silent))
    await nodes.start("n3")
    for _ in range(100):
        [row] = await _sql(dsn, "SELECT state, error FROM exports WHERE id = $1", uuid.UUID(silent))
        if row["state"] != "running":
            break
        await asyncio.sleep(0.05)
    assert (row["state"], row["error"]) == ("failed", INTERRUPTED)
    assert [d["by"] for a, d in await _trail(dsn, silent) if a == "export.failed"] == ["sweep on node n3"]
