"""Records passed between storage, policy and actions. Plain data, no behaviour."""

from __future__ import annotations

import datetime as dt
import enum

import msgspec

__all__ = [
    "Role",
    "STAFF_ROLES",
    "User",
    "Session",
    "Membership",
    "ConversationSummary",
    "OfficialAccount",
    "AlertSystem",
]


class Role(str, enum.Enum):
    CUSTOMER = "customer"
    RM = "rm"
    AGENT = "agent"
    STAFF = "staff"
    BRANCH_ADMIN = "branch_admin"
    HEAD_OFFICE_ADMIN = "head_office_admin"
    COMPLIANCE = "compliance"


STAFF_ROLES = frozenset(r for r in Role if r is not Role.CUSTOMER)


class User(msgspec.Struct, frozen=True, gc=False):
    id: str
    username: str
    display_name: str
    role: Role
    org_id: str
    rm_id: str | None = None
    disabled: bool = False
    segment: str | None = None  # customer segment (e.g. "wealth"), for targeting
    tags: tuple[str, ...] = ()  # customer tags, for targeting


class Session(msgspec.Struct, frozen=True):
    id: str
    user: User
    expires_at: dt.datetime
    follows: tuple[str, ...] = ()  # official accounts followed when the session was loaded
    org_path: tuple[str, ...] = ()  # the user's org and its ancestors, nearest first


class Membership(msgspec.Struct, frozen=True):
    """One user's place in one conversation: the facts the policy decides on."""

    conversation_id: str
    kind: str
    user_id: str
    role: str
    read_seq: int
    last_seq: int


class ConversationSummary(msgspec.Struct):
    id: str
    kind: str
    title: str | None
    last_seq: int
    read_seq: int
    unread: int
    members: list[str]
    last_message_ts: int | None = None


class OfficialAccount(msgspec.Struct, frozen=True):
    """An official account: the facts the policy decides on, and what followers see."""

    id: str
    handle: str
    name: str
    description: str
    owner_org_id: str
    audience: str  # "customer" (anyone may follow) or "staff" (staff only)
    is_default: bool
    requires_approval: bool
    last_seq: int
    owner_org_path: tuple[str, ...] = ()  # the owner org and its ancestors, nearest first


class AlertSystem(msgspec.Struct, frozen=True):
    """An internal system allowed to send alerts (core banking, the card platform, ...).

    Its HMAC secret is not part of this record: only the signature check sees it.
    """

    id: str
    name: str
    description: str
    categories: tuple[str, ...]  # the alert categories it may send
    rate_per_second: float
    burst: int
    disabled: bool = False
