"""Retention rules, without I/O: which policies apply to a conversation, how long it is kept.

A policy keeps messages for ``days`` days and has one scope:

* ``kind`` — every conversation of that kind (``direct``, ``group``, ``service``);
* ``role`` — every conversation one of whose members (ever, by the membership history) has
  that role (``customer``, ``rm``, ``agent``, ...);
* ``user`` — every conversation that account was ever a member of.

**Longest wins.** A conversation's effective retention is the LONGEST ``days`` of all the
policies that apply to it: each policy is a minimum a record must be kept for (a records
rule for RMs, a rule for a named account under review, ...), and a message is a record of
every party to it, so it must satisfy every rule that applies — the shortest would break the
others. A policy can therefore only lengthen what another one demands, never shorten it.

**No policy keeps.** A conversation no policy applies to is kept forever: a purge never
deletes what nobody decided may go.

**The floor.** No policy may be shorter than the records floor
(``BANKHUB_RETENTION_FLOOR_DAYS``, 1827 days by default — five calendar years with the at most
two leap days they contain: the PRC's
anti-money-laundering rules keep customer and transaction records for at least five years
after the relationship or transaction ends). :func:`validate_days` refuses a shorter one
(``below_floor``), and a purge never keeps anything for less than the floor in force when it
runs (:func:`retention_days`): raising the floor lengthens older, shorter policies too.

**Cutoffs** are measured from the database's clock (one clock for every node and for
``messages.created_at``): a message is due when ``created_at < now - days``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "ROLES",
    "SCOPES",
    "MAX_DAYS",
    "DEFAULT_FLOOR_DAYS",
    "Policy",
    "ConversationFacts",
    "PolicyError",
    "validate_days",
    "validate_value",
    "applicable",
    "effective_days",
    "retention_days",
    "cutoff",
    "is_due",
    "ERASURE_REFUSALS",
    "erasure_verdict",
]

SCOPES = ("kind", "role", "user")
KINDS = ("direct", "group", "service")
ROLES = ("customer", "rm", "agent", "staff", "branch_admin", "head_office_admin", "compliance")
MAX_DAYS = 36500
"""A hundred years: the longest policy (longer is "forever": remove the policies instead)."""
DEFAULT_FLOOR_DAYS = 1827
"""Five calendar years (PRC anti-money-laundering record keeping): 5 x 365 days and the at most
two leap days any five consecutive years contain, so a record is never purged a day early."""


class PolicyError(ValueError):
    """A policy that may not be set; ``code`` is the stable problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Policy:
    """One retention policy: ``scope`` and ``value`` (a kind, a role, or a user id) and ``days``."""

    scope: str
    value: str
    days: int


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """What decides which policies apply: the kind, and every member it ever had (ids and roles)."""

    kind: str
    member_ids: frozenset[str]
    member_roles: frozenset[str]


def validate_days(days: int, floor_days: int) -> None:
    """Raise :class:`PolicyError` unless ``floor_days <= days <= MAX_DAYS``."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1 or days > MAX_DAYS:
        raise PolicyError("invalid_request", f"days must be a whole number from 1 to {MAX_DAYS}")
    if days < floor_days:
        raise PolicyError(
            "below_floor", f"a retention policy may not be shorter than the records floor of {floor_days} days"
        )


def validate_value(scope: str, value: str) -> None:
    """Raise :class:`PolicyError` for an unknown scope, kind or role (a user value is checked by lookup)."""
    if scope not in SCOPES:
        raise PolicyError("invalid_request", f"scope must be one of {list(SCOPES)}")
    if scope == "kind" and value not in KINDS:
        raise PolicyError("invalid_request", f"a kind policy's value is one of {list(KINDS)}")
    if scope == "role" and value not in ROLES:
        raise PolicyError("invalid_request", f"a role policy's value is one of {list(ROLES)}")


def applicable(policies: Iterable[Policy], facts: ConversationFacts) -> list[Policy]:
    """The policies that apply to a conversation with ``facts`` (see the module docstring)."""
    out: list[Policy] = []
    for p in policies:
        if (
            (p.scope == "kind" and p.value == facts.kind)
            or (p.scope == "role" and p.value in facts.member_roles)
            or (p.scope == "user" and p.value in facts.member_ids)
        ):
            out.append(p)
    return out


def effective_days(policies: Iterable[Policy], facts: ConversationFacts) -> int | None:
    """The longest ``days`` of the policies that apply; None (kept forever) when none does."""
    days = [p.days for p in applicable(policies, facts)]
    return max(days) if days else None


def retention_days(policies: Iterable[Policy], facts: ConversationFacts, floor_days: int) -> int | None:
    """What a purge keeps a conversation for: its effective retention, never below the floor
    in force NOW (a policy set under a lower floor does not shorten the records rule); None
    (kept forever) when no policy applies."""
    days = effective_days(policies, facts)
    return None if days is None else max(days, floor_days)


def cutoff(now: dt.datetime, days: int | None) -> dt.datetime | None:
    """Messages created before this instant are due (``now`` is the database clock); None: never."""
    if days is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (the database clock)")
    return now - dt.timedelta(days=days)


def is_due(created_at: dt.datetime, now: dt.datetime, days: int | None) -> bool:
    """Whether a message created at ``created_at`` is past its retention at ``now``."""
    limit = cutoff(now, days)
    return limit is not None and created_at < limit


ERASURE_REFUSALS = ("records", "shared", "held")
"""Why an erasure request (PIPL art. 47) leaves a conversation of the data subject in place."""


def erasure_verdict(kind: str, member_roles: Iterable[str], others_now: int, *, held: bool = False) -> str | None:
    """Whether one conversation of a data subject is crypto-shredded on their erasure request:
    None (shred it), or why not, in this order:

    * ``records`` — a service-desk conversation, or one a member of staff (any role but
      ``customer``) was ever in (``member_roles``: every role of the membership history): a bank
      record, kept for its retention;
    * ``shared`` — a customer group other members (``others_now``, the subject not counted) are
      still in: the others' conversation is not the subject's to destroy;
    * ``held`` — an active legal hold covers it (``held``): refused, whatever else is true.

    A customer-only direct chat (both parties' copy goes: it has only the two of them) and a
    customer-only group the subject is the last member of are shredded."""
    if kind == "service" or any(role != "customer" for role in member_roles):
        return "records"
    if kind == "group" and others_now > 0:
        return "shared"
    if held:
        return "held"
    return None
