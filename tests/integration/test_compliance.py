"""Compliance reads any conversation only with a reason code, and only after the read is audited."""

from __future__ import annotations

import asyncpg
import httpx

from bankhub.runner import RunningNode

from ..conftest import login, open_direct
from ..support.wsclient import RawClient


async def test_privileged_read_requires_a_reason_and_is_audited_first(node: RunningNode, dsn: str) -> None:
    li = await login(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    c = await RawClient.connect(node.ws_url, li)
    await c.expect("sent", frame_id=await c.send_text(conv, "I dispute the ¥2,000 charge"))
    officer = await login(node, "co.sun")
    url = f"/v1/compliance/conversations/{conv}/messages"
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {officer}"}) as http:
        # compliance is not a member: the ordinary path shows nothing
        assert (await http.get(f"/v1/conversations/{conv}/messages")).status_code == 404
        missing = await http.get(url)
        assert missing.status_code == 400 and "reason code" in missing.json()["detail"]
        assert (await http.get(url, params={"reason": "curiosity"})).status_code == 400
        r = await http.get(url, params={"reason": "complaint_investigation", "case_ref": "CASE-2026-0042"})
        assert r.status_code == 200
        assert [m["body"]["text"] for m in r.json()["messages"]] == ["I dispute the ¥2,000 charge"]
        assert (await http.get("/v1/compliance/conversations/00000000-0000-0000-0000-000000000000/messages", params={"reason": "internal_audit"})).status_code == 404
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, 'rm.wang')}"}) as http:
        denied = await http.get(url, params={"reason": "complaint_investigation"})
        assert denied.status_code == 403  # not a compliance officer, even though a member
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT actor, target, reason, details->>'case_ref' AS case_ref FROM audit_log WHERE action = 'privileged_read'")
    finally:
        await conn.close()
    assert [(r["actor"], r["target"], r["reason"], r["case_ref"]) for r in rows] == [
        ("co.sun", f"conversation:{conv}", "complaint_investigation", "CASE-2026-0042")
    ]
