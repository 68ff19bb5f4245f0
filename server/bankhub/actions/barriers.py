"""Information barriers: compliance officers manage segments, their members and barrier
policies (see docs/compliance.md, "Information barriers").

Each change is one transaction: the barrier lock (:meth:`BarrierStore.lock_txn`), the
policy (:func:`bankhub.policy.may_manage_barriers`, with the officer as they are now), the
write, and its audit row appended last in the same transaction (``barrier.*``): a change
that cannot be audited does not happen. Officers get explicit answers (an unknown username
or segment is ``not_found``): they administer the accounts. Enforcement lives where two
people could communicate (contacts, conversations, groups, the RM book, sends, edits,
typing, receipts, directories): those paths read the facts from
:class:`~bankhub.storage.barriers.BarrierStore` in their own transaction and ask
:func:`bankhub.policy.may_communicate` / :func:`bankhub.policy.may_send_across`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from .. import policy
from ..compliance import barriers as rules
from ..desk.system import SYSTEM_USER_ID
from ..hub import Hub
from ..models import User
from ..storage.barriers import BarrierStore, PolicyRow, SegmentMemberRow, SegmentRow
from ..storage.contacts import ContactStore
from ..storage.db import Conn
from ..storage.users import UserStore
from .audit import (
    BARRIER_MEMBER_ADDED,
    BARRIER_MEMBER_REMOVED,
    BARRIER_POLICY_ADDED,
    BARRIER_POLICY_REMOVED,
    BARRIER_SEGMENT_CREATED,
    record,
)
from .errors import ActionError, require

__all__ = [
    "create_segment",
    "list_segments",
    "add_member",
    "remove_member",
    "list_members",
    "add_policy",
    "remove_policy",
    "list_policies",
]


def _checked(fn: Callable[[str], str], value: str) -> str:
    try:
        return fn(value)
    except rules.BarrierError as e:
        raise ActionError("invalid_request", str(e)) from None


async def _officer(conn: Conn, actor: User) -> User:
    """The officer as they are now (share-locked): a disabled or demoted officer is refused."""
    users = await UserStore.lock_shared(conn, [actor.id])
    now = users.get(actor.id)
    if now is None:
        raise ActionError("forbidden", "information barriers are managed by compliance officers")
    require(policy.may_manage_barriers(now))
    return now


def _no_segment(name: str) -> ActionError:
    return ActionError("not_found", f"no such segment: {name}")


async def create_segment(hub: Hub, actor: User, name: str, title: str) -> SegmentRow:
    """A new segment (201); ``conflict`` when the name is taken or the hub holds
    :data:`~bankhub.compliance.barriers.MAX_SEGMENTS`. Audited ``barrier.segment_created``."""
    require(policy.may_manage_barriers(actor))
    name, title = _checked(rules.check_segment_name, name), _checked(rules.check_title, title)
    async with hub.transaction("barrier_segment_create") as tx:
        officer = await _officer(tx.conn, actor)
        await BarrierStore.lock_txn(tx.conn)
        if await BarrierStore.count_segments_txn(tx.conn) >= rules.MAX_SEGMENTS:
            raise ActionError("conflict", f"the hub holds {rules.MAX_SEGMENTS} segments, the most allowed")
        created = await BarrierStore.create_segment_txn(tx.conn, name, title, officer.id)
        if created is None:
            raise ActionError("conflict", f"a segment named {name} exists")
        await record(hub, actor=officer, action=BARRIER_SEGMENT_CREATED, target=f"segment:{name}",
                     details={"title": title}, conn=tx.conn)
    return created


async def list_segments(hub: Hub, actor: User, *, after: str | None, limit: int) -> list[SegmentRow]:
    """A page of the segments by name (with their member counts)."""
    require(policy.may_manage_barriers(actor))
    return await hub.barriers.segments_page(after=after, limit=limit)


async def _member_change(hub: Hub, actor: User, segment: str, username: str, *, add: bool) -> bool:
    require(policy.may_manage_barriers(actor))
    name = segment if rules.valid_segment_name(segment) else None
    async with hub.transaction("barrier_member_add" if add else "barrier_member_remove") as tx:
        officer = await _officer(tx.conn, actor)
        await BarrierStore.lock_txn(tx.conn)
        seg = None if name is None else await BarrierStore.segment_txn(tx.conn, name)
        if seg is None:
            raise _no_segment(segment)
        user = await ContactStore.user_by_username(tx.conn, username)
        if user is None:
            raise ActionError("not_found", f"no such user: {username}")
        if add:
            if user.id == SYSTEM_USER_ID:  # it posts the hub's own notices, which no barrier stops
                raise ActionError("invalid_request", "the hub's system user is in no segment")
            if await BarrierStore.is_member_txn(tx.conn, seg.id, user.id):
                return False  # idempotent: answered before any cap
            if opposed := await BarrierStore.opposed_segments_of_txn(tx.conn, seg.id, user.id):
                raise ActionError(
                    "conflict", f"a barrier policy separates {seg.name} from {', '.join(opposed)}, where {username} is: "
                    "a user on both sides of a policy would be barred from their own segment"
                )
            if await BarrierStore.segments_of_user_txn(tx.conn, user.id) >= rules.MAX_SEGMENTS_PER_USER:
                raise ActionError("conflict", f"{username} is in {rules.MAX_SEGMENTS_PER_USER} segments, the most allowed")
            changed = await BarrierStore.add_member_txn(tx.conn, seg.id, user.id, officer.id)
        else:
            changed = await BarrierStore.remove_member_txn(tx.conn, seg.id, user.id)
            if not changed:
                raise ActionError("not_found", f"{username} is not in segment {seg.name}")
        if changed:
            await record(hub, actor=officer, action=BARRIER_MEMBER_ADDED if add else BARRIER_MEMBER_REMOVED,
                         target=f"user:{user.id}", details={"segment": seg.name, "username": user.username}, conn=tx.conn)
    return changed


async def add_member(hub: Hub, actor: User, segment: str, username: str) -> bool:
    """Put ``username`` in ``segment`` (idempotent: False when they were in it already, and
    then nothing is audited). Audited ``barrier.member_added``."""
    return await _member_change(hub, actor, segment, username, add=True)


async def remove_member(hub: Hub, actor: User, segment: str, username: str) -> None:
    """Take ``username`` out of ``segment`` (``not_found`` when they are not in it).
    Audited ``barrier.member_removed``."""
    await _member_change(hub, actor, segment, username, add=False)


async def list_members(hub: Hub, actor: User, segment: str, *, after: str | None, limit: int) -> list[SegmentMemberRow]:
    """A page of the segment's members by username."""
    require(policy.may_manage_barriers(actor))
    seg = await hub.barriers.segment(segment) if rules.valid_segment_name(segment) else None
    if seg is None:
        raise _no_segment(segment)
    return await hub.barriers.members_page(seg.id, after=after, limit=limit)


async def add_policy(hub: Hub, actor: User, a: str, b: str) -> tuple[PolicyRow, bool]:
    """A barrier policy between segments ``a`` and ``b`` (symmetric; ``invalid_request`` for
    a segment with itself; ``not_found`` for an unknown segment). Returns the policy and
    whether it is new (an existing one, either way round, is returned as it is, unaudited).
    From its commit on, every path refuses communication between the two segments' members,
    sends into conversations they already share included. Audited ``barrier.policy_added``."""
    require(policy.may_manage_barriers(actor))
    try:
        rules.policy_pair(a, b)
    except rules.BarrierError as e:
        raise ActionError("invalid_request", str(e)) from None
    async with hub.transaction("barrier_policy_add") as tx:
        officer = await _officer(tx.conn, actor)
        await BarrierStore.lock_txn(tx.conn)
        sa, sb = await BarrierStore.segment_txn(tx.conn, a), await BarrierStore.segment_txn(tx.conn, b)
        if sa is None or sb is None:
            raise _no_segment(a if sa is None else b)
        existing = await BarrierStore.policy_between_txn(tx.conn, sa.id, sb.id)
        if existing is not None:
            return existing, False  # idempotent: answered before any cap
        if both := await BarrierStore.in_both_txn(tx.conn, sa.id, sb.id):
            raise ActionError(
                "conflict", f"{both} user(s) are in both {a} and {b}: take them out of one first "
                "(a user on both sides of a policy would be barred from their own segment)"
            )
        if await BarrierStore.count_policies_txn(tx.conn) >= rules.MAX_POLICIES:
            raise ActionError("conflict", f"the hub holds {rules.MAX_POLICIES} barrier policies, the most allowed")
        row, new = await BarrierStore.add_policy_txn(tx.conn, sa.id, sb.id, officer.id)
        if new:
            await record(hub, actor=officer, action=BARRIER_POLICY_ADDED, target=f"barrier_policy:{row.id}",
                         details={"a": row.a, "b": row.b}, conn=tx.conn)
    return row, new


async def remove_policy(hub: Hub, actor: User, policy_id: str) -> None:
    """Delete a barrier policy (``not_found`` for an unknown id). Audited ``barrier.policy_removed``."""
    require(policy.may_manage_barriers(actor))
    try:
        pid = str(uuid.UUID(policy_id))
    except ValueError:
        raise ActionError("not_found", "no such barrier policy") from None
    async with hub.transaction("barrier_policy_remove") as tx:
        officer = await _officer(tx.conn, actor)
        await BarrierStore.lock_txn(tx.conn)
        row = await BarrierStore.remove_policy_txn(tx.conn, pid)
        if row is None:
            raise ActionError("not_found", "no such barrier policy")
        await record(hub, actor=officer, action=BARRIER_POLICY_REMOVED, target=f"barrier_policy:{row.id}",
                     details={"a": row.a, "b": row.b}, conn=tx.conn)


async def list_policies(
    hub: Hub, actor: User, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[PolicyRow]:
    """A page of the barrier policies, oldest first."""
    require(policy.may_manage_barriers(actor))
    return await hub.barriers.policies_page(after=after, limit=limit)
