"""The compliance console's audit-chain check: read the head, re-verify the chain.

The head (``seq`` and ``hash`` of the last audit row) is what a compliance officer anchors
*outside* the hub — in the case file, a signed email — and compares later with
``bankhub audit verify --expect-head SEQ:HEX``: a chain re-written from some row onwards
or cut short then no longer matches. Both calls are for active compliance officers only
(:func:`bankhub.policy.may_check_audit_chain`); a verification is itself recorded
(``audit.verified``, with its result), after the walk, so the row it adds is not part of
what it reports.
"""

from __future__ import annotations

from .. import policy
from ..hub import Hub
from ..models import User
from ..storage.audit import Head, VerifyReport, verify_exclusive
from . import audit
from .errors import ActionError, require
from .limits import AUDIT_VERIFY_PER_USER, enforce

__all__ = ["head", "verify", "VERIFY_RETRY_AFTER"]

VERIFY_RETRY_AFTER = 5.0
"""Seconds a caller refused with ``verify_running`` is told to wait (``Retry-After``)."""


async def head(hub: Hub, actor: User) -> Head:
    """The current head of the chain (``0:00…`` for an empty log)."""
    require(policy.may_check_audit_chain(actor))
    return await hub.audit.head()


async def verify(hub: Hub, actor: User, *, expect_head: Head | None = None, ip: str | None = None) -> VerifyReport:
    """Walk the whole chain (:func:`bankhub.actions.audit.verify`) and record ``audit.verified``
    with the outcome: ok, rows, the head that verified and, when broken, the first bad seq and
    its kind (never row contents).

    A walk holds a pooled connection for as long as the chain takes, so it is bounded: per
    officer by :data:`~bankhub.actions.limits.AUDIT_VERIFY_PER_USER` (429 ``rate_limited``,
    ``Retry-After``) and one at a time across the hub (409 ``verify_running``, ``Retry-After``);
    a refused call walks nothing and records nothing."""
    require(policy.may_check_audit_chain(actor))
    await enforce(hub, f"audit_verify:{actor.id}", AUDIT_VERIFY_PER_USER, fail_closed=False)
    async with hub.db.connection("audit_verify") as conn:
        walked = await verify_exclusive(conn, expect_head=expect_head)
    if walked is None:
        raise ActionError("verify_running", "another audit-chain verification is running; retry shortly", retry_after=VERIFY_RETRY_AFTER)
    report = walked
    await audit.record(
        hub,
        actor=actor,
        action=audit.AUDIT_VERIFIED,
        target="audit:chain",
        ip=ip,
        details={
            "ok": report.ok,
            "rows": report.rows,
            "head": str(report.head),
            "expect_head": None if expect_head is None else str(expect_head),
            "first_bad_seq": None if report.problem is None else report.problem.seq,
            "problem": None if report.problem is None else report.problem.kind,
        },
    )
    return report
