"""The hub's own user: the sender of messages in which the bank speaks (``system`` bodies).

Handover notices, bot answers, queue notices, auto-replies and out-of-hours replies are
real messages — stored, numbered, synced — so they need a sender. They are sent by this
user, which has a fixed id, is disabled (nobody can sign in as it, open a conversation
with it or send as it over the protocol) and is never a member of any conversation. The
policy lets it post ``system`` bodies into direct and service conversations, and the group
events of :data:`GROUP_EVENTS` into groups (:func:`bankhub.policy.may_post_system`). Its row is created by the hub on first use.
"""

from __future__ import annotations

from ..models import Role, User

__all__ = ["SYSTEM_USER_ID", "SYSTEM_USERNAME", "SYSTEM_DISPLAY_NAME", "SystemEvent", "GROUP_EVENTS", "system_user"]

SYSTEM_USER_ID = "00000000-0000-4000-8000-0000000b0b01"
SYSTEM_USERNAME = "bankhub.system"
SYSTEM_DISPLAY_NAME = "Bank"


def system_user(org_id: str) -> User:
    """The system user as a :class:`~bankhub.models.User` (``org_id``: the head office)."""
    return User(
        id=SYSTEM_USER_ID,
        username=SYSTEM_USERNAME,
        display_name=SYSTEM_DISPLAY_NAME,
        role=Role.STAFF,
        org_id=org_id,
        disabled=True,
    )


class SystemEvent:
    """Stable ``event`` codes of ``system`` message bodies."""

    RM_CHANGED = "rm_changed"  # the customer's RM changed (handover)
    RM_AUTO_REPLY = "rm_auto_reply"  # the RM is away or off duty
    BOT_GREETING = "bot_greeting"
    BOT_ANSWER = "bot_answer"  # an FAQ answer
    BOT_UNKNOWN = "bot_unknown"  # the bot cannot answer: a person takes over
    QUEUED = "queued"  # waiting for an agent (position and estimate at that moment)
    OUT_OF_HOURS = "out_of_hours"  # nobody to hand over to now
    AGENT_JOINED = "agent_joined"
    TRANSFERRED = "transferred"
    CLOSED = "closed"  # closed by the agent; the customer may rate it
    CANCELLED = "cancelled"  # the customer left before being served
    # groups (data: see docs/protocol.md, "Groups")
    GROUP_CREATED = "group_created"
    GROUP_RENAMED = "group_renamed"
    GROUP_MEMBERS_ADDED = "group_members_added"  # invited (or, in an org group, joined the org tree)
    GROUP_MEMBER_REMOVED = "group_member_removed"  # removed by the owner or an admin (or left the org tree)
    GROUP_MEMBER_LEFT = "group_member_left"
    GROUP_ROLE_CHANGED = "group_role_changed"  # promoted to admin or demoted to member
    GROUP_OWNER_CHANGED = "group_owner_changed"  # handed on, or taken over when the owner left


GROUP_EVENTS = frozenset(
    {
        SystemEvent.GROUP_CREATED,
        SystemEvent.GROUP_RENAMED,
        SystemEvent.GROUP_MEMBERS_ADDED,
        SystemEvent.GROUP_MEMBER_REMOVED,
        SystemEvent.GROUP_MEMBER_LEFT,
        SystemEvent.GROUP_ROLE_CHANGED,
        SystemEvent.GROUP_OWNER_CHANGED,
    }
)
"""The events the system user may post into groups (:func:`bankhub.policy.may_post_system`)."""
