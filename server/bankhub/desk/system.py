"""The hub's own user: the sender of messages in which the bank speaks (``system`` bodies).

Handover notices, bot answers, queue notices, auto-replies and out-of-hours replies are
real messages — stored, numbered, synced — so they need a sender. They are sent by this
user, which has a fixed id, is disabled (nobody can sign in as it, open a conversation
with it or send as it over the protocol) and is never a member of any conversation. The
policy lets it post ``system`` bodies into direct and service conversations only
(:func:`bankhub.policy.may_post_system`). Its row is created by the hub on first use.
"""

from __future__ import annotations

from ..models import Role, User

__all__ = ["SYSTEM_USER_ID", "SYSTEM_USERNAME", "SYSTEM_DISPLAY_NAME", "SystemEvent", "system_user"]

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
