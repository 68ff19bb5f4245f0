"""Data-loss prevention on the text paths outside the chat send (docs/compliance.md): group titles
(create and rename, org groups too), an RM's auto-reply, a queue's out-of-hours reply, a CSAT comment, official-account notices (long article
bodies too), a bank system's card; a resent edit returns the masked text; searches by value are
rate-limited per officer; a crypto-shred removes the conversation's fingerprints. Real gateway,
Postgres and Valkey.
"""

from __future__ import annotations

import uuid
from typing import Any

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient
from .test_dlp import CARD, MASKED, SPACED, _http, _rows

COMPACT_MASKED = f"{CARD[:4]}********{CARD[-4:]}"


async def test_a_group_title_is_screened_on_create_and_rename(node: RunningNode, dsn: str) -> None:
    async with await _http(node, "rm.wang") as wang:
        # staff to staff: masked (the default), what every member reads
        r = await wang.post("/v1/groups", json={"title": f"卡 {SPACED}", "members": ["agent.zhao"]})
        assert r.status_code == 201, r.text
        staff_group = r.json()["id"] if "id" in r.json() else r.json()["conversation_id"]
        titles = [t["title"] for t in await _rows(dsn, "SELECT title FROM conversations WHERE id = $1", uuid.UUID(staff_group))]
        assert titles == [f"卡 {MASKED}"]
        # with a customer of the RM's book among the members: staff to customer, refused
        r = await wang.post("/v1/groups", json={"title": f"卡 {SPACED}", "members": ["c.zhang"]})
        assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (422, "application/problem+json", "sensitive_data")
        assert CARD not in r.text and CARD[-4:] not in r.json()["detail"]
        r = await wang.post("/v1/groups", json={"title": "Zhang family", "members": ["c.zhang"]})
        assert r.status_code == 201, r.text
        family = r.json()["id"] if "id" in r.json() else r.json()["conversation_id"]
        r = await wang.put(f"/v1/groups/{family}/title", json={"title": f"OTP 482913 {CARD}"})
        assert (r.status_code, r.json()["code"]) == (422, "sensitive_data")
        assert [t["title"] for t in await _rows(dsn, "SELECT title FROM conversations WHERE id = $1", uuid.UUID(family))] == ["Zhang family"]
        r = await wang.put(f"/v1/groups/{staff_group}/title", json={"title": f"new {CARD}"})
        assert r.status_code == 200 and r.json()["title"] == f"new {COMPACT_MASKED}"
    async with await _http(node, "br.admin") as admin:  # an org group: staff only, masked
        r = await admin.post("/v1/org-groups", json={"title": f"卡 {CARD}", "org": "BJ"})
        assert r.status_code == 201 and r.json()["title"] == f"卡 {COMPACT_MASKED}", r.text


async def test_an_rm_auto_reply_carrying_a_card_is_refused(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    async with await _http(node, "rm.wang") as wang:
        r = await wang.put("/v1/rm/availability", json={"status": "away", "message": f"pay to {SPACED} meanwhile"})
        assert (r.status_code, r.json()["code"]) == (422, "sensitive_data")
        assert (await wang.put("/v1/rm/availability", json={"status": "away", "message": "Back at 3 pm."})).status_code == 200
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        await li.send_text(conv, "hello?")
        for _ in range(10):
            m = (await li.expect("message"))["message"]
            if m["body"]["kind"] == "system":
                break
        assert m["body"]["text"] == "Back at 3 pm."
    finally:
        await li.close()


async def test_a_queues_out_of_hours_reply_carrying_a_card_is_refused(node: RunningNode) -> None:
    async with await _http(node, "ho.admin") as admin:
        r = await admin.put("/v1/service/queues/general", json={"name": "General", "out_of_hours_text": f"closed; pay to {SPACED}"})
        assert (r.status_code, r.json()["code"]) == (422, "sensitive_data")
        r = await admin.put("/v1/service/queues/general", json={"name": "General", "out_of_hours_text": "closed until 9 am"})
        assert r.status_code == 200, r.text


async def test_a_csat_comment_is_masked_before_it_is_kept(node: RunningNode) -> None:
    from ..support.desk import api, token_for
    from .test_service_desk import _desk

    zhao_token = await _desk(node, "agent.zhao", capacity=2, queues=["cards", "general"])
    zhao = await RawClient.connect(node.ws_url, zhao_token)
    li_token = await token_for(node, "c.li")
    try:
        async with api(node, li_token) as http:
            session = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()
            sid = session["session_id"]
            await http.post(f"/v1/service/sessions/{sid}/human")
        await zhao.expect("service_assigned")
        async with api(node, zhao_token) as http:
            assert (await http.post(f"/v1/service/sessions/{sid}/close", json={"tags": ["resolved"]})).status_code == 200
        async with api(node, li_token) as http:
            r = await http.post(f"/v1/service/sessions/{sid}/csat", json={"score": 2, "comment": f"you charged {SPACED} twice, CVV 123"})
            assert r.status_code == 200, r.text
        async with api(node, await token_for(node, "ho.admin")) as http:  # a supervisor reads the comment
            detail = (await http.get(f"/v1/service/sessions/{sid}")).json()
        assert detail["csat_comment"] == f"you charged {MASKED} twice, CVV ***"
    finally:
        await zhao.close()


async def test_official_account_notices_are_screened_and_long_articles_scanned_whole(node: RunningNode, dsn: str) -> None:
    async with await _http(node, "ho.admin") as admin:
        account = (await admin.get("/v1/accounts", params={"q": "bank.service"})).json()["accounts"][0]["id"]
        r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": f"test card {CARD}"}})
        assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (422, "application/problem+json", "sensitive_data")
        # a 20,000-character article body (five times a chat text's limit) with a card near its end
        long_body = "本行将于周五调整营业时间。" * 1530 + f" 卡号 {SPACED}"
        assert len(long_body) <= 20_000
        article = {"kind": "article", "title": "营业时间调整", "body": long_body}
        r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": article})
        assert (r.status_code, r.json()["code"]) == (422, "sensitive_data"), r.text
        r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {**article, "title": f"卡号 {CARD}", "body": "正文"}})
        assert (r.status_code, r.json()["code"]) == (422, "sensitive_data"), r.text
        r = await admin.post(f"/v1/accounts/{account}/notices", json={"body": {**article, "body": long_body[:-30]}})
        assert r.status_code == 201, r.text
    rows = await _rows(dsn, "SELECT count(*) AS n FROM notices WHERE body::text LIKE $1", f"%{CARD[-8:]}%")
    assert rows[0]["n"] == 0


async def test_a_bank_systems_card_carrying_a_card_number_is_refused(node: RunningNode, dsn: str) -> None:
    from ..support.alerts import register, signed
    from .test_cards import CARD as OFFER

    marketing = await register(node, "wealth-platform", ("marketing",))
    offer = {**OFFER, "fields": [{"label": "卡号", "value": SPACED}]}
    r = await signed(node, marketing, "POST", "/v1/cards", {"recipient": "c.li", "card": offer}, key="dlp-offer-1")
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (422, "application/problem+json", "sensitive_data"), r.text
    assert await _rows(dsn, "SELECT 1 FROM messages WHERE kind = 'card'") == []
    r = await signed(node, marketing, "POST", "/v1/cards", {"recipient": "c.li", "card": OFFER}, key="dlp-offer-2")
    assert r.status_code == 201, r.text


async def test_a_resent_edit_returns_the_masked_text_and_the_notice(node: RunningNode) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    try:
        mine = await li.expect("sent", frame_id=await li.send_text(conv, "my card is below"))
        edit = {
            "type": "edit", "conversation_id": conv, "message_id": mine["message_id"],
            "client_msg_id": f"e-{uuid.uuid4()}", "body": {"kind": "text", "text": f"my card is {CARD}"},
        }
        first = await li.request(edit)
        again = await li.request(edit)  # the same client_msg_id: a resend (a lost "sent")
        assert again["type"] == "sent" and again["message_id"] == first["message_id"]
        assert again["body"]["body"]["text"] == first["body"]["body"]["text"] == f"my card is {COMPACT_MASKED}"
        assert again["dlp"] == first["dlp"] == [{"kind": "card", "masked": COMPACT_MASKED}]
    finally:
        await li.close()


async def test_searches_by_value_are_rate_limited_per_officer_and_audited_with_the_mask(node: RunningNode, dsn: str) -> None:
    body: dict[str, Any] = {"kind": "card", "value": CARD, "reason": "fraud_investigation"}
    burst = node.hub.settings.dlp_search_burst
    async with await _http(node, "co.sun") as sun:
        # the case reference is kept in the audit row: it may not carry a value itself
        r = await sun.post("/v1/compliance/dlp/search", json={**body, "case_ref": f"CASE {CARD}"})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_value") and CARD not in r.text
        codes = [(await sun.post("/v1/compliance/dlp/search", json=body)).status_code for _ in range(burst + 1)]
        assert codes[:burst] == [200] * burst and codes[burst] == 429
        r = await sun.post("/v1/compliance/dlp/search", json=body)
        assert (r.status_code, r.json()["code"]) == (429, "rate_limited") and int(r.headers["retry-after"]) >= 1
    async with await _http(node, "co.qian") as qian:  # per officer: another one is not held back
        assert (await qian.post("/v1/compliance/dlp/search", json=body)).status_code == 200
    rows = await _rows(dsn, "SELECT details::text AS d FROM audit_log WHERE action = 'dlp.searched' ORDER BY seq DESC LIMIT 1")
    assert COMPACT_MASKED in rows[0]["d"] and CARD not in rows[0]["d"]


async def test_shredding_a_conversation_deletes_its_fingerprints(node: RunningNode, dsn: str) -> None:
    li_token = await login(node, "c.li")
    conv = await open_direct(node, li_token, "rm.wang")
    other = await open_direct(node, await login(node, "c.zhang"), "rm.wang")
    li = await RawClient.connect(node.ws_url, li_token)
    zhang = await RawClient.connect(node.ws_url, await login(node, "c.zhang"))
    try:
        assert (await li.expect("sent", frame_id=await li.send_text(conv, f"card {CARD}")))["dlp"]
        assert (await zhang.expect("sent", frame_id=await zhang.send_text(other, f"card {CARD}")))["dlp"]
    finally:
        await li.close()
        await zhang.close()
    from bankhub.storage.keys import ConversationKeyStore  # what `bankhub keys shred` and an erasure call

    assert await ConversationKeyStore(node.hub.db).shred(conv) == "shredded"
    left = await _rows(dsn, "SELECT conversation_id::text AS c FROM dlp_matches")
    assert [r["c"] for r in left] == [other]  # the other conversation's stay
    async with await _http(node, "co.sun") as sun:
        r = await sun.post("/v1/compliance/dlp/search", json={"kind": "card", "value": CARD, "reason": "internal_audit"})
        assert [m["conversation_id"] for m in r.json()["matches"]] == [other]

