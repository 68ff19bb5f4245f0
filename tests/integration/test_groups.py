"""Groups over HTTP and WebSocket on a real node: contacts only for customers, the size cap,
owner and admin roles, a ``system`` message for every change, removed members cut off, and
org groups whose membership follows the org tree."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from bankhub.actions import groups as group_actions
from bankhub.runner import RunningNode
from bankhub.storage.contacts import ContactStore
from bankhub.storage.conversations import MAX_LISTED_MEMBERS

from ..conftest import Nodes, login
from ..support.wsclient import RawClient


def _client(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _ids(node: RunningNode, *usernames: str) -> dict[str, str]:
    out = {}
    for name in usernames:
        user = await node.hub.users.by_username(name)
        assert user is not None
        out[name] = user.id
    return out


async def befriend(node: RunningNode, a: str, b: str) -> None:
    ids = await _ids(node, a, b)
    async with node.hub.db.transaction("test_befriend") as conn:
        await ContactStore.befriend(conn, ids[a], ids[b])


async def _system(client: RawClient, event: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next ``system`` message with ``event`` (other messages skipped)."""
    while True:
        msg: dict[str, Any] = (await client.expect("message", timeout=timeout))["message"]
        if msg["body"].get("kind") == "system" and msg["body"]["event"] == event:
            return msg


async def _group(http: httpx.AsyncClient, title: str, members: list[str]) -> httpx.Response:
    return await http.post("/v1/groups", json={"title": title, "members": members})


async def test_customers_make_groups_with_their_contacts_only(node: RunningNode) -> None:
    async with _client(node, await login(node, "c.li")) as li:
        r = await _group(li, "Weekend", ["c.zhang"])
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        # an unknown name gets the same answer as a non-contact: nothing tells whether it exists
        unknown = await _group(li, "Weekend", ["c.nobody"])
        assert unknown.status_code == 403 and unknown.json()["detail"] == "c.nobody is not one of your contacts"
        assert r.json()["detail"] == "c.zhang is not one of your contacts"
        # customers never put staff in a group, contacts or not
        assert (await _group(li, "Weekend", ["rm.wang"])).status_code == 403
        # the old endpoint asks the same policy
        old = await li.post("/v1/conversations", json={"kind": "group", "title": "x", "members": ["c.zhang"]})
        assert old.status_code == 403
        await befriend(node, "c.li", "c.zhang")
        r = await _group(li, "Weekend", ["c.zhang"])
        assert r.status_code == 201, r.text
        group = r.json()
        assert group["my_role"] == "owner" and group["members"] == 2 and group["org"] is None
        old = await li.post("/v1/conversations", json={"kind": "group", "title": "x", "members": ["c.zhang"]})
        assert old.status_code == 201, old.text


async def test_the_size_cap_holds_at_creation_and_on_invite(nodes: Nodes) -> None:
    node = await nodes.start(group_max_members=2)
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    async with _client(node, await login(node, "c.li")) as li:
        r = await _group(li, "Three", ["c.zhang", "c.zhou"])
        assert r.status_code == 409 and r.json()["code"] == "group_full", r.text
        r = await _group(li, "Two", ["c.zhang"])
        assert r.status_code == 201 and r.json()["max_members"] == 2
        conv = r.json()["conversation_id"]
        r = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})
        assert r.status_code == 409 and r.json()["code"] == "group_full", r.text
        assert (await li.get(f"/v1/groups/{conv}")).json()["members"] == 2


async def test_roles_and_a_system_message_for_every_change(node: RunningNode) -> None:
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    tokens = {u: await login(node, u) for u in ("c.li", "c.zhang", "c.zhou")}
    ids = await _ids(node, "c.li", "c.zhang", "c.zhou")
    async with _client(node, tokens["c.li"]) as li, _client(node, tokens["c.zhang"]) as zhang, _client(node, tokens["c.zhou"]) as zhou:
        ws = {u: await RawClient.connect(node.ws_url, t) for u, t in tokens.items()}
        r = await _group(li, "Family", ["c.zhang"])
        assert r.status_code == 201
        conv = r.json()["conversation_id"]
        added = await ws["c.zhang"].expect("conversation_added")
        assert added == {"type": "conversation_added", "conversation_id": conv, "kind": "group", "reason": "group_created"}

        # rename: the owner may, a member may not
        assert (await zhang.put(f"/v1/groups/{conv}/title", json={"title": "Mine"})).status_code == 403
        r = await li.put(f"/v1/groups/{conv}/title", json={"title": "Li family"})
        assert r.status_code == 200 and r.json()["title"] == "Li family"
        msg = await _system(ws["c.zhang"], "group_renamed")
        assert msg["body"]["data"]["title"] == "Li family" and msg["body"]["data"]["actor"] == "c.li"

        # invite: a member may not, the owner may; the invitee gains the group live
        assert (await zhang.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})).status_code == 403
        r = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})
        assert r.status_code == 200 and r.json()["members"] == 3
        assert (await ws["c.zhou"].expect("conversation_added"))["reason"] == "group_invited"
        msg = await _system(ws["c.zhou"], "group_members_added")
        assert msg["body"]["data"]["users"] == "c.zhou" and msg["body"]["data"]["user_ids"] == ids["c.zhou"]
        await _system(ws["c.zhang"], "group_members_added")
        again = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})
        assert again.status_code == 409 and again.json()["code"] == "conflict"

        # promote: only the owner changes roles
        assert (await zhang.put(f"/v1/groups/{conv}/members/c.zhou/role", json={"role": "admin"})).status_code == 403
        r = await li.put(f"/v1/groups/{conv}/members/c.zhang/role", json={"role": "admin"})
        assert r.status_code == 200
        msg = await _system(ws["c.zhou"], "group_role_changed")
        assert msg["body"]["data"]["user"] == "c.zhang" and msg["body"]["data"]["role"] == "admin"

        # an admin removes members, never the owner
        r = await zhang.delete(f"/v1/groups/{conv}/members/c.li")
        assert r.status_code == 403, r.text
        r = await zhang.delete(f"/v1/groups/{conv}/members/c.zhou")
        assert r.status_code == 200 and r.json()["members"] == 2
        removed = await ws["c.zhou"].expect("conversation_removed")
        assert removed == {"type": "conversation_removed", "conversation_id": conv, "reason": "group_removed"}
        msg = await _system(ws["c.li"], "group_member_removed")
        assert msg["body"]["data"]["user"] == "c.zhou" and msg["body"]["data"]["actor"] == "c.zhang"

        # the removed member can no longer read or send, and gets nothing more of the group
        assert (await zhou.get(f"/v1/conversations/{conv}/messages")).status_code == 404
        assert (await zhou.get(f"/v1/groups/{conv}/members")).status_code == 404
        refused = await ws["c.zhou"].expect("error", frame_id=await ws["c.zhou"].send_text(conv, "still here?"))
        assert refused["code"] == "not_found"
        await ws["c.li"].send_text(conv, "only for the two of us")
        while (msg := (await ws["c.zhang"].messages(1))[0])["body"]["kind"] != "text":
            pass
        assert msg["body"]["text"] == "only for the two of us"
        assert await ws["c.zhou"].quiet("message")

        # demote: the owner again
        r = await li.put(f"/v1/groups/{conv}/members/c.zhang/role", json={"role": "member"})
        assert r.status_code == 200
        msg = await _system(ws["c.zhang"], "group_role_changed")
        assert msg["body"]["data"]["role"] == "member"

        # the owner leaves: ownership passes on, and the one who left loses the group
        r = await li.post(f"/v1/groups/{conv}/leave")
        assert r.status_code == 200 and r.json() == {"conversation_id": conv, "left": True}
        assert (await ws["c.li"].expect("conversation_removed"))["reason"] == "group_left"
        left = await _system(ws["c.zhang"], "group_member_left")
        assert left["body"]["data"]["actor"] == "c.li"
        owner = await _system(ws["c.zhang"], "group_owner_changed")
        assert owner["body"]["data"]["user"] == "c.zhang" and owner["body"]["data"]["previous"] == "c.li"
        view = (await zhang.get(f"/v1/groups/{conv}")).json()
        assert view["my_role"] == "owner" and view["members"] == 1
        assert (await li.get(f"/v1/groups/{conv}")).status_code == 404
        for c in ws.values():
            await c.close()


async def test_ownership_is_handed_on_by_the_owner(node: RunningNode) -> None:
    await befriend(node, "c.li", "c.zhang")
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhang")) as zhang:
        conv = (await _group(li, "Handover", ["c.zhang"])).json()["conversation_id"]
        r = await li.put(f"/v1/groups/{conv}/members/c.zhang/role", json={"role": "owner"})
        assert r.status_code == 200 and r.json()["my_role"] == "admin"
        assert (await zhang.get(f"/v1/groups/{conv}")).json()["my_role"] == "owner"
        # the new owner may remove the old one (now an admin); an admin may not remove the owner
        assert (await li.delete(f"/v1/groups/{conv}/members/c.zhang")).status_code == 403
        assert (await zhang.delete(f"/v1/groups/{conv}/members/c.li")).status_code == 200


async def test_the_member_list_pages_and_shows_fellow_members_only(node: RunningNode) -> None:
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "rm.wang")) as wang:
        conv = (await _group(li, "Three", ["c.zhang", "c.zhou"])).json()["conversation_id"]
        seen: list[dict[str, Any]] = []
        url = f"/v1/groups/{conv}/members?limit=2"
        while True:
            page = (await li.get(url)).json()
            seen += page["members"]
            if page["next_cursor"] is None:
                break
            url = f"/v1/groups/{conv}/members?limit=2&cursor={page['next_cursor']}"
        assert sorted(m["username"] for m in seen) == ["c.li", "c.zhang", "c.zhou"]
        assert {m["username"]: m["role"] for m in seen}["c.li"] == "owner"
        assert set(seen[0]) == {"user_id", "username", "display_name", "role"}
        # the RM of all three is no member: no names
        assert (await wang.get(f"/v1/groups/{conv}/members")).status_code == 404
        assert (await wang.get(f"/v1/groups/{conv}")).status_code == 404
        assert (await li.get(f"/v1/groups/{conv}/members?cursor=bm90IGEga2V5")).status_code == 400


async def test_an_org_group_follows_the_org_tree(node: RunningNode) -> None:
    admin_token = await login(node, "br.admin")
    async with _client(node, admin_token) as admin, _client(node, await login(node, "rm.wang")) as wang:
        # who may create one where
        async with _client(node, await login(node, "c.li")) as li:
            assert (await li.post("/v1/org-groups", json={"title": "x", "org": "BJ"})).status_code == 403
        assert (await wang.post("/v1/org-groups", json={"title": "x", "org": "BJ"})).status_code == 403
        assert (await admin.post("/v1/org-groups", json={"title": "x", "org": "SH"})).status_code == 403
        assert (await admin.post("/v1/org-groups", json={"title": "x", "org": "NOPE"})).status_code == 403
        # a branch admin cannot tell an unknown org from another branch's: one answer
        out_of_reach = (await admin.post("/v1/org-groups", json={"title": "x", "org": "SH"})).json()
        unknown = (await admin.post("/v1/org-groups", json={"title": "x", "org": "NOPE"})).json()
        assert (unknown["code"], unknown["detail"]) == (out_of_reach["code"], out_of_reach["detail"]) == ("forbidden", out_of_reach["detail"])
        async with _client(node, await login(node, "ho.admin")) as ho:
            # head office reaches every org: an unknown one is simply not found
            r = await ho.post("/v1/org-groups", json={"title": "x", "org": "NOPE"})
            assert r.status_code == 404 and r.json()["code"] == "not_found", r.text

        r = await admin.post("/v1/org-groups", json={"title": "All staff of Beijing", "org": "BJ"})
        assert r.status_code == 201, r.text
        bj = r.json()
        assert bj["org"] == "BJ" and bj["max_members"] is None and bj["my_role"] == "member"
        members = (await wang.get(f"/v1/groups/{bj['conversation_id']}/members")).json()["members"]
        assert sorted(m["username"] for m in members) == ["br.admin", "rm.wang"]  # staff of BJ and below, no customers
        audited = await node.hub.db.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'group.org_created' AND target = $1", f"conversation:{bj['conversation_id']}"
        )
        assert audited == 1

        r = await admin.post("/v1/org-groups", json={"title": "All staff of Haidian", "org": "BJ-HD"})
        assert r.status_code == 201
        hd = r.json()["conversation_id"]
        assert r.json()["members"] == 0 and r.json()["my_role"] is None  # br.admin works at BJ, above Haidian

        # nobody joins, leaves or is removed by hand
        conv = bj["conversation_id"]
        assert (await wang.post(f"/v1/groups/{conv}/leave")).status_code == 403
        assert (await admin.delete(f"/v1/groups/{conv}/members/rm.wang")).status_code == 403
        assert (await admin.post(f"/v1/groups/{conv}/members", json={"members": ["c.li"]})).status_code == 403
        # its administrators rename it, its members do not
        assert (await wang.put(f"/v1/groups/{conv}/title", json={"title": "BJ"})).status_code == 403
        assert (await admin.put(f"/v1/groups/{hd}/title", json={"title": "Haidian staff"})).status_code == 200

        # a new member of staff in Haidian joins both groups at once
        r = await admin.post(
            "/v1/users",
            json={"username": "staff.hd", "display_name": "Haidian clerk", "role": "staff", "org": "BJ-HD", "password": "hd-password-1"},
        )
        assert r.status_code == 201, r.text
        assert (await admin.get(f"/v1/groups/{hd}")).json()["members"] == 1
        clerk_token = await login(node, "staff.hd", "hd-password-1")
        clerk_ws = await RawClient.connect(node.ws_url, clerk_token)
        async with _client(node, clerk_token) as clerk:
            mine = {c["id"] for c in (await clerk.get("/v1/conversations")).json()["conversations"]}
            assert {conv, hd} <= mine
            history = (await clerk.get(f"/v1/conversations/{hd}/messages")).json()["messages"]
            assert any(m["body"].get("event") == "group_members_added" and m["body"]["data"]["users"] == "staff.hd" for m in history)

            # disabled: out of both groups, and their devices are told
            clerk_id = (await _ids(node, "staff.hd"))["staff.hd"]
            await node.hub.db.pool.execute("UPDATE users SET disabled = true WHERE username = 'staff.hd'")
            await group_actions.reconcile_user(node.hub, clerk_id)
            gone = {(await clerk_ws.expect("conversation_removed"))["conversation_id"] for _ in range(2)}
            assert gone == {conv, hd}
        assert (await admin.get(f"/v1/groups/{hd}")).json()["members"] == 0
        members = (await wang.get(f"/v1/groups/{conv}/members")).json()["members"]
        assert sorted(m["username"] for m in members) == ["br.admin", "rm.wang"]
        await clerk_ws.close()


async def test_the_periodic_reconcile_catches_changes_made_outside_the_hub(node: RunningNode) -> None:
    async with _client(node, await login(node, "ho.admin")) as ho:
        conv = (await ho.post("/v1/org-groups", json={"title": "Beijing", "org": "BJ"})).json()["conversation_id"]
    await node.hub.db.pool.execute("UPDATE users SET disabled = true WHERE username = 'rm.wang'")
    await group_actions.reconcile_all(node.hub)
    ids = await _ids(node, "rm.wang", "br.admin")
    assert set(await node.hub.conversations.members(conv)) == {ids["br.admin"]}
    await node.hub.db.pool.execute("UPDATE users SET disabled = false WHERE username = 'rm.wang'")
    await group_actions.reconcile_all(node.hub)
    assert set(await node.hub.conversations.members(conv)) == {ids["br.admin"], ids["rm.wang"]}


async def test_an_org_group_follows_a_role_change(node: RunningNode) -> None:
    async with _client(node, await login(node, "ho.admin")) as ho:
        conv = (await ho.post("/v1/org-groups", json={"title": "Beijing", "org": "BJ"})).json()["conversation_id"]
        r = await ho.post(
            "/v1/users", json={"username": "c.new", "display_name": "New", "role": "customer", "org": "BJ", "password": "new-password-1"}
        )
        assert r.status_code == 201, r.text
        new_id = r.json()["user"]["id"]
        assert new_id not in await node.hub.conversations.members(conv)  # customers are no staff
        assert (await ho.put("/v1/users/c.new/role", json={"role": "staff"})).status_code == 200
        assert new_id in await node.hub.conversations.members(conv)
        assert (await ho.put("/v1/users/c.new/role", json={"role": "customer"})).status_code == 200
        assert new_id not in await node.hub.conversations.members(conv)


async def test_a_large_org_group_lists_a_bounded_number_of_member_ids(node: RunningNode) -> None:
    hd = (await node.hub.users.org_ids_by_code(["BJ-HD"]))["BJ-HD"]
    await node.hub.db.pool.execute(
        """INSERT INTO users (id, username, display_name, role, org_id, password_hash)
           SELECT gen_random_uuid(), 'staff.hd' || n, 'Clerk ' || n, 'staff', $1, 'x' FROM generate_series(1, 130) n""",
        uuid.UUID(hd),
    )
    async with _client(node, await login(node, "br.admin")) as admin:
        r = await admin.post("/v1/org-groups", json={"title": "Haidian", "org": "BJ-HD"})
        assert r.status_code == 201 and r.json()["members"] == 130
    clerk = await node.hub.users.by_username("staff.hd7")
    assert clerk is not None
    (summary,) = [c for c in await node.hub.conversations.list_for_user(clerk.id) if c.id == r.json()["conversation_id"]]
    assert len(summary.members) == MAX_LISTED_MEMBERS
    assert len(await node.hub.conversations.members(summary.id)) == 130


async def test_a_customer_admin_brings_only_the_staffs_own_customers_into_a_group_with_staff(node: RunningNode) -> None:
    # rm.wang's group with c.li, made its admin: c.li's contacts come in only when they are
    # in rm.wang's book too; a customer reaches staff only through their RM or the desk
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    async with _client(node, await login(node, "rm.wang")) as wang, _client(node, await login(node, "c.li")) as li:
        r = await _group(wang, "Wang's clients", ["c.li"])
        assert r.status_code == 201, r.text
        conv = r.json()["conversation_id"]
        assert (await wang.put(f"/v1/groups/{conv}/members/c.li/role", json={"role": "admin"})).status_code == 200
        r = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})  # rm.chen's customer
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        assert "c.zhou" not in {m["username"] for m in (await li.get(f"/v1/groups/{conv}/members")).json()["members"]}
        r = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhang"]})  # rm.wang's customer
        assert r.status_code == 200 and r.json()["members"] == 3, r.text
        # a group of customers only still takes any contact
        r = await _group(li, "Friends", ["c.zhang"])
        assert r.status_code == 201
        r = await li.post(f"/v1/groups/{r.json()['conversation_id']}/members", json={"members": ["c.zhou"]})
        assert r.status_code == 200, r.text


async def test_a_block_committed_while_an_invite_waits_for_the_group_is_seen(node: RunningNode) -> None:
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    ids = await _ids(node, "c.li", "c.zhou")
    async with _client(node, await login(node, "c.li")) as li:
        r = await _group(li, "Friends", ["c.zhang"])
        assert r.status_code == 201
        conv = r.json()["conversation_id"]
        pool = node.hub.db.pool
        async with pool.acquire() as holder:
            # another change of the group holds its row: the invite waits behind it
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(conv))
            invite = asyncio.create_task(li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]}))
            for _ in range(200):
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the invite never waited for the group's row"
            # c.zhou blocks c.li meanwhile, and it commits before the invite goes on
            async with node.hub.db.transaction("test_block") as conn:
                await ContactStore.block(conn, ids["c.zhou"], ids["c.li"])
            await tx.commit()
        r = await invite
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        members = (await li.get(f"/v1/groups/{conv}/members")).json()["members"]
        assert sorted(m["username"] for m in members) == ["c.li", "c.zhang"]


async def test_a_group_change_and_its_system_message_commit_together(node: RunningNode) -> None:
    # the group committer is gone (a node draining, or dying right after a change): the
    # change's message is still there, written in the change's own transaction
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    async with _client(node, await login(node, "c.li")) as li:
        r = await _group(li, "Friends", ["c.zhang"])
        assert r.status_code == 201
        conv = r.json()["conversation_id"]
        await node.hub.committer.stop()
        r = await li.post(f"/v1/groups/{conv}/members", json={"members": ["c.zhou"]})
        assert r.status_code == 200, r.text
        r = await li.put(f"/v1/groups/{conv}/title", json={"title": "Old friends"})
        assert r.status_code == 200, r.text
        page = (await li.get(f"/v1/conversations/{conv}/messages")).json()
        events = [m["body"].get("event") for m in page["messages"] if m["body"]["kind"] == "system"]
        assert events == ["group_renamed", "group_members_added"], page
        seqs = [m["seq"] for m in page["messages"]]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
