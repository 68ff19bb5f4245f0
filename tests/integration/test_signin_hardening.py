"""Sign-in refusals reveal nothing: unknown, disabled, locked and wrong-password answers are the same
in status, body and work done; the lockout counts correctly across a lapsed lock and audits every lock."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from bankhub import passwords
from bankhub.actions import sessions as session_actions
from bankhub.actions.errors import ActionError
from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD


async def _sql(dsn: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


def _answer(r: httpx.Response) -> tuple[int, str | None, bytes]:
    return r.status_code, r.headers.get("content-type"), r.content


async def _attempt(http: httpx.AsyncClient, username: str, password: str) -> tuple[int, str | None, bytes]:
    return _answer(await http.post("/v1/sessions", json={"username": username, "password": password}))


async def _lock_state(dsn: str, username: str) -> tuple[int, bool]:
    rows = await _sql(dsn, "SELECT failed_logins, locked_until > now() AS locked FROM users WHERE username = $1", username)
    return rows[0]["failed_logins"], bool(rows[0]["locked"])


async def _audit_count(dsn: str, action: str, target_user: str) -> int:
    rows = await _sql(
        dsn,
        "SELECT count(*) AS n FROM audit_log WHERE action = $1 AND target = 'user:' || (SELECT id FROM users WHERE username = $2)",
        action,
        target_user,
    )
    return int(rows[0]["n"])


async def test_existing_locked_disabled_and_unknown_usernames_answer_byte_identically(node: RunningNode, dsn: str) -> None:
    await _sql(dsn, "UPDATE users SET disabled = true WHERE username = 'c.zhang'")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        existing = [await _attempt(http, "c.zhou", "guess") for _ in range(6)]
        unknown = [await _attempt(http, "nobody.at.all", "guess") for _ in range(6)]
        assert existing == unknown  # the 6th attempt finds c.zhou locked: still the same answer
        status, _, body = unknown[0]
        assert status == 401 and b'"code":"unauthorized"' in body and b"wrong username or password" in body
        assert await _lock_state(dsn, "c.zhou") == (5, True)
        # a locked account refuses even the right password, and says so in no way
        assert await _attempt(http, "c.zhou", DEMO_PASSWORD) == unknown[0]
        # a disabled account with its right password: the same again
        assert await _attempt(http, "c.zhang", DEMO_PASSWORD) == unknown[0]
    # the bank can see why (audit), the caller cannot
    outcomes = await _sql(
        dsn, "SELECT details->>'outcome' AS o FROM audit_log WHERE action = 'session.login_failed' ORDER BY seq"
    )
    assert [r["o"] for r in outcomes] == ["bad_password"] * 5 + ["locked"] + ["unknown_user"] * 6 + ["locked", "disabled"]


async def test_every_refusal_does_the_same_work(node: RunningNode, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing, structurally: each kind of refusal runs one Argon2 verification (against a hash with
    the real hashes' parameters) and the same named database transactions, in the same order."""
    hub = node.hub
    verified: list[str] = []
    real_verify = passwords._argon2_verify

    def counting_verify(encoded: str, password: str) -> bool:
        verified.append(encoded)
        return real_verify(encoded, password)

    monkeypatch.setattr(passwords, "_argon2_verify", counting_verify)
    me = asyncio.current_task()
    work: list[str] = []
    real_observe = hub.db._observe

    def observe(name: str, start: float) -> None:
        if asyncio.current_task() is me:  # this test's calls only, not the hub's background loops
            work.append(name)
        real_observe(name, start)

    monkeypatch.setattr(hub.db, "_observe", observe)
    await _sql(dsn, "UPDATE users SET disabled = true WHERE username = 'c.zhang'")
    await _sql(dsn, "UPDATE users SET failed_logins = 4 WHERE username = 'rm.chen'")  # the next failure locks
    await _sql(dsn, "UPDATE users SET failed_logins = 5, locked_until = now() + interval '10 minutes' WHERE username = 'c.zhou'")
    (real_hash,) = [r["password_hash"] for r in await _sql(dsn, "SELECT password_hash FROM users WHERE username = 'c.li'")]

    async def refusal(username: str, password: str) -> tuple[list[str], list[str]]:
        verified.clear()
        work.clear()
        with pytest.raises(ActionError) as refused:
            await session_actions.login(hub, username, password, user_agent=None, ip="192.0.2.7")
        assert (refused.value.code, refused.value.message) == ("unauthorized", "wrong username or password")
        return list(work), [h.rsplit("$", 2)[0] for h in verified]  # "$argon2id$v=19$m=…,t=…,p=…"

    unknown = await refusal("nobody.at.all", "guess")
    assert unknown[1] == [real_hash.rsplit("$", 2)[0]]  # a dummy hash, made with the real parameters
    assert await refusal("c.li", "guess") == unknown  # wrong password
    assert await refusal("c.zhang", DEMO_PASSWORD) == unknown  # disabled
    assert await refusal("c.zhou", DEMO_PASSWORD) == unknown  # locked, right password
    assert await refusal("rm.chen", "guess") == unknown  # the failure that locks (its audit rows: same transaction)
    assert await _lock_state(dsn, "rm.chen") == (5, True)
    assert await _audit_count(dsn, "user.locked", "rm.chen") == 1


async def test_after_a_lock_lapses_one_wrong_password_does_not_lock_again(node: RunningNode, dsn: str) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for _ in range(5):
            assert (await _attempt(http, "c.zhou", "guess"))[0] == 401
        assert await _lock_state(dsn, "c.zhou") == (5, True)
        await _sql(dsn, "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = 'c.zhou'")  # lapsed
        assert (await _attempt(http, "c.zhou", "guess"))[0] == 401
        assert await _lock_state(dsn, "c.zhou") == (1, False)  # the count restarted; no new lock
        assert (await _attempt(http, "c.zhou", DEMO_PASSWORD))[0] == 201
        assert await _lock_state(dsn, "c.zhou") == (0, False)  # a success resets it


async def test_every_lock_is_audited_including_a_lock_after_a_lapsed_one(node: RunningNode, dsn: str) -> None:
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for _ in range(5):
            await _attempt(http, "c.zhou", "guess")
        assert await _audit_count(dsn, "user.locked", "c.zhou") == 1
        await _sql(dsn, "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = 'c.zhou'")
        for i in range(4):
            await _attempt(http, "c.zhou", "guess")
            assert await _lock_state(dsn, "c.zhou") == (i + 1, False)
        await _attempt(http, "c.zhou", "guess")  # five in a row again: a second lock, audited like the first
        assert await _lock_state(dsn, "c.zhou") == (5, True)
    assert await _audit_count(dsn, "user.locked", "c.zhou") == 2
    rows = await _sql(dsn, "SELECT actor, reason, details->>'minutes' AS minutes FROM audit_log WHERE action = 'user.locked'")
    assert [(r["actor"], r["minutes"]) for r in rows] == [("system", "15"), ("system", "15")]
