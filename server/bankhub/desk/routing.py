"""Routing waiting customers to agents, and the wait a customer can expect. Pure.

The storage layer locks the queue and its agents, hands their state and the waiting
sessions (FIFO order) to :func:`plan`, and applies the assignments in the same
transaction, so what :func:`plan` decides holds on every node.

The rules:

* only agents in state ``available`` with ``active < capacity`` take a customer — nobody
  ever goes over capacity;
* the least loaded of them (fewest active conversations) takes the next customer;
* among equally loaded agents, the one whose last assignment is the oldest (never
  assigned before comes first), then the lowest id — fair among equals and deterministic;
* customers are served strictly in the order given (FIFO): planning stops at the first
  customer nobody can take, so no one behind them is served first;
* a customer transferred away from an agent goes to someone else when anyone else can
  take them (``avoid``), and back to that agent only when nobody else can;
* never to an agent an information barrier separates from the customer (``barred``): such
  a customer waits for another agent, and the customers behind are served meanwhile (the
  agents free now cannot take them at all, so FIFO is not broken for anyone who could be).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["AGENT_STATES", "AgentLoad", "Assignment", "plan", "free_slots", "serving_slots", "estimate_wait"]

AGENT_STATES = ("available", "busy", "away")
"""``available`` takes new customers; ``busy`` keeps its conversations but takes no new
ones; ``away`` is off the desk."""


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """One agent as routing sees it. ``last_assigned`` is epoch seconds (None: never)."""

    user_id: str
    state: str
    capacity: int
    active: int
    last_assigned: float | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    session_id: str
    agent_id: str


def _takes_customers(agent: AgentLoad, active: int) -> bool:
    return agent.state == "available" and active < agent.capacity


def plan(
    agents: Sequence[AgentLoad],
    waiting: Sequence[str],
    avoid: Mapping[str, str] | None = None,
    barred: Mapping[str, Collection[str]] | None = None,
) -> list[Assignment]:
    """Assign the sessions of ``waiting`` (in FIFO order) to ``agents``; see the module rules.

    ``avoid`` maps a session to the agent it was transferred away from; ``barred`` a
    session to the agents an information barrier separates from its customer. Returns the
    assignments in the order they were made (without ``barred``: a prefix of ``waiting``).
    """
    avoid = avoid or {}
    barred = barred or {}
    active = {a.user_id: a.active for a in agents}
    # fairness rank: never assigned < assigned long ago < assigned recently < assigned in this plan
    rank: dict[str, tuple[int, float]] = {
        a.user_id: (0, 0.0) if a.last_assigned is None else (1, a.last_assigned) for a in agents
    }
    out: list[Assignment] = []
    for tick, session_id in enumerate(waiting):
        candidates = [a for a in agents if _takes_customers(a, active[a.user_id])]
        if not candidates:
            break  # FIFO: nobody behind this customer is served before them
        if (excluded := barred.get(session_id)) and not (candidates := [a for a in candidates if a.user_id not in excluded]):
            continue  # only agents a barrier separates from this customer are free: the next customer's turn
        shunned = avoid.get(session_id)
        best = min(candidates, key=lambda a: (a.user_id == shunned, active[a.user_id], rank[a.user_id], a.user_id))
        active[best.user_id] += 1
        rank[best.user_id] = (2, float(tick))
        out.append(Assignment(session_id, best.user_id))
    return out


def free_slots(agents: Sequence[AgentLoad]) -> int:
    """How many more customers the available agents can take right now."""
    return sum(max(0, a.capacity - a.active) for a in agents if a.state == "available")


def serving_slots(agents: Sequence[AgentLoad]) -> int:
    """How many customers the available agents serve at once (the queue's service rate)."""
    return sum(a.capacity for a in agents if a.state == "available")


def estimate_wait(position: int, slots: int, avg_handle_seconds: float) -> int | None:
    """Seconds until the customer at ``position`` (1 = next) is likely served.

    With ``slots`` conversations served at once, each taking ``avg_handle_seconds`` on
    average, the queue moves ``slots / avg_handle_seconds`` customers a second
    (Little's law), so the wait is ``position * avg_handle_seconds / slots``, rounded up.
    None when nobody is serving the queue (no estimate can be given).
    """
    if position < 1:
        return 0
    if slots <= 0 or avg_handle_seconds <= 0:
        return None
    return math.ceil(position * avg_handle_seconds / slots)
