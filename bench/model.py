"""Plain data shared by the orchestrator (``bench.run``) and the load-generator processes.

Everything here is picklable: it crosses the ``multiprocessing`` boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BenchClient", "OpenLoopPlan", "ClosedLoopPlan", "PhaseResult", "StormPlan", "StormResult"]


@dataclass(frozen=True, slots=True)
class BenchClient:
    """One seeded user with a live session, and the direct conversation it talks in.

    ``source_ip`` is the loopback address the client connects *from* (127.1.x.y, one per
    client): real users arrive from many addresses, and the hub limits WebSocket
    handshakes per address. The destination is always 127.0.0.1.
    """

    user_id: str
    token: str
    conversation_id: str
    peer_user_id: str
    source_ip: str


@dataclass(frozen=True, slots=True)
class OpenLoopPlan:
    """Paced sends: this worker's share of the aggregate offered rate.

    Message ``k`` is due at ``start_ns + k / rate`` and goes from client ``k % len(clients)``.
    Messages due before ``start_ns + warmup_s`` are sent and checked for loss but kept
    out of the latency figures.
    """

    start_ns: int
    rate: float
    warmup_s: float
    duration_s: float
    drain_s: float
    late_ms: float
    text_bytes: int


@dataclass(frozen=True, slots=True)
class ClosedLoopPlan:
    """As fast as the hub acknowledges: each client keeps up to ``inflight`` sends open."""

    start_ns: int
    warmup_s: float
    duration_s: float
    drain_s: float
    inflight: int
    clients: int  # how many of this worker's clients take part (0: all)
    max_client_rate: float  # frames/s per client, below the hub's per-connection limit
    text_bytes: int


@dataclass(slots=True)
class PhaseResult:
    """What one worker measured in one phase. Latencies are microseconds."""

    worker: int
    phase: str
    scheduled: int = 0  # open loop: messages the plan called for
    sent: int = 0
    late: int = 0  # open loop: sent more than ``late_ms`` after their due time
    acked: int = 0
    acked_in_window: int = 0  # closed loop: acks received inside the measured window
    delivered: int = 0
    lost: int = 0  # acked, but the peer never received it before the drain ended
    unacked: int = 0  # sent, neither acked nor refused before the drain ended
    errors: dict[str, int] = field(default_factory=dict)  # error frames by code
    disconnects: int = 0
    deliver_us: list[int] = field(default_factory=list)
    ack_us: list[int] = field(default_factory=list)
    lag_us: list[int] = field(default_factory=list)  # open loop: actual send time - due time
    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StormPlan:
    """Reconnect storm: at ``drop_ns`` every client of the worker drops its socket (TCP RST,
    as on a network blip), reconnects at once and sends ``sync`` with its cursor minus
    ``behind`` (so each ``synced`` carries the last ``behind`` messages back).

    ``concurrency``: handshakes in flight per worker (0: all at once, a true storm).
    """

    drop_ns: int
    behind: int
    concurrency: int
    timeout_s: float
    sync_limit: int = 100


@dataclass(slots=True)
class StormResult:
    """What one worker measured in a storm. Times are microseconds after ``drop_ns``."""

    worker: int
    clients: int = 0
    reconnected: int = 0  # handshake answered with hello
    synced: int = 0  # got its ``synced`` answer
    failed: int = 0  # gave up (all tries failed, or no ``synced`` before the timeout)
    attempts: int = 0  # handshake attempts (retries included)
    failed_attempts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # error frames answering sync, by code
    sync_retries: int = 0  # syncs sent again after a retryable error (``unavailable``, ``internal``)
    messages_returned: int = 0  # messages inside the ``synced`` answers
    hello_us: list[int] = field(default_factory=list)  # drop -> hello received
    synced_us: list[int] = field(default_factory=list)  # drop -> synced received
    last_synced_ns: int = 0
