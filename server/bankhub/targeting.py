"""Who a notice is for: the audience rule of official-account notices. Pure code.

A :class:`~bankhub.models.Target` restricts a notice along independent dimensions; ``None`` on a
dimension means "no restriction". A follower is targeted when every restricted dimension
matches (AND across dimensions), and a dimension matches when any of its values does (OR
within a dimension):

* ``org_ids``  — the follower's org is one of these orgs or lies in one of their subtrees;
* ``tags``     — the follower carries at least one of these tags;
* ``segments`` — the follower's segment is one of these;
* ``staff_only`` — the follower is a member of staff (never a customer).

The same rule is evaluated in two places that must agree: here, by each gateway node for
its connected followers when a notice is broadcast, and in SQL by
:mod:`bankhub.storage.accounts` for history, sync and unread counts. Tests hold them equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import Role, Target, User

__all__ = ["EVERYONE", "matches"]


EVERYONE = Target()


def matches(target: Target, user: User, org_path: Sequence[str]) -> bool:
    """True when ``user`` (whose org and its ancestors are ``org_path``) is targeted."""
    if target.staff_only and user.role is Role.CUSTOMER:
        return False
    if target.org_ids is not None and not any(o in org_path for o in target.org_ids):
        return False
    if target.tags is not None and not any(t in user.tags for t in target.tags):
        return False
    if target.segments is not None and user.segment not in target.segments:
        return False
    return True
