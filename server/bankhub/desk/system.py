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

__all__ = ["SYSTEM_USER_ID", "SYSTEM_USERNAME", "SYSTEM_DISPLAY_NAME", "system_user"]

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
