"""The session cache across nodes: a reconnect authenticates without Postgres, and no node
answers from its cache for a session revoked anywhere (docs/security.md, "Session cache")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from bankhub.runner import RunningNode

from ..conftest import Nodes, login
from ..support.wsclient import RawClient

pytestmark = pytest.mark.timeout(60)

DEMO = "bankhub-demo"


async def _me(node: RunningNode, token: str) -> int:
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        return (await http.get("/v1/me")).status_code


async def _ws_status(node: RunningNode, token: str) -> int:
    """101 when the handshake is accepted (the socket is closed again), else the refusal's status."""
    try:
        client = await RawClient.connect(node.ws_url, token)
    except InvalidStatus as exc:
        return exc.response.status_code
    await client.close()
    return 101


async def _cached_on(node: RunningNode, token: str) -> None:
    """Use the token on ``node`` over both paths, so its cache holds the session."""
    assert await _ws_status(node, token) == 101
    assert await _me(node, token) == 200
    assert len(node.hub.session_cache) >= 1 and node.hub.session_cache.stats.hits >= 1


async def _sign_out(a: RunningNode, token: str, _other: str) -> None:
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        assert (await http.delete("/v1/sessions/current")).status_code == 204


async def _revoked_from_another_device(a: RunningNode, _token: str, other: str) -> None:
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {other}"}) as http:
        r = await http.delete("/v1/sessions", params={"keep_current": "true"})
        assert r.status_code in (200, 204), r.text


async def _password_changed(a: RunningNode, _token: str, other: str) -> None:
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {other}"}) as http:
        r = await http.post("/v1/me/password", json={"current_password": DEMO, "new_password": "another-long-passphrase"})
        assert r.status_code in (200, 204), r.text


Revoke = Callable[[RunningNode, str, str], Awaitable[None]]


@pytest.mark.parametrize("revoke", [_sign_out, _revoked_from_another_device, _password_changed], ids=["sign-out", "revoke-all", "password"])
async def test_a_session_revoked_on_one_node_is_refused_at_once_by_the_others_cache(
    nodes: Nodes, valkey_url: str, cluster_key: str, revoke: Revoke
) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    token, other = await login(a, "c.zhou"), await login(a, "c.zhou")
    # node b holds the session in its cache, and no connection of the user: the user's
    # channel is not subscribed there, only the broadcast channel reaches it
    await _cached_on(b, token)
    assert not b.hub.registry.by_user
    await revoke(a, token, other)
    # acknowledged: from now on no node takes the token, from its cache or otherwise
    assert await _ws_status(b, token) == 401
    assert await _me(b, token) == 401
    assert await _me(a, token) == 401


async def test_a_revocation_missed_while_the_broker_was_away_is_not_served_from_the_cache(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    a, b = await nodes.start_pair(valkey_url, cluster_key)
    token = await login(a, "c.zhou")
    await _cached_on(b, token)
    flushes = b.hub.session_cache.stats.flushes
    admin = aioredis.from_url(valkey_url)
    try:
        # every node's pub/sub link drops; the sign-out's signal is published while it is down
        assert await admin.execute_command("CLIENT KILL", "TYPE", "pubsub") >= 1  # type: ignore[no-untyped-call]
        await _sign_out(a, token, "")
    finally:
        await admin.aclose()
    for _ in range(200):
        if b.hub.broker.connected:
            break
        await asyncio.sleep(0.05)
    assert b.hub.broker.connected
    assert b.hub.session_cache.stats.flushes > flushes and len(b.hub.session_cache) == 0
    assert await _me(b, token) == 401
    assert await _ws_status(b, token) == 401


async def test_reconnects_authenticate_from_the_cache_without_a_session_query(node: RunningNode) -> None:
    token = await login(node, "c.li")
    calls: list[bytes] = []
    lookup = node.hub.sessions.active_by_token

    async def counted(token_hash: bytes) -> Any:
        calls.append(token_hash)
        return await lookup(token_hash)

    node.hub.sessions.active_by_token = counted  # type: ignore[method-assign]
    assert await _ws_status(node, token) == 101
    assert len(calls) == 1
    for _ in range(5):
        assert await _ws_status(node, token) == 101
    assert await _me(node, token) == 200
    assert len(calls) == 1  # every later handshake and request came from the cache
    # the cache is keyed by the token's hash, never by the token
    assert token.encode() not in node.hub.session_cache._entries and calls[0] in node.hub.session_cache._entries
    # a bad token is always asked of storage, and never kept
    assert await _ws_status(node, "not-a-token") == 401
    assert len(calls) == 2 and len(node.hub.session_cache) == 1


async def test_a_new_rm_or_a_follow_change_drops_the_cached_principal_on_every_node(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    from bankhub.ids import token_hash

    a, b = await nodes.start_pair(valkey_url, cluster_key)
    li, admin = await login(a, "c.li"), await login(a, "ho.admin")
    key = token_hash(li)

    async def cached_on_b() -> bool:
        await _cached_on(b, li)
        return key in b.hub.session_cache._entries

    async def gone_from_b() -> bool:
        for _ in range(100):  # the broadcast signal's trip through Valkey
            if key not in b.hub.session_cache._entries:
                return True
            await asyncio.sleep(0.02)
        return False

    assert await cached_on_b()
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {admin}"}) as http:
        assert (await http.put("/v1/customers/c.li/rm", json={"rm": "rm.chen"})).status_code == 200
    assert await gone_from_b()
    # read again from storage: the session now carries the new RM
    assert await cached_on_b()
    rm_chen = await b.hub.users.by_username("rm.chen")
    assert rm_chen is not None and b.hub.session_cache._entries[key].principal.user.rm_id == rm_chen.id
    async with httpx.AsyncClient(base_url=a.http_url, headers={"authorization": f"Bearer {li}"}) as http:
        mine = (await http.get("/v1/me/accounts")).json()["accounts"]
        followed = mine[0]["account"]["id"]
        assert (await http.delete(f"/v1/accounts/{followed}/follow")).status_code in (200, 204)
    assert await gone_from_b()
    assert await cached_on_b()
    assert followed not in b.hub.session_cache._entries[key].principal.follows


async def _sql(node: RunningNode, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(node.hub.settings.database_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_user_disabled_outside_the_hub_is_dropped_from_the_cache_by_the_recheck(node: RunningNode) -> None:
    """No signal comes for a change made in SQL: the periodic re-check compares the cached
    sessions with storage, even those used only over HTTP (no socket on the node)."""
    token = await login(node, "c.li")
    assert await _me(node, token) == 200 and len(node.hub.session_cache) == 1
    try:
        await _sql(node, "UPDATE users SET disabled = true WHERE username = 'c.li'")
        assert await _me(node, token) == 200  # still cached: the window until the next re-check
        await node.hub.recheck_sessions()
        assert len(node.hub.session_cache) == 0
        assert await _me(node, token) == 401
    finally:
        await _sql(node, "UPDATE users SET disabled = false WHERE username = 'c.li'")


async def test_a_role_changed_outside_the_hub_is_not_served_after_the_recheck(node: RunningNode) -> None:
    admin, li = await login(node, "br.admin"), await login(node, "c.li")

    async def role() -> str:
        async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {admin}"}) as http:
            r = await http.get("/v1/me")
            assert r.status_code == 200, r.text
            return str(r.json()["role"])

    assert await role() == "branch_admin" and await _me(node, li) == 200
    try:
        await _sql(node, "UPDATE users SET role = 'customer' WHERE username = 'br.admin'")
        await node.hub.recheck_sessions()
        assert await role() == "customer"
        # the unchanged session stays cached (confirmed, not forgotten)
        from bankhub.ids import token_hash

        assert token_hash(li) in node.hub.session_cache._entries
    finally:
        await _sql(node, "UPDATE users SET role = 'branch_admin' WHERE username = 'br.admin'")


async def test_a_role_change_drops_the_cached_principal_even_when_the_revocation_after_it_fails(
    nodes: Nodes, valkey_url: str, cluster_key: str
) -> None:
    """The role and the signal that drops cached sessions commit together: a revocation that
    then fails (here: refused by the database) leaves no node serving the old role."""
    node, b = await nodes.start_pair(valkey_url, cluster_key)
    wang = await login(node, "rm.wang")

    async def role(on: RunningNode = b) -> str:
        async with httpx.AsyncClient(base_url=on.http_url, headers={"authorization": f"Bearer {wang}"}) as http:
            r = await http.get("/v1/me")
            assert r.status_code == 200, r.text
            return str(r.json()["role"])

    assert await role() == "rm" and await role(node) == "rm" and len(b.hub.session_cache) >= 1
    await _sql(
        node,
        """CREATE FUNCTION test_refuse_revoke() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'revocation refused'; END $$;
           CREATE TRIGGER test_refuse_revoke BEFORE UPDATE ON sessions FOR EACH ROW
           WHEN (NEW.revoked_reason = 'role changed') EXECUTE FUNCTION test_refuse_revoke()""",
    )
    try:
        import asyncpg

        from bankhub.actions.sessions import apply_role_change
        from bankhub.models import Role

        actor, target = await node.hub.users.by_username("ho.admin"), await node.hub.users.by_username("rm.wang")
        assert actor is not None and target is not None
        with pytest.raises(asyncpg.exceptions.RaiseError):
            await apply_role_change(node.hub, actor, target, Role.STAFF)
        assert await role(node) == "staff"  # the role committed: not the cached "rm"
        for _ in range(100):  # the other node, once the broadcast signal has come through Valkey
            if len(b.hub.session_cache) == 0:
                break
            await asyncio.sleep(0.02)
        assert await role() == "staff"  # the role committed: not the cached "rm"
    finally:
        await _sql(node, "DROP TRIGGER test_refuse_revoke ON sessions; DROP FUNCTION test_refuse_revoke()")


async def test_an_approved_role_change_revokes_the_sessions_even_when_the_org_groups_fail(node: RunningNode) -> None:
    """Dual control: the target's sessions end before the org groups are reconciled, so a
    failing reconcile (here: refused by the database) neither skips nor delays the revocation."""
    import asyncpg

    from bankhub.actions import admin_requests

    await _sql(node, "UPDATE users SET role = 'head_office_admin', org_id = (SELECT org_id FROM users WHERE username = 'ho.admin') WHERE username = 'co.sun'")
    zhang = await login(node, "c.zhang")
    assert await _me(node, zhang) == 200
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {await login(node, 'ho.admin')}"}) as http:
        # staff of Beijing and below are members: c.zhang joins once staff
        assert (await http.post("/v1/org-groups", json={"title": "All staff of Beijing", "org": "BJ"})).status_code == 201
        filed = await http.put("/v1/users/c.zhang/role", json={"role": "compliance"})
        assert filed.status_code == 202, filed.text
    await _sql(
        node,
        """CREATE FUNCTION test_refuse_join() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                IF NEW.user_id = (SELECT id FROM users WHERE username = 'c.zhang') THEN RAISE EXCEPTION 'join refused'; END IF;
                RETURN NEW;
              END $$;
           CREATE TRIGGER test_refuse_join BEFORE INSERT ON conversation_members FOR EACH ROW
           EXECUTE FUNCTION test_refuse_join()""",
    )
    try:
        approver = await node.hub.users.by_username("co.sun")
        assert approver is not None
        with pytest.raises(asyncpg.exceptions.RaiseError):
            await admin_requests.approve(node.hub, approver, filed.json()["id"])
        assert await _me(node, zhang) == 401  # revoked, and not served from the cache
    finally:
        await _sql(node, "DROP TRIGGER test_refuse_join ON conversation_members; DROP FUNCTION test_refuse_join()")


async def test_a_principal_signal_whose_publish_failed_is_published_again(nodes: Nodes) -> None:
    """The other nodes' caches depend on the signal: a publish that fails after the commit is
    tried again (within session_cache_seconds), not only logged."""
    from collections.abc import Sequence

    from bankhub.broker import BROADCAST_CHANNEL, MemoryBroker
    from bankhub.node import build_hub
    from bankhub.runner import start_node
    from bankhub.settings import Settings
    from bankhub.signals import PrincipalSignal, decode_signal

    class FlakyBroker(MemoryBroker):
        """Refuses the next ``failures`` publishes (a broker briefly away)."""

        failures = 0
        sent: list[tuple[str, bytes]] = []

        async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker away")
            self.sent.extend(items)
            await super().publish_many(items)

    broker = FlakyBroker()
    settings = Settings(database_url=nodes.dsn, node_name="flaky", key_file=nodes.key_file)
    node = await start_node(build_hub(settings, broker=broker), wrap_app=nodes.contract.wrap)
    nodes.running.append(node)
    token = await login(node, "c.li")
    user_id = (await node.hub.users.by_username("c.li")).id  # type: ignore[union-attr]
    broker.failures = 2  # the sign-out's publish, and the first retry
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        assert (await http.delete("/v1/sessions/current")).status_code == 204

    def principal_sent() -> bool:
        return any(
            ch == BROADCAST_CHANNEL and isinstance(s := decode_signal(p), PrincipalSignal) and s.user_id == user_id
            for ch, p in broker.sent
        )

    assert not principal_sent()
    for _ in range(100):
        if principal_sent():
            break
        await asyncio.sleep(0.05)
    assert principal_sent() and broker.failures == 0


async def test_a_widget_partner_disabled_from_the_cli_is_refused_at_once_by_every_nodes_cache(
    nodes: Nodes, valkey_url: str, cluster_key: str, dsn: str, key_file: str
) -> None:
    """The CLI revokes the visitors' sessions without a hub: it publishes the same signals
    through the cluster's broker, so no node keeps serving them from its cache."""
    from bankhub_client.widget import mint_visitor_token

    from .test_widget import SHOP, _cli, _enter, _partner

    a, b = await nodes.start_pair(valkey_url, cluster_key)
    partner, secret = await _partner(a, "shop", SHOP)
    entered = await _enter(b, partner.id, mint_visitor_token(secret, partner.id, "v0", "V"))
    assert entered.status_code == 201, entered.text
    visitor = entered.json()["token"]
    assert await _me(b, visitor) == 200 and len(b.hub.session_cache) == 1
    env = {"BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": key_file, "BANKHUB_REDIS_URL": valkey_url, "BANKHUB_CLUSTER_KEY": cluster_key}
    code, out, err = await _cli("widget", "disable", "shop", env=env)
    assert code == 0 and "disabled" in out and "note:" not in err, err
    for _ in range(100):  # the signal's trip through Valkey (the re-check is 30 s away)
        if len(b.hub.session_cache) == 0:
            break
        await asyncio.sleep(0.02)
    assert await _me(b, visitor) == 401
