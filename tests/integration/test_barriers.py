"""Information barriers through the live hub: officers manage segments and policies (audited),
and a MATRIX over every ordered pair of segments — investment banking (``ib``), ``research``,
``retail`` and users in no segment (``none``), same-segment pairs included — and every path
where two people could communicate: contact add (by username and by phone), accept, invite-code
redeem, direct conversation open, group create, group member add, group rename, directories
(the RM directory, the contact list), presence, a send into a direct or group conversation that
existed before the policy, an edit, typing, live read receipts and the read-positions snapshot,
RM assignment and book handover, service-desk routing and transfer, and an RM's card to their
customer. With one policy between ib and research, each path is allowed exactly when no policy
separates the pair. Then single cases: a card, the service desk between agents, users in several
segments, the SQL rules against the pure ones, a policy committed while a send is in flight,
disabled members, presence along the RM relationship, officers' edge cases, and the cost shape
of the send path's check.

Each path is one test (one node, its users created once); it walks all 16 pairs and fails
naming every pair and path that went the wrong way.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bankhub.models import Role
from bankhub.runner import RunningNode

from ..support.desk import api, make_user, token_for
from ..support.wsclient import RawClient

CLASSES = ("ib", "research", "retail", "none")
PAIRS = list(itertools.product(CLASSES, CLASSES))
SEGMENT_TITLES = {"ib": "Investment banking", "research": "Research", "retail": "Retail banking"}


def separated(x: str, y: str) -> bool:
    """The one policy of these tests: ib and research, either way round."""
    return {x, y} == {"ib", "research"}


@dataclass
class World:
    node: RunningNode
    officer: httpx.AsyncClient
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def http(self, username: str) -> httpx.AsyncClient:
        return self.clients[username]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.aclose()
        await self.officer.aclose()


def a_of(x: str) -> str:
    """The acting user of class ``x`` (staff)."""
    return f"{x}.1"


def b_of(y: str) -> str:
    """The other user of class ``y``: never the actor, even in a same-segment pair."""
    return f"{y}.2"


async def _world(node: RunningNode, *, extra: tuple[tuple[str, Role, str], ...] = ()) -> World:
    """Staff ``<class>.1``, ``<class>.2``, ``<class>.3`` of every class, plus ``extra``
    (username, role, class), each put in the segment of their class (none: in no segment).
    The segments exist; the policy does not yet (:func:`_bar`)."""
    officer = api(node, await token_for(node, "co.sun"))
    world = World(node=node, officer=officer)
    for name, title in SEGMENT_TITLES.items():
        r = await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": title})
        assert r.status_code == 201, r.text
    people = [(f"{x}.{n}", Role.STAFF, x) for x in CLASSES for n in (1, 2, 3)] + list(extra)
    for username, role, cls in people:
        user = await make_user(node, username, role)
        world.ids[username] = user.id
        world.tokens[username] = await token_for(node, username)
        world.clients[username] = api(node, world.tokens[username])
        if cls != "none":
            r = await officer.put(f"/v1/compliance/barriers/segments/{cls}/members/{username}")
            assert r.status_code == 200 and r.json()["added"] is True, r.text
    return world


async def _bar(world: World) -> None:
    r = await world.officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})
    assert r.status_code == 201, r.text


async def _matrix(check: Callable[[str, str], Awaitable[bool]], path: str) -> None:
    """Run ``check(x, y)`` (True: allowed) for every ordered pair; fail naming each wrong one."""
    wrong = []
    for x, y in PAIRS:
        allowed = await check(x, y)
        if allowed is separated(x, y):
            wrong.append(f"{path}: {x} -> {y} was {'allowed' if allowed else 'refused'}")
    assert not wrong, "\n".join(wrong)


def _barrier_refusal(r: httpx.Response) -> bool:
    """A refusal that names an information barrier (403 ``forbidden``) — where the actor
    administers (RM assignment, handover, service-desk transfer) and names nobody behind it."""
    return r.status_code == 403 and r.json()["code"] == "forbidden" and "information barrier" in r.json()["detail"]


def _refused_as(r: httpx.Response, detail: str) -> bool:
    """Exactly the refusal an unreachable peer gets (403 ``forbidden`` with ``detail``): the
    barrier, and who sits behind it, is not revealed."""
    return r.status_code == 403 and r.json() == {**r.json(), "code": "forbidden", "detail": detail}


@pytest.fixture
async def world(node: RunningNode) -> Any:
    w = await _world(node)
    yield w
    await w.close()


# --- officers ------------------------------------------------------------------------------


async def test_officers_manage_segments_and_policies_audited_and_nobody_else(node: RunningNode) -> None:
    officer = api(node, await token_for(node, "co.sun"))
    staff = api(node, await token_for(node, "ho.admin"))
    async with officer, staff:
        # only compliance officers
        for method, path, body in [
            ("GET", "/v1/compliance/barriers/segments", None),
            ("POST", "/v1/compliance/barriers/segments", {"name": "ib", "title": "IB"}),
            ("GET", "/v1/compliance/barriers/policies", None),
            ("POST", "/v1/compliance/barriers/policies", {"a": "ib", "b": "research"}),
        ]:
            r = await staff.request(method, path, json=body)
            assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
        # segments: created, duplicate refused, bad names refused
        r = await officer.post("/v1/compliance/barriers/segments", json={"name": "ib", "title": "Investment banking"})
        assert r.status_code == 201 and r.json()["name"] == "ib" and r.json()["created_by"] == "co.sun", r.text
        assert (await officer.post("/v1/compliance/barriers/segments", json={"name": "ib", "title": "x"})).status_code == 409
        for bad in ("IB", "i", "1ib", "a" * 33, "ib research"):
            r = await officer.post("/v1/compliance/barriers/segments", json={"name": bad, "title": "x"})
            assert r.status_code == 400, (bad, r.text)
        assert (await officer.post("/v1/compliance/barriers/segments", json={"name": "research", "title": "Research"})).status_code == 201
        # members: unknown user or segment 404; idempotent add; remove; listing pages
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/nobody.here")).status_code == 404
        assert (await officer.put("/v1/compliance/barriers/segments/nosuch/members/rm.wang")).status_code == 404
        assert (await officer.put("/v1/compliance/barriers/segments/NO SUCH/members/rm.wang")).status_code in (400, 404)
        r = await officer.put("/v1/compliance/barriers/segments/ib/members/rm.wang")
        assert r.status_code == 200 and r.json()["added"] is True
        r = await officer.put("/v1/compliance/barriers/segments/ib/members/rm.wang")
        assert r.status_code == 200 and r.json()["added"] is False
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/rm.chen")).status_code == 200
        r = await officer.get("/v1/compliance/barriers/segments/ib/members", params={"limit": 1})
        assert [m["username"] for m in r.json()["members"]] == ["rm.chen"] and r.json()["next_cursor"]
        r = await officer.get("/v1/compliance/barriers/segments/ib/members", params={"limit": 1, "cursor": r.json()["next_cursor"]})
        assert [m["username"] for m in r.json()["members"]] == ["rm.wang"]
        assert (await officer.get("/v1/compliance/barriers/segments/nosuch/members")).status_code == 404
        assert (await officer.delete("/v1/compliance/barriers/segments/ib/members/rm.chen")).status_code == 204
        assert (await officer.delete("/v1/compliance/barriers/segments/ib/members/rm.chen")).status_code == 404
        r = await officer.get("/v1/compliance/barriers/segments")
        assert [(s["name"], s["members"]) for s in r.json()["segments"]] == [("ib", 1), ("research", 0)]
        # policies: a segment with itself is invalid; unknown segment 404; symmetric (one row)
        r = await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "ib"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "nosuch"})).status_code == 404
        r = await officer.post("/v1/compliance/barriers/policies", json={"a": "research", "b": "ib"})
        assert r.status_code == 201 and (r.json()["a"], r.json()["b"]) == ("ib", "research"), r.text
        pid = r.json()["policy_id"]
        r = await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})
        assert r.status_code == 200 and r.json()["policy_id"] == pid
        r = await officer.get("/v1/compliance/barriers/policies")
        assert [p["policy_id"] for p in r.json()["policies"]] == [pid] and r.json()["next_cursor"] is None
        assert (await officer.delete(f"/v1/compliance/barriers/policies/{uuid.uuid4()}")).status_code == 404
        assert (await officer.delete(f"/v1/compliance/barriers/policies/{pid}")).status_code == 204
        assert (await officer.get("/v1/compliance/barriers/policies")).json()["policies"] == []
    # every change is on the audit chain, in order
    async with node.hub.db.connection("test") as conn:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log WHERE action LIKE 'barrier.%' ORDER BY seq")]
    assert actions == [
        "barrier.segment_created",
        "barrier.segment_created",
        "barrier.member_added",
        "barrier.member_added",
        "barrier.member_removed",
        "barrier.policy_added",
        "barrier.policy_removed",
    ]


# --- the matrix ----------------------------------------------------------------------------


async def test_matrix_contact_add(world: World) -> None:
    """The requester's answer is the one an unknown account gets (202, no body, the same
    stored row: reaching nobody); across a barrier nothing reaches the other side."""
    await _bar(world)
    node = world.node

    async def stored_to(from_name: str, handle: str) -> list[Any]:
        async with node.hub.db.connection("test") as conn:
            return [r["to_id"] for r in await conn.fetch(
                "SELECT to_id FROM contact_requests WHERE from_id = $1 AND to_handle = $2", uuid.UUID(world.ids[from_name]), handle
            )]

    async def check(x: str, y: str) -> bool:
        a, b = a_of(x), b_of(y)
        r = await world.http(a).post("/v1/contacts/requests", json={"username": b})
        ghost = await world.http(a).post("/v1/contacts/requests", json={"username": f"ghost-{x}-{y}"})
        # the requester's answer and stored row are those of an unknown account
        assert (r.status_code, r.content, r.headers.get("content-type")) == (ghost.status_code, ghost.content, ghost.headers.get("content-type")) == (202, b"", None)
        outgoing = (await world.http(a).get("/v1/contacts/requests/outgoing", params={"limit": 200})).json()["requests"]
        assert b in [o["handle"] for o in outgoing]
        incoming = (await world.http(b).get("/v1/contacts/requests/incoming", params={"limit": 200})).json()["requests"]
        reached = a in [i["user"]["username"] for i in incoming]
        [to_id] = await stored_to(a, b)
        assert (to_id is not None) is reached  # stored reaching nobody exactly when it reached nobody
        return reached

    await _matrix(check, "contact add")


async def test_matrix_accepting_a_request_sent_before_the_policy(world: World) -> None:
    for x, y in PAIRS:
        r = await world.http(a_of(x)).post("/v1/contacts/requests", json={"username": b_of(y)})
        assert r.status_code == 202
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        incoming = (await world.http(b_of(y)).get("/v1/contacts/requests/incoming", params={"limit": 200})).json()["requests"]
        [rid] = [i["id"] for i in incoming if i["user"]["username"] == a_of(x)]
        r = await world.http(b_of(y)).post(f"/v1/contacts/requests/{rid}/accept")
        # answered as a block or a disabled account is: the barrier is not revealed
        assert r.status_code == 200 or _refused_as(r, "this user cannot be added"), r.text
        return r.status_code == 200

    await _matrix(check, "contact accept")


async def test_matrix_direct_conversation_open(world: World) -> None:
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        r = await world.http(a_of(x)).post("/v1/conversations", json={"kind": "direct", "peer": b_of(y)})
        # answered as a disabled peer is (staff): the barrier is not revealed
        assert r.status_code in (200, 201) or _refused_as(r, disabled_peer), r.text
        return r.status_code in (200, 201)

    await make_user(world.node, "gone.1", Role.STAFF)
    async with world.node.hub.db.connection("test") as conn:
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'gone.1'")
    r = await world.http("none.1").post("/v1/conversations", json={"kind": "direct", "peer": "gone.1"})
    assert r.status_code == 403, r.text
    disabled_peer = r.json()["detail"]

    await _matrix(check, "direct open")


async def test_matrix_group_create(world: World) -> None:
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        r = await world.http(a_of(x)).post("/v1/groups", json={"title": f"{x} and {y}", "members": [b_of(y)]})
        # names the invitee the actor named, neither the barrier nor anyone behind it
        assert r.status_code == 201 or _refused_as(r, f"{b_of(y)} cannot join this group"), r.text
        return r.status_code == 201

    await _matrix(check, "group create")


async def test_matrix_group_member_add(world: World) -> None:
    """An owner in no segment brings ``b`` into a group where ``a`` is a member: every
    present member is checked against the newcomer, not only the one inviting."""
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        owner = world.http("none.3")
        r = await owner.post("/v1/groups", json={"title": f"{x} with {y}", "members": [a_of(x)]})
        assert r.status_code == 201, r.text
        conv = r.json()["conversation_id"]
        r = await owner.post(f"/v1/groups/{conv}/members", json={"members": [b_of(y)]})
        assert r.status_code == 200 or _refused_as(r, f"{b_of(y)} cannot join this group"), r.text
        # the actor inviting directly gets the same answer
        r2 = await world.http(a_of(x)).post("/v1/groups", json={"title": "mine", "members": []})
        assert r2.status_code == 201, r2.text
        r3 = await world.http(a_of(x)).post(f"/v1/groups/{r2.json()['conversation_id']}/members", json={"members": [b_of(y)]})
        assert (r3.status_code, r3.json().get("detail")) == (r.status_code, r.json().get("detail")), (r.text, r3.text)
        return r.status_code == 200

    await _matrix(check, "group member add")


async def test_matrix_rm_directory(node: RunningNode) -> None:
    """``GET /v1/rm/managers``: an administrator does not find RMs a barrier separates them from."""
    extra = tuple((f"hoa-{x}", Role.HEAD_OFFICE_ADMIN, x) for x in CLASSES) + tuple((f"rm-{x}", Role.RM, x) for x in CLASSES)
    world = await _world(node, extra=extra)
    try:
        await _bar(world)

        async def check(x: str, y: str) -> bool:
            r = await world.http(f"hoa-{x}").get("/v1/rm/managers", params={"limit": 200})
            assert r.status_code == 200, r.text
            return f"rm-{y}" in [m["username"] for m in r.json()["managers"]]

        await _matrix(check, "RM directory")
    finally:
        await world.close()


async def test_matrix_contact_list_and_presence_after_the_policy(world: World) -> None:
    """Contacts made before the policy: the contact list omits, and presence hides, users a
    barrier separates."""
    for x, y in PAIRS:
        assert (await world.http(a_of(x)).post("/v1/contacts/requests", json={"username": b_of(y)})).status_code == 202
        incoming = (await world.http(b_of(y)).get("/v1/contacts/requests/incoming", params={"limit": 200})).json()["requests"]
        [rid] = [i["id"] for i in incoming if i["user"]["username"] == a_of(x)]
        assert (await world.http(b_of(y)).post(f"/v1/contacts/requests/{rid}/accept")).status_code == 200
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        listed = [c["user"]["username"] for c in (await world.http(a_of(x)).get("/v1/contacts", params={"limit": 200})).json()["contacts"]]
        return b_of(y) in listed

    async def presence(x: str, y: str) -> bool:
        r = await world.http(a_of(x)).get("/v1/presence", params={"user_ids": world.ids[b_of(y)]})
        assert r.status_code == 200, r.text
        [entry] = r.json()["users"]
        return entry.get("online") is not None  # null: hidden, as for a stranger

    await _matrix(check, "contact list")
    await _matrix(presence, "presence")


async def _sent_or_refused(client: RawClient, frame: dict[str, Any]) -> bool:
    answer = await client.request(frame)
    if answer["type"] == "sent":
        return True
    assert answer["type"] == "error" and answer["code"] == "forbidden" and "information barrier" in answer["message"], answer
    return False


async def test_matrix_send_and_edit_in_conversations_from_before_the_policy(world: World) -> None:
    """Direct and group conversations (and a message in each) made before the policy: from
    its commit on, sends and edits across it are refused and nothing is stored."""
    node = world.node
    sockets = {x: await RawClient.connect(node.ws_url, world.tokens[a_of(x)]) for x in CLASSES}
    try:
        direct: dict[tuple[str, str], str] = {}
        group: dict[tuple[str, str], str] = {}
        first: dict[tuple[str, str], str] = {}
        for x, y in PAIRS:
            r = await world.http(a_of(x)).post("/v1/conversations", json={"kind": "direct", "peer": b_of(y)})
            direct[(x, y)] = r.json()["conversation"]["id"]
            r = await world.http("none.3").post("/v1/groups", json={"title": f"{x}/{y}", "members": [a_of(x), b_of(y)]})
            group[(x, y)] = r.json()["conversation_id"]
            sent = await sockets[x].request(_send_frame(direct[(x, y)], "before the wall"))
            assert sent["type"] == "sent", sent
            first[(x, y)] = sent["message_id"]
        await _bar(world)

        async def count(conv: str) -> int:
            async with node.hub.db.connection("test") as conn:
                return int(await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv)))

        async def send_direct(x: str, y: str) -> bool:
            before = await count(direct[(x, y)])
            ok = await _sent_or_refused(sockets[x], _send_frame(direct[(x, y)], "after the wall"))
            assert await count(direct[(x, y)]) == before + (1 if ok else 0)  # nothing stored when refused
            return ok

        async def send_group(x: str, y: str) -> bool:
            return await _sent_or_refused(sockets[x], _send_frame(group[(x, y)], "to the group"))

        async def edit(x: str, y: str) -> bool:
            frame = {
                "type": "edit", "conversation_id": direct[(x, y)], "message_id": first[(x, y)],
                "client_msg_id": f"e-{uuid.uuid4()}", "body": {"kind": "text", "text": "edited after the wall"},
            }
            return await _sent_or_refused(sockets[x], frame)

        await _matrix(send_direct, "send (direct, from before the policy)")
        await _matrix(send_group, "send (group, from before the policy)")
        await _matrix(edit, "edit")
        # the other direction of a separated pair is refused too, and lifting the policy lifts it
        back = await RawClient.connect(node.ws_url, world.tokens[b_of("ib")])
        try:
            assert not await _sent_or_refused(back, _send_frame(direct[("research", "ib")], "reply"))
            policies = (await world.officer.get("/v1/compliance/barriers/policies")).json()["policies"]
            assert (await world.officer.delete(f"/v1/compliance/barriers/policies/{policies[0]['policy_id']}")).status_code == 204
            assert await _sent_or_refused(back, _send_frame(direct[("research", "ib")], "reply"))
        finally:
            await back.close()
    finally:
        for s in sockets.values():
            await s.close()


def _send_frame(conv: str, text: str) -> dict[str, Any]:
    return {"type": "send", "conversation_id": conv, "client_msg_id": f"c-{uuid.uuid4()}", "body": {"kind": "text", "text": text}}


async def test_typing_and_read_receipts_do_not_cross_a_barrier(world: World) -> None:
    node = world.node
    r = await world.http("none.3").post("/v1/groups", json={"title": "mixed", "members": ["ib.1", "research.2", "retail.2"]})
    conv = r.json()["conversation_id"]
    owner = await RawClient.connect(node.ws_url, world.tokens["none.3"])
    seq = (await owner.request(_send_frame(conv, "agenda")))["seq"]
    await owner.close()
    await _bar(world)
    ib = await RawClient.connect(node.ws_url, world.tokens["ib.1"])
    research = await RawClient.connect(node.ws_url, world.tokens["research.2"])
    retail = await RawClient.connect(node.ws_url, world.tokens["retail.2"])
    try:
        await ib.send_frame({"type": "typing", "conversation_id": conv, "active": True})
        assert (await retail.expect("typing"))["user_id"] == world.ids["ib.1"]
        assert await research.quiet("typing", 0.5)
        answer = await ib.request({"type": "read", "conversation_id": conv, "seq": seq})
        assert answer["type"] == "receipt", answer
        assert (await retail.expect("receipt"))["user_id"] == world.ids["ib.1"]
        assert await research.quiet("receipt", 0.5)
    finally:
        for c in (ib, research, retail):
            await c.close()


async def test_customers_rm_assignment_and_customer_contacts(node: RunningNode) -> None:
    """An RM is not assigned a customer a barrier separates them from (a bank keeps
    research clients away from investment bankers); customers across a barrier do not
    reach each other as contacts, and the requester cannot tell."""
    officer = api(node, await token_for(node, "co.sun"))
    admin = api(node, await token_for(node, "ho.admin"))
    li = api(node, await token_for(node, "c.li"))
    zhang = api(node, await token_for(node, "c.zhang"))
    async with officer, admin, li, zhang:
        for name in ("ib", "research"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": name})).status_code == 201
        for seg, user in (("ib", "rm.wang"), ("research", "c.zhou"), ("ib", "c.li"), ("research", "c.zhang")):
            assert (await officer.put(f"/v1/compliance/barriers/segments/{seg}/members/{user}")).status_code == 200
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
        r = await admin.put("/v1/customers/c.zhou/rm", json={"rm": "rm.wang"})
        assert _barrier_refusal(r), r.text
        r = await admin.post("/v1/rm/rm.wang/handover", json={"to": "rm.chen"})
        # rm.chen is in no segment: the book moves (c.li and c.zhang with it)
        assert r.status_code == 200, r.text
        r = await admin.post("/v1/rm/rm.chen/handover", json={"to": "rm.wang"})
        assert _barrier_refusal(r), r.text  # c.zhou and c.zhang are research clients
        r = await li.post("/v1/contacts/requests", json={"username": "c.zhang"})
        assert r.status_code == 202 and r.content == b""
        assert (await zhang.get("/v1/contacts/requests/incoming")).json()["requests"] == []


async def test_matrix_rm_assignment(node: RunningNode) -> None:
    """``PUT /v1/customers/{username}/rm`` by the head-office admin (in no segment): an RM of
    every class is assigned a customer of every class exactly when no policy separates them."""
    extra = tuple((f"rm-{x}", Role.RM, x) for x in CLASSES) + tuple((f"cust-{y}", Role.CUSTOMER, y) for y in CLASSES)
    world = await _world(node, extra=extra)
    try:
        await _bar(world)
        async with api(node, await token_for(node, "ho.admin")) as admin:

            async def check(x: str, y: str) -> bool:
                r = await admin.put(f"/v1/customers/cust-{y}/rm", json={"rm": f"rm-{x}"})
                assert r.status_code == 200 or _barrier_refusal(r), (x, y, r.text)
                return r.status_code == 200

            await _matrix(check, "RM assignment")
    finally:
        await world.close()


async def test_matrix_rm_book_handover(node: RunningNode) -> None:
    """``POST /v1/rm/{username}/handover``: a book holding a customer of every class goes to an
    RM of every class exactly when no policy separates the customer from the new RM."""
    extra = tuple((f"rm-{y}", Role.RM, y) for y in CLASSES)
    world = await _world(node, extra=extra)
    try:
        await _bar(world)
        async with api(node, await token_for(node, "ho.admin")) as admin:

            async def check(x: str, y: str) -> bool:
                # a fresh book per pair: an RM in no segment with one customer of class x
                source, customer = f"src-{x}-{y}", f"bk-{x}-{y}"
                await make_user(node, source, Role.RM)
                await make_user(node, customer, Role.CUSTOMER, rm=source)
                if x != "none":
                    r = await world.officer.put(f"/v1/compliance/barriers/segments/{x}/members/{customer}")
                    assert r.status_code == 200, r.text
                r = await admin.post(f"/v1/rm/{source}/handover", json={"to": f"rm-{y}"})
                assert r.status_code == 200 or _barrier_refusal(r), (x, y, r.text)
                return r.status_code == 200

            await _matrix(check, "RM book handover")
    finally:
        await world.close()


async def test_service_desk_routes_around_a_barrier(node: RunningNode) -> None:
    """A customer is never routed, nor transferred, to an agent a barrier separates them
    from: they wait for another agent."""
    await make_user(node, "agent.ib", Role.AGENT)
    await make_user(node, "agent.free", Role.AGENT)
    officer = api(node, await token_for(node, "co.sun"))
    admin = api(node, await token_for(node, "ho.admin"))
    async with officer, admin:
        for name in ("ib", "research"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": name})).status_code == 201
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/agent.ib")).status_code == 200
        assert (await officer.put("/v1/compliance/barriers/segments/research/members/c.zhou")).status_code == 200
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
        assert (await admin.put("/v1/service/agents/agent.ib", json={"capacity": 3, "queues": ["cards"]})).status_code == 200
        assert (await admin.put("/v1/service/agents/agent.free", json={"capacity": 3, "queues": ["cards"]})).status_code == 200
    ib_token = await token_for(node, "agent.ib")
    async with api(node, ib_token) as http:
        assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
    async with api(node, await token_for(node, "c.zhou")) as zhou:
        session = (await zhou.post("/v1/service/sessions", json={"queue": "cards"})).json()
        sid = session["session_id"]
        await zhou.post(f"/v1/service/sessions/{sid}/human")
        # only agent.ib is on the desk: the research client waits
        assert (await zhou.get("/v1/service/sessions/current")).json()["state"] == "waiting"
        free_token = await token_for(node, "agent.free")
        async with api(node, free_token) as http:
            assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
        current = (await zhou.get("/v1/service/sessions/current")).json()
        assert current["state"] == "active" and current["agent"]["username"] == "agent.free", current
    async with api(node, await token_for(node, "agent.free")) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.ib", "note": "over to you"})
        assert _barrier_refusal(r), r.text
    # c.li (no segment) goes to agent.ib as usual
    async with api(node, await token_for(node, "c.li")) as li:
        other = (await li.post("/v1/service/sessions", json={"queue": "cards"})).json()
        await li.post(f"/v1/service/sessions/{other['session_id']}/human")
        current = (await li.get("/v1/service/sessions/current")).json()
        assert current["state"] == "active" and current["agent"]["username"] == "agent.ib", current


# --- the rest of the matrix: phone, invite codes, rename, receipts, cards, several segments ---


async def test_matrix_contact_add_by_phone(world: World) -> None:
    """By phone as by username: the answer is an unknown number's, nothing reaches across."""
    await _bar(world)
    phones: dict[str, str] = {}
    async with world.node.hub.db.connection("test") as conn:
        for n, name in enumerate(sorted(world.ids)):
            phones[name] = f"+86139{n:08d}"
            await conn.execute("UPDATE users SET phone = $1 WHERE username = $2", phones[name], name)

    async def check(x: str, y: str) -> bool:
        a, b = a_of(x), b_of(y)
        r = await world.http(a).post("/v1/contacts/requests", json={"phone": phones[b]})
        ghost = await world.http(a).post("/v1/contacts/requests", json={"phone": f"+86137{len(x) * 10 + len(y):08d}"})
        assert (r.status_code, r.content) == (ghost.status_code, ghost.content) == (202, b"")
        incoming = (await world.http(b).get("/v1/contacts/requests/incoming", params={"limit": 200})).json()["requests"]
        return a in [i["user"]["username"] for i in incoming]

    await _matrix(check, "contact add by phone")


async def test_matrix_invite_code_redeem(world: World) -> None:
    """Redeeming a code across a barrier is answered as a block is; the code stays usable."""
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        code = (await world.http(b_of(y)).post("/v1/contacts/invites")).json()["code"]
        r = await world.http(a_of(x)).post("/v1/contacts/invites/redeem", json={"code": code})
        assert r.status_code == 200 or _refused_as(r, "this user cannot be added"), r.text
        if r.status_code == 200:
            assert f'"{b_of(y)}"' in r.text, r.text
            assert (await world.http(a_of(x)).delete(f"/v1/contacts/{world.ids[b_of(y)]}")).status_code == 204
        else:  # still usable by someone the barrier does not separate
            again = await world.http("none.3").post("/v1/contacts/invites/redeem", json={"code": code})
            assert again.status_code == 200, again.text
            assert (await world.http("none.3").delete(f"/v1/contacts/{world.ids[b_of(y)]}")).status_code == 204
        return r.status_code == 200

    await _matrix(check, "invite-code redeem")


async def test_matrix_group_rename_in_groups_from_before_the_policy(world: World) -> None:
    """A title is free text every member reads: refused across a barrier as a send is, and
    neither the title nor a system post changes."""
    groups: dict[tuple[str, str], str] = {}
    for x, y in PAIRS:
        r = await world.http(a_of(x)).post("/v1/groups", json={"title": f"{x}/{y}", "members": [b_of(y)]})
        assert r.status_code == 201, r.text
        groups[(x, y)] = r.json()["conversation_id"]
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        conv = groups[(x, y)]
        async with world.node.hub.db.connection("test") as conn:
            before = await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
        r = await world.http(a_of(x)).put(f"/v1/groups/{conv}/title", json={"title": "call me on my mobile"})
        assert r.status_code == 200 or (r.status_code == 403 and "information barrier" in r.json()["detail"]), r.text
        title = (await world.http(a_of(x)).get(f"/v1/groups/{conv}")).json()["title"]
        async with world.node.hub.db.connection("test") as conn:
            after = await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
        assert (title == "call me on my mobile") is (r.status_code == 200) and (after == before + 1) is (r.status_code == 200)
        return r.status_code == 200

    await _matrix(check, "group rename")


async def test_matrix_read_positions_snapshot(world: World) -> None:
    """``GET /v1/conversations/{id}/receipts`` hides the read position of a member a barrier
    separates from me, as the live receipts do."""
    convs: dict[tuple[str, str], str] = {}
    for x, y in PAIRS:
        r = await world.http("none.3").post("/v1/groups", json={"title": f"{x}/{y}", "members": [a_of(x), b_of(y)]})
        convs[(x, y)] = r.json()["conversation_id"]
    owner = await RawClient.connect(world.node.ws_url, world.tokens["none.3"])
    sockets = {y: await RawClient.connect(world.node.ws_url, world.tokens[b_of(y)]) for y in CLASSES}
    try:
        for (x, y), conv in convs.items():
            seq = (await owner.request(_send_frame(conv, "agenda")))["seq"]
            assert (await sockets[y].request({"type": "read", "conversation_id": conv, "seq": seq}))["type"] == "receipt"
    finally:
        for c in (owner, *sockets.values()):
            await c.close()
    await _bar(world)

    async def check(x: str, y: str) -> bool:
        r = await world.http(a_of(x)).get(f"/v1/conversations/{convs[(x, y)]}/receipts")
        assert r.status_code == 200, r.text
        return world.ids[b_of(y)] in [p["user_id"] for p in r.json()["receipts"]]

    await _matrix(check, "read positions")


async def test_a_card_from_an_rm_does_not_cross_a_barrier(node: RunningNode) -> None:
    """A card (like every kind) goes through the send path's barrier check: rm.wang's card
    to his customer c.li is refused once a policy separates them, and nothing is stored."""
    officer = api(node, await token_for(node, "co.sun"))
    async with officer:
        for name in ("ib", "research"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": name})).status_code == 201
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/rm.wang")).status_code == 200
        assert (await officer.put("/v1/compliance/barriers/segments/research/members/c.li")).status_code == 200
        wang_token = await token_for(node, "rm.wang")
        async with api(node, wang_token) as wang_http:
            conv = (await wang_http.post("/v1/conversations", json={"kind": "direct", "peer": "c.li"})).json()["conversation"]["id"]
        card = {"kind": "card", "template": "offer", "title": "Wealth product", "fields": [{"label": "Yield", "value": "2.35%"}]}
        wang = await RawClient.connect(node.ws_url, wang_token)
        try:
            frame = {"type": "send", "conversation_id": conv, "client_msg_id": f"k-{uuid.uuid4()}", "body": card}
            assert (await wang.request(frame))["type"] == "sent"
            assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
            assert not await _sent_or_refused(wang, {**frame, "client_msg_id": f"k-{uuid.uuid4()}"})
            async with node.hub.db.connection("test") as conn:
                assert await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1 AND kind = 'card'", uuid.UUID(conv)) == 1
        finally:
            await wang.close()


async def test_matrix_card_from_an_rm_to_their_customer(node: RunningNode) -> None:
    """A card from an RM of every class to their own customer of every class, in a
    conversation opened before the policy: sent exactly when no policy separates them."""
    extra = tuple((f"rm-{x}", Role.RM, x) for x in CLASSES)
    world = await _world(node, extra=extra)
    card = {"kind": "card", "template": "offer", "title": "Wealth product", "fields": [{"label": "Yield", "value": "2.35%"}]}
    sockets = {x: await RawClient.connect(node.ws_url, world.tokens[f"rm-{x}"]) for x in CLASSES}
    try:
        direct: dict[tuple[str, str], str] = {}
        for x, y in PAIRS:
            customer = f"cu-{x}-{y}"
            await make_user(node, customer, Role.CUSTOMER, rm=f"rm-{x}")
            if y != "none":
                assert (await world.officer.put(f"/v1/compliance/barriers/segments/{y}/members/{customer}")).status_code == 200
            r = await world.http(f"rm-{x}").post("/v1/conversations", json={"kind": "direct", "peer": customer})
            assert r.status_code in (200, 201), r.text
            direct[(x, y)] = r.json()["conversation"]["id"]
        await _bar(world)

        async def send_card(x: str, y: str) -> bool:
            frame = {"type": "send", "conversation_id": direct[(x, y)], "client_msg_id": f"k-{uuid.uuid4()}", "body": card}
            return await _sent_or_refused(sockets[x], frame)

        await _matrix(send_card, "card (RM to their customer)")
    finally:
        for sock in sockets.values():
            await sock.close()
        await world.close()


async def test_matrix_service_desk_transfer(node: RunningNode) -> None:
    """A service session of a customer of every class, served by an agent in no segment, is
    transferred to an agent of every class exactly when no policy separates the customer from
    that agent (checked in the transfer's own transaction)."""
    extra = tuple((f"agent-{x}", Role.AGENT, x) for x in CLASSES) + (("agent-free", Role.AGENT, "none"),)
    world = await _world(node, extra=extra)
    try:
        async with api(node, await token_for(node, "ho.admin")) as admin:
            assert (await admin.put("/v1/service/agents/agent-free", json={"capacity": 20, "queues": ["cards"]})).status_code == 200
            for x in CLASSES:
                assert (await admin.put(f"/v1/service/agents/agent-{x}", json={"capacity": 10, "queues": ["cards"]})).status_code == 200
        free = world.http("agent-free")
        assert (await free.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
        sessions: dict[tuple[str, str], str] = {}
        for x, y in PAIRS:
            customer = f"dc-{x}-{y}"
            await make_user(node, customer, Role.CUSTOMER)
            if y != "none":
                assert (await world.officer.put(f"/v1/compliance/barriers/segments/{y}/members/{customer}")).status_code == 200
            async with api(node, await token_for(node, customer)) as http:
                sid = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()["session_id"]
                await http.post(f"/v1/service/sessions/{sid}/human")
                current = (await http.get("/v1/service/sessions/current")).json()
                assert current["state"] == "active" and current["agent"]["username"] == "agent-free", current
            sessions[(x, y)] = sid
        await _bar(world)
        for x in CLASSES:
            r = await world.http(f"agent-{x}").put("/v1/service/agents/me/state", json={"state": "available"})
            assert r.status_code == 200, r.text

        async def transfer(x: str, y: str) -> bool:
            r = await free.post(f"/v1/service/sessions/{sessions[(x, y)]}/transfer", json={"agent": f"agent-{x}", "note": "over to you"})
            assert r.status_code == 200 or _barrier_refusal(r), (x, y, r.text)
            return r.status_code == 200

        await _matrix(transfer, "service-desk transfer")
    finally:
        await world.close()


async def test_matrix_service_desk_routing(node: RunningNode) -> None:
    """With only an agent of class x on the desk, a customer of class y who asks for a human
    is routed to that agent exactly when no policy separates them (else they wait)."""
    extra = tuple((f"agent-{x}", Role.AGENT, x) for x in CLASSES)
    world = await _world(node, extra=extra)
    try:
        async with api(node, await token_for(node, "ho.admin")) as admin:
            for x in CLASSES:
                assert (await admin.put(f"/v1/service/agents/agent-{x}", json={"capacity": 20, "queues": ["cards"]})).status_code == 200
        await _bar(world)
        on_desk: list[str] = []

        async def routed(x: str, y: str) -> bool:
            if on_desk != [x]:
                for other in on_desk:
                    assert (await world.http(f"agent-{other}").put("/v1/service/agents/me/state", json={"state": "away"})).status_code == 200
                r = await world.http(f"agent-{x}").put("/v1/service/agents/me/state", json={"state": "available"})
                assert r.status_code == 200, r.text
                on_desk[:] = [x]
            customer = f"rc-{x}-{y}"
            await make_user(node, customer, Role.CUSTOMER)
            if y != "none":
                assert (await world.officer.put(f"/v1/compliance/barriers/segments/{y}/members/{customer}")).status_code == 200
            async with api(node, await token_for(node, customer)) as http:
                sid = (await http.post("/v1/service/sessions", json={"queue": "cards"})).json()["session_id"]
                await http.post(f"/v1/service/sessions/{sid}/human")
                current = (await http.get("/v1/service/sessions/current")).json()
            assert current["state"] in ("active", "waiting"), current
            if current["state"] == "active":
                assert current["agent"]["username"] == f"agent-{x}", current
                return True
            return False

        await _matrix(routed, "service-desk routing")
    finally:
        await world.close()


async def test_users_in_several_segments(node: RunningNode) -> None:
    """A user in ib and retail is barred from research (one of their segments suffices) but
    not from retail; a user in retail and wealth, with a second policy retail|wealth, cannot
    be made (they would be barred from themselves)."""
    officer = api(node, await token_for(node, "co.sun"))
    for name in ("multi.a", "res.b", "ret.c"):
        await make_user(node, name, Role.STAFF)
    async with officer:
        for name in ("ib", "research", "retail", "wealth"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": name})).status_code == 201
        for seg, user in (("ib", "multi.a"), ("retail", "multi.a"), ("research", "res.b"), ("retail", "ret.c")):
            assert (await officer.put(f"/v1/compliance/barriers/segments/{seg}/members/{user}")).status_code == 200
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
        async with api(node, await token_for(node, "multi.a")) as multi:
            r = await multi.post("/v1/conversations", json={"kind": "direct", "peer": "res.b"})
            assert r.status_code == 403, r.text
            assert (await multi.post("/v1/conversations", json={"kind": "direct", "peer": "ret.c"})).status_code in (200, 201)
        # both sides of a policy: refused either way round (member add, then policy add)
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "retail", "b": "wealth"})).status_code == 201
        r = await officer.put("/v1/compliance/barriers/segments/wealth/members/ret.c")
        assert r.status_code == 409 and "retail" in r.json()["detail"], r.text
        assert (await officer.put("/v1/compliance/barriers/segments/wealth/members/res.b")).status_code == 200
        r = await officer.post("/v1/compliance/barriers/policies", json={"a": "research", "b": "wealth"})
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text


async def test_sql_and_pure_rules_agree_over_every_pair_of_memberships(node: RunningNode) -> None:
    """``barrier_separates`` (directories, presence), ``BarrierStore.barred_txn`` (sends) and
    ``facts_txn`` + the pure rule agree with :func:`bankhub.compliance.barriers.barred` for
    every pair of memberships among ib, research and retail (none, one, two, three)."""
    from bankhub.compliance.barriers import barred, policy_pair
    from bankhub.storage.barriers import BarrierStore

    segments = ("ib", "research", "retail")
    memberships = [frozenset(c) for n in range(4) for c in itertools.combinations(segments, n)]
    policies = frozenset({policy_pair("ib", "research")})
    officer = api(node, await token_for(node, "co.sun"))
    users: dict[frozenset[str], list[str]] = {}
    async with officer:
        for name in segments:
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": name, "title": name})).status_code == 201
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
        for n, m in enumerate(memberships):
            users[m] = [(await make_user(node, f"m{n}.{k}", Role.STAFF)).id for k in (1, 2)]
    # memberships written straight to the table: the officers' rules refuse a user on both
    # sides of a policy, but the rules evaluated here must agree on every state regardless
    officer_id = (await node.hub.users.by_username("co.sun")).id  # type: ignore[union-attr]
    async with node.hub.db.transaction("test") as conn:
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM barrier_segments")}
        await conn.executemany(
            "INSERT INTO barrier_members (segment_id, user_id, added_by) VALUES ($1, $2, $3)",
            [(ids[seg], uuid.UUID(u), uuid.UUID(officer_id)) for m, us in users.items() for u in us for seg in m],
        )
    actual = {u: m for m, us in users.items() for u in us}
    wrong = []
    for a, b in itertools.product(memberships, memberships):
        ua, ub = users[a][0], users[b][1]
        sa, sb = actual.get(ua, frozenset()), actual.get(ub, frozenset())
        expected = barred(sa, sb, policies)
        async with node.hub.db.transaction("test") as conn:
            sql = bool(await conn.fetchval("SELECT barrier_separates($1, $2)", uuid.UUID(ua), uuid.UUID(ub)))
            conv = uuid.uuid4()
            await conn.execute("INSERT INTO conversations (id, kind, title, created_by) VALUES ($1, 'group', 't', $2)", conv, uuid.UUID(ua))
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)", [(conv, uuid.UUID(ua)), (conv, uuid.UUID(ub))]
            )
            send = bool(await BarrierStore.barred_txn(conn, [(str(conv), ua)]))
            facts = await BarrierStore.facts_txn(conn, [ua, ub])
        if not (sql is send is facts.between(ua, ub) is expected):
            wrong.append(f"{sorted(sa)} / {sorted(sb)}: sql {sql}, send {send}, facts {facts.between(ua, ub)}, pure {expected}")
    assert not wrong, "\n".join(wrong)


# --- the service desk between agents -------------------------------------------------------


async def _agent(node: RunningNode, name: str, queues: list[str], *, available: bool = True) -> str:
    async with api(node, await token_for(node, "ho.admin")) as admin:
        assert (await admin.put(f"/v1/service/agents/{name}", json={"capacity": 3, "queues": queues})).status_code == 200
    token = await token_for(node, name)
    if available:
        async with api(node, token) as http:
            assert (await http.put("/v1/service/agents/me/state", json={"state": "available"})).status_code == 200
    return token


async def test_a_session_is_not_passed_to_an_agent_separated_from_the_agent_before(node: RunningNode) -> None:
    """The customer (c.li) is in no segment; agent.ib serves and writes a transfer note. The
    next agent reads that note and agent.ib's messages, so neither a direct transfer nor the
    queue hands the session to agent.res (research): it goes to agent.free instead."""
    for name in ("agent.ib", "agent.res", "agent.free"):
        await make_user(node, name, Role.AGENT)
    async with api(node, await token_for(node, "co.sun")) as officer:
        for seg in ("ib", "research"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": seg, "title": seg})).status_code == 201
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/agent.ib")).status_code == 200
        assert (await officer.put("/v1/compliance/barriers/segments/research/members/agent.res")).status_code == 200
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
    ib_token = await _agent(node, "agent.ib", ["cards"])
    async with api(node, await token_for(node, "c.li")) as li:
        sid = (await li.post("/v1/service/sessions", json={"queue": "cards"})).json()["session_id"]
        await li.post(f"/v1/service/sessions/{sid}/human")
        assert (await li.get("/v1/service/sessions/current")).json()["agent"]["username"] == "agent.ib"
    await _agent(node, "agent.res", ["loans"])
    async with api(node, ib_token) as http:
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"agent": "agent.res", "note": "ib view: buy"})
        assert _barrier_refusal(r), r.text
        assert "agent.ib" not in r.json()["detail"] and "agent.res" not in r.json()["detail"]
        # by the queue: agent.res is the only one there — the session waits rather than reach them
        r = await http.post(f"/v1/service/sessions/{sid}/transfer", json={"queue": "loans", "note": "ib view: buy"})
        assert r.status_code == 200, r.text
    async with api(node, await token_for(node, "c.li")) as li:
        assert (await li.get("/v1/service/sessions/current")).json()["state"] == "waiting"
        await _agent(node, "agent.free", ["loans"])
        current = (await li.get("/v1/service/sessions/current")).json()
        assert current["state"] == "active" and current["agent"]["username"] == "agent.free", current


# --- a policy committed while a send is in flight ------------------------------------------


async def test_a_policy_committed_during_a_send_applies_to_it(world: World) -> None:
    """Deterministic: an officer's transaction holds the barrier lock with the policy written
    but not committed; a send across it waits for that transaction, then is refused — it
    never decides on the snapshot from before the policy."""
    import asyncio

    import asyncpg

    from bankhub.storage.barriers import BARRIER_LOCK_KEY

    node = world.node
    r = await world.http("ib.1").post("/v1/conversations", json={"kind": "direct", "peer": "research.2"})
    conv = r.json()["conversation"]["id"]
    ib = await RawClient.connect(node.ws_url, world.tokens["ib.1"])
    raw = await asyncpg.connect(node.hub.settings.database_url)
    try:
        assert await _sent_or_refused(ib, _send_frame(conv, "before"))
        officer_id = (await node.hub.users.by_username("co.sun")).id  # type: ignore[union-attr]
        tx = raw.transaction()
        await tx.start()
        await raw.execute("SELECT pg_advisory_xact_lock($1)", BARRIER_LOCK_KEY)
        await raw.execute(
            """INSERT INTO barrier_policies (id, segment_a, segment_b, created_by)
               SELECT $1, least(a.id, b.id), greatest(a.id, b.id), $2 FROM barrier_segments a, barrier_segments b
               WHERE a.name = 'ib' AND b.name = 'research'""",
            uuid.uuid4(),
            uuid.UUID(officer_id),
        )
        pending = asyncio.ensure_future(ib.request(_send_frame(conv, "during"), timeout=15))
        await asyncio.sleep(1.0)
        assert not pending.done(), pending.result()  # waits for the officer's transaction
        await tx.commit()
        answer = await pending
        assert answer["type"] == "error" and answer["code"] == "forbidden" and "information barrier" in answer["message"], answer
        async with node.hub.db.connection("test") as conn:
            texts = await conn.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(conv))
        assert texts == 1
    finally:
        await raw.close()
        await ib.close()


# --- edges: disabled members, presence along the RM relationship, officers' limits -----------


async def test_a_disabled_member_does_not_silence_a_conversation(world: World) -> None:
    r = await world.http("none.3").post("/v1/groups", json={"title": "desk", "members": ["ib.1", "research.2", "retail.2"]})
    conv = r.json()["conversation_id"]
    await _bar(world)
    ib = await RawClient.connect(world.node.ws_url, world.tokens["ib.1"])
    try:
        assert not await _sent_or_refused(ib, _send_frame(conv, "research reads this"))
        async with world.node.hub.db.connection("test") as conn:
            await conn.execute("UPDATE users SET disabled = true WHERE username = 'research.2'")
        assert await _sent_or_refused(ib, _send_frame(conv, "nobody behind the wall reads this"))
    finally:
        await ib.close()


async def test_presence_along_the_rm_relationship_stops_at_a_barrier(node: RunningNode) -> None:
    """c.li sees her RM's presence (and he hers) until a policy separates them."""
    wang = await RawClient.connect(node.ws_url, await token_for(node, "rm.wang"))
    try:
        wang_id = (await node.hub.users.by_username("rm.wang")).id  # type: ignore[union-attr]
        li_id = (await node.hub.users.by_username("c.li")).id  # type: ignore[union-attr]
        async with api(node, await token_for(node, "c.li")) as li, api(node, await token_for(node, "rm.wang")) as wang_http:
            assert (await li.get("/v1/presence", params={"user_ids": wang_id})).json()["users"][0]["online"] is True
            async with api(node, await token_for(node, "co.sun")) as officer:
                for seg, user in (("ib", "rm.wang"), ("research", "c.li")):
                    assert (await officer.post("/v1/compliance/barriers/segments", json={"name": seg, "title": seg})).status_code == 201
                    assert (await officer.put(f"/v1/compliance/barriers/segments/{seg}/members/{user}")).status_code == 200
                assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
            assert (await li.get("/v1/presence", params={"user_ids": wang_id})).json()["users"][0].get("online") is None
            assert (await wang_http.get("/v1/presence", params={"user_ids": li_id})).json()["users"][0].get("online") is None
    finally:
        await wang.close()


async def test_officers_edges_system_user_and_idempotent_calls_at_the_limits(node: RunningNode) -> None:
    from bankhub.compliance.barriers import MAX_SEGMENTS_PER_USER
    from bankhub.desk.system import SYSTEM_USERNAME

    await node.hub.desk.system()  # the system user exists
    async with api(node, await token_for(node, "co.sun")) as officer:
        for n in range(MAX_SEGMENTS_PER_USER):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": f"s{n:02d}", "title": "s"})).status_code == 201
            assert (await officer.put(f"/v1/compliance/barriers/segments/s{n:02d}/members/rm.wang")).status_code == 200
        # at the per-user limit, putting them again where they are is answered as always
        r = await officer.put("/v1/compliance/barriers/segments/s00/members/rm.wang")
        assert r.status_code == 200 and r.json()["added"] is False, r.text
        assert (await officer.post("/v1/compliance/barriers/segments", json={"name": "extra", "title": "x"})).status_code == 201
        assert (await officer.put("/v1/compliance/barriers/segments/extra/members/rm.wang")).status_code == 409
        # the hub's system user posts notices no barrier stops: it is never put in a segment
        r = await officer.put(f"/v1/compliance/barriers/segments/extra/members/{SYSTEM_USERNAME}")
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text


async def test_no_per_row_barrier_function_on_the_send_path_or_for_a_viewer_in_no_segment(node: RunningNode) -> None:
    """The send path's check is set-based (no ``barrier_separates`` call per member), and a
    directory filter for a viewer in no segment calls it for no row — counted by Postgres's
    own function statistics, in one transaction."""
    from bankhub.storage.barriers import NOT_SEPARATED_SQL, BarrierStore

    for n in range(30):
        await make_user(node, f"big.{n}", Role.STAFF)
    await make_user(node, "free.1", Role.STAFF)
    async with api(node, await token_for(node, "co.sun")) as officer:
        for seg in ("ib", "research", "retail"):
            assert (await officer.post("/v1/compliance/barriers/segments", json={"name": seg, "title": seg})).status_code == 201
        for n in range(30):
            assert (await officer.put(f"/v1/compliance/barriers/segments/retail/members/big.{n}")).status_code == 200
        assert (await officer.put("/v1/compliance/barriers/segments/ib/members/big.0")).status_code == 200
        assert (await officer.post("/v1/compliance/barriers/policies", json={"a": "ib", "b": "research"})).status_code == 201
    async with api(node, await token_for(node, "big.0")) as http:
        r = await http.post("/v1/groups", json={"title": "big", "members": [f"big.{n}" for n in range(1, 30)]})
        conv = r.json()["conversation_id"]
    sender = (await node.hub.users.by_username("big.0")).id  # type: ignore[union-attr]
    viewer = (await node.hub.users.by_username("free.1")).id  # type: ignore[union-attr]

    async def calls(conn: Any) -> int:
        return int(await conn.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'barrier_separates'"
        ))

    async with node.hub.db.transaction("test") as conn:
        await conn.execute("SET LOCAL track_functions = 'all'")
        assert await BarrierStore.barred_txn(conn, [(conv, sender)]) == set()
        assert await calls(conn) == 0
        listed = await conn.fetchval(f"SELECT count(*) FROM users u WHERE {NOT_SEPARATED_SQL('$1::uuid', 'u.id')}", uuid.UUID(viewer))
        assert listed > 30 and await calls(conn) == 0


async def _arrives(client: RawClient, type_: str, conv: str, user_id: str, seconds: float) -> bool:
    """Whether a ``type_`` frame about ``conv`` from ``user_id`` arrives within ``seconds``
    (frames about other conversations are dropped)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            f = await client.expect(type_, timeout=remaining)
        except (TimeoutError, asyncio.TimeoutError):
            return False
        if f.get("conversation_id") == conv and f.get("user_id") == user_id:
            return True
    return False


async def test_matrix_typing_and_live_receipts(world: World) -> None:
    """Typing and live read receipts in a group made before the policy, for every pair."""
    convs: dict[tuple[str, str], tuple[str, int]] = {}
    owner = await RawClient.connect(world.node.ws_url, world.tokens["none.3"])
    try:
        for x, y in PAIRS:
            r = await world.http("none.3").post("/v1/groups", json={"title": f"{x}/{y}", "members": [a_of(x), b_of(y)]})
            conv = r.json()["conversation_id"]
            convs[(x, y)] = (conv, (await owner.request(_send_frame(conv, "agenda")))["seq"])
    finally:
        await owner.close()
    await _bar(world)
    actors = {x: await RawClient.connect(world.node.ws_url, world.tokens[a_of(x)]) for x in CLASSES}
    others = {y: await RawClient.connect(world.node.ws_url, world.tokens[b_of(y)]) for y in CLASSES}
    try:

        async def typing(x: str, y: str) -> bool:
            conv, _ = convs[(x, y)]
            await actors[x].send_frame({"type": "typing", "conversation_id": conv, "active": True})
            return await _arrives(others[y], "typing", conv, world.ids[a_of(x)], 2.0 if not separated(x, y) else 0.7)

        async def receipt(x: str, y: str) -> bool:
            conv, seq = convs[(x, y)]
            assert (await actors[x].request({"type": "read", "conversation_id": conv, "seq": seq}))["type"] == "receipt"
            return await _arrives(others[y], "receipt", conv, world.ids[a_of(x)], 2.0 if not separated(x, y) else 0.7)

        await _matrix(typing, "typing")
        await _matrix(receipt, "live read receipt")
    finally:
        for c in (*actors.values(), *others.values()):
            await c.close()
