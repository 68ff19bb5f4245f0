"""Free text the hub keeps in the audit log (case references, hold names, release and erasure
reasons, reviewers' notes) never carries a card number: 422 ``sensitive_data``, nothing kept."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from bankhub.runner import RunningNode

from ..conftest import login

CARD = "6222 0212 3456 7894"  # passes Luhn
DIGITS = CARD.replace(" ", "")


async def _http(node: RunningNode, username: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, username)}"})


async def test_free_text_kept_in_the_audit_log_refuses_a_card_number(node: RunningNode, dsn: str) -> None:
    some = str(uuid.uuid4())
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetchval("SELECT max(seq) FROM audit_log")
        async with await _http(node, "co.sun") as sun:
            refused = [
                await sun.post("/v1/compliance/holds", json={"name": f"card {CARD}", "custodian": "c.li"}),
                await sun.post("/v1/compliance/holds", json={"name": "Case 7", "case_ref": f"CASE {CARD}", "custodian": "c.li"}),
                await sun.post(f"/v1/compliance/holds/{some}/release", json={"reason": f"closed, card {CARD}"}),
                await sun.post(
                    "/v1/compliance/exports",
                    json={"reason": "regulatory_request", "custodians": ["c.li"], "case_ref": f"CASE {CARD}"},
                ),
                await sun.get(
                    f"/v1/compliance/conversations/{some}/messages",
                    params={"reason": "regulatory_request", "case_ref": f"CASE {CARD}"},
                ),
                await sun.get(
                    f"/v1/compliance/supervision/flags/{some}", params={"reason": "regulatory_request", "case_ref": f"CASE {CARD}"}
                ),
                await sun.post(f"/v1/compliance/supervision/flags/{some}/decision", json={"decision": "close", "note": f"card {CARD}"}),
                await sun.post("/v1/compliance/erasures", json={"username": "c.li", "reason": f"PIPL art. 47, card {CARD}"}),
            ]
            for r in refused:
                assert (r.status_code, r.json()["code"]) == (422, "sensitive_data"), (r.request.url, r.text)
                assert DIGITS not in r.text and CARD not in r.text
            # the same text without the number is accepted (the refusal is about the value, not the field)
            ok = await sun.post("/v1/compliance/holds", json={"name": "Case 7", "case_ref": "CASE-7", "custodian": "c.li"})
            assert ok.status_code == 201, ok.text
        rows = await conn.fetch("SELECT details::text AS d, reason FROM audit_log WHERE seq > $1", before or 0)
        assert rows and all(DIGITS not in (r["d"] or "") and CARD not in (r["d"] or "") for r in rows)
        assert all(DIGITS not in (r["reason"] or "") and CARD not in (r["reason"] or "") for r in rows)
    finally:
        await conn.close()
