"""The hub's Prometheus metrics: every one is defined here (names ``bankhub_*``).

What is counted, and how (``docs/operations.md``, "Metrics", lists every metric with its labels):

* Hot paths — frames in and out, closes, broker reconnects, alert fallback outcomes — never
  call prometheus_client. They add to plain ints on this process's :data:`TALLY`
  (``TALLY.messages_out += n`` once per fanned-out signal with ``n`` deliveries: an
  attribute add, tens of nanoseconds, next to microseconds of work per delivery).
  :func:`flush` moves the tallies into the prometheus_client counters; it runs when
  ``/metrics`` is scraped and once a second while a hub runs (:func:`attach`), so the
  per-process files of the multi-process mode stay current.
* Once-per-batch or once-per-request facts — an HTTP request's duration, a group-commit
  batch, a committed message's fan-out latency on this node — are observed directly
  (:func:`observe_commit`, :func:`observe_fanout`, :class:`HttpMetrics`).
* Levels — open WebSocket connections, frames queued towards clients — are sampled from
  the running hubs of this process at each flush.

Several worker processes on one host (``bankhub serve --workers N``): the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` to a private directory before the workers start (it must be
in a worker's environment before this module is imported: prometheus_client picks its
value store at import). Each worker then writes its values to files there, and
:func:`exposition` merges every worker's files (``MultiProcessCollector``), whichever worker
answers the scrape. The supervisor calls :func:`worker_exited` when a worker exits, so its
live gauges leave the sums.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__

__all__ = [
    "TALLY",
    "Tally",
    "SLOW_CONSUMER",
    "Queued",
    "Connections",
    "queueing",
    "REGISTRY",
    "MULTIPROCESS",
    "CONTENT_TYPE",
    "METRIC_NAMES",
    "FALLBACK_OUTCOMES",
    "flush",
    "exposition",
    "scrape",
    "render",
    "may_scrape",
    "is_loopback",
    "FORWARDING_HEADERS",
    "PEER",
    "socket_peer",
    "forwarded",
    "SocketPeer",
    "open_scrape_warning",
    "attach",
    "detach",
    "observe_commit",
    "observe_transaction",
    "storage_unavailable",
    "Pool",
    "Backlog",
    "observe_fanout",
    "frame_type",
    "route_templates",
    "HttpMetrics",
    "worker_exited",
]

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Whether this process writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (several workers on one host)."""

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text exposition format (0.0.4, what every Prometheus server reads)."""

# no `_created` series: the multi-process mode has none, so one worker or several expose the same names
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's metrics. A scrape in multi-process mode reads the directory instead."""

if not MULTIPROCESS:  # per-process figures mean nothing summed over workers
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "bankhub_http_requests",
    "HTTP requests answered, by route template, method and status class",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "bankhub_http_request_duration_seconds",
    "Time from an HTTP request's arrival to the end of its answer, by route template and method",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
WS_CONNECTIONS = Gauge(
    "bankhub_ws_connections",
    "Open (registered) WebSocket connections",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
WS_FRAMES_IN = Counter(
    "bankhub_ws_frames_received",
    "Frames received from clients, by frame type (`rejected`: refused by the protocol session)",
    ["type"],
    registry=REGISTRY,
)
WS_FRAMES_OUT = Counter(
    "bankhub_ws_frames_sent",
    "Frames handed to client connections, by frame type",
    ["type"],
    registry=REGISTRY,
)
WS_QUEUED = Gauge(
    "bankhub_ws_outbound_queued_frames",
    "Frames queued towards clients, summed over this host's connections (sampled once a second and at scrape)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
WS_QUEUE_MAX = Gauge(
    "bankhub_ws_outbound_queue_max_frames",
    "The longest outbound queue of any one connection (sampled once a second and at scrape)",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
WS_SLOW_CONSUMER = Counter(
    "bankhub_ws_slow_consumer_closes",
    "Connections closed with 4008 (slow consumer: the outbound queue overflowed)",
    registry=REGISTRY,
)
WS_CLOSES = Counter(
    "bankhub_ws_closes",
    "WebSocket connections closed, by close code (`other`: a code the hub does not define)",
    ["code"],
    registry=REGISTRY,
)
MESSAGES_COMMITTED = Counter(
    "bankhub_messages_committed",
    "Messages committed by the group committer (stored; duplicates and refusals not counted)",
    registry=REGISTRY,
)
COMMIT_BATCH = Histogram(
    "bankhub_commit_batch_size",
    "Sends per group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
COMMIT_DURATION = Histogram(
    "bankhub_commit_duration_seconds",
    "Time of one group-commit flush: the batch's transaction and the publishing of its signals",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FANOUT_LATENCY = Histogram(
    "bankhub_fanout_latency_seconds",
    "From a message's commit timestamp to its frame being handed to its recipients' sockets on this node",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BROKER_RECONNECTS = Counter(
    "bankhub_broker_reconnects",
    "Times the broker's pub/sub connection was re-established after a loss",
    registry=REGISTRY,
)
ALERT_FALLBACK = Counter(
    "bankhub_alert_fallback",
    "Alert fallback deliveries (SMS/push gateway) by outcome",
    ["outcome"],
    registry=REGISTRY,
)
WS_ERRORS = Counter(
    "bankhub_ws_errors",
    "`error` frames sent to clients, by error code (`other`: past the first 64 codes seen)",
    ["code"],
    registry=REGISTRY,
)
WS_REFUSED = Counter(
    "bankhub_ws_handshake_refusals",
    "WebSocket handshakes refused before they were accepted, by the problem code of the refusal",
    ["reason"],
    registry=REGISTRY,
)
DB_POOL = Gauge(
    "bankhub_db_pool_connections",
    "Postgres pool connections by state: `in_use` (held by a transaction or read), `idle`",
    ["state"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_WAITING = Gauge(
    "bankhub_db_pool_waiting",
    "Transactions waiting for a free pool connection (sampled once a second and at scrape)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_TRANSACTION = Histogram(
    "bankhub_db_transaction_duration_seconds",
    "Time of a named storage transaction or read, from asking the pool to releasing the connection",
    ["transaction"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 2.5),
    registry=REGISTRY,
)
STORAGE_UNAVAILABLE = Counter(
    "bankhub_storage_unavailable",
    "Named transactions that failed because Postgres could not be reached (answered `unavailable`)",
    ["transaction"],
    registry=REGISTRY,
)
COMMIT_BACKLOG = Gauge(
    "bankhub_commit_backlog",
    "Sends waiting for the group committer, not yet in a batch (sampled once a second and at scrape)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
NODE_INFO = Gauge(
    "bankhub_node_info",
    "Always 1: the node's name and the hub's version as labels",
    ["node", "version"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

METRIC_NAMES: frozenset[str] = frozenset(
    {
        "bankhub_http_requests_total",
        "bankhub_http_request_duration_seconds",
        "bankhub_ws_connections",
        "bankhub_ws_frames_received_total",
        "bankhub_ws_frames_sent_total",
        "bankhub_ws_outbound_queued_frames",
        "bankhub_ws_outbound_queue_max_frames",
        "bankhub_ws_slow_consumer_closes_total",
        "bankhub_ws_closes_total",
        "bankhub_messages_committed_total",
        "bankhub_commit_batch_size",
        "bankhub_commit_duration_seconds",
        "bankhub_fanout_latency_seconds",
        "bankhub_broker_reconnects_total",
        "bankhub_alert_fallback_total",
        "bankhub_node_info",
        "bankhub_ws_errors_total",
        "bankhub_ws_handshake_refusals_total",
        "bankhub_db_pool_connections",
        "bankhub_db_pool_waiting",
        "bankhub_db_transaction_duration_seconds",
        "bankhub_storage_unavailable_total",
        "bankhub_commit_backlog",
    }
)
"""Every series name the hub exposes (a histogram's ``_bucket``/``_sum``/``_count`` come with its name)."""

FALLBACK_OUTCOMES = ("sent", "retry", "dead_letter", "cancelled")
"""The outcomes of one alert fallback attempt (``delivery/fallback.py``)."""

SLOW_CONSUMER = 4008
"""The protocol's close code for a slow consumer (``protocol.frames.CloseCode.SLOW_CONSUMER``;
this foundation module imports nothing above it, a unit test keeps the two equal)."""

# close codes a client may put in its own close frame are any of 1000-4999: only the standard
# ones and the hub's own range get a label of their own, so a client cannot grow the label set
_KNOWN_CLOSE_CODES = frozenset(range(1000, 1016)) | frozenset(range(4000, 4100))


class Tally:
    """Plain per-process counts the hot paths add to; :func:`flush` moves them to the counters.

    Single-threaded (the event loop's): an add is an attribute or dict add, no lock."""

    __slots__ = ("frames_in", "frames_out", "messages_out", "closes", "broker_reconnects", "alert_fallback", "errors", "refused")

    def __init__(self) -> None:
        self.frames_in: defaultdict[str, int] = defaultdict(int)
        """Received frames by frame type."""
        self.frames_out: defaultdict[str, int] = defaultdict(int)
        """Frames handed to connections by frame type (``message`` frames: :attr:`messages_out`)."""
        self.messages_out = 0
        """``message`` frames handed to connections: the fan-out path's own int."""
        self.closes: defaultdict[int, int] = defaultdict(int)
        """Closed connections by close code."""
        self.broker_reconnects = 0
        self.alert_fallback: defaultdict[str, int] = defaultdict(int)
        """Alert fallback attempts by outcome (:data:`FALLBACK_OUTCOMES`)."""
        self.errors: defaultdict[str, int] = defaultdict(int)
        """``error`` frames sent by error code (server-defined codes, never client text)."""
        self.refused: defaultdict[str, int] = defaultdict(int)
        """Refused WebSocket handshakes by the refusal's problem code (server-defined)."""


TALLY = Tally()
"""This process's tally (every hub of the process adds to it)."""

class Queued(Protocol):
    """A connection as the levels see it: the frames queued towards its client."""

    @property
    def queued(self) -> int: ...


class Connections(Protocol):
    """A node's connection registry as the levels see it: its count of registered connections
    (kept as they come and go, read without a scan)."""

    def __len__(self) -> int: ...


_QUEUEING: set[Queued] = set()
"""This process's connections with a writer task (frames queued, or a close being carried
out): the only ones whose queues the levels read. An idle connection writes straight to
its transport and is not here, so a sample costs O(connections with a queue), not O(open
connections)."""


def queueing(conn: Queued, writer: asyncio.Task[None]) -> None:
    """``conn`` started its ``writer`` task (it has frames queued): its queue counts in the
    levels until the writer ends (``conn.writing`` false, or a newer writer running)."""
    _QUEUEING.add(conn)

    def ended(task: asyncio.Task[None]) -> None:
        current = getattr(conn, "_writer", None)
        if current is None or current is task or current.done():
            _QUEUEING.discard(conn)

    writer.add_done_callback(ended)


class Pool(Protocol):
    """A node's database as the levels see it (``bankhub.storage.db.Database``)."""

    def pool_levels(self) -> tuple[int, int, int]: ...


class Backlog(Protocol):
    """A node's group committer as the levels see it (``bankhub.batching.Batcher``)."""

    @property
    def backlog(self) -> int: ...


@dataclass(frozen=True, eq=False)
class _Node:
    name: str
    registry: Connections
    db: Pool | None = None
    committer: Backlog | None = None


_NODES: list[_Node] = []
_flusher: asyncio.Task[None] | None = None


def _sample() -> None:
    """Levels from the running nodes of this process: open connections (each registry's
    count), queued frames (only the connections with a writer task: :func:`queueing`)."""
    open_conns = queued = longest = in_use = idle = waiting = backlog = 0
    for node in _NODES:
        open_conns += len(node.registry)
        if node.db is not None:
            size, free, waits = node.db.pool_levels()
            in_use += size - free
            idle += free
            waiting += waits
        if node.committer is not None:
            backlog += node.committer.backlog
    for conn in _QUEUEING:
        n = conn.queued
        queued += n
        if n > longest:
            longest = n
    WS_CONNECTIONS.set(open_conns)
    WS_QUEUED.set(queued)
    WS_QUEUE_MAX.set(longest)
    DB_POOL.labels("in_use").set(in_use)
    DB_POOL.labels("idle").set(idle)
    DB_WAITING.set(waiting)
    COMMIT_BACKLOG.set(backlog)


_LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")
_LABELS_MAX = 64
_ERROR_LABELS: set[str] = set()
_REFUSAL_LABELS: set[str] = set()


def _bounded(value: str, seen: set[str]) -> str:
    """``value`` as a label: the codes are the hub's own constants, and still at most
    :data:`_LABELS_MAX` distinct ones get a label of their own (``other`` after that)."""
    if value in seen:
        return value
    if len(seen) < _LABELS_MAX and _LABEL.fullmatch(value):
        seen.add(value)
        return value
    return "other"


def flush() -> None:
    """Move :data:`TALLY` into the prometheus_client counters and sample the levels.

    Runs in the event loop's thread (a scrape, the once-a-second flusher): the tallies are
    swapped for empty ones, so nothing added meanwhile is lost or counted twice."""
    t = TALLY
    frames_in, t.frames_in = t.frames_in, defaultdict(int)
    frames_out, t.frames_out = t.frames_out, defaultdict(int)
    closes, t.closes = t.closes, defaultdict(int)
    fallback, t.alert_fallback = t.alert_fallback, defaultdict(int)
    errors, t.errors = t.errors, defaultdict(int)
    refused, t.refused = t.refused, defaultdict(int)
    messages_out, t.messages_out = t.messages_out, 0
    reconnects, t.broker_reconnects = t.broker_reconnects, 0
    if messages_out:
        frames_out["message"] += messages_out
    for kind, n in frames_in.items():
        WS_FRAMES_IN.labels(kind).inc(n)
    for kind, n in frames_out.items():
        if n > 0:  # a counter only grows (the fan-out's count is corrected by the deliveries it skipped)
            WS_FRAMES_OUT.labels(kind).inc(n)
    for code, n in closes.items():
        WS_CLOSES.labels(str(code) if code in _KNOWN_CLOSE_CODES else "other").inc(n)
        if code == SLOW_CONSUMER:
            WS_SLOW_CONSUMER.inc(n)
    for outcome, n in fallback.items():
        ALERT_FALLBACK.labels(outcome).inc(n)
    for error, n in errors.items():
        WS_ERRORS.labels(_bounded(error, _ERROR_LABELS)).inc(n)
    for reason, n in refused.items():
        WS_REFUSED.labels(_bounded(reason, _REFUSAL_LABELS)).inc(n)
    if reconnects:
        BROKER_RECONNECTS.inc(reconnects)
    _sample()


def exposition() -> bytes:
    """The scrape's body (Prometheus text format): this host's workers merged in multi-process mode."""
    flush()
    return render()


async def scrape() -> bytes:
    """:func:`exposition` for the event loop: the tallies are flushed in the loop's thread, the
    text rendered in a worker thread. prometheus_client renders each sample line in Python (tens
    of microseconds each: a few hundred route series make milliseconds), and the loop keeps
    serving meanwhile; its values are read under their own locks."""
    flush()
    return await asyncio.to_thread(render)


def render() -> bytes:
    """The text format of the values as they are (no flush): this process's, or the host's workers'."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def worker_exited(pid: int, directory: str | None = None) -> None:
    """A worker process ended: its live gauges (connections, queues, node info) leave the sums.
    Its counters stay: a rate over the scrape series does not fall back when a worker dies.

    The directory is ``directory``, else ``PROMETHEUS_MULTIPROC_DIR`` read now, not at import:
    the supervisor (bankhub.cli.workers) imported this module before it set the directory for its
    workers. Without either there is nothing to do."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


# --- the running hubs ---------------------------------------------------------------------------


def attach(node_name: str, registry: Connections, *, db: Pool | None = None, committer: Backlog | None = None) -> object:
    """A node (hub) of this process started: sample its levels (connections; the pool of
    ``db`` and the backlog of ``committer`` when given), name it, flush once a second.
    Returns the handle :func:`detach` takes."""
    global _flusher
    node = _Node(node_name, registry, db, committer)
    _NODES.append(node)
    NODE_INFO.labels(node_name, __version__).set(1)
    loop = asyncio.get_running_loop()
    # (a flusher of another loop, one a hub was never stopped on, does not count)
    if _flusher is None or _flusher.done() or _flusher.get_loop() is not loop:
        _flusher = loop.create_task(_flush_every_second(), name="metrics-flush")
    return node


def detach(handle: object) -> None:
    """A node stopped (``handle``: what :func:`attach` returned); with the last one the flusher
    stops too, after a final flush."""
    global _flusher
    if not isinstance(handle, _Node) or handle not in _NODES:
        return
    _NODES.remove(handle)
    name = handle.name
    # a worker's series go with its file (worker_exited); prometheus-client cannot remove labels there
    if not MULTIPROCESS and all(n.name != name for n in _NODES):
        try:
            NODE_INFO.remove(name, __version__)
        except KeyError:
            pass
    if not _NODES:
        flush()
        if _flusher is not None:
            _flusher.cancel()
            _flusher = None


async def _flush_every_second() -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            flush()
        except Exception:  # a metrics fault never takes a node down
            pass


# --- once-per-batch observations -------------------------------------------------------------------


def observe_commit(batch_size: int, committed: int, seconds: float) -> None:
    """One group-commit flush: its size, the messages it stored and how long it took."""
    COMMIT_BATCH.observe(batch_size)
    COMMIT_DURATION.observe(seconds)
    if committed:
        MESSAGES_COMMITTED.inc(committed)


_transactions: dict[str, Any] = {}  # the histogram's child per transaction name (code constants: bounded)


def observe_transaction(name: str, seconds: float) -> None:
    """A named storage transaction or read (``name``: a code constant) took ``seconds``."""
    child = _transactions.get(name)
    if child is None:
        child = _transactions[name] = DB_TRANSACTION.labels(name)
    child.observe(seconds)


def storage_unavailable(name: str) -> None:
    """The named transaction failed: Postgres could not be reached."""
    STORAGE_UNAVAILABLE.labels(name).inc()


_time = time.time


def observe_fanout(ts_ms: int) -> None:
    """A committed message (commit timestamp ``ts_ms``, epoch ms) reaches its recipients'
    sockets on this node now. Called once per message per node, not per delivery."""
    FANOUT_LATENCY.observe(max(0.0, _time() - ts_ms / 1000))


def frame_type(text: str) -> str:
    """The ``type`` of an encoded server frame (the hub encodes ``type`` first), ``other`` if not found."""
    if text.startswith('{"type":"'):
        end = text.find('"', 9, 64)
        if end > 9:
            return text[9:end]
    return "other"


# --- the access rule ----------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (the peer address the server saw) is a loopback address, IPv4-mapped ones included."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


FORWARDING_HEADERS: frozenset[str] = frozenset({"x-forwarded-for", "x-real-ip", "forwarded"})
"""Headers a proxy adds to what it forwards: without a metrics token, a request carrying any
of them is refused, whatever its peer address (it came through a proxy, from anywhere)."""

PEER = "bankhub.peer"
"""The ASGI scope key :class:`SocketPeer` keeps the socket's own peer address under."""


def may_scrape(token: str, authorization: str | None, client_host: str | None, *, forwarded: bool = False) -> bool:
    """The access rule of ``GET /metrics``: with a token configured, only a request carrying
    ``Authorization: Bearer <token>`` (compared in constant time); without one, only a request
    from a loopback socket peer (``client_host``: the address the hub's own socket saw, not
    one a proxy header named) that carries none of the :data:`FORWARDING_HEADERS`
    (``forwarded``). Anything else is answered 404, as if there were no such path."""
    if token:
        if not authorization:
            return False
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # latin-1: how the server decoded the header; a token is visible ASCII (settings check it)
        return hmac.compare_digest(given.strip().encode("latin-1", "replace"), token.encode("latin-1", "replace"))
    return not forwarded and is_loopback(client_host)


def socket_peer(scope: Scope) -> str | None:
    """The host of the socket's own peer: what :class:`SocketPeer` kept before uvicorn's
    proxy-header rewrite of ``scope["client"]`` (``scope["client"]`` itself when served
    without it)."""
    peer = scope.get(PEER, scope.get("client"))
    return peer[0] if peer else None


def forwarded(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether raw ASGI ``headers`` carry any of the :data:`FORWARDING_HEADERS`."""
    return any(name.lower().decode("latin-1") in FORWARDING_HEADERS for name, _ in headers)


class SocketPeer:
    """ASGI wrapper that keeps the socket's peer address (``scope["client"]`` as the server
    saw it) under :data:`PEER` before the wrapped app — uvicorn's ``ProxyHeadersMiddleware``
    (bankhub.runner) — replaces ``scope["client"]`` with an address a proxy header names.
    The metrics access rule decides on the kept one: no header can make a remote peer local."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            scope[PEER] = scope.get("client")
        await self.app(scope, receive, send)


def open_scrape_warning(token: str, host: str) -> str | None:
    """The start-up warning for a node listening on ``host`` without a metrics token on
    anything but a loopback address, None when there is nothing to warn of."""
    if token or host == "localhost" or is_loopback(host.strip("[]")):
        return None
    return (
        f"BANKHUB_METRICS_TOKEN is not set and the node listens on {host}: GET /metrics answers loopback peers "
        "without a token, and a sidecar or service-mesh proxy on this host connects from loopback; set a token "
        "(docs/operations.md, \"Metrics\")"
    )


# --- HTTP ---------------------------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def route_templates(routes: Iterable[Any]) -> dict[Any, str]:
    """Each route's endpoint and its path template (``{id}`` segments as written, convertors
    dropped): the ``route`` label of the HTTP metrics, never the raw path (client text)."""
    templates: dict[Any, str] = {}
    for route in routes:
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        path = getattr(route, "path", None)
        if endpoint is not None and isinstance(path, str):
            templates.setdefault(endpoint, _CONVERTOR.sub(r"{\1}", path) or "/")
    return templates


@dataclass(slots=True)
class _Answer:
    status: int = 0


class HttpMetrics:
    """ASGI middleware: counts each HTTP request by route template, method and status class,
    and observes its duration. A path no route matches is labelled ``unmatched``; a method
    outside the usual ones ``other`` (neither label set can be grown by a client)."""

    def __init__(self, app: ASGIApp, templates: dict[Any, str]) -> None:
        self.app = app
        self._templates = templates
        # each label set's children, looked up once (prometheus_client's labels() checks and
        # locks on every call); bounded: routes x methods x five status classes
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = _Answer()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            if not answer.status:
                answer.status = 500
            raise
        finally:
            route = self._templates.get(scope.get("endpoint"), "unmatched")
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "other"
            # no answer started: the server answers 500 for the app
            status = min(max(answer.status // 100, 1), 5) if answer.status else 5
            key = (route, method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    HTTP_REQUESTS.labels(route, method, f"{status}xx"),
                    HTTP_DURATION.labels(route, method),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
