"""The tamper-evident audit log (table ``audit_log``): canonical encoding, appends, verification.

Every row carries ``prev_hash`` (the ``hash`` of the row before it; the first row chains
from 32 zero bytes) and its own ``hash``::

    hash = SHA-256( prev_hash || encode(row) )

where ``encode(row)`` is, byte for byte::

    b"bankhub.audit.v1"                     16 ASCII bytes: format tag (domain separation)
    int64be(seq)                            8 bytes, two's complement, big-endian
    int64be(at_us)                          8 bytes: ``at`` in whole microseconds since
                                            1970-01-01T00:00:00Z (timestamptz's own precision)
    opt(actor_id)                           the 16 raw bytes of the UUID (RFC 4122 order)
    opt(utf8(actor))
    opt(utf8(action))
    opt(utf8(target))
    opt(utf8(reason))
    opt(utf8(ip))
    opt(canonical_json(details))

    opt(NULL)  = 0x00
    opt(bytes) = 0x01 || uint32be(len(bytes)) || bytes

``prev_hash`` is always 32 bytes and every later field is either fixed-width or
length-prefixed with a presence byte, so the encoding is unambiguous: no two different
rows (including NULL versus empty string, or text moving between adjacent fields) encode
to the same bytes.

``canonical_json(details)`` is the UTF-8 of the JSON text with object keys sorted by
Unicode code point, no whitespace (``,`` and ``:`` separators), strings written
literally except ``"`` → ``\\"``, ``\\`` → ``\\\\``, ``\\b \\f \\n \\r \\t`` as those escapes and
any other U+0000–U+001F as ``\\u00xx`` (lower-case hex), integers in plain decimal, and
``true``/``false``/``null``. ``details`` must be an object whose values are strings,
integers, booleans, null, lists or objects (string keys): **no floats**, because a float
does not survive the trip through ``jsonb`` byte-exactly (write decimals as strings).
Verification parses the stored ``jsonb`` and re-encodes it the same way, so ``jsonb``'s
own key order and spacing do not matter.

Appends are serialised by :data:`AUDIT_LOCK_KEY`, a transaction-scoped advisory lock
(``pg_advisory_xact_lock``): an append takes the lock, reads the head (the row with the
highest seq), inserts ``seq = head.seq + 1`` chained from ``head.hash``, and the lock is
held until the surrounding transaction ends. A rolled-back transaction therefore
allocates no seq, and the chain and seq stay gap-free. An append must run in a
READ COMMITTED transaction (each statement then sees the rows committed before it got
the lock) and should be the last thing its transaction does, since every other append
waits for that transaction to end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .db import Conn, Database

__all__ = [
    "AUDIT_LOCK_KEY",
    "AUDIT_VERIFY_LOCK_KEY",
    "FORMAT_TAG",
    "GENESIS_HASH",
    "MAX_DETAILS_BYTES",
    "MAX_TEXT_CHARS",
    "AuditEntry",
    "AuditRow",
    "AuditStore",
    "ChainVerifier",
    "Head",
    "Problem",
    "VerifyReport",
    "canonical_json",
    "encode_row",
    "row_hash",
    "verify",
    "verify_exclusive",
]

AUDIT_LOCK_KEY = 0x62616E6B61756474  # "bankaudt": serialises appends to audit_log
AUDIT_VERIFY_LOCK_KEY = 0x6261756476726679  # "baudvrfy": one chain verification at a time (verify_exclusive)
FORMAT_TAG = b"bankhub.audit.v1"
GENESIS_HASH = bytes(32)
MAX_TEXT_CHARS = 4096
MAX_DETAILS_BYTES = 64 * 1024
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

_COLUMNS = "seq, at, actor_id, actor, action, target, reason, ip, details::text AS details, prev_hash, hash"


# ---------------------------------------------------------------------------------------
# Pure part: the canonical encoding, the hash chain and the chain checker.
# ---------------------------------------------------------------------------------------


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("audit details nest too deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("audit details may not contain NUL (jsonb cannot store it)")
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        raise TypeError("audit details may not hold floats (they do not round-trip jsonb exactly); use a string")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit details keys must be strings, not {type(key).__name__}")
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
        return
    raise TypeError(f"audit details may not hold {type(value).__name__}")


def canonical_json(details: Mapping[str, Any]) -> bytes:
    """The canonical JSON encoding of ``details`` (see the module docstring)."""
    if not isinstance(details, Mapping):
        raise TypeError("audit details must be a JSON object (a mapping)")
    _check_json(details)
    text = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _opt(value: bytes | None) -> bytes:
    if value is None:
        return b"\x00"
    return b"\x01" + struct.pack(">I", len(value)) + value


def _utf8(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


def _micros(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return (at - _EPOCH) // _MICROSECOND


def encode_row(
    *,
    seq: int,
    at: dt.datetime,
    actor_id: str | None,
    actor: str,
    action: str,
    target: str,
    reason: str | None,
    ip: str | None,
    details: Mapping[str, Any],
) -> bytes:
    """The canonical, unambiguous byte encoding of one row's fields (module docstring)."""
    return b"".join(
        (
            FORMAT_TAG,
            struct.pack(">qq", seq, _micros(at)),
            _opt(None if actor_id is None else uuid.UUID(actor_id).bytes),
            _opt(_utf8(actor)),
            _opt(_utf8(action)),
            _opt(_utf8(target)),
            _opt(_utf8(reason)),
            _opt(_utf8(ip)),
            _opt(canonical_json(details)),
        )
    )


def row_hash(prev_hash: bytes, encoded: bytes) -> bytes:
    """``SHA-256(prev_hash || encoded)``; ``prev_hash`` must be 32 bytes."""
    if len(prev_hash) != 32:
        raise ValueError("prev_hash must be 32 bytes")
    return hashlib.sha256(prev_hash + encoded).digest()


@dataclass(frozen=True)
class AuditEntry:
    """What a caller records; seq, at and the hashes are assigned by :meth:`AuditStore.append`."""

    actor: str
    action: str
    target: str
    actor_id: str | None = None
    reason: str | None = None
    ip: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not _ACTION.fullmatch(self.action):
            raise ValueError(f"bad audit action {self.action!r}: want dotted lower-case words like 'session.login'")
        if not self.actor or not self.target:
            raise ValueError("audit actor and target must not be empty")
        if self.actor_id is not None:
            uuid.UUID(self.actor_id)
        for name in ("actor", "action", "target", "reason", "ip"):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) > MAX_TEXT_CHARS:
                raise ValueError(f"audit {name} is over {MAX_TEXT_CHARS} characters")
            if "\x00" in value:
                raise ValueError(f"audit {name} contains NUL (Postgres text cannot store it)")
            value.encode("utf-8")  # lone surrogates cannot be stored either
        encoded = canonical_json(self.details)
        if len(encoded) > MAX_DETAILS_BYTES:
            raise ValueError(f"audit details are over {MAX_DETAILS_BYTES} bytes")


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: dt.datetime
    actor_id: str | None
    actor: str
    action: str
    target: str
    reason: str | None
    ip: str | None
    details: Mapping[str, Any]
    prev_hash: bytes
    hash: bytes

    def encode(self) -> bytes:
        return encode_row(
            seq=self.seq,
            at=self.at,
            actor_id=self.actor_id,
            actor=self.actor,
            action=self.action,
            target=self.target,
            reason=self.reason,
            ip=self.ip,
            details=self.details,
        )

    def computed_hash(self) -> bytes:
        return row_hash(self.prev_hash, self.encode())


@dataclass(frozen=True)
class Head:
    """The last row of the chain: what an operator anchors outside the database."""

    seq: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """Parse ``SEQ:HEX`` (as printed by ``bankhub audit verify``)."""
        seq_text, sep, hex_text = text.strip().partition(":")
        try:
            seq = int(seq_text)
            digest = bytes.fromhex(hex_text)
        except ValueError:
            raise ValueError(f"bad head {text!r}: want SEQ:HEX, e.g. 42:3f5a...") from None
        if not sep or seq < 0 or len(digest) != 32:
            raise ValueError(f"bad head {text!r}: want SEQ:HEX with a 64-digit SHA-256")
        if seq == 0 and digest != GENESIS_HASH:
            raise ValueError("head 0 (the empty log) has the all-zero hash")
        return cls(seq, digest)


EMPTY_HEAD = Head(0, GENESIS_HASH)


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the chain. ``seq`` names the row where it shows."""

    seq: int
    kind: str  # altered | missing | broken_link | bad_seq | undecodable | truncated | anchor_mismatch
    message: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.kind}: {self.message}"


class ChainVerifier:
    """Checks rows fed in seq order; stops at the first problem. Pure, holds O(1) state.

    Per row, in this order: the seq follows the previous one (else rows were deleted or
    renumbered), ``prev_hash`` equals the previous row's hash (else a row was inserted,
    or the previous one was altered and re-hashed), and ``hash`` equals the hash of the
    row's own fields (else the row was altered).
    """

    def __init__(self, expect_head: Head | None = None) -> None:
        self.expect_head = expect_head
        self.head = EMPTY_HEAD
        self.rows = 0
        self.problem: Problem | None = None
        self.anchor_seen = expect_head is None or expect_head.seq == 0

    def feed(self, row: AuditRow) -> Problem | None:
        if self.problem is not None:
            return self.problem
        self.problem = self._check(row)
        if self.problem is None:
            self.head = Head(row.seq, row.hash)
            self.rows += 1
        return self.problem

    def _check(self, row: AuditRow) -> Problem | None:
        want = self.head.seq + 1
        if row.seq > want:
            missing = f"row {want}" if row.seq == want + 1 else f"rows {want}..{row.seq - 1}"
            return Problem(row.seq, "missing", f"{missing} missing before row {row.seq} (deleted)")
        if row.seq != want:
            return Problem(row.seq, "bad_seq", f"expected seq {want}")
        if row.prev_hash != self.head.hash:
            return Problem(
                row.seq,
                "broken_link",
                f"prev_hash {row.prev_hash.hex()} is not the hash of row {self.head.seq} ({self.head.hash.hex()}): "
                "a row was inserted or replaced here",
            )
        try:
            computed = row.computed_hash()
        except (TypeError, ValueError) as exc:
            return Problem(row.seq, "undecodable", f"fields cannot be encoded ({exc}): the row was altered")
        if computed != row.hash:
            return Problem(
                row.seq, "altered", f"stored hash {row.hash.hex()} does not match its contents (computed {computed.hex()})"
            )
        anchor = self.expect_head
        if anchor is not None and row.seq == anchor.seq:
            self.anchor_seen = True
            if row.hash != anchor.hash:
                return Problem(
                    row.seq,
                    "anchor_mismatch",
                    f"hash {row.hash.hex()} differs from the anchored head {anchor}: the log was rewritten from here back",
                )
        return None

    def finish(self) -> Problem | None:
        """Call after the last row: reports a log that ends before the anchored head."""
        if self.problem is None and not self.anchor_seen:
            assert self.expect_head is not None
            self.problem = Problem(
                self.head.seq + 1,
                "truncated",
                f"the log ends at row {self.head.seq} but the anchored head is {self.expect_head.seq}: "
                "rows were removed from the tail",
            )
        return self.problem


@dataclass(frozen=True)
class VerifyReport:
    rows: int
    head: Head  # the last row that verified (the real head when the chain is intact)
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


# ---------------------------------------------------------------------------------------
# Storage.
# ---------------------------------------------------------------------------------------


def _row(r: Any) -> AuditRow:
    details = r["details"]
    return AuditRow(
        seq=r["seq"],
        at=r["at"],
        actor_id=None if r["actor_id"] is None else str(r["actor_id"]),
        actor=r["actor"],
        action=r["action"],
        target=r["target"],
        reason=r["reason"],
        ip=r["ip"],
        details=json.loads(details) if isinstance(details, str) else details,
        prev_hash=bytes(r["prev_hash"]),
        hash=bytes(r["hash"]),
    )


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, entry: AuditEntry, *, conn: Conn | None = None) -> AuditRow:
        """Append ``entry`` to the chain: inside ``conn``'s open transaction, or in a new one.

        With ``conn`` the row commits or rolls back with the caller's transaction, and
        other appends wait for that transaction to end, so append last.
        """
        entry.validate()
        if conn is None:
            async with self.db.transaction("audit_append") as own:
                return await self._append(own, entry)
        if not conn.is_in_transaction():
            raise RuntimeError("AuditStore.append(conn=...) needs a connection inside a transaction")
        return await self._append(conn, entry)

    async def _append(self, conn: Conn, entry: AuditEntry) -> AuditRow:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)
        # a new statement, so a new READ COMMITTED snapshot: it sees the previous holder's commit
        state = await conn.fetchrow(
            """SELECT current_setting('transaction_isolation') AS isolation, clock_timestamp() AS now,
                      h.seq, h.hash
               FROM (SELECT 1) one LEFT JOIN LATERAL
                    (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) h ON true"""
        )
        assert state is not None
        if state["isolation"] != "read committed":
            raise RuntimeError(f"audit appends need a READ COMMITTED transaction, not {state['isolation']}")
        seq = 1 if state["seq"] is None else int(state["seq"]) + 1
        prev = GENESIS_HASH if state["hash"] is None else bytes(state["hash"])
        # timestamptz keeps microseconds: hash exactly what will be stored
        at: dt.datetime = state["now"]
        details = dict(entry.details)
        digest = row_hash(
            prev,
            encode_row(
                seq=seq,
                at=at,
                actor_id=entry.actor_id,
                actor=entry.actor,
                action=entry.action,
                target=entry.target,
                reason=entry.reason,
                ip=entry.ip,
                details=details,
            ),
        )
        await conn.execute(
            """INSERT INTO audit_log (seq, at, actor_id, actor, action, target, reason, ip, details, prev_hash, hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)""",
            seq,
            at,
            None if entry.actor_id is None else uuid.UUID(entry.actor_id),
            entry.actor,
            entry.action,
            entry.target,
            entry.reason,
            entry.ip,
            canonical_json(details).decode("utf-8"),
            prev,
            digest,
        )
        return AuditRow(seq, at, entry.actor_id, entry.actor, entry.action, entry.target, entry.reason, entry.ip, details, prev, digest)

    async def head(self) -> Head:
        """The current head (``0:000…`` for an empty log)."""
        async with self.db.connection("audit_head") as conn:
            row = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return EMPTY_HEAD if row is None else Head(int(row["seq"]), bytes(row["hash"]))

    async def recent(self, *, limit: int = 100, action: str | None = None, actor_id: str | None = None) -> list[AuditRow]:
        """The newest rows first, optionally only one action and/or one actor."""
        async with self.db.connection("audit_recent") as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM audit_log
                    WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR actor_id = $2)
                    ORDER BY seq DESC LIMIT $3""",
                action,
                None if actor_id is None else uuid.UUID(actor_id),
                limit,
            )
        return [_row(r) for r in rows]


async def verify(conn: Conn, *, expect_head: Head | None = None, batch_size: int = 1000) -> VerifyReport:
    """Re-compute the whole chain in seq order and report the first problem.

    Reads through a server-side cursor in one REPEATABLE READ, read-only snapshot, so
    memory stays bounded by ``batch_size`` rows and concurrent appends do not disturb
    the walk. Without ``expect_head`` a removed *tail* is undetectable (the shorter log
    is a valid chain); with it, a log that ends before the anchored head, or whose row at
    the anchored seq has another hash, is reported.
    """
    checker = ChainVerifier(expect_head)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
        while True:
            records = await cursor.fetch(batch_size)
            if not records:
                break
            # hashing a batch is CPU work (tens of µs a row): done off the event loop, so a
            # long chain does not stall every other request of this node meanwhile
            if await asyncio.to_thread(_feed_batch, checker, records):
                break
    problem = checker.finish()
    return VerifyReport(rows=checker.rows, head=checker.head, problem=problem)


def _feed_batch(checker: ChainVerifier, records: list[Any]) -> bool:
    """Feed ``records`` to ``checker``; True once it found a problem (stop reading)."""
    for record in records:
        try:
            row = _row(record)
        except ValueError as exc:
            checker.problem = Problem(int(record["seq"]), "undecodable", f"details are not JSON ({exc})")
            return True
        if checker.feed(row) is not None:
            return True
    return False


async def verify_exclusive(conn: Conn, *, expect_head: Head | None = None, batch_size: int = 1000) -> VerifyReport | None:
    """:func:`verify`, but only one at a time across every node of the hub: None (nothing
    walked) while another verification holds :data:`AUDIT_VERIFY_LOCK_KEY`. The lock is
    session-level and released before the connection goes back to the pool."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", AUDIT_VERIFY_LOCK_KEY):
        return None
    try:
        return await verify(conn, expect_head=expect_head, batch_size=batch_size)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", AUDIT_VERIFY_LOCK_KEY)
