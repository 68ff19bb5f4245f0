"""Information barriers: the pure rules (no I/O).

A *segment* is a named group of users (``ib`` investment banking, ``research``,
``retail``); a user may be in several segments, or in none. A *barrier policy* names two
different segments between which no communication is allowed: it is symmetric (a policy
between ``ib`` and ``research`` bars ``research`` from ``ib`` too) and a policy between a
segment and itself is invalid (a segment whose members may not talk to each other is not a
barrier, it is a ban). Two users are *barred* when any segment of one and any segment of
the other are the two sides of a policy. A user in no segment is never barred; two users in
the same segment are never barred by that segment (only a policy separates).

Storage gathers the facts (each user's segment names, the policies as pairs of names);
:mod:`bankhub.policy` turns :func:`barred` into decisions.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "SEGMENT_NAME",
    "MAX_TITLE_CHARS",
    "MAX_SEGMENTS",
    "MAX_SEGMENTS_PER_USER",
    "MAX_POLICIES",
    "Pair",
    "BarrierFacts",
    "NO_FACTS",
    "BarrierError",
    "valid_segment_name",
    "check_segment_name",
    "check_title",
    "policy_pair",
    "barred",
    "barred_from",
    "separating",
]

SEGMENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
"""A segment's name: 2 to 32 characters, lower-case ASCII letters, digits, ``_`` and ``-``,
starting with a letter (it appears in URLs and audit rows)."""

MAX_TITLE_CHARS = 100
MAX_SEGMENTS = 500
"""Segments the hub holds at most (officers grow the table: it is bounded)."""
MAX_SEGMENTS_PER_USER = 32
"""Segments one user may be in at most."""
MAX_POLICIES = 2000
"""Barrier policies the hub holds at most."""

Pair = frozenset[str]
"""A barrier policy as the unordered pair of its two segment names."""


@dataclass(frozen=True)
class BarrierFacts:
    """What the policy needs to decide between some users: each one's segment names (a user
    absent is in none) and the policies among those segments (pairs of names)."""

    segments: Mapping[str, frozenset[str]] = field(default_factory=dict)
    policies: frozenset[Pair] = frozenset()

    def of(self, user_id: str) -> frozenset[str]:
        """The segment names of ``user_id`` (empty: in none)."""
        return self.segments.get(user_id, frozenset())

    def between(self, a: str, b: str) -> bool:
        """Whether a policy separates users ``a`` and ``b`` (:func:`barred`)."""
        return barred(self.of(a), self.of(b), self.policies)


NO_FACTS = BarrierFacts()
"""No segments, no policies: nobody is barred."""


class BarrierError(ValueError):
    """Invalid input to a barrier rule (the message says why; safe to show an officer)."""


def valid_segment_name(name: str) -> bool:
    """Whether ``name`` is a well-formed segment name (:data:`SEGMENT_NAME`)."""
    return SEGMENT_NAME.fullmatch(name) is not None


def check_segment_name(name: str) -> str:
    """``name`` if it is a well-formed segment name, else :class:`BarrierError`."""
    if not valid_segment_name(name):
        raise BarrierError(
            "a segment name has 2 to 32 characters: lower-case letters, digits, _ and -, starting with a letter"
        )
    return name


def check_title(title: str) -> str:
    """A segment's title, stripped: 1 to :data:`MAX_TITLE_CHARS` characters, no control characters."""
    t = title.strip()
    if not 1 <= len(t) <= MAX_TITLE_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in t):
        raise BarrierError(f"a segment title has 1 to {MAX_TITLE_CHARS} characters and no control characters")
    return t


def policy_pair(a: str, b: str) -> Pair:
    """The policy between segments ``a`` and ``b`` as an unordered pair (so ``(a, b)`` and
    ``(b, a)`` are one policy). A policy between a segment and itself is invalid."""
    check_segment_name(a)
    check_segment_name(b)
    if a == b:
        raise BarrierError("a barrier policy separates two different segments")
    return frozenset((a, b))


def barred(segments_of_a: Collection[str], segments_of_b: Collection[str], policies: Collection[Pair]) -> bool:
    """Whether a policy separates a user in ``segments_of_a`` from one in ``segments_of_b``:
    some policy has one side among a's segments and the other among b's. Symmetric in a
    and b; False when either is in no segment or there are no policies."""
    if not segments_of_a or not segments_of_b or not policies:
        return False
    for pair in policies:
        if len(pair) != 2:
            continue  # not a policy (a segment with itself): separates nobody
        x, y = tuple(pair)
        if (x in segments_of_a and y in segments_of_b) or (y in segments_of_a and x in segments_of_b):
            return True
    return False


def barred_from(
    user_id: str, others: Iterable[str], segments: Mapping[str, Collection[str]], policies: Collection[Pair]
) -> set[str]:
    """Which of ``others`` a policy separates from ``user_id`` (``segments``: each user's
    segment names; a user missing from it is in none)."""
    mine = segments.get(user_id, ())
    if not mine or not policies:
        return set()
    return {o for o in others if o != user_id and barred(mine, segments.get(o, ()), policies)}


def separating(segments_of_a: Collection[str], segments_of_b: Collection[str], policies: Collection[Pair]) -> list[Pair]:
    """The policies that separate the two users (for an officer's explanation), sorted."""
    out = []
    for pair in policies:
        if len(pair) != 2:
            continue
        x, y = tuple(pair)
        if (x in segments_of_a and y in segments_of_b) or (y in segments_of_a and x in segments_of_b):
            out.append(pair)
    return sorted(out, key=sorted)
