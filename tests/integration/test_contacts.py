"""Contacts on a real node: requests, accept, decline, remove, block, invite codes, the
``contact`` frame, and that an add never reveals whether an account exists."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from bankhub.runner import RunningNode
from bankhub.storage.contacts import ContactStore, code_hash

from ..conftest import Nodes, login, open_direct
from ..support.wsclient import RawClient


def _client(node: RunningNode, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"})


async def _uid(node: RunningNode, username: str) -> str:
    user = await node.hub.users.by_username(username)
    assert user is not None
    return user.id


async def _contact_event(ws: RawClient, event: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame = await ws.expect("contact", timeout=timeout)
        if frame["event"] == event:
            return frame


async def _names(http: httpx.AsyncClient, path: str = "/v1/contacts") -> list[str]:
    r = await http.get(path)
    assert r.status_code == 200, r.text
    return [c["user"]["username"] for c in r.json()["contacts"]]


async def _befriend(node: RunningNode, a: httpx.AsyncClient, b: httpx.AsyncClient, b_name: str) -> None:
    assert (await a.post("/v1/contacts/requests", json={"username": b_name})).status_code == 202
    incoming = (await b.get("/v1/contacts/requests/incoming")).json()["requests"]
    assert (await b.post(f"/v1/contacts/requests/{incoming[0]['id']}/accept")).status_code == 200


async def test_request_accept_live_on_both_sides_then_chat(node: RunningNode) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    li_ws, zhang_ws = await RawClient.connect(node.ws_url, li_token), await RawClient.connect(node.ws_url, zhang_token)
    assert "contacts" in li_ws.hello["features"]
    async with _client(node, li_token) as li, _client(node, zhang_token) as zhang:
        # not contacts yet: customers cannot open a direct conversation with each other
        r = await li.post("/v1/conversations", json={"kind": "direct", "peer": "c.zhang"})
        assert r.status_code == 403, r.text
        r = await li.post("/v1/contacts/requests", json={"username": "c.zhang"})
        assert r.status_code == 202 and r.content == b""
        event = await _contact_event(zhang_ws, "request")
        assert event["user"]["username"] == "c.li" and event["request_id"]
        incoming = (await zhang.get("/v1/contacts/requests/incoming")).json()["requests"]
        assert [i["user"]["username"] for i in incoming] == ["c.li"] and incoming[0]["id"] == event["request_id"]
        outgoing = (await li.get("/v1/contacts/requests/outgoing")).json()["requests"]
        assert [o["handle"] for o in outgoing] == ["c.zhang"]
        r = await zhang.post(f"/v1/contacts/requests/{event['request_id']}/accept")
        assert r.status_code == 200 and r.json()["user"]["username"] == "c.li", r.text
        assert (await _contact_event(li_ws, "accepted"))["user"]["username"] == "c.zhang"
        assert await _names(li) == ["c.zhang"] and await _names(zhang) == ["c.li"]
        assert (await li.get("/v1/contacts/requests/outgoing")).json()["requests"] == []
        assert await node.hub.contacts.are_contacts(await _uid(node, "c.li"), await _uid(node, "c.zhang"))
        # now they chat
        conv = await open_direct(node, li_token, "c.zhang")
        await li_ws.send_text(conv, "hello friend")
        assert (await li_ws.expect("sent"))["conversation_id"] == conv
        assert (await zhang_ws.messages(1))[0]["body"]["text"] == "hello friend"
        # accepting again is not found (the request is gone)
        assert (await zhang.post(f"/v1/contacts/requests/{event['request_id']}/accept")).status_code == 404
    await li_ws.close()
    await zhang_ws.close()


async def test_add_by_phone_in_any_spelling_and_mutual_requests_connect(node: RunningNode) -> None:
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhang")) as zhang:
        assert (await li.post("/v1/contacts/requests", json={"phone": "138 0000 0002"})).status_code == 202
        assert (await li.get("/v1/contacts/requests/outgoing")).json()["requests"][0]["handle"] == "+8613800000002"
        # c.zhang asks back instead of accepting: both asked, so they are contacts
        assert (await zhang.post("/v1/contacts/requests", json={"phone": "+86-13800000001"})).status_code == 202
        assert await _names(li) == ["c.zhang"] and await _names(zhang) == ["c.li"]
        # a malformed number is the caller's own mistake: 400 (it says nothing about accounts)
        r = await li.post("/v1/contacts/requests", json={"phone": "12345"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_request"
        r = await li.post("/v1/contacts/requests", json={"username": "c.zhou", "phone": "13800000003"})
        assert r.status_code == 400


async def test_an_add_never_reveals_whether_an_account_exists(node: RunningNode) -> None:
    zhou_ws = await RawClient.connect(node.ws_url, await login(node, "c.zhou"))
    rm_ws = await RawClient.connect(node.ws_url, await login(node, "rm.wang"))
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhou")) as zhou:
        answers = []
        # an unknown user, a member of staff (no customer-staff contacts), an unknown phone, a real customer
        for body in ({"username": "c.nobody"}, {"username": "rm.wang"}, {"phone": "13999999999"}, {"username": "c.zhou"}):
            r = await li.post("/v1/contacts/requests", json=body)
            answers.append((r.status_code, r.content, r.headers.get("content-type")))
        assert len(set(answers)) == 1 and answers[0][0] == 202
        # the outgoing list shows each as typed, all alike
        outgoing = (await li.get("/v1/contacts/requests/outgoing")).json()["requests"]
        assert sorted(o["handle"] for o in outgoing) == sorted(["c.nobody", "rm.wang", "+8613999999999", "c.zhou"])
        assert set(outgoing[0]) == {"id", "handle", "created_at"}
        # staff never hear of it; the real customer does
        assert await rm_ws.quiet("contact")
        assert (await _contact_event(zhou_ws, "request"))["user"]["username"] == "c.li"
        # a declined request still reads as sent to its sender
        rid = (await zhou.get("/v1/contacts/requests/incoming")).json()["requests"][0]["id"]
        assert (await zhou.post(f"/v1/contacts/requests/{rid}/decline")).status_code == 204
        # the decliner's own devices drop it
        assert (await _contact_event(zhou_ws, "declined"))["request_id"] == rid
        assert (await zhou.get("/v1/contacts/requests/incoming")).json()["requests"] == []
        assert len((await li.get("/v1/contacts/requests/outgoing")).json()["requests"]) == 4
        # asking again after a decline changes nothing and bothers nobody
        assert (await li.post("/v1/contacts/requests", json={"username": "c.zhou"})).status_code == 202
        assert await zhou_ws.quiet("contact")
        # withdrawing my own request works; someone else's id is not found
        r = await li.delete(f"/v1/contacts/requests/{outgoing[0]['id']}")
        assert r.status_code == 204
        assert (await zhou.delete(f"/v1/contacts/requests/{outgoing[1]['id']}")).status_code == 404
    async with _client(node, await login(node, "rm.wang")) as rm:
        # staff add staff, and never a customer (answered as always)
        assert (await rm.post("/v1/contacts/requests", json={"username": "c.li"})).status_code == 202
        assert (await rm.post("/v1/contacts/requests", json={"username": "agent.zhao"})).status_code == 202
        async with _client(node, await login(node, "agent.zhao")) as agent:
            incoming = (await agent.get("/v1/contacts/requests/incoming")).json()["requests"]
            assert [i["user"]["username"] for i in incoming] == ["rm.wang"]
        async with _client(node, await login(node, "c.li")) as li:
            assert (await li.get("/v1/contacts/requests/incoming")).json()["requests"] == []
    await zhou_ws.close()
    await rm_ws.close()


async def test_pending_requests_are_bounded(nodes: Nodes) -> None:
    node = await nodes.start(contacts_max_pending=2)
    async with _client(node, await login(node, "c.li")) as li:
        for name in ("c.a1", "c.a2"):
            assert (await li.post("/v1/contacts/requests", json={"username": name})).status_code == 202
        # the limit is on my own sent requests: it says nothing about the addressee
        for name in ("c.zhang", "c.nobody3"):
            r = await li.post("/v1/contacts/requests", json={"username": name})
            assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        r = await li.get("/v1/contacts/requests/outgoing", params={"limit": 1})
        assert len(r.json()["requests"]) == 1 and r.json()["next_cursor"]
        r2 = await li.get("/v1/contacts/requests/outgoing", params={"limit": 1, "cursor": r.json()["next_cursor"]})
        assert len(r2.json()["requests"]) == 1 and r2.json()["next_cursor"] is None
        assert r2.json()["requests"][0]["id"] != r.json()["requests"][0]["id"]


async def test_remove_ends_the_contact_on_both_sides(node: RunningNode) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    zhang_ws = await RawClient.connect(node.ws_url, zhang_token)
    async with _client(node, li_token) as li, _client(node, zhang_token) as zhang:
        await _befriend(node, li, zhang, "c.zhang")
        zhang_id = await _uid(node, "c.zhang")
        assert (await li.delete(f"/v1/contacts/{zhang_id}")).status_code == 204
        assert (await _contact_event(zhang_ws, "removed"))["user"]["username"] == "c.li"
        assert await _names(li) == [] and await _names(zhang) == []
        assert (await li.delete(f"/v1/contacts/{zhang_id}")).status_code == 404
        r = await li.post("/v1/conversations", json={"kind": "direct", "peer": "c.zhang"})
        assert r.status_code == 403
    await zhang_ws.close()


async def test_a_blocked_user_cannot_message_add_or_open(node: RunningNode) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    li_ws, zhang_ws = await RawClient.connect(node.ws_url, li_token), await RawClient.connect(node.ws_url, zhang_token)
    async with _client(node, li_token) as li, _client(node, zhang_token) as zhang:
        await _befriend(node, li, zhang, "c.zhang")
        conv = await open_direct(node, zhang_token, "c.li")
        await zhang_ws.send_text(conv, "before")
        await zhang_ws.expect("sent")
        await li_ws.messages(1)
        li_id, zhang_id = await _uid(node, "c.li"), await _uid(node, "c.zhang")
        # c.li blocks c.zhang
        assert (await li.put(f"/v1/contacts/blocks/{zhang_id}")).status_code == 204
        assert (await _contact_event(zhang_ws, "removed"))["user"]["username"] == "c.li"
        assert (await _contact_event(li_ws, "blocked"))["user"]["username"] == "c.zhang"  # my other devices
        assert await node.hub.contacts.blocked_either_way(zhang_id, li_id)
        assert not await node.hub.contacts.are_contacts(li_id, zhang_id)
        assert li_id not in await node.hub.contacts.contact_ids(zhang_id)
        assert await _names(li, "/v1/contacts/blocks") == ["c.zhang"]
        # the existing direct conversation refuses the blocked user's send, and the blocker's
        fid = await zhang_ws.send_text(conv, "after")
        err = await zhang_ws.expect("error", frame_id=fid)
        assert err["code"] == "forbidden"
        fid = await li_ws.send_text(conv, "after")
        assert (await li_ws.expect("error", frame_id=fid))["code"] == "forbidden"
        assert await li_ws.quiet("message")
        # nor can they (re)open it
        assert (await zhang.post("/v1/conversations", json={"kind": "direct", "peer": "c.li"})).status_code == 403
        # an add from the blocked user is answered as always, and reaches nobody
        assert (await zhang.post("/v1/contacts/requests", json={"username": "c.li"})).status_code == 202
        assert (await li.get("/v1/contacts/requests/incoming")).json()["requests"] == []
        assert await li_ws.quiet("contact")
        # an invite code of the blocker does not work for them (explicit: they hold the code)
        code = (await li.post("/v1/contacts/invites")).json()["code"]
        r = await zhang.post("/v1/contacts/invites/redeem", json={"code": code})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        # unblocking lets them message again, but does not restore the contact
        assert (await li.delete(f"/v1/contacts/blocks/{zhang_id}")).status_code == 204
        assert await _names(li) == []
        fid = await li_ws.send_text(conv, "again")
        assert (await li_ws.expect("sent", frame_id=fid))["conversation_id"] == conv
        # customers do not block staff (their RM), and staff do not block customers
        rm_id = await _uid(node, "rm.wang")
        r = await li.put(f"/v1/contacts/blocks/{rm_id}")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert (await li.put("/v1/contacts/blocks/00000000-0000-4000-8000-000000000099")).status_code == 404
    await li_ws.close()
    await zhang_ws.close()


async def test_an_invite_code_is_single_use_and_expires(node: RunningNode) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    li_ws = await RawClient.connect(node.ws_url, li_token)
    async with _client(node, li_token) as li, _client(node, zhang_token) as zhang:
        r = await li.post("/v1/contacts/invites")
        assert r.status_code == 201, r.text
        invite = r.json()
        assert invite["link"] == "bankhub://contact/" + invite["code"] and len(invite["code"]) == 16
        expires = dt.datetime.fromisoformat(invite["expires_at"])
        assert dt.timedelta(hours=23) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=24)
        # only the hash is stored
        async with node.hub.db.connection("test") as conn:
            stored = await conn.fetch("SELECT code_hash FROM contact_invites")
        assert [bytes(s["code_hash"]) for s in stored] == [code_hash(invite["code"])]
        # my own code is refused, and stays usable
        assert (await li.post("/v1/contacts/invites/redeem", json={"code": invite["code"]})).status_code == 400
        # redeemed through the link, in lower case: contacts at once, live on the owner's side
        r = await zhang.post("/v1/contacts/invites/redeem", json={"code": invite["link"].lower()})
        assert r.status_code == 200 and r.json()["user"]["username"] == "c.li", r.text
        assert (await _contact_event(li_ws, "accepted"))["user"]["username"] == "c.zhang"
        # single use
        async with _client(node, await login(node, "c.zhou")) as zhou:
            r = await zhou.post("/v1/contacts/invites/redeem", json={"code": invite["code"]})
            assert r.status_code == 404 and r.json()["code"] == "not_found"
            unknown = await zhou.post("/v1/contacts/invites/redeem", json={"code": "0000-0000-0000-0000"})
            assert unknown.status_code == 404 and unknown.json()["detail"] == r.json()["detail"]
            # expired
            other = (await li.post("/v1/contacts/invites")).json()["code"]
            async with node.hub.db.connection("test") as conn:
                await conn.execute("UPDATE contact_invites SET expires_at = now() - interval '1 second' WHERE code_hash = $1", code_hash(other))
            r = await zhou.post("/v1/contacts/invites/redeem", json={"code": other})
            assert r.status_code == 404 and r.json()["detail"] == unknown.json()["detail"]
            # staff cannot use a customer's code
            fresh = (await li.post("/v1/contacts/invites")).json()["code"]
            async with _client(node, await login(node, "rm.wang")) as rm:
                assert (await rm.post("/v1/contacts/invites/redeem", json={"code": fresh})).status_code == 403
            assert (await zhou.post("/v1/contacts/invites/redeem", json={"code": fresh})).status_code == 200
    await li_ws.close()


async def test_outstanding_invite_codes_are_bounded(nodes: Nodes) -> None:
    node = await nodes.start(contacts_max_invites=2)
    async with _client(node, await login(node, "c.li")) as li:
        for _ in range(2):
            assert (await li.post("/v1/contacts/invites")).status_code == 201
        r = await li.post("/v1/contacts/invites")
        assert r.status_code == 409 and r.json()["code"] == "conflict"
        assert (await li.post("/v1/contacts/invites/revoke")).json() == {"revoked": 2}
        assert (await li.post("/v1/contacts/invites")).status_code == 201


async def test_contacts_are_bounded(nodes: Nodes) -> None:
    node = await nodes.start(contacts_max_contacts=1)
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhang")) as zhang:
        await _befriend(node, li, zhang, "c.zhang")
        async with _client(node, await login(node, "c.zhou")) as zhou:
            assert (await zhou.post("/v1/contacts/requests", json={"username": "c.li"})).status_code == 202
            rid = (await li.get("/v1/contacts/requests/incoming")).json()["requests"][0]["id"]
            r = await li.post(f"/v1/contacts/requests/{rid}/accept")
            assert r.status_code == 409 and r.json()["code"] == "conflict"


async def test_staff_blocks_bar_a_direct_conversation_between_staff(node: RunningNode) -> None:
    """Staff open direct conversations with staff freely, unless one blocks the other."""
    rm_token, agent_token = await login(node, "rm.wang"), await login(node, "agent.zhao")
    agent_ws = await RawClient.connect(node.ws_url, agent_token)
    async with _client(node, rm_token) as rm, _client(node, agent_token) as agent:
        conv = await open_direct(node, agent_token, "rm.wang")
        assert (await rm.put(f"/v1/contacts/blocks/{await _uid(node, 'agent.zhao')}")).status_code == 204
        r = await agent.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        r = await rm.post("/v1/conversations", json={"kind": "direct", "peer": "agent.zhao"})
        assert r.status_code == 403
        fid = await agent_ws.send_text(conv, "hello?")
        assert (await agent_ws.expect("error", frame_id=fid))["code"] == "forbidden"
        # a customer cannot block staff, nor staff a customer
        r = await rm.put(f"/v1/contacts/blocks/{await _uid(node, 'c.li')}")
        assert r.status_code == 403
        assert (await rm.delete(f"/v1/contacts/blocks/{await _uid(node, 'agent.zhao')}")).status_code == 204
        assert (await agent.post("/v1/conversations", json={"kind": "direct", "peer": "rm.wang"})).status_code == 200
    await agent_ws.close()


async def test_a_disabled_requester_is_not_listed(node: RunningNode) -> None:
    async with _client(node, await login(node, "c.li")) as li:
        assert (await li.post("/v1/contacts/requests", json={"username": "c.zhang"})).status_code == 202
    async with node.hub.db.connection("test") as conn:
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'c.li'")
    async with _client(node, await login(node, "c.zhang")) as zhang:
        assert (await zhang.get("/v1/contacts/requests/incoming")).json()["requests"] == []


async def test_opening_a_direct_conversation_never_confirms_a_username_to_a_customer(node: RunningNode) -> None:
    async with _client(node, await login(node, "c.li")) as li:
        answers = []
        for peer in ("c.nobody", "c.zhou", "rm.chen", "agent.zhao"):  # unknown, not a contact, not my RM, staff
            r = await li.post("/v1/conversations", json={"kind": "direct", "peer": peer})
            answers.append((r.status_code, r.json()["code"], r.json()["detail"]))
        assert len(set(answers)) == 1 and answers[0][:2] == (403, "forbidden"), answers
    async with _client(node, await login(node, "rm.wang")) as rm:
        r = await rm.post("/v1/conversations", json={"kind": "direct", "peer": "c.nobody"})
        assert r.status_code == 404


async def _customer(node: RunningNode, username: str, *, disabled: bool = False, visitor: bool = False) -> str:
    """A new customer like c.zhou (same org, RM and password), straight into the database."""
    async with node.hub.db.transaction("test_customer") as conn:
        uid = await conn.fetchval(
            """INSERT INTO users (id, username, display_name, role, org_id, rm_id, password_hash, disabled, widget_visitor)
               SELECT gen_random_uuid(), $1, $1, role, org_id, rm_id, password_hash, $2, $3 FROM users WHERE username = 'c.zhou'
               RETURNING id""",
            username,
            disabled,
            visitor,
        )
    return str(uid)


async def test_the_outgoing_list_never_shows_which_handles_belong_to_one_account(node: RunningNode) -> None:
    """A phone of someone I already asked, of my contact and of nobody: listed alike, answered alike."""
    zhang_ws = await RawClient.connect(node.ws_url, await login(node, "c.zhang"))
    zhou_ws = await RawClient.connect(node.ws_url, await login(node, "c.zhou"))
    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhou")) as zhou:
        await _befriend(node, zhou, li, "c.li")  # c.zhou is my contact
        assert (await _contact_event(zhou_ws, "accepted"))["user"]["username"] == "c.li"
        assert (await li.post("/v1/contacts/requests", json={"username": "c.zhang"})).status_code == 202
        assert (await _contact_event(zhang_ws, "request"))["user"]["username"] == "c.li"
        answers = []
        phones = {"pending": "+8613800000002", "contact": "+8613800000003", "nobody": "+8613999999999"}
        for phone in phones.values():
            r = await li.post("/v1/contacts/requests", json={"phone": phone})
            answers.append((r.status_code, r.content, r.headers.get("content-type")))
        assert len(set(answers)) == 1 and answers[0][0] == 202, answers
        outgoing = (await li.get("/v1/contacts/requests/outgoing")).json()["requests"]
        assert sorted(o["handle"] for o in outgoing) == sorted(["c.zhang", *phones.values()])
        assert all(set(o) == {"id", "handle", "created_at"} for o in outgoing)
        # each phone row is withdrawn alike, and asking again by the same handle changes nothing
        for phone in phones.values():
            assert (await li.post("/v1/contacts/requests", json={"phone": phone})).status_code == 202
        assert len((await li.get("/v1/contacts/requests/outgoing")).json()["requests"]) == 4
        # nobody was asked twice: the pending addressee and the contact hear nothing more
        assert await zhang_ws.quiet("contact") and await zhou_ws.quiet("contact")
        async with _client(node, await login(node, "c.zhang")) as zhang:
            assert len((await zhang.get("/v1/contacts/requests/incoming")).json()["requests"]) == 1
    await zhang_ws.close()
    await zhou_ws.close()


async def test_withdrawn_requests_count_until_they_lapse(nodes: Nodes) -> None:
    """Request, withdraw, request again: each round notifies the addressee, so withdrawn
    requests keep counting against the pending limit and the rounds end."""
    node = await nodes.start(contacts_max_pending=3)
    zhang_ws = await RawClient.connect(node.ws_url, await login(node, "c.zhang"))
    async with _client(node, await login(node, "c.li")) as li:
        for _ in range(3):
            assert (await li.post("/v1/contacts/requests", json={"username": "c.zhang"})).status_code == 202
            rid = (await _contact_event(zhang_ws, "request"))["request_id"]
            assert (await li.delete(f"/v1/contacts/requests/{rid}")).status_code == 204
            assert (await _contact_event(zhang_ws, "request_withdrawn"))["request_id"] == rid
            assert (await li.get("/v1/contacts/requests/outgoing")).json()["requests"] == []
            assert (await li.delete(f"/v1/contacts/requests/{rid}")).status_code == 404  # withdrawn already
        r = await li.post("/v1/contacts/requests", json={"username": "c.zhang"})
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        assert await zhang_ws.quiet("contact")
        # once they would have lapsed they no longer count
        async with node.hub.db.connection("test") as conn:
            await conn.execute("UPDATE contact_requests SET created_at = created_at - interval '31 days'")
        assert (await li.post("/v1/contacts/requests", json={"username": "c.zhang"})).status_code == 202
        assert (await _contact_event(zhang_ws, "request"))["user"]["username"] == "c.li"
    await zhang_ws.close()


async def test_contact_requests_are_rate_limited(nodes: Nodes) -> None:
    node = await nodes.start(contacts_max_pending=100)
    async with _client(node, await login(node, "c.li")) as li:
        for n in range(20):
            assert (await li.post("/v1/contacts/requests", json={"username": f"c.nobody{n}"})).status_code == 202
        r = await li.post("/v1/contacts/requests", json={"username": "c.zhang"})
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert int(r.headers["retry-after"]) >= 1
    # the limit is per sender
    async with _client(node, await login(node, "c.zhou")) as zhou:
        assert (await zhou.post("/v1/contacts/requests", json={"username": "c.zhang"})).status_code == 202


async def test_block_and_unblock_events_and_a_block_reads_as_a_decline(node: RunningNode) -> None:
    li_token, zhang_token = await login(node, "c.li"), await login(node, "c.zhang")
    li_ws, zhang_ws = await RawClient.connect(node.ws_url, li_token), await RawClient.connect(node.ws_url, zhang_token)
    async with _client(node, li_token) as li, _client(node, zhang_token) as zhang:
        zhang_id = await _uid(node, "c.zhang")
        # a request each way: theirs declined by me, mine (by phone) pending for them
        assert (await zhang.post("/v1/contacts/requests", json={"username": "c.li"})).status_code == 202
        incoming = await _contact_event(li_ws, "request")
        assert (await li.post(f"/v1/contacts/requests/{incoming['request_id']}/decline")).status_code == 204
        assert (await li.post("/v1/contacts/requests", json={"phone": "+8613800000002"})).status_code == 202
        mine = await _contact_event(zhang_ws, "request")
        # c.li blocks c.zhang: my request to them is withdrawn on their devices, as a withdrawal
        assert (await li.put(f"/v1/contacts/blocks/{zhang_id}")).status_code == 204
        assert (await _contact_event(li_ws, "blocked"))["user"]["username"] == "c.zhang"
        withdrawn = await _contact_event(zhang_ws, "request_withdrawn")
        assert withdrawn["request_id"] == mine["request_id"] and withdrawn["user"]["username"] == "c.li"
        assert (await zhang.get("/v1/contacts/requests/incoming")).json()["requests"] == []
        assert (await li.get("/v1/contacts/requests/outgoing")).json()["requests"] == []
        # their request to me still reads to them as sent, as a declined one does
        assert [o["handle"] for o in (await zhang.get("/v1/contacts/requests/outgoing")).json()["requests"]] == ["c.li"]
        assert (await li.delete(f"/v1/contacts/blocks/{zhang_id}")).status_code == 204
        unblocked = await _contact_event(li_ws, "unblocked")
        assert unblocked["user"]["username"] == "c.zhang" and unblocked.get("request_id") is None
        assert await zhang_ws.quiet("contact")  # nothing tells them of the block or the unblock
    await li_ws.close()
    await zhang_ws.close()


async def test_a_customer_gets_one_answer_for_every_user_they_cannot_reach(node: RunningNode) -> None:
    """No such user, a disabled account, a visitor, a block either way, not a contact: one
    answer when opening a direct conversation, creating a group and inviting into one."""
    li_id = await _uid(node, "c.li")
    peers = {
        "c.nobody": None,
        "c.gone": await _customer(node, "c.gone", disabled=True),
        "c.guest": await _customer(node, "c.guest", visitor=True),
        "c.blocker": await _customer(node, "c.blocker"),
        "c.blocked": await _customer(node, "c.blocked"),
        "c.zhou": await _uid(node, "c.zhou"),  # a stranger
    }
    async with node.hub.db.transaction("test_setup") as conn:
        for name in ("c.gone", "c.blocker", "c.blocked"):  # each was my contact once
            uid = peers[name]
            assert uid is not None
            await ContactStore.befriend(conn, li_id, uid)
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'c.gone'")
        for a, b in ((peers["c.blocker"], li_id), (li_id, peers["c.blocked"])):
            assert a is not None and b is not None
            await ContactStore.block(conn, a, b)
            await ContactStore.unfriend(conn, a, b)
        await ContactStore.befriend(conn, li_id, await _uid(node, "c.zhang"))

    def same(answers: dict[str, tuple[int, str, str]]) -> None:
        shapes = {(status, code, detail.replace(name, "<name>")) for name, (status, code, detail) in answers.items()}
        assert len(shapes) == 1, answers

    async with _client(node, await login(node, "c.li")) as li, _client(node, await login(node, "c.zhang")) as zhang:
        direct, created, invited, foreign, as_member = {}, {}, {}, {}, {}
        r = await li.post("/v1/groups", json={"title": "Mine", "members": ["c.zhang"]})
        assert r.status_code == 201, r.text
        group = r.json()["conversation_id"]
        r = await zhang.post("/v1/groups", json={"title": "Theirs", "members": ["c.li"]})
        assert r.status_code == 201, r.text
        theirs = r.json()["conversation_id"]  # I am a plain member there
        nowhere = "00000000-0000-4000-8000-00000000abcd"
        for name in peers:
            r = await li.post("/v1/conversations", json={"kind": "direct", "peer": name})
            direct[name] = (r.status_code, r.json()["code"], r.json()["detail"])
            r = await li.post("/v1/groups", json={"title": "G", "members": [name]})
            created[name] = (r.status_code, r.json()["code"], r.json()["detail"])
            r = await li.post(f"/v1/groups/{group}/members", json={"members": [name]})
            invited[name] = (r.status_code, r.json()["code"], r.json()["detail"])
            r = await li.post(f"/v1/groups/{nowhere}/members", json={"members": [name]})
            foreign[name] = (r.status_code, r.json()["code"], r.json()["detail"])
            r = await li.post(f"/v1/groups/{theirs}/members", json={"members": [name]})
            as_member[name] = (r.status_code, r.json()["code"], r.json()["detail"])
        for answers in (direct, created, invited, foreign, as_member):
            same(answers)
        assert direct["c.nobody"][:2] == (403, "forbidden") and "<name>" not in direct["c.nobody"][2]
        assert created["c.gone"] == (403, "forbidden", "c.gone is not one of your contacts")
        assert invited["c.blocker"] == (403, "forbidden", "c.blocker is not one of your contacts")
        assert foreign["c.nobody"][0] == 404
