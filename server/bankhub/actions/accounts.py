"""Official accounts: follow, publish (targeted, scheduled, maker-checker), recall, read.

Publishing is O(1) in the number of followers: one notice row, the account's seq bump and
an audit row in one transaction, then — after the commit — one broadcast signal that
every node receives; each node hands it to its own connected followers that the notice
targets (:mod:`bankhub.delivery.notices`). Offline followers get it through ``sync``.

Workflow of a notice::

    publish ──▶ pending_approval ──approve──▶ scheduled ──(time)──▶ published ──recall──▶ recalled
          │            └──reject──▶ rejected        ▲
          └──(no approval needed)───────────────────┘ (or straight to published when not scheduled)
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from .. import policy
from ..broker import BROADCAST_CHANNEL, user_channel
from ..hub import Hub
from ..models import AccountKey, FollowedAccount, NoticeRecord, NoticeStats, OfficialAccount, OrgRow, Target, User, account_key
from ..outbox import Transaction
from ..protocol.frames import AccountReceipt, AccountSync, Notice, NoticeBody
from ..signals import AccountReadSignal, FollowSignal, NoticeSignal, PrincipalSignal
from . import cards, dlp
from .audit import record
from .errors import ActionError, require

__all__ = [
    "NOTICE_PUBLISHED",
    "NOTICE_APPROVED",
    "NOTICE_REJECTED",
    "NOTICE_RECALLED",
    "ACCOUNT_CREATED",
    "create_account",
    "visible_account",
    "search",
    "following",
    "follow",
    "unfollow",
    "publish",
    "approve",
    "reject",
    "recall",
    "publish_due",
    "read",
    "history",
    "sync",
    "outbox",
    "stats",
    "audience",
    "target_orgs",
]


ACCOUNT_CREATED = "account.created"
NOTICE_PUBLISHED = "notice.published"
NOTICE_SUBMITTED = "notice.submitted"
NOTICE_APPROVED = "notice.approved"
NOTICE_REJECTED = "notice.rejected"
NOTICE_RECALLED = "notice.recalled"

MAX_TARGET_VALUES = 100


async def _account(hub: Hub, account_id: str) -> OfficialAccount:
    account = await hub.accounts.get(account_id)
    if account is None:
        raise ActionError("not_found", "no such account")
    return account


async def visible_account(hub: Hub, actor: User, account_id: str) -> OfficialAccount:
    """The account, if ``actor`` may see it (else ``not_found``)."""
    account = await _account(hub, account_id)
    require(policy.may_view_account(actor, account, await hub.users.org_ancestry(actor.org_id)))
    return account


async def _managed(hub: Hub, actor: User, account_id: str) -> OfficialAccount:
    account = await _account(hub, account_id)
    decision = policy.may_manage_account(actor, account)
    if not decision.allowed and not policy.may_view_account(actor, account, await hub.users.org_ancestry(actor.org_id)).allowed:
        raise ActionError("not_found", "no such account")
    require(decision)
    return account


async def create_account(
    hub: Hub,
    actor: User,
    *,
    handle: str,
    name: str,
    description: str,
    owner_org_code: str | None,
    audience: str,
    is_default: bool,
    requires_approval: bool,
    ip: str | None = None,
) -> OfficialAccount:
    """Create an account owned by ``owner_org_code`` (default: the actor's own org)."""
    if audience not in ("customer", "staff"):
        raise ActionError("invalid_request", "audience is 'customer' or 'staff'")
    if owner_org_code is None:
        owner_org = actor.org_id
    else:
        found = await hub.users.org_ids_by_code([owner_org_code])
        if owner_org_code not in found:
            raise ActionError("invalid_request", f"no org with code {owner_org_code!r}")
        owner_org = found[owner_org_code]
    require(policy.may_create_account(actor, await hub.users.org_ancestry(owner_org)))
    async with hub.db.transaction("account_create") as conn:
        account = await hub.accounts.create(
            handle=handle,
            name=name,
            description=description,
            owner_org_id=owner_org,
            audience=audience,
            is_default=is_default,
            requires_approval=requires_approval,
            created_by=actor.id,
            conn=conn,
        )
        if account is None:
            raise ActionError("conflict", f"the handle {handle!r} is taken")
        await record(
            hub,
            actor=actor,
            action=ACCOUNT_CREATED,
            target=f"account:{account.id}",
            ip=ip,
            details={"handle": handle, "audience": audience, "default": is_default, "approval": requires_approval},
            conn=conn,
        )
    return account


SEARCH_SCAN_ROWS = 200
SEARCH_SCAN_BATCHES = 10


async def search(
    hub: Hub, actor: User, query: str, limit: int = 50, *, after: AccountKey | None = None
) -> tuple[list[OfficialAccount], AccountKey | None]:
    """A page of the accounts the actor may see whose handle or name contains ``query``, in
    :func:`~bankhub.models.account_key` order, after ``after``; and the key to
    continue from (None: nothing more).

    Visibility is the policy's decision, so the matches are read in batches and filtered
    here until the page is full. One request scans at most ``SEARCH_SCAN_BATCHES`` batches:
    past that the page may be short (even empty) and the returned key says where to go on,
    so no account the actor may see is ever skipped, however many they may not."""
    require(policy.may_read_conversation_list(actor))
    path = await hub.users.org_ancestry(actor.org_id)
    page: list[OfficialAccount] = []
    cursor = after
    for _ in range(SEARCH_SCAN_BATCHES):
        batch = await hub.accounts.search(query[:64], SEARCH_SCAN_ROWS, after=cursor)
        for a in batch:
            if policy.may_view_account(actor, a, path).allowed:
                if len(page) == limit:
                    return page, account_key(page[-1])
                page.append(a)
            cursor = account_key(a)
        if len(batch) < SEARCH_SCAN_ROWS:
            return page, None
    return page, cursor


async def following(hub: Hub, actor: User, *, after: AccountKey | None = None, limit: int | None = None) -> list[FollowedAccount]:
    """The actor's followed accounts with exact unread counts, in
    :func:`~bankhub.models.account_key` order: all, or up to ``limit`` after ``after``."""
    require(policy.may_read_conversation_list(actor))
    return await hub.accounts.following(actor.id, after=after, limit=limit)


async def follow(hub: Hub, actor: User, account_id: str) -> OfficialAccount:
    """Follow an account. Earlier notices become history, not unread. Idempotent."""
    account = await _account(hub, account_id)
    require(policy.may_follow_account(actor, account, await hub.users.org_ancestry(actor.org_id)))
    async with hub.transaction("account_follow") as tx:
        # the user's nodes start delivering the account's notices live (else: at the next connection)
        if await hub.accounts.follow(tx.conn, account.id, actor.id):
            tx.emit(user_channel(actor.id), FollowSignal(actor.id, account.id, True))
            tx.emit(BROADCAST_CHANNEL, PrincipalSignal(actor.id))  # cached sessions carry the follows
    hub.session_cache.forget_user(actor.id)
    return account


async def unfollow(hub: Hub, actor: User, account_id: str) -> None:
    account = await _account(hub, account_id)
    if await hub.accounts.follow_state(account.id, actor.id) is None:
        raise ActionError("not_found", "you do not follow this account")
    require(policy.may_unfollow_account(actor, account))
    async with hub.transaction("account_unfollow") as tx:
        if await hub.accounts.unfollow(tx.conn, account.id, actor.id):
            tx.emit(user_channel(actor.id), FollowSignal(actor.id, account.id, False))
            tx.emit(BROADCAST_CHANNEL, PrincipalSignal(actor.id))
    hub.session_cache.forget_user(actor.id)


async def _validated_target(hub: Hub, account: OfficialAccount, org_codes: list[str] | None, target: Target) -> Target:
    """Resolve org codes, bound the lists, default a branch account to its own subtree."""
    for values in (org_codes, target.tags, target.segments):
        if values is not None and not 1 <= len(values) <= MAX_TARGET_VALUES:
            raise ActionError("invalid_request", f"a target list holds 1 to {MAX_TARGET_VALUES} values")
    org_ids = None
    if org_codes is not None:
        found = await hub.users.org_ids_by_code(org_codes)
        missing = sorted(set(org_codes) - set(found))
        if missing:
            raise ActionError("invalid_request", f"unknown org codes: {missing}")
        org_ids = [found[c] for c in org_codes]
    elif len(account.owner_org_path) > 1:  # a branch account speaks to its own region by default
        org_ids = [account.owner_org_id]
    staff_only = target.staff_only or account.audience == "staff"
    paths = [await hub.users.org_ancestry(o) for o in org_ids or []]
    require(policy.may_target(account, paths, staff_only))
    return Target(org_ids=org_ids, tags=target.tags, segments=target.segments, staff_only=staff_only)


def _announce(tx: Transaction, event_seq: int, rec: NoticeRecord) -> None:
    """After commit: one signal on the broadcast channel, whatever the number of followers
    (a node that misses it catches up from storage)."""
    tx.emit(BROADCAST_CHANNEL, NoticeSignal(event_seq=event_seq, notice=rec.as_notice(), target=rec.target))


async def publish(
    hub: Hub,
    actor: User,
    account_id: str,
    body: NoticeBody,
    *,
    org_codes: list[str] | None = None,
    target: Target = Target(),
    scheduled_at: dt.datetime | None = None,
    ip: str | None = None,
) -> NoticeRecord:
    """Submit a notice. It goes out now, at ``scheduled_at``, or — when the account needs
    approval — once a second administrator approves it. Returns its record (status says which)."""
    account = await _managed(hub, actor, account_id)
    final = await _validated_target(hub, account, org_codes, target)
    # data-loss prevention: every text field, to the followers (masked, or refused sensitive_data)
    body = dlp.screen_notice(hub.settings, actor, body, staff_only=final.staff_only)
    now = dt.datetime.now(dt.UTC)
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise ActionError("invalid_request", "scheduled_at needs a time zone (e.g. 2026-12-01T09:00:00+08:00)")
    if scheduled_at is not None and scheduled_at > now + dt.timedelta(days=366):
        raise ActionError("invalid_request", "scheduled_at is more than a year away")
    if account.requires_approval:
        status = "pending_approval"
    elif scheduled_at is not None and scheduled_at > now:
        status = "scheduled"
    else:
        status = "published"
    async with hub.transaction("notice_publish") as tx:
        conn = tx.conn
        rec = await hub.accounts.create_notice(
            account_id=account.id,
            author_id=actor.id,
            body=body,
            target=final,
            status=status,
            scheduled_at=scheduled_at,
            conn=conn,
        )
        await record(
            hub,
            actor=actor,
            action=NOTICE_PUBLISHED if status == "published" else NOTICE_SUBMITTED,
            target=f"notice:{rec.id}",
            ip=ip,
            details={"account": account.id, "status": status, "seq": rec.seq, "target": msgspec.to_builtins(final)},
            conn=conn,
        )
        if (seq := rec.seq) is not None:
            rec = await cards.sign_published(hub, conn, rec)  # the hub's signature, for followers to verify
            _announce(tx, seq, rec)
    return rec


async def _decide(hub: Hub, actor: User, notice_id: str, approve_it: bool, ip: str | None) -> NoticeRecord:
    current = await hub.accounts.notice(notice_id)
    if current is None:
        raise ActionError("not_found", "no such notice")
    account = await _managed(hub, actor, current.account_id)
    author = (await hub.users.by_ids([current.author_id])).get(current.author_id)
    require(policy.may_decide_notice(actor, account, author, approve=approve_it))
    async with hub.transaction("notice_decide") as tx:
        conn = tx.conn
        locked = await hub.accounts.lock_notice(conn, notice_id)
        if locked is None or locked.status != "pending_approval":
            raise ActionError("conflict", "this notice is not awaiting approval")
        if not approve_it:
            status = "rejected"
        elif locked.scheduled_at is not None and locked.scheduled_at > dt.datetime.now(dt.UTC):
            status = "scheduled"
        else:
            status = "published"
        rec = await hub.accounts.set_status(
            conn,
            notice_id,
            status,
            approved_by=actor.id if approve_it else None,
            rejected_by=None if approve_it else actor.id,
        )
        await record(
            hub,
            actor=actor,
            action=NOTICE_APPROVED if approve_it else NOTICE_REJECTED,
            target=f"notice:{notice_id}",
            ip=ip,
            details={"account": account.id, "status": status, "seq": rec.seq},
            conn=conn,
        )
        if (seq := rec.seq) is not None:
            rec = await cards.sign_published(hub, conn, rec)  # the hub's signature, for followers to verify
            _announce(tx, seq, rec)
    return rec


async def approve(hub: Hub, actor: User, notice_id: str, *, ip: str | None = None) -> NoticeRecord:
    """Maker-checker: a second administrator releases a pending notice (now or at its time)."""
    return await _decide(hub, actor, notice_id, True, ip)


async def reject(hub: Hub, actor: User, notice_id: str, *, ip: str | None = None) -> NoticeRecord:
    return await _decide(hub, actor, notice_id, False, ip)


async def recall(hub: Hub, actor: User, notice_id: str, reason: str, *, ip: str | None = None) -> NoticeRecord:
    """Withdraw a published notice from every follower; the original stays for compliance."""
    if not reason.strip():
        raise ActionError("invalid_request", "a recall needs a reason")
    current = await hub.accounts.notice(notice_id)
    if current is None:
        raise ActionError("not_found", "no such notice")
    account = await _managed(hub, actor, current.account_id)
    async with hub.transaction("notice_recall") as tx:
        conn = tx.conn
        locked = await hub.accounts.lock_notice(conn, notice_id)
        if locked is None or locked.status != "published":
            raise ActionError("conflict", "only a published notice can be recalled")
        rec = await hub.accounts.recall(conn, notice_id, actor.id, reason[:500])
        await record(
            hub,
            actor=actor,
            action=NOTICE_RECALLED,
            target=f"notice:{notice_id}",
            reason=reason[:500],
            ip=ip,
            details={"account": account.id, "seq": rec.seq, "recall_seq": rec.recall_seq},
            conn=conn,
        )
        assert rec.recall_seq is not None
        _announce(tx, rec.recall_seq, rec)
    return rec


async def publish_due(hub: Hub, limit: int = 100) -> int:
    """Publish the scheduled notices whose time has come. Safe on every node at once
    (rows are claimed with SKIP LOCKED). Returns how many were published."""
    published = 0
    async with hub.transaction("notice_publish_due") as tx:
        conn = tx.conn
        for notice_id in await hub.accounts.due(conn, limit):
            rec = await hub.accounts.set_status(conn, notice_id, "published")
            await record(
                hub,
                actor="system",
                action=NOTICE_PUBLISHED,
                target=f"notice:{notice_id}",
                details={"account": rec.account_id, "seq": rec.seq, "scheduled": True},
                conn=conn,
            )
            seq = rec.seq
            assert seq is not None
            rec = await cards.sign_published(hub, conn, rec)
            _announce(tx, seq, rec)
            published += 1
    return published


async def read(hub: Hub, actor: User, account_id: str, seq: int, frame_id: str | None = None) -> AccountReceipt:
    """Raise my read position in an account; my other devices get an ``account_receipt``."""
    require(policy.may_read_conversation_list(actor))
    async with hub.transaction("account_read") as tx:
        try:
            moved = await hub.accounts.read(tx.conn, account_id, actor.id, seq)
        except ValueError:
            moved = None
        if moved is None:
            raise ActionError("not_found", "you do not follow this account")
        read_seq, unread = moved
        tx.emit(user_channel(actor.id), AccountReadSignal(actor.id, account_id, read_seq, unread))
    return AccountReceipt(account_id=account_id, read_seq=read_seq, unread=unread, id=frame_id)


async def history(hub: Hub, actor: User, account_id: str, before_seq: int | None, limit: int) -> list[Notice]:
    """An account's notices for me, newest first."""
    account = await _account(hub, account_id)
    require(policy.may_read_notices(actor, await hub.accounts.follow_state(account.id, actor.id) is not None))
    return await hub.accounts.history(account.id, actor.id, before_seq, limit)


async def sync(hub: Hub, actor: User, since: dict[str, int], limit: int) -> list[AccountSync]:
    """Missed notices and recalls of every followed account (one query)."""
    require(policy.may_read_conversation_list(actor))
    return await hub.accounts.sync(actor.id, since, limit)


async def outbox(
    hub: Hub, actor: User, account_id: str, status: str | None, limit: int, *, after: tuple[dt.datetime, uuid.UUID] | None = None
) -> list[NoticeRecord]:
    """Up to ``limit`` of an account's notices for its administrators, newest first, after the
    sort key ``after`` (``(created_at, id)`` of the last notice of the previous page)."""
    account = await _managed(hub, actor, account_id)
    return await hub.accounts.outbox(account.id, status, limit, after=after)


async def stats(hub: Hub, actor: User, notice_id: str) -> tuple[NoticeRecord, NoticeStats]:
    """Delivered-online and read figures of a notice, for its account's administrators."""
    rec = await hub.accounts.notice(notice_id)
    if rec is None:
        raise ActionError("not_found", "no such notice")
    await _managed(hub, actor, rec.account_id)
    figures = await hub.accounts.stats(notice_id)
    if figures is None:
        raise ActionError("not_found", "no such notice")
    return rec, figures


async def audience(hub: Hub, actor: User, account_id: str, *, org_codes: list[str] | None = None, target: Target = Target()) -> int:
    """How many current followers of the account a notice with this target would reach, for
    its administrators (the same checks as :func:`publish`: the account is theirs, the target
    is one it may use)."""
    account = await _managed(hub, actor, account_id)
    final = await _validated_target(hub, account, org_codes, target)
    return await hub.accounts.audience(account.id, final)


async def target_orgs(hub: Hub, actor: User, limit: int, *, after: str | None = None) -> list[OrgRow]:
    """Up to ``limit`` orgs (by code, after ``after``) the actor may target: the subtree of
    their own org (the whole tree for head office)."""
    require(policy.may_list_orgs(actor))
    return await hub.users.org_subtree(actor.org_id, limit, after=after)
