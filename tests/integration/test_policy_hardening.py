"""Issue 11, defects 5, 6 and 8: administrators see metadata, not message text; every
principal of a policy decision is checked; administrative accounts need a second
administrator's approval (dual control), and every step is audited."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from bankhub.models import Role
from bankhub.runner import RunningNode
from bankhub.storage.audit import AUDIT_LOCK_KEY

from ..conftest import login, open_direct
from ..support.desk import api, make_user, token_for
from ..support.wsclient import RawClient

CARD = "4111 1111 1111 1111 exp 12/29 CVV 737"
MASKED = "4111 **** **** 1111 exp 12/29 CVV ***"  # what data-loss prevention stores (docs/compliance.md)


async def _audit(node: RunningNode, *actions: str) -> list[dict[str, Any]]:
    async with node.hub.db.connection("test_audit") as conn:
        rows = await conn.fetch(
            "SELECT action, actor, target, reason, details::text AS details FROM audit_log WHERE action = ANY($1::text[]) ORDER BY seq",
            list(actions),
        )
    return [{**dict(r), "details": json.loads(r["details"] or "{}")} for r in rows]


def _new_user(username: str, role: str, org: str, **extra: Any) -> dict[str, Any]:
    return {"username": username, "display_name": username.title(), "role": role, "org": org, "password": "a-long-password", **extra}


# --- defect 5: the book's message text is the RM's alone ------------------------------------


async def test_administrators_see_the_book_metadata_but_never_the_message_text(node: RunningNode) -> None:
    li = await token_for(node, "c.li")
    conv = await open_direct(node, li, "rm.wang")
    client = await RawClient.connect(node.ws_url, li)
    await client.expect("sent", frame_id=await client.send_text(conv, CARD))
    await client.close()

    async with api(node, await token_for(node, "rm.wang")) as http:
        own = (await http.get("/v1/rm/book")).json()
    row = next(c for c in own["customers"] if c["customer"]["username"] == "c.li")
    assert row["last_message"]["body"]["text"] == MASKED  # the RM reads their own customers' words (card data masked)
    assert (row["last_sender"], row["unread"]) == ("customer", 1)

    for admin in ("br.admin", "ho.admin"):
        async with api(node, await token_for(node, admin)) as http:
            r = await http.get("/v1/rm/book", params={"rm": "rm.wang"})
        assert r.status_code == 200, r.text
        assert "4111" not in r.text and "CVV" not in r.text, admin
        entry = next(c for c in r.json()["customers"] if c["customer"]["username"] == "c.li")
        # metadata only: when, how many unread, who wrote last
        assert entry["last_message"] is None and entry["conversation_id"] == conv
        assert entry["last_sender"] == "customer" and entry["unread"] == 1 and entry["last_message_ts"] > 0

    # the text reaches anyone else only through the reason-coded, audited compliance read
    async with api(node, await token_for(node, "co.sun")) as http:
        r = await http.get(f"/v1/compliance/conversations/{conv}/messages", params={"reason": "fraud_investigation"})
    assert r.status_code == 200 and r.json()["messages"][0]["body"]["text"] == MASKED
    assert [a["target"] for a in await _audit(node, "privileged_read")] == [f"conversation:{conv}"]


# --- defect 6: every principal of a decision -------------------------------------------------


async def test_a_branch_admin_cannot_attach_a_customer_to_another_branchs_rm(node: RunningNode) -> None:
    async with api(node, await token_for(node, "br.admin")) as br:
        other_branch = await br.post("/v1/users", json=_new_user("c.cross", "customer", "BJ", rm="rm.chen"))
        assert other_branch.status_code == 400 and other_branch.json()["code"] == "invalid_request", other_branch.text
        # the same answer as for an RM that does not exist: nothing about Shanghai's staff leaks
        missing = await br.post("/v1/users", json=_new_user("c.cross", "customer", "BJ", rm="rm.nobody"))
        assert missing.status_code == 400
        assert missing.json()["detail"].replace("rm.nobody", "X") == other_branch.json()["detail"].replace("rm.chen", "X")
        # an agent is not an RM; a disabled RM serves nobody
        assert (await br.post("/v1/users", json=_new_user("c.cross", "customer", "BJ", rm="agent.zhao"))).status_code == 400
        await make_user(node, "rm.gone", Role.RM, "BJ")
        async with node.hub.db.connection("test_disable") as conn:
            await conn.execute("UPDATE users SET disabled = true WHERE username = 'rm.gone'")
        assert (await br.post("/v1/users", json=_new_user("c.cross", "customer", "BJ", rm="rm.gone"))).status_code == 400
        # the branch's own RM is fine
        ok = await br.post("/v1/users", json=_new_user("c.cross", "customer", "BJ", rm="rm.wang"))
        assert ok.status_code == 201, ok.text
    assert await node.hub.users.by_username("c.cross") is not None
    # head office administers every branch: a customer may be served from another one
    async with api(node, await token_for(node, "ho.admin")) as ho:
        assert (await ho.post("/v1/users", json=_new_user("c.moved", "customer", "BJ", rm="rm.chen"))).status_code == 201
    # a caller who may not create users is refused before any username is looked up: an
    # existing and an unknown RM get the same answer, so nobody can probe who exists
    async with api(node, await token_for(node, "c.li")) as li:
        answers = [await li.post("/v1/users", json=_new_user("c.probe", "customer", "BJ", rm=rm)) for rm in ("co.sun", "nobody.here")]
        assert [(a.status_code, a.json()) for a in answers] == [(403, answers[0].json())] * 2
    # the customer refused above never chats with rm.chen
    created = await node.hub.users.by_username("c.cross")
    chen = await node.hub.users.by_username("rm.chen")
    assert created is not None and chen is not None and created.rm_id != chen.id


async def test_a_former_rm_keeps_nothing_of_the_book_after_a_role_change(node: RunningNode) -> None:
    async with api(node, await token_for(node, "ho.admin")) as ho:
        assert (await ho.put("/v1/users/rm.wang/role", json={"role": "staff"})).json()["role"] == "staff"
    # c.li still points at him, but he is no RM now: no new direct conversation either way
    async with api(node, await token_for(node, "c.li")) as li:
        r = await li.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        # nor is he shown to her as her relationship manager
        r = await li.get("/v1/me/rm")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    async with api(node, await token_for(node, "rm.wang")) as wang:
        assert (await wang.get("/v1/customers/c.li/card")).json()["code"] == "not_found"
        r = await wang.post("/v1/conversations", json={"kind": "group", "title": "old book", "members": ["c.li"]})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


# --- defect 8: dual control ------------------------------------------------------------------


async def test_one_admin_cannot_create_a_second_admin_and_approve_their_own_notice(node: RunningNode) -> None:
    """The bypass of the issue: ho.admin creates ho.sock, then approves their own notice with it."""
    async with api(node, await token_for(node, "ho.admin")) as ho:
        filed = await ho.post("/v1/users", json=_new_user("ho.sock", "head_office_admin", "HO"))
        assert filed.status_code == 202, filed.text
        request = filed.json()
        assert (request["status"], request["username"], request["role"], request["requested_by"]) == (
            "pending", "ho.sock", "head_office_admin", "ho.admin"
        )
        assert "password" not in filed.text and "argon2" not in filed.text
        # nothing exists yet: the second account cannot sign in
        assert await node.hub.users.by_username("ho.sock") is None
        async with httpx.AsyncClient(base_url=node.http_url) as anon:
            r = await anon.post("/v1/sessions", json={"username": "ho.sock", "password": "a-long-password"})
            assert r.status_code == 401
        # and the requester cannot approve it themselves
        own = await ho.post(f"/v1/admin-requests/{request['id']}/approve")
        assert own.status_code == 403 and own.json()["code"] == "forbidden"
        # promoting someone into an administrative or compliance role is the same
        for role in ("head_office_admin", "branch_admin", "compliance"):
            r = await ho.put("/v1/users/agent.zhao/role", json={"role": role})
            if role == "head_office_admin":
                assert r.status_code == 202 and r.json()["kind"] == "change_role" and r.json()["from_role"] == "agent"
            else:  # one pending request per account at a time
                assert r.status_code == 409, r.text
    assert (await node.hub.users.by_username("agent.zhao")).role is Role.AGENT  # type: ignore[union-attr]
    # so the maker's notice stays pending: no second administrator of head office exists
    account = await _approval_account(node)
    async with api(node, await token_for(node, "ho.admin")) as ho:
        pending = (await ho.post(f"/v1/accounts/{account}/notices", json={"body": {"kind": "text", "text": "rates"}})).json()
        assert (await ho.post(f"/v1/notices/{pending['id']}/approve")).status_code == 403


async def _approval_account(node: RunningNode) -> str:
    async with api(node, await token_for(node, "ho.admin")) as ho:
        r = await ho.post("/v1/accounts", json={"handle": "bank.rates", "name": "Rates", "requires_approval": True})
        assert r.status_code == 201, r.text
        account: str = r.json()["id"]
        return account


async def test_a_second_existing_admin_approves_and_every_step_is_audited(node: RunningNode) -> None:
    async with api(node, await token_for(node, "ho.admin")) as ho:
        request = (await ho.post("/v1/users", json=_new_user("br.second", "branch_admin", "BJ"))).json()
        withdrawn = (await ho.post("/v1/users", json=_new_user("br.third", "branch_admin", "BJ"))).json()
        elsewhere = (await ho.post("/v1/users", json=_new_user("sh.admin", "branch_admin", "SH"))).json()
        listed = (await ho.get("/v1/admin-requests")).json()
        assert [r["username"] for r in listed["requests"]] == ["br.second", "br.third", "sh.admin"]  # oldest first
        # the requester may withdraw (reject) their own request
        assert (await ho.post(f"/v1/admin-requests/{withdrawn['id']}/reject")).json()["status"] == "rejected"
    async with api(node, await token_for(node, "br.admin")) as br:
        # a branch admin sees and decides requests for its own subtree only
        assert [r["username"] for r in (await br.get("/v1/admin-requests")).json()["requests"]] == ["br.second"]
        assert (await br.post(f"/v1/admin-requests/{elsewhere['id']}/approve")).status_code == 404
        approved = await br.post(f"/v1/admin-requests/{request['id']}/approve")
        assert approved.status_code == 200, approved.text
        assert (approved.json()["status"], approved.json()["decided_by"]) == ("approved", "br.admin") and approved.json()["user_id"]
        assert (await br.post(f"/v1/admin-requests/{request['id']}/approve")).status_code == 409  # once
        assert (await br.post(f"/v1/admin-requests/{withdrawn['id']}/approve")).status_code == 409
    second = await node.hub.users.by_username("br.second")
    assert second is not None and second.role is Role.BRANCH_ADMIN and second.id == approved.json()["user_id"]
    await login(node, "br.second", "a-long-password")  # the approved account signs in with the requested password

    ho_admin, br_admin = await node.hub.users.by_username("ho.admin"), await node.hub.users.by_username("br.admin")
    assert ho_admin is not None and br_admin is not None
    rows = await _audit(node, "admin_request.filed", "admin_request.approved", "admin_request.rejected", "user.created")
    assert [(r["action"], r["actor"], r["target"]) for r in rows] == [
        ("admin_request.filed", "ho.admin", f"admin_request:{request['id']}"),
        ("admin_request.filed", "ho.admin", f"admin_request:{withdrawn['id']}"),
        ("admin_request.filed", "ho.admin", f"admin_request:{elsewhere['id']}"),
        ("admin_request.rejected", "ho.admin", f"admin_request:{withdrawn['id']}"),
        ("user.created", "br.admin", f"user:{second.id}"),
        ("admin_request.approved", "br.admin", f"admin_request:{request['id']}"),
    ]
    assert rows[3]["details"]["withdrawn"] is True
    assert rows[4]["details"]["request"] == request["id"] and rows[4]["details"]["requested_by"] == ho_admin.id
    assert (rows[0]["details"]["role"], rows[0]["details"]["org"]) == ("branch_admin", "BJ")
    assert not any("a-long-password" in json.dumps(r) or "argon2" in json.dumps(r) for r in rows)
    async with node.hub.db.connection("test_hash") as conn:  # the hash left the request with its decision
        assert await conn.fetchval("SELECT count(*) FROM admin_requests WHERE password_hash IS NOT NULL") == 1  # sh.admin's, pending


async def test_a_promotion_needs_a_checker_of_sufficient_rank_and_ends_the_users_sessions(node: RunningNode) -> None:
    await make_user(node, "ho.checker", Role.HEAD_OFFICE_ADMIN, "HO")  # a second head-office admin, made by the operator
    wang_token = await token_for(node, "rm.wang")
    async with api(node, await token_for(node, "ho.admin")) as ho:
        filed = await ho.put("/v1/users/rm.wang/role", json={"role": "head_office_admin"})
        assert filed.status_code == 202, filed.text
    request = filed.json()
    async with api(node, await token_for(node, "br.admin")) as br:
        # br.admin administers Beijing, but head-office rank is above theirs
        assert (await br.post(f"/v1/admin-requests/{request['id']}/approve")).json()["code"] == "forbidden"
    async with api(node, wang_token) as wang:  # nobody approves their own promotion (not even as a member of staff)
        assert (await wang.post(f"/v1/admin-requests/{request['id']}/approve")).status_code == 403
        assert (await wang.get("/v1/me")).json()["role"] == "rm"
    async with api(node, await token_for(node, "ho.checker")) as checker:
        r = await checker.post(f"/v1/admin-requests/{request['id']}/approve")
        assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    async with api(node, wang_token) as wang:
        assert (await wang.get("/v1/me")).status_code == 401  # signed out everywhere by the role change
    assert (await node.hub.users.by_username("rm.wang")).role is Role.HEAD_OFFICE_ADMIN  # type: ignore[union-attr]
    changed = await _audit(node, "user.role_changed", "admin_request.approved")
    assert [(r["action"], r["actor"]) for r in changed] == [("user.role_changed", "ho.checker"), ("admin_request.approved", "ho.checker")]
    assert changed[0]["details"]["to"] == "head_office_admin" and changed[0]["details"]["request"] == request["id"]


async def test_a_request_expires_and_a_disabled_requesters_request_dies_with_them(node: RunningNode) -> None:
    await make_user(node, "ho.checker", Role.HEAD_OFFICE_ADMIN, "HO")
    async with api(node, await token_for(node, "ho.admin")) as ho:
        stale = (await ho.post("/v1/users", json=_new_user("co.late", "compliance", "HO"))).json()
        orphan = (await ho.post("/v1/users", json=_new_user("co.orphan", "compliance", "HO"))).json()
    async with node.hub.db.connection("test_expire") as conn:
        await conn.execute("UPDATE admin_requests SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", stale["id"])
    async with api(node, await token_for(node, "ho.checker")) as checker:
        assert [r["username"] for r in (await checker.get("/v1/admin-requests")).json()["requests"]] == ["co.orphan"]
        r = await checker.post(f"/v1/admin-requests/{stale['id']}/approve")
        assert r.status_code == 409 and "expired" in r.json()["detail"]
        async with node.hub.db.connection("test_disable") as conn:
            await conn.execute("UPDATE users SET disabled = true WHERE username = 'ho.admin'")
        assert (await checker.post(f"/v1/admin-requests/{orphan['id']}/approve")).status_code == 409
        assert (await checker.post(f"/v1/admin-requests/{orphan['id']}/reject")).status_code == 200
    assert await node.hub.users.by_username("co.late") is None and await node.hub.users.by_username("co.orphan") is None
    assert [r["actor"] for r in await _audit(node, "admin_request.expired")] == ["system"]


async def test_the_pending_list_pages_and_is_for_administrators(node: RunningNode) -> None:
    async with api(node, await token_for(node, "ho.admin")) as ho:
        for i in range(3):
            assert (await ho.post("/v1/users", json=_new_user(f"br.page{i}", "branch_admin", "BJ-HD"))).status_code == 202
        first = (await ho.get("/v1/admin-requests", params={"limit": 2})).json()
        assert [r["username"] for r in first["requests"]] == ["br.page0", "br.page1"] and first["next_cursor"]
        rest = (await ho.get("/v1/admin-requests", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [r["username"] for r in rest["requests"]] == ["br.page2"] and rest["next_cursor"] is None
        assert (await ho.get("/v1/admin-requests", params={"limit": 0})).status_code == 400
        assert (await ho.get("/v1/admin-requests", params={"cursor": "not-a-cursor"})).status_code == 400
        assert (await ho.post("/v1/admin-requests/not-a-uuid/approve")).status_code == 404
    for who in ("c.li", "rm.wang", "co.sun"):
        async with api(node, await token_for(node, who)) as http:
            assert (await http.get("/v1/admin-requests")).status_code == 403


async def test_the_operators_bootstrap_of_administrative_accounts_is_audited(node: RunningNode) -> None:
    rows = await _audit(node, "user.bootstrapped")
    ids = {u: (await node.hub.users.by_username(u)).id for u in ("ho.admin", "br.admin", "co.sun", "co.qian")}  # type: ignore[union-attr]
    assert sorted((r["actor"], r["target"], r["details"]["role"]) for r in rows) == sorted(
        [
            ("system", f"user:{ids['ho.admin']}", "head_office_admin"),
            ("system", f"user:{ids['br.admin']}", "branch_admin"),
            ("system", f"user:{ids['co.sun']}", "compliance"),
            ("system", f"user:{ids['co.qian']}", "compliance"),
        ]
    )


async def _waiting(node: RunningNode, n: int) -> None:
    """Until ``n`` statements of the hub wait for a lock (the test holds it)."""
    for _ in range(500):
        async with node.hub.db.connection("test_waiting") as conn:
            if await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") >= n:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} statements ever waited for a lock")


async def _approve_while_held(node: RunningNode, http: httpx.AsyncClient, request_id: str, hold: str, meanwhile: str) -> httpx.Response:
    """Approve ``request_id`` while a test transaction runs ``hold`` (and holds its locks);
    once the approval waits, ``meanwhile`` commits on another connection, then the hold ends."""
    async with node.hub.db.transaction("test_hold") as held:
        await held.execute(hold, request_id) if "$1" in hold else await held.execute(hold)
        approval = asyncio.ensure_future(http.post(f"/v1/admin-requests/{request_id}/approve"))
        await _waiting(node, 1)
        async with node.hub.db.connection("test_meanwhile") as conn:
            await conn.execute(meanwhile)
    return await approval


async def test_an_approval_decides_on_the_principals_as_they_are_when_it_commits(node: RunningNode) -> None:
    await make_user(node, "ho.checker", Role.HEAD_OFFICE_ADMIN, "HO")
    lock_request = "SELECT 1 FROM admin_requests WHERE id = $1::uuid FOR UPDATE"
    async with api(node, await token_for(node, "ho.admin")) as ho:
        promotion = (await ho.put("/v1/users/rm.wang/role", json={"role": "head_office_admin"})).json()
        account = (await ho.post("/v1/users", json=_new_user("co.race", "compliance", "HO"))).json()
    async with api(node, await token_for(node, "ho.checker")) as checker:
        # the target's role changes after the request was read: the audit row says what it was changed from
        r = await _approve_while_held(node, checker, promotion["id"], lock_request, "UPDATE users SET role = 'staff' WHERE username = 'rm.wang'")
        assert r.status_code == 200, r.text
        changed = await _audit(node, "user.role_changed")
        assert (changed[-1]["details"]["from"], changed[-1]["details"]["to"]) == ("staff", "head_office_admin")
        # the requester is disabled after the request was read: it dies with them
        r = await _approve_while_held(node, checker, account["id"], lock_request, "UPDATE users SET disabled = true WHERE username = 'ho.admin'")
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    assert await node.hub.users.by_username("co.race") is None


async def test_a_username_taken_while_the_approval_runs_is_409_not_500(node: RunningNode) -> None:
    await make_user(node, "ho.checker", Role.HEAD_OFFICE_ADMIN, "HO")
    async with api(node, await token_for(node, "ho.admin")) as ho:
        filed = (await ho.post("/v1/users", json=_new_user("co.taken", "compliance", "HO"))).json()
    async with api(node, await token_for(node, "ho.checker")) as checker:
        async with node.hub.db.transaction("test_hold") as held:
            # another transaction inserts the name and has not committed: the approval's insert waits for it
            await held.execute(
                """INSERT INTO users (id, username, display_name, role, org_id, password_hash)
                   SELECT $1, 'co.taken', 'Someone Else', 'customer', org_id, 'x' FROM users WHERE username = 'c.li'""",
                uuid.uuid4(),
            )
            approval = asyncio.ensure_future(checker.post(f"/v1/admin-requests/{filed['id']}/approve"))
            await _waiting(node, 1)
        r = await approval  # the hold committed
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    taken = await node.hub.users.by_username("co.taken")
    assert taken is not None and taken.role is Role.CUSTOMER
    async with api(node, await token_for(node, "ho.admin")) as ho:  # the request is still pending, to be rejected
        assert [q["username"] for q in (await ho.get("/v1/admin-requests")).json()["requests"]] == ["co.taken"]


async def test_two_filings_at_once_for_one_username_leave_one_pending_request(node: RunningNode) -> None:
    await make_user(node, "ho.other", Role.HEAD_OFFICE_ADMIN, "HO")
    async with api(node, await token_for(node, "ho.admin")) as ho, api(node, await token_for(node, "ho.other")) as other:
        async with node.hub.db.transaction("test_hold") as held:
            # both filings pass their check, then wait for the audit chain this transaction holds
            await held.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)
            filings = [
                asyncio.ensure_future(http.post("/v1/users", json=_new_user("br.twice", "branch_admin", "BJ"))) for http in (ho, other)
            ]
            await _waiting(node, 2)
        answers = await asyncio.gather(*filings)
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        assert next(a for a in answers if a.status_code == 409).json()["code"] == "conflict"
        assert [q["username"] for q in (await ho.get("/v1/admin-requests")).json()["requests"]] == ["br.twice"]
    # a lapsed request does not block a new one: it is marked expired (and audited) when the next is filed
    async with node.hub.db.connection("test_expire") as conn:
        await conn.execute("UPDATE admin_requests SET expires_at = now() - interval '1 second' WHERE username = 'br.twice'")
    async with api(node, await token_for(node, "ho.admin")) as ho:
        assert (await ho.post("/v1/users", json=_new_user("br.twice", "branch_admin", "BJ"))).status_code == 202
    async with node.hub.db.connection("test_count") as conn:
        statuses = await conn.fetch("SELECT status FROM admin_requests WHERE username = 'br.twice' ORDER BY created_at")
    assert [s["status"] for s in statuses] == ["expired", "pending"]
    assert [r["actor"] for r in await _audit(node, "admin_request.expired")] == ["system"]


async def test_two_creations_of_one_username_at_once_are_201_and_409_never_500(node: RunningNode) -> None:
    """The username check before the insert can race; the database's unique key decides,
    and the loser is told the name is taken (409), not a server error."""
    async with api(node, await token_for(node, "ho.admin")) as ho:
        for attempt in range(5):  # a race: a few tries make both requests overlap
            name = f"c.twin{attempt}"
            answers = await asyncio.gather(*(ho.post("/v1/users", json=_new_user(name, "customer", "BJ")) for _ in range(2)))
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
            assert next(a for a in answers if a.status_code == 409).json()["code"] == "conflict"
