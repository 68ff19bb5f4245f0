"""The signed eDiscovery export end to end: real gateway, Postgres, blob store and audit chain.

c.li and rm.wang chat (an edit, a recall, a picture, a group c.zhang joins later); co.sun
requests an export for custodian c.li, cannot approve it herself; co.qian approves; the node
builds it; co.sun downloads it; it verifies offline (the function and `bankhub export verify`),
and holds what the issue asks: originals of edits and recalls, the picture's bytes, members at
the time of each message. Keywords narrow it; every step is audited in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub.actions import exports as export_actions
from bankhub.actions.errors import ActionError
from bankhub.compliance import export_format as fmt
from bankhub.crypto.signing import SigningKey, b64url, unb64url
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.alerts import card_debit, register, signed
from ..support.media_files import png_bytes
from ..support.wsclient import RawClient
from .test_audit import bankhub


def _http(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}, timeout=30)


async def _send(c: RawClient, conv: str, text: str) -> dict[str, Any]:
    return await c.expect("sent", frame_id=await c.send_text(conv, text))


async def _ready(http: httpx.AsyncClient, export_id: str) -> dict[str, Any]:
    for _ in range(300):
        r = await http.get(f"/v1/compliance/exports/{export_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] in ("ready", "failed"):
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the export never finished")


async def _chat(node: RunningNode) -> dict[str, Any]:
    """The conversations the export covers; returns what the test checks against."""
    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, wang_token)
    try:
        asked = await _send(li, conv, "I want a REFUND of the ¥2,000 charge")
        promise = await _send(wang, conv, "we guarantee you get it all back")
        edited = await wang.request(
            {"type": "edit", "conversation_id": conv, "message_id": promise["message_id"], "client_msg_id": "e-1",
             "body": {"kind": "text", "text": "we will look into it"}}
        )
        assert edited["type"] == "sent", edited
        oops = await _send(li, conv, "my PIN is 4321, sorry")
        recalled = await li.request({"type": "recall", "conversation_id": conv, "message_id": oops["message_id"]})
        assert recalled["type"] == "sent", recalled
        picture = png_bytes(48, 32)
        async with _http(node, li_token) as http:
            up = await http.post(f"/v1/conversations/{conv}/media", content=picture, headers={"content-type": "image/png"})
            assert up.status_code == 201, up.text
            media_id = up.json()["media_id"]
        shared = await li.request(
            {"type": "send", "conversation_id": conv, "client_msg_id": "pic-1", "body": {"kind": "image", "media_id": media_id, "caption": "the receipt"}}
        )
        assert shared["type"] == "sent", shared
        # a group: rm.wang with c.li, then c.zhang joins later
        async with _http(node, wang_token) as http:
            g = await http.post("/v1/groups", json={"title": "Li family account", "members": ["c.li"]})
            assert g.status_code == 201, g.text
            group = g.json()["conversation_id"]
            before = await _send(wang, group, "welcome to the family account group")
            await asyncio.sleep(0.01)
            joined = await http.post(f"/v1/groups/{group}/members", json={"members": ["c.zhang"]})
            assert joined.status_code == 200, joined.text
        await asyncio.sleep(0.01)
        after = await _send(wang, group, "c.zhang joins us for the refund question")
    finally:
        await li.close()
        await wang.close()
    return {
        "conv": conv, "group": group, "asked": asked, "promise": promise, "oops": oops, "media_id": media_id,
        "picture": picture, "before": before, "after": after,
    }


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


async def test_an_export_is_requested_approved_by_a_second_officer_built_downloaded_and_verifies(
    node: RunningNode, dsn: str, tmp_path: Path
) -> None:
    chat = await _chat(node)
    # c.li's alert (a calling system's) and a notice of an account she follows (ho.admin publishes)
    alert = await signed(node, await register(node), "POST", "/v1/notifications", card_debit("c.li"))
    assert alert.status_code == 201, alert.text
    async with _http(node, await login(node, "ho.admin")) as admin:
        account = (await admin.get("/v1/accounts", params={"q": "bank.service"})).json()["accounts"][0]["id"]
        notice = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "Branch hours change on Friday"}})
        assert notice.status_code == 201, notice.text
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    wang = _http(node, await login(node, "rm.wang"))
    try:
        body = {"custodians": ["c.li"], "reason": "regulatory_request", "case_ref": "CASE-2026-0099"}
        # only compliance officers
        denied = await wang.post("/v1/compliance/exports", json=body)
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        assert (await wang.get("/v1/compliance/exports")).status_code == 403
        r = await sun.post("/v1/compliance/exports", json=body)
        assert r.status_code == 201, r.text
        export = r.json()
        eid = export["export_id"]
        assert export["state"] == "pending_approval" and export["requested_by"] == "co.sun" and export["approved_by"] is None
        assert export["scope"]["custodians"][0]["username"] == "c.li"
        # not ready: nothing to download
        early = await sun.get(f"/v1/compliance/exports/{eid}/download")
        assert early.status_code == 409 and early.json()["code"] == "not_ready"
        # dual control: the requester cannot approve
        own = await sun.post(f"/v1/compliance/exports/{eid}/approve")
        assert own.status_code == 403 and own.json()["code"] == "forbidden"
        assert (await wang.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 403
        ok = await qian.post(f"/v1/compliance/exports/{eid}/approve")
        assert ok.status_code == 202, ok.text
        assert ok.json()["approved_by"] == "co.qian"
        again = await qian.post(f"/v1/compliance/exports/{eid}/approve")
        assert again.status_code == 409 and again.json()["code"] == "conflict", again.text
        done = await _ready(sun, eid)
        assert done["state"] == "ready", done
        assert done["progress"]["done"] == done["progress"]["total"] > 0
        listed = (await sun.get("/v1/compliance/exports")).json()
        assert [e["export_id"] for e in listed["exports"]] == [eid] and listed["next_cursor"] is None
        # neither requester nor approver: no download, even as an officer is checked by role first
        assert (await wang.get(f"/v1/compliance/exports/{eid}/download")).status_code == 403
        got = await sun.get(f"/v1/compliance/exports/{eid}/download")
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/zip"
        assert got.headers["content-disposition"] == f'attachment; filename="bankhub-export-{eid}.zip"'
        data = got.content
    finally:
        for c in (sun, qian, wang):
            await c.aclose()

    # the signature and every digest verify; the signer is the hub's published key
    async with httpx.AsyncClient(base_url=node.http_url) as anon:
        jwks = (await anon.get("/v1/signing-keys")).json()
    active = jwks["keys"][0]
    result = fmt.verify_export(data, public_key=unb64url(active["x"]))
    assert result.ok, result.problems
    assert result.key_id == active["kid"] and result.counts["messages"] >= 7
    assert hashlib.sha256(data).hexdigest() == done["sha256"] and len(data) == done["bytes"]

    # the CLI verifies it offline (no database), pinned to the published key too
    path = tmp_path / "export.zip"
    path.write_bytes(data)
    jwk_file = tmp_path / "keys.json"
    jwk_file.write_text(json.dumps(jwks))
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(path), "--key", str(jwk_file))
    assert code == 0, out
    assert "OK" in out and active["kid"] in out and fmt.key_fingerprint(unb64url(active["x"])) in out
    # pinned to the hub itself (--hub fetches its /v1/signing-keys)
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(path), "--hub", node.http_url)
    assert code == 0 and "OK" in out and "authenticated" in out, out
    # not pinned: consistent, but the signer is NOT authenticated (exit 2), never "OK"
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(path))
    assert code == 2 and "NOT AUTHENTICATED" in out and "OK" not in out, out
    # a forger's export, consistent under the forger's own key: exit 2 unpinned, 1 once pinned
    forger = SigningKey("sig-forged", b"\x09" * 32)
    forged_files = dict(_files(data))
    forged_files.pop(fmt.MANIFEST)
    forged_files.pop(fmt.SIGNATURE)
    forged_files["messages.jsonl"] = forged_files["messages.jsonl"].replace(b"REFUND", b"REFUSE")
    manifest = json.loads(_files(data)[fmt.MANIFEST])
    manifest.update(
        key_id=forger.key_id, public_key=b64url(forger.public_key),
        files=[{"path": n, "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in sorted(forged_files.items())],
    )
    manifest_bytes = json.dumps(manifest).encode()
    sig = forger.sign(fmt.manifest_payload(manifest_bytes))
    forged = tmp_path / "forged.zip"
    forged.write_bytes(
        fmt.write_zip([(fmt.MANIFEST, manifest_bytes), (fmt.SIGNATURE, json.dumps({"alg": "Ed25519", **sig}).encode()), *sorted(forged_files.items())])
    )
    assert fmt.verify_export(forged).ok and not fmt.verify_export(forged).authenticated
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(forged))
    assert code == 2 and "NOT AUTHENTICATED" in out, out
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(forged), "--key", str(jwk_file))
    assert code == 1, out
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(forged), "--hub", node.http_url)
    assert code == 1 and "publishes no key sig-forged" in out, out
    wrong = b64url(b"\x05" * 32)
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(path), "--key", wrong)
    assert code == 1 and "the manifest's public key is not the pinned key" in out, out
    files = _files(data)
    tampered = dict(files)
    tampered["messages.jsonl"] = files["messages.jsonl"].replace(b"REFUND", b"REFUSE")
    bad = tmp_path / "tampered.zip"
    bad.write_bytes(fmt.write_zip(tampered.items()))
    code, out = await bankhub("postgresql://nowhere.invalid/none", "export", "verify", str(bad))
    assert code == 1 and "digest differs: messages.jsonl" in out, out

    # the contents
    msgs = {m["message_id"]: m for m in fmt.open_jsonl(files["messages.jsonl"])}
    asked = msgs[chat["asked"]["message_id"]]
    assert asked["body"] == {"kind": "text", "text": "I want a REFUND of the ¥2,000 charge"}
    assert asked["sender"]["username"] == "c.li" and asked["sender"]["role"] == "customer"
    promise = msgs[chat["promise"]["message_id"]]
    assert promise["body"]["text"] == "we will look into it" and promise["edited_at"]
    assert [(r["kind"], r["replaced"]) for r in promise["revisions"]] == [("edit", {"kind": "text", "text": "we guarantee you get it all back"})]
    oops = msgs[chat["oops"]["message_id"]]
    assert oops["body"] == {"kind": "recalled"}
    assert [(r["kind"], r["replaced"]["text"]) for r in oops["revisions"]] == [("recall", "my PIN is 4321, sorry")]
    [picture] = [m for m in msgs.values() if m["kind"] == "image"]
    [attachment] = picture["attachments"]
    assert attachment["media_id"] == chat["media_id"] and files[attachment["path"]][:8] == b"\x89PNG\r\n\x1a\n"
    before, after = msgs[chat["before"]["message_id"]], msgs[chat["after"]["message_id"]]
    assert sorted(s["username"] for s in before["members_at_send"]) == ["c.li", "rm.wang"]
    assert sorted(s["username"] for s in after["members_at_send"]) == ["c.li", "c.zhang", "rm.wang"]
    convs = {c["conversation_id"]: c for c in fmt.open_jsonl(files["conversations.jsonl"])}
    assert set(convs) == {chat["conv"], chat["group"]}
    assert convs[chat["group"]]["title"] == "Li family account"
    assert "c.zhang" in [s["username"] for s in convs[chat["group"]]["membership"]]
    notices = fmt.open_jsonl(files["notices.jsonl"])
    assert [(n["username"], n["body"]["text"]) for n in notices] == [("c.li", "Branch hours change on Friday")]
    assert notices[0]["signature"]["key_id"] == active["kid"]
    alerts = fmt.open_jsonl(files["alerts.jsonl"])
    assert len(alerts) == 1 and alerts[0]["user_id"] == asked["sender"]["user_id"] and "Coffee Lab" in alerts[0]["body"]
    eml = email.message_from_bytes(files[f"conversations/{chat['conv']}.eml"], policy=email.policy.default)
    text = eml.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "I want a REFUND of the ¥2,000 charge" in text and "before: my PIN is 4321, sorry" in text
    # the picture by reference (RFC 2046 external-body): its path in the zip, never a second copy
    [ref] = list(eml.iter_attachments())
    assert ref.get_content_type() == "message/external-body" and ref.get_param("name") == attachment["path"]
    assert [p.get_content_type() for p in ref.iter_parts()] == ["image/png"]

    # audited from request to download, in order, in the chain
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT action, actor, details FROM audit_log WHERE target = $1 ORDER BY seq", f"export:{eid}"
        )
        stored = await conn.fetchrow("SELECT blob_key, chunks, kek_id, wrapped_dek FROM exports WHERE id = $1", uuid.UUID(eid))
    finally:
        await conn.close()
    assert stored is not None
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("export.requested", "co.sun"),
        ("export.approved", "co.qian"),
        ("export.started", "system"),
        ("export.completed", "system"),
        ("export.downloaded", "co.sun"),
    ]
    completed = json.loads(rows[3]["details"])
    assert completed["sha256"] == done["sha256"] and completed["bytes"] == len(data)
    # this build's own place: exports/<id>/<build token>/<n>, one blob per sealed chunk
    assert stored["blob_key"].startswith(f"exports/{eid}/") and stored["chunks"] >= 1 and stored["wrapped_dek"]
    # sealed at rest: the blob store never holds the zip's plaintext
    sealed = b"".join([await node.hub.media.blobs.get(f"{stored['blob_key']}/{i:08d}") for i in range(stored["chunks"])])
    assert b"REFUND" not in sealed and b"manifest.json" not in sealed and len(sealed) > len(data)


async def test_keywords_narrow_the_scope_and_requests_are_checked(node: RunningNode, dsn: str, tmp_path: Path) -> None:
    chat = await _chat(node)
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    try:
        bad = [
            {"reason": "regulatory_request"},  # no custodian, no conversation
            {"custodians": ["c.li"], "reason": "curiosity"},
            {"custodians": ["c.li"], "reason": "regulatory_request", "keywords": [""]},
            {"custodians": ["c.li"], "reason": "regulatory_request", "keywords": ["x" * 65]},
            {"custodians": ["c.li"], "reason": "regulatory_request", "keywords": ["k"] * 21},
            {"custodians": [f"u{i:02d}" for i in range(51)], "reason": "regulatory_request"},
            {"conversation_ids": [str(uuid.uuid4()) for _ in range(201)], "reason": "regulatory_request"},
            {"custodians": ["c.li"], "reason": "regulatory_request", "from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
            {"custodians": ["c.li"], "reason": "regulatory_request", "from": "2026-12-02T00:00:00"},  # no offset
            {"custodians": ["c.li"], "reason": "regulatory_request", "from": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
            {"custodians": ["c.li"], "reason": "regulatory_request", "extra": 1},
        ]
        for body in bad:
            r = await sun.post("/v1/compliance/exports", json=body)
            assert r.status_code in (400, 422) and r.json()["code"] == "invalid_request", (body, r.text)
        assert (await sun.post("/v1/compliance/exports", json={"custodians": ["nobody.here"], "reason": "internal_audit"})).status_code == 404
        # keywords: only messages containing one (any case), in the current text or an original
        r = await sun.post(
            "/v1/compliance/exports",
            json={"conversation_ids": [chat["conv"], chat["group"]], "keywords": ["refund", "PIN is"], "reason": "fraud_investigation"},
        )
        assert r.status_code == 201, r.text
        eid = r.json()["export_id"]
        # the requester may withdraw a second one
        other = (await sun.post("/v1/compliance/exports", json={"custodians": ["c.li"], "reason": "internal_audit"})).json()["export_id"]
        withdrawn = await sun.post(f"/v1/compliance/exports/{other}/reject")
        assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "rejected"
        assert (await qian.post(f"/v1/compliance/exports/{other}/approve")).status_code == 409
        assert (await sun.get(f"/v1/compliance/exports/{other}/download")).json()["code"] == "not_ready"
        assert (await qian.get(f"/v1/compliance/exports/{other}/download")).json()["code"] == "forbidden"  # neither requester nor approver
        assert (await qian.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 202
        assert (await _ready(qian, eid))["state"] == "ready"
        # the approver may download too
        data = (await qian.get(f"/v1/compliance/exports/{eid}/download")).content
        # the list pages with a cursor, newest first
        seen, cursor = [], None
        while True:
            page = (await sun.get("/v1/compliance/exports", params={"limit": 1, **({"cursor": cursor} if cursor else {})})).json()
            seen += [e["export_id"] for e in page["exports"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [other, eid]
        assert (await sun.get("/v1/compliance/exports", params={"cursor": "bm90IGEgY3Vyc29y"})).status_code == 400
        # the copy at rest is sealed: a changed byte is refused, never served
        row = await node.hub.exports.get(eid)
        assert row is not None and row.blob_key is not None
        blob_key = f"{row.blob_key}/00000000"
        sealed = bytearray(await node.hub.media.blobs.get(blob_key))
        sealed[20] ^= 1
        await node.hub.media.blobs.put(blob_key, bytes(sealed))
        damaged = await qian.get(f"/v1/compliance/exports/{eid}/download")
        assert damaged.status_code == 410 and damaged.json()["code"] == "gone"
    finally:
        await sun.aclose()
        await qian.aclose()
    assert fmt.verify_export(data).ok
    files = _files(data)
    texts = sorted(m["message_id"] for m in fmt.open_jsonl(files["messages.jsonl"]))
    assert texts == sorted([chat["asked"]["message_id"], chat["oops"]["message_id"], chat["after"]["message_id"]])
    assert not any(n.startswith("attachments/") for n in files)


async def _approve_without_building(node: RunningNode, export_id: str, approver: str = "co.qian") -> None:
    """What the HTTP approval does, minus the node's own build: the CLI then builds it."""
    user = await node.hub.users.by_username(approver)
    assert user is not None
    await export_actions.approve_export(export_actions.ExportDeps.from_hub(node.hub), user, export_id, None, build=False)


async def test_the_cli_requests_and_runs_with_progress_but_never_approves(node: RunningNode, dsn: str, key_file: str, tmp_path: Path) -> None:
    chat = await _chat(node)
    code, out = await bankhub(dsn, "export", "request", "--file", key_file, "--as", "co.sun", "--conversation", chat["conv"], "--reason", "internal_audit")
    assert code == 0, out
    eid = out.split()[0]
    # dual control: the command line names its officer, so it never gives the second officer's approval
    for who in ("co.sun", "co.qian"):
        code, out = await bankhub(dsn, "export", "approve", eid, "--file", key_file, "--as", who)
        assert code == 1 and "compliance console" in out and "cannot approve" in out, out
    code, out = await bankhub(dsn, "export", "run", eid, "--file", key_file, "--as", "co.sun", "--out", str(tmp_path / "x.zip"))
    assert code == 1 and "only an approved export" in out, out
    sun = _http(node, await login(node, "co.sun"))
    try:
        assert (await sun.get(f"/v1/compliance/exports/{eid}")).json()["state"] == "pending_approval"
    finally:
        await sun.aclose()
    await _approve_without_building(node, eid)
    # `run` needs --as: the requester or the approver, nobody else
    code, out = await bankhub(dsn, "export", "run", eid, "--file", key_file, "--out", str(tmp_path / "x.zip"))
    assert code == 2 and "--as" in out, out
    for who in ("rm.wang", "ho.admin"):
        code, out = await bankhub(dsn, "export", "run", eid, "--file", key_file, "--as", who, "--out", str(tmp_path / "x.zip"))
        assert code == 1 and not (tmp_path / "x.zip").exists(), out
    code, out = await bankhub(dsn, "export", "run", eid, "--file", key_file, "--as", "co.sun", "--out", str(tmp_path / "x.zip"))
    assert code == 0, out
    assert "100%" in out and "#" * 30 in out
    assert fmt.verify_export(tmp_path / "x.zip").ok
    built = (tmp_path / "x.zip").read_bytes()
    # a ready export is never rebuilt: the same bytes for every download
    code, out = await bankhub(dsn, "export", "run", eid, "--file", key_file, "--as", "co.qian", "--out", str(tmp_path / "z.zip"))
    assert code == 1 and "never rebuilt" in out and not (tmp_path / "z.zip").exists(), out
    code, out = await bankhub(dsn, "export", "download", eid, "--file", key_file, "--as", "rm.wang", "--out", str(tmp_path / "y.zip"))
    assert code == 1, out
    code, out = await bankhub(dsn, "export", "download", eid, "--file", key_file, "--as", "co.qian", "--out", str(tmp_path / "y.zip"))
    assert code == 0, out
    assert (tmp_path / "y.zip").read_bytes() == built
    code, out = await bankhub(dsn, "export", "list", "--file", key_file, "--as", "co.sun")
    assert code == 0 and eid in out and "ready" in out
    code, out = await bankhub(dsn, "export", "list", "--file", key_file, "--as", "co.sun", "--limit", "0")
    assert code == 2 and "--limit" in out, out
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT action, actor, details FROM audit_log WHERE target = $1 ORDER BY seq", f"export:{eid}")
    finally:
        await conn.close()
    trail = [(r["action"], r["actor"]) for r in rows]
    assert trail[:2] == [("export.requested", "co.sun"), ("export.approved", "co.qian")]
    # the file `run` wrote is a download, audited as one: who, via the command line, which bytes
    downloads = [(r["actor"], json.loads(r["details"])) for r in rows if r["action"] == "export.downloaded"]
    assert [a for a, _ in downloads] == ["co.sun", "co.qian"]
    for _, details in downloads:
        assert details["via"] == "cli" and details["os_user"] and details["sha256"] == hashlib.sha256(built).hexdigest()
    requested = json.loads(rows[0]["details"])
    assert requested["via"] == "cli" and requested["os_user"]
    assert "via" not in json.loads(rows[1]["details"])  # the approval came from a signed-in officer


async def test_run_here_writes_the_stored_chunks_one_at_a_time_and_audits_before_the_file_appears(
    node: RunningNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bankhub export run`` never holds the whole zip: each stored chunk is opened and written
    before the next is read; the file appears at ``--out`` only once the download is audited."""
    chat = await _chat(node)
    async with _http(node, await login(node, "co.sun")) as sun:
        r = await sun.post("/v1/compliance/exports", json={"conversation_ids": [chat["conv"]], "reason": "internal_audit"})
        assert r.status_code == 201, r.text
        eid = r.json()["export_id"]
    await _approve_without_building(node, eid)
    # small chunks, so this zip is stored as many of them
    monkeypatch.setattr(export_actions, "CHUNK_BYTES", 1024)
    out = tmp_path / "x.zip"
    read: list[tuple[int, int, int]] = []  # (chunk index, bytes already on disk when it was read, its size)
    real_read_chunk = export_actions._read_chunk

    async def read_chunk(deps: Any, row: Any, key: Any, index: int, count: int) -> bytes:
        partial = list(tmp_path.glob(".x.zip.*.part"))
        on_disk = partial[0].stat().st_size if len(partial) == 1 else -1
        assert not out.exists() and not await _downloads(node, eid)
        chunk = await real_read_chunk(deps, row, key, index, count)
        read.append((index, on_disk, len(chunk)))
        return chunk

    monkeypatch.setattr(export_actions, "_read_chunk", read_chunk)
    deps = export_actions.ExportDeps.from_hub(node.hub)
    sun_user = await node.hub.users.by_username("co.sun")
    assert sun_user is not None
    row = await export_actions.run_here(deps, sun_user, eid, out, via={"via": "cli", "os_user": "tester"})
    data = out.read_bytes()
    assert fmt.verify_export(out).ok and len(data) == row.size and hashlib.sha256(data).hexdigest() == row.sha256
    assert row.chunks is not None and row.chunks >= 3 and [i for i, _, _ in read] == list(range(row.chunks))
    # chunk n is read only once chunks 0..n-1 are on disk: one chunk in memory at a time
    assert [on_disk for _, on_disk, _ in read] == [sum(size for _, _, size in read[:n]) for n in range(len(read))], read
    assert [p.name for p in tmp_path.iterdir()] == ["x.zip"] and out.stat().st_mode & 0o777 == 0o600
    downloads = await _downloads(node, eid)
    assert [(d["actor"], d["details"]["sha256"], d["details"]["via"]) for d in downloads] == [("co.sun", row.sha256, "cli")]


async def _downloads(node: RunningNode, eid: str) -> list[dict[str, Any]]:
    rows = [r for r in await node.hub.audit.recent(limit=200, action="export.downloaded") if r.target == f"export:{eid}"]
    return [{"actor": r.actor, "details": dict(r.details)} for r in rows]


async def test_requests_are_checked_once_for_every_caller(node: RunningNode, dsn: str, key_file: str) -> None:
    chat = await _chat(node)
    sun = _http(node, await login(node, "co.sun"))
    try:
        base = {"conversation_ids": [chat["conv"]], "reason": "fraud_investigation"}
        for word in ("6222 0212 3456 7890 128", "11010519491231002X", "6217000010001234567"):
            r = await sun.post("/v1/compliance/exports", json={**base, "keywords": ["refund", word]})
            assert r.status_code == 422 and r.json()["code"] == "sensitive_data", r.text
            assert "/v1/compliance/dlp/search" in r.json()["detail"] and word not in r.text
        r = await sun.post("/v1/compliance/exports", json={**base, "keywords": ["re\u0007fund"]})
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
        r = await sun.post("/v1/compliance/exports", json={**base, "case_ref": "C" * 129})
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
        listed = (await sun.get("/v1/compliance/exports")).json()["exports"]
        assert listed == []  # nothing was filed
    finally:
        await sun.aclose()
    # the command line goes through the same checks (in the action)
    req = ("export", "request", "--file", key_file, "--as", "co.sun", "--conversation", chat["conv"], "--reason", "internal_audit")
    code, out = await bankhub(dsn, *req, "--keyword", "6222 0212 3456 7890 128")
    assert code == 1 and "/v1/compliance/dlp/search" in out and "6222 0212" not in out, out
    code, out = await bankhub(dsn, *req, "--keyword", "re\x1bfund")
    assert code == 1 and "control characters" in out, out
    code, out = await bankhub(dsn, *req, "--case-ref", "C" * 129)
    assert code == 1 and "case_ref is at most 128 characters" in out, out
    code, out = await bankhub(dsn, *req, "--case-ref", "CASE\n2")
    assert code == 1 and "case_ref" in out, out
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM exports") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'export.requested'") == 0
    finally:
        await conn.close()


async def test_a_build_over_the_bounds_fails_with_a_safe_error_and_is_audited(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(export_max_messages=2)
    chat = await _chat(node)
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    try:
        eid = (await sun.post("/v1/compliance/exports", json={"conversation_ids": [chat["conv"]], "reason": "internal_audit"})).json()["export_id"]
        assert (await qian.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 202
        failed = await _ready(sun, eid)
        assert failed["state"] == "failed" and failed["bytes"] is None and failed["sha256"] is None
        assert failed["error"].startswith("too many messages in scope") and "BANKHUB_EXPORT_MAX_MESSAGES" in failed["error"]
        r = await sun.get(f"/v1/compliance/exports/{eid}/download")
        assert r.status_code == 409 and r.json()["code"] == "not_ready"
    finally:
        await sun.aclose()
        await qian.aclose()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT action, details FROM audit_log WHERE target = $1 ORDER BY seq", f"export:{eid}")
    finally:
        await conn.close()
    assert [r["action"] for r in rows] == ["export.requested", "export.approved", "export.started", "export.failed"]
    assert json.loads(rows[-1]["details"])["error"] == failed["error"]
    # the row says what failed and where, in fixed words, and nothing else
    assert json.loads(rows[-1]["details"]) == {"error": failed["error"], "by": f"node {node.hub.settings.node_name}"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def test_nothing_outside_the_scope_is_exported(node: RunningNode) -> None:
    """Another custodian's conversation, a non-custodian member's other conversation and
    messages before ``from`` or at/after ``to`` are absent, from every file."""
    li_t, zhou_t, zhang_t = await login(node, "c.li"), await login(node, "c.zhou"), await login(node, "c.zhang")
    conv = await open_direct(node, li_t, "rm.wang")
    other = await open_direct(node, zhou_t, "rm.chen")
    elsewhere = await open_direct(node, zhang_t, "rm.wang")
    li, zhou, zhang = [await RawClient.connect(node.ws_url, t) for t in (li_t, zhou_t, zhang_t)]
    try:
        await _send(li, conv, "sent too early")
        await asyncio.sleep(0.1)
        since = _now()
        await asyncio.sleep(0.1)
        inside = await _send(li, conv, "inside the range")
        await _send(zhou, other, "another custodian speaks")
        await _send(zhang, elsewhere, "not a custodian speaks")
        await asyncio.sleep(0.1)
        until = _now()
        await asyncio.sleep(0.1)
        await _send(li, conv, "sent too late")
    finally:
        for c in (li, zhou, zhang):
            await c.close()
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    try:
        body = {"custodians": ["c.li"], "from": since.isoformat(), "to": until.isoformat(), "reason": "internal_audit"}
        eid = (await sun.post("/v1/compliance/exports", json=body)).json()["export_id"]
        assert (await qian.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 202
        assert (await _ready(sun, eid))["state"] == "ready"
        data = (await sun.get(f"/v1/compliance/exports/{eid}/download")).content
    finally:
        await sun.aclose()
        await qian.aclose()
    files = _files(data)
    assert [m["message_id"] for m in fmt.open_jsonl(files["messages.jsonl"])] == [inside["message_id"]]
    assert [c["conversation_id"] for c in fmt.open_jsonl(files["conversations.jsonl"])] == [conv]
    assert sorted(n for n in files if n.startswith("conversations/")) == [f"conversations/{conv}.eml"]
    for name, content in files.items():
        for absent in (b"too early", b"too late", b"another custodian", b"not a custodian", other.encode(), elsewhere.encode()):
            assert absent not in content, (name, absent)


async def test_an_approval_decides_on_both_officers_as_they_are_when_it_commits(node: RunningNode, dsn: str) -> None:
    li_t = await login(node, "c.li")
    conv = await open_direct(node, li_t, "rm.wang")
    sun = _http(node, await login(node, "co.sun"))
    try:
        r = await sun.post("/v1/compliance/exports", json={"conversation_ids": [conv], "reason": "internal_audit"})
        assert r.status_code == 201, r.text
        eid = r.json()["export_id"]
    finally:
        await sun.aclose()
    deps = export_actions.ExportDeps.from_hub(node.hub)
    qian = await node.hub.users.by_username("co.qian")  # as a session holds it: read before what follows
    assert qian is not None
    conn = await asyncpg.connect(dsn)
    try:
        # the requester is being demoted while the approval runs: the approval waits for that
        # change and decides on it (never on a copy read before)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE users SET role = 'staff' WHERE username = 'co.sun'")
        approving = asyncio.create_task(export_actions.approve_export(deps, qian, eid, None, build=False))
        await asyncio.sleep(0.5)
        assert not approving.done()
        await tx.commit()
        with pytest.raises(ActionError) as refused:
            await asyncio.wait_for(approving, 10)
        assert refused.value.code == "conflict" and "no longer an active compliance officer" in str(refused.value)
        await conn.execute("UPDATE users SET role = 'compliance' WHERE username = 'co.sun'")
        # the approver disabled after signing in: refused by the deciding transaction itself
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'co.qian'")
        with pytest.raises(ActionError) as refused:
            await export_actions.approve_export(deps, qian, eid, None, build=False)
        assert refused.value.code == "forbidden"
        await conn.execute("UPDATE users SET disabled = false WHERE username = 'co.qian'")
        assert await conn.fetchval("SELECT state FROM exports WHERE id = $1", uuid.UUID(eid)) == "pending_approval"
        assert (await export_actions.approve_export(deps, qian, eid, None, build=False)).state == "running"
    finally:
        await conn.close()


async def test_notices_or_alerts_over_the_bound_fail_the_build(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(export_max_messages=1)
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    admin = _http(node, await login(node, "ho.admin"))
    try:
        since = _now()
        account = (await admin.get("/v1/accounts", params={"q": "bank.service"})).json()["accounts"][0]["id"]
        for text_ in ("Branch hours change on Friday", "New card fees from January"):
            r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": text_}})
            assert r.status_code == 201, r.text
        body = {"custodians": ["c.li"], "from": since.isoformat(), "reason": "internal_audit"}
        eid = (await sun.post("/v1/compliance/exports", json=body)).json()["export_id"]
        assert (await qian.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 202
        failed = await _ready(sun, eid)
        assert failed["state"] == "failed" and failed["error"].startswith("too many notices in scope"), failed
        await asyncio.sleep(0.01)
        since = _now()
        system = await register(node)
        for _ in range(2):
            alert = await signed(node, system, "POST", "/v1/notifications", card_debit("c.li"))
            assert alert.status_code == 201, alert.text
        body = {"custodians": ["c.li"], "from": since.isoformat(), "reason": "internal_audit"}
        eid = (await sun.post("/v1/compliance/exports", json=body)).json()["export_id"]
        assert (await qian.post(f"/v1/compliance/exports/{eid}/approve")).status_code == 202
        failed = await _ready(sun, eid)
        assert failed["state"] == "failed" and failed["error"].startswith("too many alerts in scope"), failed
    finally:
        for c in (sun, qian, admin):
            await c.aclose()


async def test_a_request_past_its_ttl_is_not_approved(nodes: Nodes, dsn: str) -> None:
    node = await nodes.start(export_request_ttl_hours=1)
    conv = await open_direct(node, await login(node, "c.li"), "rm.wang")
    sun, qian = _http(node, await login(node, "co.sun")), _http(node, await login(node, "co.qian"))
    try:
        old, fresh = [
            (await sun.post("/v1/compliance/exports", json={"conversation_ids": [conv], "reason": "internal_audit"})).json()["export_id"]
            for _ in range(2)
        ]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE exports SET created_at = now() - interval '61 minutes' WHERE id = $1", uuid.UUID(old))
        finally:
            await conn.close()
        r = await qian.post(f"/v1/compliance/exports/{old}/approve")
        assert r.status_code == 409 and r.json()["code"] == "conflict" and "expired" in r.json()["detail"], r.text
        assert (await qian.get(f"/v1/compliance/exports/{old}")).json()["state"] == "pending_approval"
        assert (await sun.post(f"/v1/compliance/exports/{old}/reject")).status_code == 200  # it can still be withdrawn
        assert (await qian.post(f"/v1/compliance/exports/{fresh}/approve")).status_code == 202
        # the store gives exactly the rows asked for (the HTTP list adds the one that says more follow)
        sun_user = await node.hub.users.by_username("co.sun")
        assert sun_user is not None
        deps = export_actions.ExportDeps.from_hub(node.hub)
        assert [v.export_id for v, _ in await export_actions.list_exports(deps, sun_user, None, 1)] == [fresh]
    finally:
        await sun.aclose()
        await qian.aclose()
