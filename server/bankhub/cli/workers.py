"""Several worker processes serving one port: ``bankhub serve --workers N`` and ``bankhub dev --workers N``.

One hub process uses one core. With ``--workers N`` (N > 1) the process that was started
becomes a *supervisor*: it starts N worker processes, each a full node (:func:`bankhub.node.build_hub`)
named ``<BANKHUB_NODE_NAME>-w<i>`` (i = 1..N) on the shared Redis/Valkey broker, and all of them
serve the same host and port. The supervisor serves nothing itself.

How the workers share the port: **each worker binds its own listening socket with
``SO_REUSEPORT``**, rather than all of them accepting from one socket bound by the supervisor
and inherited. Why:

* a bank hub's load is long-lived WebSockets, so what must be spread evenly is *connections*
  (each costs memory and a share of every fan-out for as long as it lives). With
  ``SO_REUSEPORT`` the kernel gives each worker its own accept queue and spreads new
  connections over them by a hash of the address pair. On one shared socket every idle
  worker is woken and whichever gets there first takes up to a whole backlog at once, so a
  reconnect storm after a lost node piles onto one or two workers;
* a worker binds its socket before its hub starts but *listens* only once the hub has
  started (uvicorn runs the lifespan before it listens), and a bound socket that does not
  listen receives no connections, so a restarting worker never holds connections it cannot
  serve yet.

The price is that the connections still waiting in a worker's own accept queue (handshake
done, not yet accepted) are reset when that worker is killed with ``kill -9`` (unless the
host sets ``net.ipv4.tcp_migrate_req = 1``); their clients reconnect like the worker's own
clients do, to another worker, and sync. To keep the port from being taken between
restarts, and to resolve ``BANKHUB_PORT=0`` to one port for every worker, the supervisor
itself binds a socket on it with ``SO_REUSEPORT`` *only* and never listens (it receives no
connections). Linux lets a socket share a bound port only when both have ``SO_REUSEPORT``
and the same user, or both have ``SO_REUSEADDR`` and neither listens; the hold has no
``SO_REUSEADDR``, so no process of another user can bind the port while it is held, even
while no worker listens (start-up, every worker restarting). Before it takes the hold, the
supervisor probes the port with a socket that has ``SO_REUSEADDR`` only: that conflicts with
any listener and with another supervisor's hold (not with ``TIME_WAIT`` connections), so a
second supervisor on the same host and port exits 2 with one line, as a second single-process
``bankhub serve`` does, instead of splitting the connections with the first.

Workers run ``python -P -m bankhub.cli``: ``-P`` keeps the working directory off
``sys.path``, so a ``uvicorn.py`` or ``bankhub/`` in the service's working directory is never
imported in place of the installed one (as with the ``bankhub`` console script).

What the supervisor does (:func:`supervise`):

* before any worker starts, sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh private directory
  (mode 0700, ``bankhub-metrics-<supervisor pid>-*`` in the temporary directory) for all of
  them (``/metrics`` of any worker collects every worker's figures from it), and removes it
  when it exits; one left by a supervisor that was killed (its pid gone) is removed at the
  next start; when a worker exits it calls ``bankhub.metrics.worker_exited(pid)`` so that
  worker's live gauges are dropped (its counter files stay, so rates do not fall back);
* restarts a worker that dies (``kill -9``, a crash) after a back-off that doubles from
  :data:`FIRST_RESTART_DELAY` to :data:`MAX_RESTART_DELAY`, with one log line per restart.
  A worker that ran for :data:`STABLE_SECONDS` starts the back-off again from the first
  delay (0.5, 1, 2, 4, 8, 8 s: at most :data:`MAX_QUICK_FAILURES` restarts in a row). A
  worker that cannot even be started (``fork`` fails: EAGAIN, ENOMEM, EMFILE) counts as such a
  failure, with one log line; the running workers are not disturbed. When one worker slot
  fails once more after :data:`MAX_QUICK_FAILURES` restarts in a row (a 7th time), each time
  sooner than :data:`STABLE_SECONDS` after it started, the node is broken (a bad setting, an
  unreachable database): the supervisor stops the other workers and exits 1, so the
  orchestrator sees it, instead of restarting forever. No worker is started once a stop
  signal has arrived;
* forwards SIGTERM and SIGINT to every worker as SIGTERM: each drains as a single node does
  (:meth:`bankhub.hub.Hub.drain`: new sockets and sends refused, submitted commits
  finished and answered, sockets closed with 1012), so nothing acknowledged is lost. A
  second SIGINT is forwarded as SIGINT (uvicorn's "stop now", as on a single node); a
  worker still running ``stop_timeout`` seconds (``--stop-timeout``, default
  :data:`STOP_TIMEOUT`) after the first signal is killed. Even when the supervisor itself
  fails, its workers get SIGTERM and that time to drain before SIGKILL;
* exits when every worker has exited: 0 after a signal when every worker stopped cleanly,
  1 otherwise.

Workers stay in the supervisor's process group (a terminal's Ctrl-C and ``kill`` of the
group reach them too, which is harmless: a repeated SIGTERM is ignored), and each asks the
kernel for a SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a supervisor lost
to ``kill -9`` leaves workers that drain and exit, never orphans serving forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "MAX_WORKERS",
    "FIRST_RESTART_DELAY",
    "MAX_RESTART_DELAY",
    "STABLE_SECONDS",
    "MAX_QUICK_FAILURES",
    "STOP_TIMEOUT",
    "NO_BROKER",
    "METRICS_DIR_PREFIX",
    "Backoff",
    "reserve_port",
    "listen_socket",
    "worker_node_name",
    "worker_argv",
    "fresh_metrics_dir",
    "supervise",
    "worker_main",
]

log = logging.getLogger("bankhub.cli.workers")

MAX_WORKERS = 256
"""The most ``--workers`` accepts: each worker is a node with its own Postgres pool."""
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 8.0
STABLE_SECONDS = 30.0
MAX_QUICK_FAILURES = 6
"""Restarts in a row of a worker that keeps failing quickly; the next quick failure gives up."""
STOP_TIMEOUT = 25.0
"""Default seconds (``--stop-timeout``) after the first stop signal before a worker still
running is killed: below Kubernetes' default ``terminationGracePeriodSeconds`` (30 s), so the
supervisor, not the kubelet's SIGKILL, ends a drain that takes too long (a drain takes at most
about 20 s: commits and answers, then uvicorn's own graceful shutdown)."""
POLL_SECONDS = 0.05

NO_BROKER = "needs BANKHUB_REDIS_URL (the in-process broker cannot reach the other workers)"
"""The end of the one line ``serve --workers N`` (N > 1) prints without a Redis/Valkey broker."""

METRICS_DIR_PREFIX = "bankhub-metrics-"

_CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)  # uvicorn re-raises the signal that stopped it


def worker_node_name(base: str, index: int) -> str:
    """Worker ``index``'s node name (shown in ``hello`` and ``/readyz``)."""
    return f"{base}-w{index}"


def _bound_socket(host: str, port: int, *, reuse_addr: bool, reuse_port: bool) -> socket.socket:
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("this platform has no SO_REUSEPORT; run one worker per node")
    # the address family as uvicorn chooses it for `bankhub serve` (IPv6 only for a host with
    # a colon), so --workers listens exactly where a single-process node does
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """The supervisor's hold on ``host:port``: bound with ``SO_REUSEPORT`` only (no
    ``SO_REUSEADDR``: no other user's socket may join it), never listening (so it receives no
    connections). ``port`` 0 picks one; read it from ``getsockname()``.

    A port another listener or another supervisor's hold has is refused (``OSError``
    EADDRINUSE): it is first probed with a ``SO_REUSEADDR``-only socket, which conflicts with
    both but not with ``TIME_WAIT`` connections of an earlier run."""
    if port != 0:  # port 0 is a fresh port: nobody else has it
        _bound_socket(host, port, reuse_addr=True, reuse_port=False).close()
    return _bound_socket(host, port, reuse_addr=False, reuse_port=True)


def listen_socket(host: str, port: int) -> socket.socket:
    """A worker's own socket on ``host:port`` (``SO_REUSEADDR`` and ``SO_REUSEPORT``: it joins
    the supervisor's hold; uvicorn listens on it)."""
    return _bound_socket(host, port, reuse_addr=True, reuse_port=True)


def worker_argv(index: int, supervisor: int) -> list[str]:
    """The command line of worker ``index``: no setting on it (they go by the environment), and
    ``-P`` so that the working directory is not on the worker's import path."""
    return [sys.executable, "-P", "-m", "bankhub.cli", "serve", "--worker-index", str(index), "--supervisor", str(supervisor)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def fresh_metrics_dir(parent: str | None = None) -> str:
    """A new private (0700) ``PROMETHEUS_MULTIPROC_DIR`` for this supervisor's workers, named
    ``bankhub-metrics-<pid>-*`` under ``parent`` (default: the temporary directory).

    Directories of this name that this user owns and whose supervisor is gone (killed with
    ``kill -9``, lost to the OOM killer: it could not remove its own) are removed first; one
    named with this very pid is an earlier incarnation's (a supervisor that is pid 1 in a
    container has the same pid every time)."""
    parent = parent or tempfile.gettempdir()
    me = os.getpid()
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            head, _, rest = entry.name.partition(METRICS_DIR_PREFIX)
            pid_text = rest.split("-", 1)[0]
            if head or not pid_text.isdigit():
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if not entry.is_dir(follow_symlinks=False) or st.st_uid != os.getuid():
                    continue
                pid = int(pid_text)
                if pid == me or not _alive(pid):
                    shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{me}-", dir=parent)


@dataclass
class Backoff:
    """When to restart one worker slot, and when to give up on it (see the module docstring)."""

    first: float = FIRST_RESTART_DELAY
    most: float = MAX_RESTART_DELAY
    stable: float = STABLE_SECONDS
    max_failures: int = MAX_QUICK_FAILURES
    failures: int = 0

    def after_exit(self, ran_for: float) -> float | None:
        """The delay before the next start of a worker that ran ``ran_for`` seconds; None: give up."""
        if ran_for >= self.stable:
            self.failures = 0
        self.failures += 1
        if self.failures > self.max_failures:
            return None
        delay: float = min(self.first * 2.0 ** (self.failures - 1), self.most)
        return delay


@dataclass
class _Slot:
    index: int
    name: str
    backoff: Backoff
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    last_code: int | None = None


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _worker_exited(pid: int) -> None:
    """Tell the metrics collection a worker is gone (its live gauges leave the host's sums)."""
    from .. import metrics

    try:
        metrics.worker_exited(pid)
    except Exception:  # a metrics file we cannot tidy must not stop the supervisor
        log.warning("could not mark worker pid %d dead for metrics", pid, exc_info=True)


class _Supervisor:
    """The loop of :func:`supervise`. ``argv`` (worker index, supervisor pid → command line),
    ``backoff`` (a new :class:`Backoff` per slot) and ``stop_timeout`` are parameters so that
    tests can run the loop on tiny child processes."""

    def __init__(
        self,
        n: int,
        env: Mapping[str, str],
        host: str,
        port: int,
        base_name: str,
        *,
        argv: Callable[[int, int], list[str]] = worker_argv,
        backoff: Callable[[], Backoff] = Backoff,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.env = dict(env)
        self.host = host
        self.port = port
        self.argv = argv
        self.stop_timeout = stop_timeout
        self.slots = [_Slot(i, worker_node_name(base_name, i), backoff()) for i in range(1, n + 1)]
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.gave_up = False
        self.forced = False
        self._previous: dict[int, Any] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # acted on by the loop: no process handling inside a handler

    def catch_signals(self) -> None:
        """Note SIGTERM and SIGINT from now on (before anything that must be undone is made)."""
        if self._previous is None:
            self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore_signals(self) -> None:
        if self._previous is not None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = None

    def _spawn(self, slot: _Slot, now: float) -> None:
        env = {**self.env, "BANKHUB_NODE_NAME": slot.name, "BANKHUB_PORT": str(self.port)}
        slot.restart_at = None
        slot.started = now
        try:
            slot.proc = subprocess.Popen(self.argv(slot.index, os.getpid()), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            # fork/exec failed (EAGAIN, ENOMEM, EMFILE under pressure): a quick failure of this
            # slot, retried after its back-off; the workers that run are left alone
            delay = slot.backoff.after_exit(0.0)
            reason = exc.strerror or type(exc).__name__
            if delay is None:
                log.error("worker %d could not be started (%s): %d quick failures in a row; giving up", slot.index, reason, slot.backoff.failures)
                self.gave_up = True
                self._stop("a worker keeps failing")
                return
            slot.restart_at = now + delay
            log.warning("worker %d could not be started (%s); trying again in %.1f s", slot.index, reason, delay)
            return
        log.info("worker %d (node %s) started, pid %d", slot.index, slot.name, slot.proc.pid)

    def _send(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    def _stop(self, why: str) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            log.info("%s: stopping %d worker(s); each drains", why, sum(s.proc is not None for s in self.slots))
            for slot in self.slots:
                slot.restart_at = None
            self._send(signal.SIGTERM)

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if self.stopping_since is None:
                self._stop(signal.Signals(signum).name)
            elif signum == signal.SIGINT:
                self._send(signal.SIGINT)  # a second Ctrl-C: stop now, as on a single node

    def _reap(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None:
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            pid, slot.proc, slot.last_code = slot.proc.pid, None, code
            _worker_exited(pid)
            if self.stopping_since is not None:
                log.info("worker %d (pid %d) stopped: %s", slot.index, pid, _describe(code))
                continue
            delay = slot.backoff.after_exit(now - slot.started)
            if delay is None:
                log.error(
                    "worker %d (pid %d) exited with %s: %d quick failures in a row; giving up",
                    slot.index, pid, _describe(code), slot.backoff.failures,
                )
                self.gave_up = True
                self._stop("a worker keeps failing")
                continue
            slot.restart_at = now + delay
            log.warning("worker %d (pid %d) exited with %s; restarting it in %.1f s", slot.index, pid, _describe(code), delay)

    def _wait_all(self) -> None:
        """After the loop (even one ended by an error here): every worker gets SIGTERM and
        ``stop_timeout`` to drain, then SIGKILL; no worker outlives the supervisor."""
        if all(s.proc is None for s in self.slots):
            return
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self._send(signal.SIGTERM)
        while any(s.proc is not None and s.proc.poll() is None for s in self.slots):
            if time.monotonic() - self.stopping_since > self.stop_timeout:
                self.forced = True
                self._send(signal.SIGKILL)
                break
            time.sleep(POLL_SECONDS)
        for slot in self.slots:
            if slot.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.proc.wait(5)
                slot.last_code = slot.proc.returncode
                _worker_exited(slot.proc.pid)
                slot.proc = None

    def run(self) -> int:
        caught_here = self._previous is None
        self.catch_signals()
        try:
            for slot in self.slots:
                if self.signals:
                    break
                self._spawn(slot, time.monotonic())
            while True:
                self._handle_signals()
                now = time.monotonic()
                self._reap(now)
                if self.stopping_since is None:
                    for slot in self.slots:
                        if self.signals:  # a stop arrived meanwhile: the next round stops, starts nothing
                            break
                        if slot.restart_at is not None and now >= slot.restart_at:
                            self._spawn(slot, now)
                elif not self.forced and now - self.stopping_since > self.stop_timeout:
                    log.error("workers still running %.0f s after the stop: killing them", self.stop_timeout)
                    self.forced = True
                    self._send(signal.SIGKILL)
                if self.stopping_since is not None and all(s.proc is None for s in self.slots):
                    break
                time.sleep(POLL_SECONDS)
        finally:
            self._wait_all()
            if caught_here:
                self.restore_signals()
        # a slot never started (a signal during start-up) has no code: it did not fail
        clean = not self.gave_up and not self.forced and all(s.last_code in (None, *_CLEAN_EXITS) for s in self.slots)
        log.info("all workers stopped")
        return 0 if clean else 1


def supervise(
    n: int, *, env: Mapping[str, str], host: str, port: int, base_name: str, stop_timeout: float = STOP_TIMEOUT
) -> int:
    """Run ``n`` workers on ``host:port`` until a stop signal (or a worker that keeps failing);
    returns the exit code (see the module docstring).

    ``env`` is every worker's environment (their settings, ``BANKHUB_*``); each worker gets
    ``BANKHUB_NODE_NAME`` = :func:`worker_node_name` of ``base_name``, ``BANKHUB_PORT`` (the
    port resolved when ``port`` is 0) and ``PROMETHEUS_MULTIPROC_DIR`` on top. A port that
    cannot be bound (taken by a listener or by another supervisor) is one line on stderr and
    exit 2. ``stop_timeout``: seconds a worker has to drain after the stop signal.
    """
    try:
        reservation = reserve_port(host, port)
    except OSError as exc:
        print(f"bankhub: cannot bind {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    bound = reservation.getsockname()[1]
    supervisor = _Supervisor(n, env, host, bound, base_name, stop_timeout=stop_timeout)
    # from here a SIGTERM is noted, not fatal: the directory below is always removed
    supervisor.catch_signals()
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir: str | None = None
    try:
        metrics_dir = fresh_metrics_dir()  # 0700: figures of this supervisor's workers only
        # the supervisor's own metrics calls (worker_exited) read the same directory
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        supervisor.env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        log.info("%d workers on %s:%d (nodes %s .. %s)", n, host, bound, worker_node_name(base_name, 1), worker_node_name(base_name, n))
        return supervisor.run()
    finally:
        reservation.close()
        supervisor.restore_signals()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if previous is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous


# --- one worker --------------------------------------------------------------------------------


def _die_with(parent: int) -> bool:
    """Ask for SIGTERM when the supervisor dies; False when it is already gone."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def worker_main(index: int, supervisor: int) -> int:
    """Worker ``index``: a node from ``BANKHUB_*`` (as ``bankhub serve``), serving its own
    ``SO_REUSEPORT`` socket on ``BANKHUB_HOST:BANKHUB_PORT``. :func:`supervise` starts it as
    ``bankhub serve --worker-index I --supervisor PID`` (so it logs as every command does)."""
    if not _die_with(supervisor):
        return 70

    from .. import gctune
    from . import common
    from ..node import build_hub
    from ..runner import HubServer, uvicorn_config

    try:
        settings = common.env_settings()
        hub = build_hub(settings)
        sock = listen_socket(settings.host, settings.port)
    except (common.CannotRun, ValueError, OSError) as exc:
        print(f"bankhub worker {index}: {exc}", file=sys.stderr)
        return 2
    config = uvicorn_config(hub, host=settings.host, port=settings.port, log_level=settings.log_level)
    gctune.tune_for_serving()
    HubServer(config, hub, freeze_gc=True).run(sockets=[sock])
    return 0
