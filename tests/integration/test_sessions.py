"""Sessions: list, refresh, revoke; password and role changes cut sockets on every node; lockout; limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from bankhub.runner import RunningNode

from ..conftest import Nodes, login
from ..support.valkey import free_port
from ..support.wsclient import RawClient


def _http(node: RunningNode, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=node.http_url, headers=headers)


async def _closed_with(client: RawClient, timeout: float = 2.0) -> int:
    """Close code received within ``timeout`` (the issue's bound for revocation)."""
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(100):
            await client.recv(timeout=timeout)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def _session_id(node: RunningNode, token: str) -> str:
    async with _http(node, token) as http:
        listed = (await http.get("/v1/sessions")).json()["sessions"]
    return next(s["id"] for s in listed if s["current"])


async def _me_status(node: RunningNode, token: str) -> int:
    async with _http(node, token) as http:
        return (await http.get("/v1/me")).status_code


async def test_list_revoke_one_and_revoke_all(node: RunningNode) -> None:
    phone, laptop, tablet = [await login(node, "c.li") for _ in range(3)]
    laptop_id = await _session_id(node, laptop)
    laptop_ws = await RawClient.connect(node.ws_url, laptop)
    async with _http(node, phone) as http:
        listed = (await http.get("/v1/sessions")).json()["sessions"]
        assert len(listed) == 3 and sum(s["current"] for s in listed) == 1
        # a lost laptop: revoked from the phone, its socket closes at once
        assert (await http.delete(f"/v1/sessions/{laptop_id}")).status_code == 204
        assert await _closed_with(laptop_ws) == 1008
        assert len((await http.get("/v1/sessions")).json()["sessions"]) == 2
        # someone else's (or a malformed) session id is simply not found
        theirs = await _session_id(node, await login(node, "c.zhang"))
        assert (await http.delete(f"/v1/sessions/{theirs}")).status_code == 404
        assert (await http.delete("/v1/sessions/not-a-uuid")).status_code == 404
    assert [await _me_status(node, t) for t in (phone, laptop, tablet)] == [200, 401, 200]
    async with _http(node, phone) as http:
        assert (await http.delete("/v1/sessions", params={"keep_current": "true"})).json() == {"revoked": 1}
    assert [await _me_status(node, t) for t in (phone, tablet)] == [200, 401]
    async with _http(node, phone) as http:
        assert (await http.delete("/v1/sessions")).json() == {"revoked": 1}
    assert await _me_status(node, phone) == 401


async def test_refresh_issues_a_new_token_and_kills_the_old_one(node: RunningNode) -> None:
    old = await login(node, "c.li")
    ws = await RawClient.connect(node.ws_url, old)
    async with _http(node, old) as http:
        r = await http.post("/v1/sessions/refresh")
        assert r.status_code == 201
        new = r.json()["token"]
        assert new != old
        assert (await http.get("/v1/me")).status_code == 401
    async with _http(node, new) as http:
        assert (await http.get("/v1/me")).json()["username"] == "c.li"
    assert await _closed_with(ws) == 1008


async def _set_sign_in(dsn: str, token: str, signed_in_ago: dt.timedelta, expires_in: dt.timedelta | None = None) -> None:
    """Move the password sign-in of ``token``'s session into the past (and its expiry, if given)."""
    from bankhub.ids import token_hash

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """UPDATE sessions SET signed_in_at = now() - $2::interval,
                                   expires_at = COALESCE(now() + $3::interval, expires_at) WHERE token_hash = $1""",
            token_hash(token),
            signed_in_ago,
            expires_in,
        )
    finally:
        await conn.close()


async def test_refresh_never_extends_a_session_past_its_absolute_lifetime(node: RunningNode, dsn: str) -> None:
    assert (node.hub.settings.session_ttl_hours, node.hub.settings.session_max_lifetime_hours) == (12.0, 24.0)
    token = await login(node, "c.li")
    # signed in with the password 23 h ago (and refreshed since: half an hour left)
    await _set_sign_in(dsn, token, dt.timedelta(hours=23), expires_in=dt.timedelta(minutes=30))
    async with _http(node, token) as http:
        r = await http.post("/v1/sessions/refresh")
    assert r.status_code == 201
    expires = dt.datetime.fromisoformat(r.json()["expires_at"])
    left = expires - dt.datetime.now(dt.timezone.utc)
    # capped at sign-in + 24 h (about 1 h from now), not now + 12 h
    assert dt.timedelta(minutes=55) < left < dt.timedelta(minutes=61), left
    fresh = r.json()["token"]
    async with _http(node, fresh) as http:
        assert (await http.get("/v1/me")).status_code == 200  # the new token works until the deadline
        again = await http.post("/v1/sessions/refresh")  # it already ends at the deadline: no more refreshes
        assert again.status_code == 401 and again.headers["content-type"] == "application/problem+json"
        assert again.json()["code"] == "reauthentication_required"
        assert (await http.get("/v1/me")).status_code == 200  # refused, not revoked
    # the refreshed session carries the original sign-in time, not the refresh's
    conn = await asyncpg.connect(dsn)
    try:
        signed_in = await conn.fetch(
            "SELECT signed_in_at FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'c.li')"
        )
    finally:
        await conn.close()
    assert len({r["signed_in_at"] for r in signed_in}) == 1 and len(signed_in) == 2


async def test_refresh_past_the_absolute_deadline_asks_for_the_password(node: RunningNode, dsn: str) -> None:
    # e.g. a session opened before the maximum was lowered: its expiry is still ahead, its deadline is past
    token = await login(node, "c.li")
    await _set_sign_in(dsn, token, dt.timedelta(hours=25), expires_in=dt.timedelta(hours=1))
    async with _http(node, token) as http:
        r = await http.post("/v1/sessions/refresh")
        assert r.status_code == 401 and r.json()["code"] == "reauthentication_required"
    # the password gives a new session, with a new sign-in time
    fresh = await login(node, "c.li")
    async with _http(node, fresh) as http:
        assert (await http.post("/v1/sessions/refresh")).status_code == 201


async def test_one_token_refreshed_twice_at_once_yields_one_session(node: RunningNode) -> None:
    token = await login(node, "c.li")
    async with _http(node, token) as http:
        answers = await asyncio.gather(*(http.post("/v1/sessions/refresh") for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 401, 401, 401], [r.text for r in answers]
    assert await _me_status(node, token) == 401
    winner = next(r.json()["token"] for r in answers if r.status_code == 201)
    async with _http(node, winner) as http:
        assert len((await http.get("/v1/sessions")).json()["sessions"]) == 1


async def test_password_change_closes_other_sessions_on_every_node(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    current, other = await login(a, "c.li"), await login(b, "c.li")
    on_b = await RawClient.connect(b.ws_url, other)
    mine = await RawClient.connect(a.ws_url, current)
    async with _http(a, current) as http:
        weak = await http.post("/v1/me/password", json={"current_password": "bankhub-demo", "new_password": "short"})
        assert weak.status_code == 400
        wrong = await http.post("/v1/me/password", json={"current_password": "nope", "new_password": "a much longer passphrase"})
        assert wrong.status_code == 403
        ok = await http.post("/v1/me/password", json={"current_password": "bankhub-demo", "new_password": "a much longer passphrase"})
        assert ok.json() == {"revoked_sessions": 1}
    assert await _closed_with(on_b) == 1008  # within 2 s, on the other node
    assert (await mine.request({"type": "ping"}))["type"] == "pong"  # the session that changed it lives
    async with _http(a) as http:
        assert (await http.post("/v1/sessions", json={"username": "c.li", "password": "bankhub-demo"})).status_code == 401
        assert (await http.post("/v1/sessions", json={"username": "c.li", "password": "a much longer passphrase"})).status_code == 201


async def test_role_change_by_head_office_cuts_every_socket_of_the_user(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    wang_a, wang_b = await login(a, "rm.wang"), await login(b, "rm.wang")
    sockets = [await RawClient.connect(a.ws_url, wang_a), await RawClient.connect(b.ws_url, wang_b)]
    admin = await login(a, "ho.admin")
    async with _http(a, admin) as http:
        r = await http.put("/v1/users/rm.wang/role", json={"role": "staff"})
        assert r.status_code == 200 and r.json()["role"] == "staff"
        assert (await http.put("/v1/users/ho.admin/role", json={"role": "staff"})).json()["code"] == "forbidden"
        assert (await http.put("/v1/users/rm.wang/role", json={"role": "emperor"})).status_code == 400
    assert [await _closed_with(s) for s in sockets] == [1008, 1008]
    async with _http(b, wang_b) as http:
        assert (await http.get("/v1/me")).status_code == 401


async def test_branch_admin_manages_only_their_subtree_and_only_plain_roles(node: RunningNode) -> None:
    admin = await login(node, "br.admin")  # Beijing branch
    async with _http(node, admin) as http:
        assert (await http.put("/v1/users/c.zhang/role", json={"role": "staff"})).status_code == 200  # Haidian, under Beijing
        assert (await http.put("/v1/users/rm.chen/role", json={"role": "staff"})).json()["code"] == "not_found"  # Shanghai
        assert (await http.put("/v1/users/rm.wang/role", json={"role": "branch_admin"})).json()["code"] == "forbidden"
    customer = await login(node, "c.li")
    async with _http(node, customer) as http:
        assert (await http.put("/v1/users/c.zhang/role", json={"role": "rm"})).json()["code"] == "forbidden"


async def test_lockout_after_repeated_failures_even_for_the_right_password(node: RunningNode, dsn: str) -> None:
    async with _http(node) as http:
        for _ in range(5):
            r = await http.post("/v1/sessions", json={"username": "c.zhou", "password": "guess"})
            assert r.status_code == 401
        locked = await http.post("/v1/sessions", json={"username": "c.zhou", "password": "bankhub-demo"})
        # refused like any failure: the lock is not disclosed to whoever is trying (test_signin_hardening)
        assert locked.status_code == 401 and locked.json()["code"] == "unauthorized"
        # other accounts are unaffected
        assert (await http.post("/v1/sessions", json={"username": "c.li", "password": "bankhub-demo"})).status_code == 201
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE users SET locked_until = now() - interval '1 second' WHERE username = 'c.zhou'")
    finally:
        await conn.close()
    async with _http(node) as http:  # after the lock expires, the right password works and resets the count
        assert (await http.post("/v1/sessions", json={"username": "c.zhou", "password": "bankhub-demo"})).status_code == 201


async def test_login_attempts_are_rate_limited_per_username_across_nodes(nodes: Nodes, valkey_url: str, cluster_key: str) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    user = f"nobody.{uuid.uuid4().hex[:8]}"  # unknown users never lock, so the limiter is what stops guessing
    statuses = []
    async with _http(a) as ha, _http(b) as hb:
        for i in range(14):
            r = await (ha if i % 2 else hb).post("/v1/sessions", json={"username": user, "password": "x"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["code"] == "rate_limited"
    assert statuses[:10] == [401] * 10 and 429 in statuses[10:]  # one shared bucket of 10 for both nodes


async def test_credential_checks_fail_closed_when_the_limiter_is_down(nodes: Nodes, cluster_key: str, valkey_url: str) -> None:
    from bankhub.ratelimit import RedisRateLimiter

    dead = f"redis://127.0.0.1:{free_port()}"
    node = await nodes.start("n1", limiter=RedisRateLimiter(dead))
    async with _http(node) as http:
        r = await http.post("/v1/sessions", json={"username": "c.li", "password": "bankhub-demo"})
        assert r.status_code == 503 and r.json()["code"] == "unavailable"


async def test_periodic_recheck_closes_sockets_whose_session_died_silently(node: RunningNode, dsn: str) -> None:
    token = await login(node, "c.li")
    ws = await RawClient.connect(node.ws_url, token)
    conn = await asyncpg.connect(dsn)
    try:  # revoked behind the hub's back: no signal was published
        await conn.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = (SELECT id FROM users WHERE username = 'c.li')")
    finally:
        await conn.close()
    assert await node.hub.recheck_sessions() == 1
    assert await _closed_with(ws) == 1008
    await asyncio.sleep(0)


async def test_every_security_action_leaves_an_audit_row_and_the_chain_verifies(node: RunningNode, dsn: str) -> None:
    from bankhub.storage.audit import verify

    admin, li = await login(node, "ho.admin"), await login(node, "c.li")
    async with _http(node, admin) as http:
        assert (await http.put("/v1/users/agent.zhao/role", json={"role": "staff"})).status_code == 200
        assert (await http.put("/v1/customers/c.zhang/rm", json={"rm": "rm.chen"})).status_code == 200
    async with _http(node, li) as http:
        new_password = "correct horse battery staple"
        assert (await http.post("/v1/me/password", json={"current_password": "bankhub-demo", "new_password": new_password})).status_code == 200
        assert (await http.delete("/v1/sessions/current")).status_code == 204
    async with _http(node) as http:
        for _ in range(5):
            await http.post("/v1/sessions", json={"username": "c.zhou", "password": "wrong"})
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT action, actor, target, details::text AS details FROM audit_log ORDER BY seq")
        report = await verify(conn)
    finally:
        await conn.close()
    actions = [r["action"] for r in rows]
    for expected in ("user.role_changed", "customer.reassigned", "user.password_changed", "session.revoked", "user.locked"):
        assert expected in actions, actions
    assert actions.count("session.login_failed") == 5
    role_change = next(r for r in rows if r["action"] == "user.role_changed")
    assert role_change["actor"] == "ho.admin" and '"to": "staff"' in role_change["details"]
    assert not any("bankhub-demo" in (r["details"] or "") or "battery" in (r["details"] or "") for r in rows)
    assert report.ok, report
