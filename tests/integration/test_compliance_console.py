"""The compliance console's audit-chain endpoints through a live hub: the head to anchor and
the re-verification (recorded as ``audit.verified``), compliance officers only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx

from bankhub.http.handler import AUDITED_READS
from bankhub.http.openapi import openapi_document
from bankhub.runner import RunningNode
from bankhub.storage.audit import AUDIT_VERIFY_LOCK_KEY

from ..conftest import DEMO_PASSWORD, login, open_direct


async def _officer(node: RunningNode, username: str = "co.sun") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, username)}"})


async def test_head_is_the_last_audit_row_and_verify_records_its_result(node: RunningNode, dsn: str) -> None:
    async with await _officer(node) as http:
        head = await http.get("/v1/compliance/audit/head")
        assert head.status_code == 200, head.text
        conn = await asyncpg.connect(dsn)
        try:
            last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            assert last is not None  # signing in is audited: the log is never empty here
            assert head.json() == {"seq": last["seq"], "hash": bytes(last["hash"]).hex()}

            r = await http.post("/v1/compliance/audit/verify")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["ok"] is True and body["problem"] is None and body["first_bad_seq"] is None
            assert body["rows"] == last["seq"] and body["head"] == head.json()

            # anchored at the head read earlier: still matches
            anchored = await http.post("/v1/compliance/audit/verify", json={"expect_head": f"{last['seq']}:{bytes(last['hash']).hex()}"})
            assert anchored.status_code == 200 and anchored.json()["ok"] is True

            rows = await conn.fetch(
                "SELECT actor, target, details FROM audit_log WHERE action = 'audit.verified' ORDER BY seq"
            )
            assert [(x["actor"], x["target"]) for x in rows] == [("co.sun", "audit:chain")] * 2
            assert '"ok": true' in rows[0]["details"] or '"ok":true' in rows[0]["details"]
            # each verification is itself a row: the head moved past what was verified
            moved = (await http.get("/v1/compliance/audit/head")).json()
            assert moved["seq"] == last["seq"] + 2
        finally:
            await conn.close()


async def test_an_anchor_that_does_not_match_is_reported_not_ok(node: RunningNode) -> None:
    async with await _officer(node) as http:
        seq = (await http.get("/v1/compliance/audit/head")).json()["seq"]
        wrong = await http.post("/v1/compliance/audit/verify", json={"expect_head": f"{seq}:{'0' * 64}"})
        assert wrong.status_code == 200
        assert wrong.json()["ok"] is False and wrong.json()["problem"] == "anchor_mismatch" and wrong.json()["first_bad_seq"] == seq
        beyond = await http.post("/v1/compliance/audit/verify", json={"expect_head": f"{seq + 1000}:{'ab' * 32}"})
        assert beyond.json()["ok"] is False and beyond.json()["problem"] == "truncated"
        for bad in ({"expect_head": "nonsense"}, {"expect_head": 7}, {"other": 1}):
            r = await http.post("/v1/compliance/audit/verify", json=bad)
            assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
            assert r.json()["code"] == "invalid_request"


async def test_only_compliance_officers_see_or_verify_the_chain(node: RunningNode, dsn: str) -> None:
    for who in ("c.li", "rm.wang", "ho.admin"):
        async with await _officer(node, who) as http:
            for r in (await http.get("/v1/compliance/audit/head"), await http.post("/v1/compliance/audit/verify")):
                assert r.status_code == 403 and r.json()["code"] == "forbidden", (who, r.text)
    async with httpx.AsyncClient(base_url=node.http_url) as anonymous:
        assert (await anonymous.get("/v1/compliance/audit/head")).status_code == 401
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'audit.verified'") == 0
    finally:
        await conn.close()


async def test_concurrent_verifications_get_one_walk_and_a_clear_refusal_never_a_503(node: RunningNode, dsn: str) -> None:
    # many clicks at once: one walks the chain, the rest are told to wait (409 verify_running
    # or 429 rate_limited, both with Retry-After), and no request starves the pool into a 503
    tokens = [await login(node, "co.sun"), await login(node, "co.qian")]
    async with httpx.AsyncClient(base_url=node.http_url, timeout=60) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/compliance/audit/verify", headers={"authorization": f"Bearer {tokens[i % 2]}"}) for i in range(30))
        )
    codes = [r.status_code for r in answers]
    assert 503 not in codes and 500 not in codes, codes
    assert codes.count(200) >= 1, codes
    # each officer starts at most 3 in a row, whatever the timing
    assert codes.count(200) <= 6, codes
    for r in answers:
        if r.status_code != 200:
            assert r.status_code in (409, 429) and r.headers["content-type"] == "application/problem+json", r.text
            assert r.json()["code"] in ("verify_running", "rate_limited") and int(r.headers["retry-after"]) >= 1
    conn = await asyncpg.connect(dsn)
    try:
        # a refused call walked nothing and recorded nothing
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'audit.verified'") == codes.count(200)
    finally:
        await conn.close()


async def test_one_officer_is_limited_to_three_verifications_in_a_row(node: RunningNode) -> None:
    async with await _officer(node) as http:
        got = [(await http.post("/v1/compliance/audit/verify")).status_code for _ in range(4)]
        assert got[:3] == [200, 200, 200] and got[3] == 429, got


# every route that hands out what only the audited compliance path may: a cookie request from
# anywhere but the hub's own page is refused before anything is read or recorded
AUDITED = {
    ("GET", "/v1/compliance/conversations/{conversation_id}/messages"),
    ("GET", "/v1/compliance/supervision/flags/{flag_id}"),
    ("GET", "/v1/compliance/exports/{export_id}/download"),
    ("POST", "/v1/compliance/dlp/search"),
}


def test_the_audited_reads_are_declared_so() -> None:
    assert AUDITED <= AUDITED_READS, AUDITED - AUDITED_READS
    document = openapi_document()
    for method, path in AUDITED:
        assert "csrf_failed" in document["paths"][path][method.lower()]["responses"]["403"]["description"], path


@contextlib.asynccontextmanager
async def _cookie_officer(node: RunningNode) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        r = await http.post("/v1/web/sessions", json={"username": "co.sun", "password": DEMO_PASSWORD})
        assert r.status_code == 201, r.text
        yield http, r.json()["csrf_token"]


FOREIGN: tuple[dict[str, str], ...] = ({"sec-fetch-site": "same-site"}, {"sec-fetch-site": "cross-site"}, {}, {"origin": "https://evil.example"})
OWN_PAGE = {"sec-fetch-site": "same-origin"}


async def _privileged_reads(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'privileged_read'"))
    finally:
        await conn.close()


async def test_a_cookie_read_of_a_conversation_must_come_from_the_hubs_page(node: RunningNode, dsn: str) -> None:
    cid = await open_direct(node, await login(node, "c.li"), "rm.wang")
    async with _cookie_officer(node) as (http, _):
        path = f"/v1/compliance/conversations/{cid}/messages?reason=internal_audit"
        before = await _privileged_reads(dsn)
        for headers in FOREIGN:
            r = await http.get(path, headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed", (headers, r.text)
        assert await _privileged_reads(dsn) == before
        r = await http.get(path, headers=OWN_PAGE)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        assert await _privileged_reads(dsn) == before + 1


async def test_a_cookie_flag_read_must_come_from_the_hubs_page(node: RunningNode) -> None:
    async with _cookie_officer(node) as (http, _):
        path = f"/v1/compliance/supervision/flags/{uuid.uuid4()}?reason=internal_audit"
        for headers in FOREIGN:
            r = await http.get(path, headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed", (headers, r.text)
        # from the hub's page the read goes on (and finds no such flag)
        r = await http.get(path, headers=OWN_PAGE)
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


async def test_a_cookie_export_download_must_come_from_the_hubs_page(node: RunningNode) -> None:
    async with _cookie_officer(node) as (http, _):
        path = f"/v1/compliance/exports/{uuid.uuid4()}/download"
        for headers in FOREIGN:
            r = await http.get(path, headers=headers)
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed", (headers, r.text)
        r = await http.get(path, headers=OWN_PAGE)
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


async def test_a_cookie_dlp_search_must_come_from_the_hubs_page_and_is_not_cached(node: RunningNode) -> None:
    async with _cookie_officer(node) as (http, csrf):
        body = {"kind": "card", "value": "6222 0212 3456 7894", "reason": "internal_audit"}
        for headers in FOREIGN[:2]:
            r = await http.post("/v1/compliance/dlp/search", json=body, headers={**headers, "x-csrf-token": csrf})
            assert r.status_code == 403 and r.json()["code"] == "csrf_failed", (headers, r.text)
        r = await http.post("/v1/compliance/dlp/search", json=body, headers={**OWN_PAGE, "x-csrf-token": csrf})
        assert r.status_code in (200, 422), r.text
        assert r.headers["cache-control"] == "no-store"


async def test_a_bearer_token_reads_as_before(node: RunningNode) -> None:
    # native clients are not browsers: the Authorization header needs no Sec-Fetch-Site
    cid = await open_direct(node, await login(node, "c.li"), "rm.wang")
    async with await _officer(node) as http:
        r = await http.get(f"/v1/compliance/conversations/{cid}/messages?reason=internal_audit")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", r.text


async def test_a_verification_while_another_walks_the_chain_is_refused_409(node: RunningNode, dsn: str) -> None:
    # another node's walk holds the hub-wide lock: this one walks nothing, records nothing
    holder = await asyncpg.connect(dsn)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", AUDIT_VERIFY_LOCK_KEY)
        async with await _officer(node) as http:
            r = await http.post("/v1/compliance/audit/verify")
            assert r.status_code == 409 and r.json()["code"] == "verify_running", r.text
            assert int(r.headers["retry-after"]) >= 1
        assert await holder.fetchval("SELECT count(*) FROM audit_log WHERE action = 'audit.verified'") == 0
        await holder.execute("SELECT pg_advisory_unlock($1)", AUDIT_VERIFY_LOCK_KEY)
        async with await _officer(node) as http:
            assert (await http.post("/v1/compliance/audit/verify")).status_code == 200
    finally:
        await holder.close()
