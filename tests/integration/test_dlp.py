"""Data-loss prevention end to end: real gateway, Postgres, outbox (docs/compliance.md).

A customer's card number reaches the RM masked — live, in history and in the compliance read —
and the sender is told; the RM's card number to a customer is refused ``sensitive_data`` and
nothing is stored; edits are screened like sends; an investigator finds the conversation by the
full card number through the audited search, whose audit row carries no value.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient


def _luhn_complete(partial: str) -> str:
    """``partial`` with the check digit that makes it pass Luhn."""
    for d in "0123456789":
        digits = partial + d
        total = 0
        for i, ch in enumerate(reversed(digits)):
            n = int(ch) * (2 if i % 2 else 1)
            total += n - 9 if n > 9 else n
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


CARD = _luhn_complete("622202123456789")  # 16 digits, passes Luhn
SPACED = " ".join(CARD[i : i + 4] for i in range(0, 16, 4))
MASKED = f"{CARD[:4]} **** **** {CARD[-4:]}"


async def _http(node: RunningNode, username: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, username)}"})


async def _history(node: RunningNode, username: str, conv: str) -> list[dict[str, Any]]:
    async with await _http(node, username) as http:
        r = await http.get(f"/v1/conversations/{conv}/messages", params={"limit": 200})
        assert r.status_code == 200, r.text
        return sorted(r.json()["messages"], key=lambda m: m["seq"])


async def _rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_a_customers_card_number_reaches_the_rm_masked_and_the_sender_is_told(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    assert "dlp" in li.hello["features"]
    sent = await li.expect("sent", frame_id=await li.send_text(conv, f"卡号 {SPACED}，请帮我查一下"))
    # the sender holds what the others see, and why
    assert sent["dlp"] == [{"kind": "card", "masked": MASKED}]
    assert sent["body"] == {"kind": "text", "text": f"卡号 {MASKED}，请帮我查一下"}
    [live] = await wang.messages(1)
    assert live["body"]["text"] == f"卡号 {MASKED}，请帮我查一下"
    for who in ("c.li", "rm.wang"):
        assert [m["body"]["text"] for m in await _history(node, who, conv)] == [f"卡号 {MASKED}，请帮我查一下"]
    async with await _http(node, "co.sun") as http:
        r = await http.get(f"/v1/compliance/conversations/{conv}/messages", params={"reason": "internal_audit"})
        assert r.status_code == 200
        assert [m["body"]["text"] for m in r.json()["messages"]] == [f"卡号 {MASKED}，请帮我查一下"]
    # the fingerprint, never the value, is kept, in the message's transaction
    [row] = await _rows(dsn, "SELECT kind, length(hmac) AS n, conversation_id::text AS c FROM dlp_matches")
    assert (row["kind"], row["n"], row["c"]) == ("card", 32, conv)
    # a text with nothing in it is untouched, and its sent carries no notice
    plain = await li.expect("sent", frame_id=await li.send_text(conv, "call me at +86 138 1234 5678 about ¥1,280.00 on 2026-12-07"))
    assert "dlp" not in plain and "body" not in plain
    await li.close()
    await wang.close()


async def test_staff_sending_a_card_number_to_a_customer_is_refused_and_nothing_is_stored(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    wang = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    err = await wang.expect("error", frame_id=await wang.send_text(conv, f"your new card: {CARD}"))
    assert err["code"] == "sensitive_data"
    assert "card number" in err["message"] and CARD not in err["message"] and CARD[-4:] not in err["message"]
    # a card body is screened too: its title, lines and button labels
    card_body = {"kind": "card", "template": "offer", "title": "您的新卡", "fields": [{"label": "卡号", "value": SPACED}]}
    err = await wang.request({"type": "send", "conversation_id": conv, "client_msg_id": f"k-{uuid.uuid4()}", "body": card_body})
    assert err["type"] == "error" and err["code"] == "sensitive_data"
    # a code, too: staff never send a customer a CVV or a one-time code
    err = await wang.expect("error", frame_id=await wang.send_text(conv, "验证码：482913"))
    assert err["code"] == "sensitive_data" and "one-time code" in err["message"]
    assert await _history(node, "c.li", conv) == []
    assert await _rows(dsn, "SELECT 1 FROM messages WHERE conversation_id = $1", uuid.UUID(conv)) == []
    refused = await _rows(dsn, "SELECT kind, direction, refused FROM dlp_refusals ORDER BY kind")
    assert [(r["kind"], r["direction"], r["refused"]) for r in refused] == [
        ("card", "staff_to_customer", 2), ("otp", "staff_to_customer", 1)
    ]
    # what carries nothing sensitive still goes through
    await wang.expect("sent", frame_id=await wang.send_text(conv, "your card ending 7890 is on its way"))
    await wang.close()


async def test_edits_are_screened_like_sends(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    wang = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    mine = await li.expect("sent", frame_id=await li.send_text(conv, "my card is below"))
    edit = {
        "type": "edit", "conversation_id": conv, "message_id": mine["message_id"],
        "client_msg_id": f"e-{uuid.uuid4()}", "body": {"kind": "text", "text": f"my card is {CARD}"},
    }
    sent = await li.request(edit)
    assert sent["type"] == "sent" and sent["dlp"] == [{"kind": "card", "masked": f"{CARD[:4]}********{CARD[-4:]}"}]
    assert sent["body"]["kind"] == "edit" and sent["body"]["body"]["text"] == f"my card is {CARD[:4]}********{CARD[-4:]}"
    history = await _history(node, "rm.wang", conv)
    assert history[0]["body"]["text"] == f"my card is {CARD[:4]}********{CARD[-4:]}"
    assert all(CARD not in str(m) for m in history)
    assert [r["kind"] for r in await _rows(dsn, "SELECT kind FROM dlp_matches")] == ["card"]
    # the RM's edit carrying a card to the customer is refused, the message unchanged
    theirs = await wang.expect("sent", frame_id=await wang.send_text(conv, "noted"))
    err = await wang.request({**edit, "message_id": theirs["message_id"], "client_msg_id": f"e-{uuid.uuid4()}"})
    assert err["type"] == "error" and err["code"] == "sensitive_data"
    assert [m["body"]["text"] for m in await _history(node, "c.li", conv) if m["body"]["kind"] == "text"][-1] == "noted"
    await li.close()
    await wang.close()


async def test_an_investigator_finds_the_conversation_by_the_full_card_number(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    # typed another way (dashes, full-width digits): one card, one fingerprint
    full_width = "".join(chr(ord(c) - ord("0") + ord("０")) for c in CARD)
    first = await li.expect("sent", frame_id=await li.send_text(conv, f"card {'-'.join(SPACED.split())}"))
    second = await li.expect("sent", frame_id=await li.send_text(conv, f"again: {full_width}"))
    await li.expect("sent", frame_id=await li.send_text(conv, "nothing here"))
    async with await _http(node, "co.sun") as http:
        body = {"kind": "card", "value": SPACED, "reason": "fraud_investigation", "case_ref": "CASE-77"}
        r = await http.post("/v1/compliance/dlp/search", json=body)
        assert r.status_code == 200, r.text
        found = r.json()
        assert [m["message_id"] for m in found["matches"]] == [second["message_id"], first["message_id"]]
        assert {m["conversation_id"] for m in found["matches"]} == {conv} and found["next_cursor"] is None
        assert set(found["matches"][0]) == {"conversation_id", "message_id", "seq", "sender_id", "created_at"}
        # pages
        page = await http.post("/v1/compliance/dlp/search", params={"limit": 1}, json=body)
        assert [m["message_id"] for m in page.json()["matches"]] == [second["message_id"]]
        rest = await http.post("/v1/compliance/dlp/search", params={"limit": 1, "cursor": page.json()["next_cursor"]}, json=body)
        assert [m["message_id"] for m in rest.json()["matches"]] == [first["message_id"]]
        # another card, and an invalid one
        other = await http.post("/v1/compliance/dlp/search", json={**body, "value": _luhn_complete("411111111111111")})
        assert other.status_code == 200 and other.json()["matches"] == []
        bad = await http.post("/v1/compliance/dlp/search", json={**body, "value": CARD[:-1] + str((int(CARD[-1]) + 1) % 10)})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_value"
        letters = await http.post("/v1/compliance/dlp/search", json={**body, "value": "6222abcd"})
        assert letters.status_code == 422
        no_reason = await http.post("/v1/compliance/dlp/search", json={**body, "reason": "curiosity"})
        assert no_reason.status_code == 400
        figures = await http.get("/v1/compliance/dlp/figures")
        assert figures.status_code == 200
        assert {k["kind"]: k["masked"] for k in figures.json()["kinds"]}["card"] == 2
    for who in ("rm.wang", "c.li", "ho.admin"):
        async with await _http(node, who) as http:
            r = await http.post("/v1/compliance/dlp/search", json=body)
            assert r.status_code == 403 and r.json()["code"] == "forbidden"
            assert (await http.get("/v1/compliance/dlp/figures")).status_code == 403
    rows = await _rows(dsn, "SELECT actor, target, reason, details::text AS d FROM audit_log WHERE action = 'dlp.searched' ORDER BY seq")
    assert [row["reason"] for row in rows] == ["fraud_investigation"] * 4  # the 4 searches that ran
    assert all(row["actor"] == "co.sun" and row["target"] == "dlp:card" for row in rows)
    for row in rows:
        # neither the value, nor any part of it, nor its fingerprint
        assert CARD not in row["d"] and CARD[4:12] not in row["d"] and "hmac" not in row["d"]
        assert '"case_ref": "CASE-77"' in row["d"] or '"case_ref":"CASE-77"' in row["d"]
    assert '"matches": 2' in rows[0]["d"] or '"matches":2' in rows[0]["d"]
    await li.close()


async def test_kek_rotation_rewraps_the_compliance_key_and_old_fingerprints_still_match(nodes: Any, tmp_path: Any) -> None:
    from bankhub.actions.keys import retire_kek, rotate
    from bankhub.crypto import LocalKeyFile
    from bankhub.crypto.keyring import Keyring
    from bankhub.storage.dlp import DlpKeyStore
    from bankhub.storage.wrapped_secrets import DLP_KEYS, kek_counts

    key_file = LocalKeyFile.create(tmp_path / "keys.json")
    nodes.key_file = str(key_file.path)  # this test's own KEK file: it rotates and retires KEKs
    node = await nodes.start()
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    sent = await li.expect("sent", frame_id=await li.send_text(conv, f"card {CARD}"))
    assert sent["dlp"]
    old = key_file.active_kek_id()
    assert await kek_counts(node.hub.db, DLP_KEYS) == {old: 1}
    key_file.add_key()
    report = await rotate(node.hub.db, key_file, new_kek=False)
    assert report.failed == []
    assert await kek_counts(node.hub.db, DLP_KEYS) == {key_file.active_kek_id(): 1}
    await retire_kek(node.hub.db, key_file, old)
    # a node that never held the key unwraps it under the new KEK: the old fingerprint still matches
    node.hub.dlp = DlpKeyStore(node.hub.db, Keyring(LocalKeyFile(key_file.path)))  # the old KEK is gone from the file
    async with await _http(node, "co.sun") as http:
        r = await http.post("/v1/compliance/dlp/search", json={"kind": "card", "value": CARD, "reason": "internal_audit"})
        assert [m["message_id"] for m in r.json()["matches"]] == [sent["message_id"]]
    await li.close()


async def test_service_desk_notes_and_a_customers_message_to_the_desk_are_masked(node: RunningNode) -> None:
    from ..support.desk import api, token_for
    from .test_service_desk import _desk

    zhao_token = await _desk(node, "agent.zhao", capacity=2, queues=["cards", "general"])
    zhao = await RawClient.connect(node.ws_url, zhao_token)
    li_token = await token_for(node, "c.li")
    li = await RawClient.connect(node.ws_url, li_token)
    async with api(node, li_token) as http:
        session = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()
        sid, conv = session["session_id"], session["conversation_id"]
        await http.post(f"/v1/service/sessions/{sid}/human")
    await zhao.expect("service_assigned")
    sent = await li.expect("sent", frame_id=await li.send_text(conv, f"卡号{CARD}，验证码 482913"))
    assert [d["kind"] for d in sent["dlp"]] == ["card", "otp"]
    async with api(node, zhao_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"], "note": f"customer read out {SPACED}"})
        assert r.status_code == 200, r.text
    async with api(node, await token_for(node, "ho.admin")) as http:  # a supervisor reads the notes
        detail = (await http.get(f"/v1/service/sessions/{sid}")).json()
    assert [n["text"] for n in detail["notes"]] == [f"customer read out {MASKED}"], detail
    await li.close()
    await zhao.close()
