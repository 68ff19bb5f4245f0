"""The audit log's canonical encoding and hash chain, and the chain checker, without a database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import pytest

from bankhub.actions.audit import clean_text
from bankhub.storage.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditRow,
    ChainVerifier,
    Head,
    canonical_json,
    encode_row,
    row_hash,
)

AT = dt.datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=dt.timezone.utc)
ACTOR_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
FIELDS: dict[str, Any] = dict(
    seq=1,
    at=AT,
    actor_id=ACTOR_ID,
    actor="rm.wang",
    action="session.login",
    target="session:7d444840-9dc0-11d1-b245-5ffdce74fad2",
    reason=None,
    ip="10.0.0.7",
    details={"user_agent": "curl/8", "b": [1, True, None, "é"]},
)


def test_golden_vector_written_from_the_docstring() -> None:
    """An independent byte-for-byte construction of the documented encoding, and a pinned hash.

    If this fails, the encoding changed: every existing audit log would stop verifying.
    """

    def opt(b: bytes | None) -> bytes:
        return b"\x00" if b is None else b"\x01" + len(b).to_bytes(4, "big") + b

    expected = (
        b"bankhub.audit.v1"
        + (1).to_bytes(8, "big", signed=True)
        + (1715938215123456).to_bytes(8, "big", signed=True)
        + opt(bytes.fromhex("1b4e28ba2fa111d2883f0016d3cca427"))
        + opt(b"rm.wang")
        + opt(b"session.login")
        + opt(b"session:7d444840-9dc0-11d1-b245-5ffdce74fad2")
        + opt(None)
        + opt(b"10.0.0.7")
        + opt('{"b":[1,true,null,"é"],"user_agent":"curl/8"}'.encode())
    )
    encoded = encode_row(**FIELDS)
    assert encoded == expected
    digest = row_hash(GENESIS_HASH, encoded)
    assert digest == hashlib.sha256(bytes(32) + expected).digest()
    assert digest.hex() == "11f244540e2cf2c9e039e8ca1105c36c19f1e6b76df96455e3a2211bd766249b"


def test_canonical_json_is_key_order_and_spacing_independent() -> None:
    a = canonical_json({"z": 1, "a": {"y": [1, 2], "b": "x"}})
    b = canonical_json({"a": {"b": "x", "y": [1, 2]}, "z": 1})
    assert a == b == b'{"a":{"b":"x","y":[1,2]},"z":1}'
    assert canonical_json({"s": 'q"\\\n\x01\u2028é😀'}) == '{"s":"q\\"\\\\\\n\\u0001\u2028é😀"}'.encode()
    assert canonical_json({}) == b"{}"


@pytest.mark.parametrize(
    "details",
    [{"x": 1.5}, {"x": float("nan")}, {"x": [0.0]}, {1: "int key"}, {"x": b"bytes"}, {"x": {"set"}}, ["not", "an", "object"]],
)
def test_canonical_json_refuses_what_does_not_round_trip_jsonb(details: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(details)


def test_nul_is_refused_by_storage_and_replaced_by_record() -> None:
    with pytest.raises(ValueError, match="NUL"):
        canonical_json({"u": "a\x00b"})
    with pytest.raises(ValueError, match="NUL"):
        AuditEntry(actor="a\x00", action="session.login", target="t").validate()
    assert clean_text("a\x00b\ud800c") == "a\ufffdb\ufffdc"


@pytest.mark.parametrize("action", ["session.login", "privileged_read", "admin.user_disabled", "keys.rotated"])
def test_action_names_accepted(action: str) -> None:
    AuditEntry(actor="system", action=action, target="x").validate()


@pytest.mark.parametrize("action", ["", "Session.Login", "session.", "a b", "admin.*", ".x"])
def test_action_names_refused(action: str) -> None:
    with pytest.raises(ValueError):
        AuditEntry(actor="system", action=action, target="x").validate()


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 2},
        {"at": AT + dt.timedelta(microseconds=1)},
        {"actor_id": None},
        {"actor": "rm.wan"},
        {"action": "session.logins"},
        {"target": "session:x"},
        {"reason": ""},  # NULL and the empty string differ
        {"ip": None},
        {"details": {"user_agent": "curl/8", "b": [1, True, None, "e"]}},
        # text moving between adjacent fields must change the encoding
        {"actor": "rm.wangsession.login", "action": ""},
        {"actor": "rm.wan", "action": "gsession.login"},
        {"reason": "10.0.0.7", "ip": None},
    ],
)
def test_every_field_and_every_boundary_is_covered(change: dict[str, Any]) -> None:
    assert encode_row(**{**FIELDS, **change}) != encode_row(**FIELDS)


def test_timestamps_in_any_zone_encode_as_the_same_instant() -> None:
    shanghai = AT.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert encode_row(**{**FIELDS, "at": shanghai}) == encode_row(**FIELDS)
    with pytest.raises(ValueError):
        encode_row(**{**FIELDS, "at": AT.replace(tzinfo=None)})


def _chain(n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {
            **FIELDS,
            "seq": seq,
            "at": AT + dt.timedelta(seconds=seq),
            "details": {"n": seq},
        }
        digest = row_hash(prev, encode_row(**fields))
        rows.append(AuditRow(**fields, prev_hash=prev, hash=digest))
        prev = digest
    return rows


def _check(rows: list[AuditRow], expect: Head | None = None) -> tuple[ChainVerifier, Any]:
    checker = ChainVerifier(expect)
    for row in rows:
        if checker.feed(row) is not None:
            break
    return checker, checker.finish()


def _rehash(row: AuditRow, prev: bytes | None = None) -> AuditRow:
    prev = row.prev_hash if prev is None else prev
    row = dataclasses.replace(row, prev_hash=prev)
    return dataclasses.replace(row, hash=row.computed_hash())


def test_intact_chain_verifies_and_reports_its_head() -> None:
    rows = _chain(5)
    checker, problem = _check(rows)
    assert problem is None and checker.rows == 5
    assert checker.head == Head(5, rows[-1].hash)
    assert Head.parse(str(checker.head)) == checker.head
    assert _check([])[1] is None and _check([])[0].head == Head(0, GENESIS_HASH)


def test_altered_row_is_named() -> None:
    rows = _chain(5)
    rows[2] = dataclasses.replace(rows[2], reason="edited")
    problem = _check(rows)[1]
    assert (problem.seq, problem.kind) == (3, "altered")


def test_altered_and_rehashed_row_breaks_the_next_link() -> None:
    rows = _chain(5)
    rows[2] = _rehash(dataclasses.replace(rows[2], actor="someone.else"))
    problem = _check(rows)[1]
    assert (problem.seq, problem.kind) == (4, "broken_link")


def test_deleted_rows_are_named() -> None:
    rows = _chain(6)
    problem = _check(rows[:2] + rows[3:])[1]
    assert (problem.seq, problem.kind) == (4, "missing") and "row 3 missing" in problem.message
    problem = _check(rows[:1] + rows[4:])[1]
    assert "rows 2..4 missing" in problem.message
    problem = _check(rows[1:])[1]  # the very first row
    assert (problem.seq, problem.kind) == (2, "missing")


def test_spliced_in_forgery_is_detected_even_with_a_valid_hash() -> None:
    rows = _chain(5)
    forged = _rehash(dataclasses.replace(rows[2], seq=3, action="session.login", actor="ghost"), prev=rows[1].hash)
    shifted = [_rehash(dataclasses.replace(r, seq=r.seq + 1)) for r in rows[2:]]  # renumbered, each re-hashed alone
    problem = _check(rows[:2] + [forged] + shifted)[1]
    assert (problem.seq, problem.kind) == (4, "broken_link")


def test_forged_row_with_a_wrong_link_or_hash() -> None:
    rows = _chain(3)
    bad_link = _rehash(dataclasses.replace(rows[2], seq=4), prev=bytes(32))
    assert _check(rows + [bad_link])[1].kind == "broken_link"
    bad_hash = dataclasses.replace(rows[2], seq=4, prev_hash=rows[2].hash)
    assert _check(rows + [bad_hash])[1].kind == "altered"


def test_truncated_tail_needs_an_anchor() -> None:
    rows = _chain(5)
    anchor = Head(5, rows[-1].hash)
    assert _check(rows[:3])[1] is None  # a shorter valid chain looks intact on its own
    problem = _check(rows[:3], anchor)[1]
    assert (problem.seq, problem.kind) == (4, "truncated")
    assert _check(rows, anchor)[1] is None
    assert _check(rows, Head(3, rows[2].hash))[1] is None  # the log may have grown since
    assert _check([], Head(0, GENESIS_HASH))[1] is None


def test_rewritten_history_that_still_chains_is_caught_by_the_anchor() -> None:
    rows = _chain(4)
    anchor = Head(4, rows[-1].hash)
    rewritten: list[AuditRow] = []
    prev = GENESIS_HASH
    for r in rows:  # an attacker who rewrites everything from row 2 on, re-chaining it all
        r2 = _rehash(dataclasses.replace(r, actor="x" if r.seq >= 2 else r.actor), prev=prev)
        rewritten.append(r2)
        prev = r2.hash
    assert _check(rewritten)[1] is None
    problem = _check(rewritten, anchor)[1]
    assert (problem.seq, problem.kind) == (4, "anchor_mismatch")


@pytest.mark.parametrize("text", ["", "5", "5:zz", "5:" + "ab" * 31, "-1:" + "00" * 32, "0:" + "11" * 32])
def test_bad_heads_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Head.parse(text)
