"""Single alerts share group-commit transactions, and each keeps its own answer and every
check of the signed API (docs/alerts.md, "Group commit of single alerts")."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from bankhub.actions.alert_systems import set_disabled
from bankhub.actions.errors import ActionError
from bankhub.models import AlertSystem
from bankhub.runner import RunningNode

from ..conftest import login
from ..support.alerts import System, card_debit, register, signed

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def core(node: RunningNode) -> System:
    return await register(node)


async def _last_seq(node: RunningNode, user: str) -> int:
    token = await login(node, user)
    async with httpx.AsyncClient(base_url=node.http_url, headers={"authorization": f"Bearer {token}"}) as http:
        r = await http.get("/v1/inbox/unread")
        assert r.status_code == 200, r.text
        seq: int = r.json()["last_seq"]
        return seq


async def test_concurrent_single_alerts_commit_together_and_each_keeps_its_answer(node: RunningNode, core: System) -> None:
    nonce, ts = uuid.uuid4().hex, int(time.time())
    sends = [signed(node, core, "POST", "/v1/notifications", card_debit("c.li"), key=f"ok-{i}") for i in range(40)]
    sends += [
        # one nonce on two requests sent at once (a system reusing a nonce): one is accepted
        signed(node, core, "POST", "/v1/notifications", card_debit("c.zhang"), key="dup-1", nonce=nonce, timestamp=ts),
        signed(node, core, "POST", "/v1/notifications", card_debit("c.zhang"), key="dup-2", nonce=nonce, timestamp=ts),
        # refused by the recipient check: nothing stored, the key stays free
        signed(node, core, "POST", "/v1/notifications", card_debit("no.such.user"), key="fix-me"),
        # one key sent concurrently with two bodies: one is created, the other conflicts
        signed(node, core, "POST", "/v1/notifications", card_debit("c.zhou"), key="same-key"),
        signed(node, core, "POST", "/v1/notifications", card_debit("c.zhou", priority="low"), key="same-key"),
    ]
    answers = await asyncio.gather(*sends)
    ok, dup, missing, same = answers[:40], answers[40:42], answers[42], answers[43:]
    assert [r.status_code for r in ok] == [201] * 40
    assert len({r.json()["notification"]["alert_id"] for r in ok}) == 40
    assert sorted((r.status_code, r.json().get("code")) for r in dup) == [(201, None), (401, "replayed_request")]
    assert missing.status_code == 404 and missing.json()["code"] == "recipient_not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    assert sorted(r.status_code for r in same) == [201, 409]
    # group-committed: fewer transactions than requests
    batcher = node.hub.alerting.ingest
    assert batcher is not None and batcher.items >= 45 and batcher.batches < batcher.items
    # every alert is in its inbox exactly once, with gapless seqs
    assert await _last_seq(node, "c.li") == 40
    assert await _last_seq(node, "c.zhang") == 1
    assert await _last_seq(node, "c.zhou") == 1
    # the refused request's key is free for the corrected request
    fixed = await signed(node, core, "POST", "/v1/notifications", card_debit("c.li"), key="fix-me")
    assert fixed.status_code == 201
    retry = await signed(node, core, "POST", "/v1/notifications", card_debit("c.li"), key="fix-me")
    assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["notification"]["alert_id"] == fixed.json()["notification"]["alert_id"]


async def test_a_system_disabled_after_its_credentials_were_cached_is_refused_at_once(node: RunningNode, core: System) -> None:
    assert (await signed(node, core, "POST", "/v1/notifications", card_debit())).status_code == 201
    assert node.hub.alerting.cached_credentials(core.name) is not None  # this node holds them
    await set_disabled(node.hub.db, core.name, True)  # the CLI: no hub, no signal
    sends = [signed(node, core, "POST", "/v1/notifications", card_debit(), key=f"after-{i}") for i in range(5)]
    for r in await asyncio.gather(*sends):
        assert r.status_code == 403 and r.json()["code"] == "system_disabled"
    assert await _last_seq(node, "c.li") == 1


def _singles(system: AlertSystem, secret: str, sends: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Single alerts as ``POST /v1/notifications`` hands them to the group commit, so a test
    decides which share one group."""
    from bankhub.actions.alerts import NotificationIn, _check, _fingerprint, _Single

    out = []
    for key, body in sends:
        item = msgspec.convert(body, NotificationIn)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        out.append(_Single(system, _fingerprint(secret), uuid.uuid4().hex, key, digest, _check(None, item), None))
    return out


async def _system(node: RunningNode, core: System) -> AlertSystem:
    creds = await node.hub.alerting.systems.credentials(core.name)
    assert creds is not None
    return creds.system


async def test_one_key_twice_in_one_group_is_answered_as_one_after_the_other(node: RunningNode, core: System) -> None:
    from bankhub.actions.alerts import _AGAIN, _commit_singles

    system = await _system(node, core)
    # the same body twice: the second goes round again, then is the replay of the first
    a, b = _singles(system, core.secret, [("same", card_debit("c.zhou")), ("same", card_debit("c.zhou"))])
    b.body_sha256 = a.body_sha256
    first, again = await _commit_singles(node.hub, [a, b])
    assert again is _AGAIN and isinstance(first, tuple) and first[0] is False
    [replayed] = await _commit_singles(node.hub, [b])
    assert isinstance(replayed, tuple) and replayed[0] is True and replayed[1][0].id == first[1][0].id
    # another body under one key in one group: the second is a conflict, never a second alert
    c, d = _singles(system, core.secret, [("other", card_debit("c.zhou")), ("other", card_debit("c.zhou", priority="low"))])
    created, again = await _commit_singles(node.hub, [c, d])
    assert again is _AGAIN and isinstance(created, tuple) and created[0] is False
    [conflict] = await _commit_singles(node.hub, [d])
    assert isinstance(conflict, ActionError) and conflict.code == "idempotency_conflict"
    assert await _last_seq(node, "c.zhou") == 2


async def test_a_request_that_cannot_be_written_fails_alone_and_the_rest_of_its_group_commits(
    node: RunningNode, core: System
) -> None:
    from bankhub.actions.alerts import _commit_singles

    # a real fault: c.zhou's alert data key cannot be unwrapped
    async with node.hub.db.connection("test_break_key") as conn:
        await conn.execute(
            """INSERT INTO alert_keys (user_id, kek_id, wrapped_dek) SELECT id, 'no-such-kek', '\\x00'::bytea FROM users
               WHERE username = 'c.zhou'
               ON CONFLICT (user_id) DO UPDATE SET kek_id = EXCLUDED.kek_id, wrapped_dek = EXCLUDED.wrapped_dek"""
        )
    system = await _system(node, core)
    group = _singles(
        system, core.secret, [("k1", card_debit("c.li")), ("k2", card_debit("c.zhou")), ("k3", card_debit("c.zhang"))]
    )
    answers = await _commit_singles(node.hub, group)
    assert isinstance(answers[0], tuple) and answers[0][0] is False
    assert isinstance(answers[1], Exception) and not isinstance(answers[1], ActionError)
    assert isinstance(answers[2], tuple) and answers[2][0] is False
    assert await _last_seq(node, "c.li") == 1 and await _last_seq(node, "c.zhang") == 1
    # over HTTP the guilty request alone fails; the others are stored
    sends = [signed(node, core, "POST", "/v1/notifications", card_debit(u), key=f"http-{u}") for u in ("c.li", "c.zhou", "c.zhang")]
    codes = [r.status_code for r in await asyncio.gather(*sends)]
    assert codes[0] == 201 and codes[2] == 201 and codes[1] >= 500


async def test_replays_of_a_captured_request_do_not_use_up_the_systems_rate_limit(node: RunningNode) -> None:
    """A replay is refused before the system's rate limit is taken: someone holding one
    captured request cannot get the system's real alerts refused with 429."""
    slow = await register(node, "slow-core", rate_per_second=0.01, burst=3)
    nonce, ts = uuid.uuid4().hex, int(time.time())
    first = await signed(node, slow, "POST", "/v1/notifications", card_debit(), key="k1", nonce=nonce, timestamp=ts)
    assert first.status_code == 201
    for _ in range(6):
        again = await signed(node, slow, "POST", "/v1/notifications", card_debit(), key="k1", nonce=nonce, timestamp=ts)
        assert (again.status_code, again.json()["code"]) == (401, "replayed_request")
    # two tokens are left of the burst of three
    assert (await signed(node, slow, "POST", "/v1/notifications", card_debit(), key="k2")).status_code == 201
    assert (await signed(node, slow, "POST", "/v1/notifications", card_debit(), key="k3")).status_code == 201
    limited = await signed(node, slow, "POST", "/v1/notifications", card_debit(), key="k4")
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert "retry-after" in limited.headers


async def test_a_nonce_is_the_replay_only_of_a_request_that_recorded_it(node: RunningNode, core: System) -> None:
    """Two requests with one nonce in one group: when the first is refused before its nonce
    is recorded (a secret no longer valid), the second is not answered as its replay."""
    from bankhub.actions.alerts import _commit_singles, _fingerprint

    system = await _system(node, core)
    stale, good = _singles(system, core.secret, [("n1", card_debit("c.li")), ("n2", card_debit("c.li"))])
    stale.matched = _fingerprint("a secret rotated away")
    good.nonce = stale.nonce
    refused, created = await _commit_singles(node.hub, [stale, good])
    assert isinstance(refused, ActionError) and refused.code == "invalid_signature"
    assert isinstance(created, tuple) and created[0] is False
    # and one nonce on two valid requests: the later one is the replay
    first, second = _singles(system, core.secret, [("n3", card_debit("c.li")), ("n4", card_debit("c.li"))])
    second.nonce = first.nonce
    created, replayed = await _commit_singles(node.hub, [first, second])
    assert isinstance(created, tuple) and isinstance(replayed, ActionError) and replayed.code == "replayed_request"


async def test_a_group_lost_to_a_serialisation_failure_is_run_once_more(node: RunningNode, core: System) -> None:
    """A deadlock or serialisation failure is not the requests' fault: the group runs again."""
    from bankhub.actions.alerts import _commit_singles

    async with node.hub.db.connection("test_fail_once") as conn:
        await conn.execute(
            """CREATE SEQUENCE test_fail_once;
               CREATE FUNCTION test_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                   IF nextval('test_fail_once') = 1 THEN
                       RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure';
                   END IF;
                   RETURN NULL;
               END $$;
               CREATE TRIGGER test_fail_once BEFORE INSERT ON alerts FOR EACH STATEMENT EXECUTE FUNCTION test_fail_once()"""
        )
    try:
        system = await _system(node, core)
        [answer] = await _commit_singles(node.hub, _singles(system, core.secret, [("s1", card_debit("c.li"))]))
        assert isinstance(answer, tuple) and answer[0] is False
        assert await _last_seq(node, "c.li") == 1
    finally:
        async with node.hub.db.connection("test_fail_once") as conn:
            await conn.execute(
                "DROP TRIGGER test_fail_once ON alerts; DROP FUNCTION test_fail_once(); DROP SEQUENCE test_fail_once"
            )
