"""The bankhub benchmark suite: each scenario against the hub and against a bare baseline.

    .venv/bin/python -m bench                        # the whole suite (~8 min) + bench/out/REPORT.md
    .venv/bin/python -m bench.suite fanout           # one scenario (or several: fanout memory)
    .venv/bin/python -m bench.suite --quick          # smoke run of everything (~2 min)
    .venv/bin/python -m bench.suite --wait-quiet 300 # wait for an idle machine first

Scenarios (see bench/README.md for every figure):

  fanout   deliveries/s from one sender to N online members of one group (N = 1000, 5000),
           hub vs a bare ``websockets`` server using ``broadcast()``          target ratio >= 1.0
  latency  p50/p99 send->deliver at 2000 msg/s over 2000 clients (bench.run's open loop),
           hub vs a bare Starlette/uvicorn relay                              target p99 <= 10 ms
  memory   server RSS per idle authenticated connection at N = 5000,
           hub vs a bare ``websockets`` server                                target ratio <= 1.5
  durable  bench.run's closed loop, durable msg/s vs raw batched asyncpg inserts  target ratio >= 0.3
  storm    5000 clients drop at once, reconnect and ``sync``: time until all resynced and
           Postgres statements per reconnect (pg_stat_statements)   targets <= 3 s, <= 1 query
  publish  official accounts: POST a notice over HTTP to an account with 1,000 followers and
           one with 1,000,000 (bench/accounts.py)         target mean(1M) / mean(1k) <= 1.2;
           the publisher figures query at 1M <= 10 ms and 1M / 1k <= 1.2 (counters, O(1))
  broadcast  official accounts: N notices to 5000 connected followers, deliveries/s,
           hub vs a bare ``websockets`` server using ``broadcast()``          target ratio >= 1.0
  alerts   transactional alerts: alerts/s accepted through the signed API (single and batch),
           API-to-device latency at a fixed rate (bench/alerts.py)
           targets: single POST >= 3,000 alerts/s, p99 <= 1 s, none lost
  dlp      data-loss prevention: precision/recall per kind on a seeded labelled corpus of 1,600
           chat texts (bench/dlp_corpus.py) and scan throughput; pure, no hub

Every scenario starts its own embedded Postgres (fresh, seeded by SQL) and its own
``bankhub serve``; the bare servers run in their own processes (bench/bare.py). Each
prints its JSON on stdout and a table on stderr, and writes
``<out>/scenarios/<name>.json``; ``REPORT.md`` and its plots are then rebuilt from all
the scenario files in ``<out>/scenarios`` (so one scenario re-run updates its part).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import queue
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

from .bare import BareProcess
from .env import PgEnv, statement_counts, statement_delta, stop_on_signals
from .fanout import bare_burst, hub_burst, receiver_main
from .hubproc import HubProcess, free_port, key_file_env, raise_nofile_limit
from .model import BenchClient, StormPlan, StormResult
from .profile import Profiler
from .run import TARGET_DURABLE_RATIO, TARGET_P99_DELIVER_MS, Bench, _bottleneck
from .run import parse_args as run_args
from .seed import seed_clients, seed_groups, seed_history
from .stats import CpuMeter, latency_curve, latency_summary, postgres_pids

__all__ = ["main", "SCENARIOS"]

SCENARIOS = ("fanout", "latency", "durable", "memory", "storm", "publish", "broadcast", "alerts", "dlp")
TARGETS = {
    "fanout_ratio_min": 1.0,
    "latency_p99_ms_max": TARGET_P99_DELIVER_MS,
    "memory_ratio_max": 1.5,
    "durable_ratio_min": TARGET_DURABLE_RATIO,
    "storm_resync_s_max": 3.0,
    "storm_queries_per_reconnect_max": 1.0,
    "publish_ratio_max": 1.2,
    # the publisher figures query (GET /v1/notices/{id}/stats) at the large size, and large / small
    "publish_stats_ms_max": 10.0,
    "publish_stats_ratio_max": 1.2,
    "broadcast_ratio_min": 1.0,
    "alerts_p99_ms_max": 1000.0,
    "alerts_single_per_s_min": 3000.0,
}
_NS = 1_000_000_000


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class SuiteConfig:
    scenarios: list[str]
    quick: bool
    out: Path
    workers: int
    wait_quiet: float
    profile: bool
    text_bytes: int
    fanout_sizes: list[int]
    fanout_messages: int
    fanout_repeat: int
    fanout_chatter: bool
    latency_clients: int
    latency_rate: float
    latency_duration: float
    latency_warmup: float
    durable_duration: float
    history_rows: int
    memory_clients: int
    storm_clients: int
    storm_behind: int
    storm_concurrency: int
    storm_timeout: float
    hub_env: dict[str, str] = field(default_factory=dict)
    hub_workers: int = 1
    hub_valkey: bool = False
    publish_sizes: list[int] = field(default_factory=lambda: [1000, 1_000_000])
    publish_count: int = 200
    publish_warmup: int = 20
    broadcast_followers: int = 5000
    broadcast_notices: int = 50
    broadcast_repeat: int = 3
    alerts_customers: int = 2000
    alerts_concurrency: int = 32
    alerts_duration: float = 10.0
    alerts_rate: float = 500.0
    broadcast_inflight: int = 4


_FULL: dict[str, Any] = {
    "fanout_sizes": [1000, 5000],
    "fanout_messages": 50,
    "fanout_repeat": 3,
    "latency_clients": 2000,
    "latency_rate": 2000.0,
    "latency_duration": 10.0,
    "latency_warmup": 2.0,
    "durable_duration": 10.0,
    "memory_clients": 5000,
    "storm_clients": 5000,
    "publish_count": 200,
    "publish_warmup": 20,
    "broadcast_followers": 5000,
    "broadcast_notices": 50,
    "broadcast_repeat": 3,
    "alerts_customers": 2000,
    "alerts_concurrency": 32,
    "alerts_duration": 10.0,
    "alerts_rate": 500.0,
}
_QUICK: dict[str, Any] = {
    "fanout_sizes": [200, 500],
    "fanout_messages": 20,
    "fanout_repeat": 2,
    "latency_clients": 200,
    "latency_rate": 500.0,
    "latency_duration": 3.0,
    "latency_warmup": 1.0,
    "durable_duration": 3.0,
    "memory_clients": 500,
    "storm_clients": 500,
    "publish_count": 50,
    "publish_warmup": 5,
    "broadcast_followers": 500,
    "broadcast_notices": 20,
    "broadcast_repeat": 2,
    "alerts_customers": 300,
    "alerts_concurrency": 16,
    "alerts_duration": 3.0,
    "alerts_rate": 100.0,
}
_PUBLISH_SIZES = {"full": [1000, 1_000_000], "quick": [1000, 100_000]}
_MULTI_WORKER_SCENARIOS = ("latency", "durable", "storm")  # they meter every process of the hub (HubProcess.pids)


# --- shared plumbing --------------------------------------------------------------------------


def _bench(cfg: SuiteConfig, clients: int, **knobs: Any) -> Bench:
    """A :class:`bench.run.Bench` used for its load-generator workers, phases and meters."""
    argv = ["--clients", str(clients), "--workers", str(cfg.workers), "--text-bytes", str(cfg.text_bytes), "--out", str(cfg.out)]
    argv += ["--wait-quiet", str(cfg.wait_quiet)]
    for name, value in knobs.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    if cfg.profile:
        argv.append("--profile")
    for k, v in cfg.hub_env.items():
        argv += ["--hub-env", f"{k}={v}"]
    return Bench(run_args(argv))


def _start_hub(cfg: SuiteConfig, pg: PgEnv, name: str) -> HubProcess:
    hub = HubProcess(pg.dsn, free_port(), cfg.out / f"hub-{name}.log", {**key_file_env(pg.tmp), **cfg.hub_env}, workers=cfg.hub_workers, valkey=cfg.hub_valkey)
    hub.wait_ready()
    if cfg.hub_workers > 1:
        _wait_workers(hub, cfg.hub_workers)
    shape = f"{cfg.hub_workers} worker(s), embedded Valkey" if cfg.hub_workers > 1 or cfg.hub_valkey else ""
    log(f"suite: hub pid {hub.pid} ready on 127.0.0.1:{hub.port}" + (f" ({shape})" if shape else ""))
    return hub


def _wait_workers(hub: HubProcess, n: int, timeout: float = 60.0) -> None:
    """Until every worker of ``serve --workers n`` answers ``/readyz`` (one answering is not
    enough: the others would get no connection that lands while they start)."""
    import httpx

    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only workers {sorted(seen)} of {n} answered in {timeout} s; see {hub.log_path}")
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            # a new connection each time: each lands on a worker by its address pair
            r = httpx.get(f"http://127.0.0.1:{hub.port}/readyz", headers={"connection": "close"}, timeout=2.0)
            if r.status_code == 200:
                seen.add(r.json()["node"])
        time.sleep(0.05)


def _stop(server: HubProcess | BareProcess | None, what: str) -> None:
    if server is not None:
        code = server.stop()
        log(f"suite: {what} stopped (exit {code})")


def _quiet(cfg: SuiteConfig) -> dict[str, Any]:
    b = Bench.__new__(Bench)  # only the quiet check: no queues, no processes
    b.cfg = run_args(["--wait-quiet", str(cfg.wait_quiet)])
    return b._quiet_check()


def _rename_server(result: dict[str, Any], name: str) -> dict[str, Any]:
    """Bench meters the server under test as ``hub``; for a bare run call it ``name``."""
    for key in ("cpu", "cpu_us_per_msg"):
        block = result.get(key)
        if isinstance(block, dict) and "hub" in block:
            block[name] = block.pop("hub")
    result.pop("db", None)  # the bare relay writes nothing
    return result


def _cpu_brief(cpu: dict[str, Any], groups: tuple[str, ...]) -> str:
    parts = []
    for g in groups:
        x = cpu.get(g)
        if isinstance(x, dict):
            parts.append(f"{g} {x['pct_of_core']:.0f}%")
    return "  ".join(parts) + f"  other {cpu.get('other', {}).get('pct_of_core', 0):.0f}%  | machine {cpu.get('machine_busy_pct', 0):.0f}% of {int(cpu.get('cores', 0))} cores"


def _saturated(cpu: dict[str, Any], groups: tuple[str, ...]) -> str:
    """Which side ran out of CPU: a single process at >= 85% of a core, or >= 90% of the machine."""
    notes = []
    for g in groups:
        x = cpu.get(g)
        if isinstance(x, dict) and x.get("busiest_process_pct_of_core", 0) >= 85:
            notes.append(f"{g} CPU-bound ({x['busiest_process_pct_of_core']:.0f}% of a core in one process)")
    if cpu.get("machine_busy_pct", 0) >= 90:
        notes.append(f"machine saturated ({cpu['machine_busy_pct']:.0f}% of {int(cpu.get('cores', 0))} cores)")
    if not notes:
        busiest = max(
            ((g, cpu[g]["busiest_process_pct_of_core"]) for g in groups if isinstance(cpu.get(g), dict)), key=lambda x: x[1], default=("-", 0)
        )
        return f"nothing CPU-bound (busiest: {busiest[0]} {busiest[1]:.0f}% of a core; machine {cpu.get('machine_busy_pct', 0):.0f}%)"
    return "; ".join(notes)


def _next(reports: Any, procs: list[BaseProcess], deadline: float) -> tuple[Any, ...]:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("worker processes did not report in time")
        dead = [p.name for p in procs if not p.is_alive()]
        if dead:
            raise RuntimeError(f"worker process(es) died: {dead}")
        try:
            msg: tuple[Any, ...] = reports.get(timeout=min(1.0, remaining))
            return msg
        except queue.Empty:
            continue


# --- fanout -------------------------------------------------------------------------------------


class Receivers:
    """``cfg.workers`` receiver processes (bench/fanout.py) holding ``members``' connections;
    they count the text frames that start with ``prefix`` (default: ``message`` frames)."""

    def __init__(self, port: int, members: list[BenchClient], workers: int, prefix: bytes | None = None) -> None:
        self.ctx = mp.get_context("spawn")
        self.reports: Any = self.ctx.Queue()
        self.procs: list[tuple[BaseProcess, Connection]] = []
        n = max(1, min(workers, len(members)))
        for w in range(n):
            part = members[len(members) * w // n : len(members) * (w + 1) // n]
            recv_end, send_end = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(
                target=receiver_main,
                args=(w, port, "/v1/ws", part, recv_end, self.reports, *(() if prefix is None else (prefix,))),
                name=f"bench-receiver-{w}",
                daemon=True,
            )
            proc.start()
            self.procs.append((proc, send_end))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.procs if p.pid is not None and p.is_alive()]

    def wait_connected(self, timeout: float = 240.0) -> dict[str, Any]:
        ok = failed = 0
        slowest = 0.0
        reasons: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        for _ in self.procs:
            while True:
                try:
                    msg = _next(self.reports, [p for p, _ in self.procs], min(deadline, time.monotonic() + 5))
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    log(f"  [connect] receivers still connecting ({time.monotonic() - started:.0f}s)")
            assert msg[0] == "connected", msg
            _, _, w_ok, w_failed, secs, w_reasons = msg
            ok += w_ok
            failed += w_failed
            slowest = max(slowest, secs)
            for r, c in w_reasons.items():
                reasons[r] = reasons.get(r, 0) + c
        return {"connected": ok, "failed": failed, "seconds": round(slowest, 2), "failed_attempts": reasons}

    def arm(self, k: int, timeout_s: float) -> None:
        for _, cmd in self.procs:
            cmd.send(("arm", k, timeout_s))
        deadline = time.monotonic() + 30
        for _ in self.procs:
            msg = _next(self.reports, [p for p, _ in self.procs], deadline)
            assert msg[0] == "armed", msg

    def collect(self, timeout_s: float, label: str, expected: int) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        progress: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s + 30
        next_line = time.monotonic() + 1
        while len(results) < len(self.procs):
            msg = _next(self.reports, [p for p, _ in self.procs], deadline)
            if msg[0] == "fanout_progress":
                progress[msg[1]] = msg[2]
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 1
                    log(f"  [{label}] received {sum(progress.values())}/{expected}")
            elif msg[0] == "fanout_result":
                results.append(msg[2])
        return results

    def stop(self) -> None:
        for proc, cmd in self.procs:
            try:
                if proc.is_alive():
                    cmd.send(("stop",))
            except OSError:
                pass
        for proc, cmd in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            cmd.close()
        self.procs = []


def _fanout_round(results: list[dict[str, Any]], burst: dict[str, Any], n: int, k: int) -> dict[str, Any]:
    send_ns = np.array(burst["send_ns"], dtype=np.int64)
    lat: list[np.ndarray] = []
    last = 0
    first_arrival = 0
    for r in results:
        for i, buf in enumerate(r["arrivals"]):
            arr = np.frombuffer(buf, dtype=np.int64)
            arr = arr[arr > 0]
            if arr.size:
                lat.append((arr - send_ns[i]) // 1000)
                last = max(last, int(arr.max()))
                lo = int(arr.min())
                first_arrival = lo if not first_arrival else min(first_arrival, lo)
    us = np.concatenate(lat) if lat else np.zeros(0, dtype=np.int64)
    delivered = int(us.size)
    span = (last - int(send_ns[0])) / _NS if delivered else 0.0
    spread = (last - first_arrival) / _NS if delivered else 0.0
    ack_us = [(a - s) // 1000 for a, s in zip(burst["ack_ns"], burst["send_ns"], strict=False)]
    samples = us.tolist()
    return {
        "receivers": n,
        "messages": k,
        "expected": n * k,
        "delivered": delivered,
        "missing": sum(r["missing"] for r in results),
        "extra_frames": sum(r["extra"] for r in results),
        "other_frames": sum(r["other_frames"] for r in results),
        "closed_connections": sum(r["closed"] for r in results),
        "close_codes": {str(c): v for r in results for c, v in r["close_codes"].items()},
        "complete_receivers": sum(r["complete"] for r in results),
        "seconds": round(span, 4),
        "deliveries_per_s": round(delivered / span, 1) if span > 0 else 0.0,
        "deliveries_per_s_after_first": round(delivered / spread, 1) if spread > 0 else 0.0,
        "first_delivery_ms": round((first_arrival - int(send_ns[0])) / 1e6, 3) if delivered else None,
        "deliver_ms": latency_summary(samples),
        "deliver_cdf_ms": latency_curve(samples),
        "send_to_ack_ms": latency_summary(ack_us),
        "sender_errors": burst["errors"],
    }


def scenario_fanout(cfg: SuiteConfig) -> dict[str, Any]:
    k = cfg.fanout_messages
    if k > 100:
        raise ValueError("--fanout-messages must stay within the hub's per-connection burst (100 frames)")
    pg = PgEnv()
    hub: HubProcess | None = None
    bare: BareProcess | None = None
    receivers: Receivers | None = None
    out: dict[str, Any] = {
        "messages_per_round": k, "rounds": cfg.fanout_repeat, "text_bytes": cfg.text_bytes, "chatter": cfg.fanout_chatter, "sizes": {}
    }
    try:
        t = time.perf_counter()
        sender, groups = asyncio.run(seed_groups(pg.dsn, cfg.fanout_sizes))
        log(f"suite: seeded {max(cfg.fanout_sizes)} members, groups of {sorted(groups)} and a sender in {time.perf_counter() - t:.1f}s")
        out["quiet_check"] = _quiet(cfg)
        hub = _start_hub(cfg, pg, "fanout")
        bare = BareProcess("ws", free_port(), cfg.out / "bare-ws-fanout.log")
        bare.wait_ready()
        log(f"suite: bare websockets server pid {bare.pid} ready on 127.0.0.1:{bare.port}")
        hub_pid, bare_pid, pgdata = hub.pid, bare.pid, pg.data_dir
        for n in sorted(groups):
            conv, members = groups[n]
            per_size: dict[str, Any] = {}
            sample = b""
            for target in ("hub", "bare"):
                port = hub.port if target == "hub" else bare.port
                receivers = Receivers(port, members, cfg.workers)
                log(f"suite: fanout N={n} ({target}): connecting {n} receivers")
                connect = receivers.wait_connected()
                log(f"suite: fanout N={n} ({target}): {connect['connected']} connected in {connect['seconds']}s; failed attempts {connect['failed_attempts'] or 0}")
                recv_pids = receivers.pids
                meter = CpuMeter(
                    {
                        "hub": lambda: [hub_pid],
                        "bare": lambda: [bare_pid],
                        "postgres": lambda: postgres_pids(pgdata),
                        "receivers": lambda: recv_pids,
                        "bench_main": lambda: [os.getpid()],
                    }
                )
                rounds = []
                for r in range(cfg.fanout_repeat):
                    time.sleep(1.0)
                    timeout_s = 60.0 + n * k / 5000
                    receivers.arm(k, timeout_s)
                    profiler = None
                    if cfg.profile and target == "hub" and n == max(groups) and r == 0:
                        profiler = Profiler(hub_pid, max(2, round(n * k / 40000)), cfg.out / f"hub-fanout-{n}.collapsed.txt")
                    before = meter.snapshot(every_process=True)
                    if target == "hub":
                        burst = asyncio.run(hub_burst(hub.ws_url, sender, conv, k, cfg.text_bytes, chatter=cfg.fanout_chatter))
                    else:
                        if not sample:
                            sample = _synthetic_message(conv, sender.user_id, cfg.text_bytes)
                        burst = asyncio.run(bare_burst(bare.send_url, sample, k))
                    results = receivers.collect(timeout_s, f"fanout N={n} {target} round {r + 1}", n * k)
                    cpu = CpuMeter.delta(before, meter.snapshot(every_process=True))
                    rd = _fanout_round(results, burst, connect["connected"], k)
                    rd["cpu"] = cpu
                    rd["server_cpu_us_per_delivery"] = round(1e6 * cpu[target]["cpu_s"] / rd["delivered"], 2) if rd["delivered"] else None
                    rd["saturated"] = _saturated(cpu, (target, "postgres", "receivers"))
                    if profiler is not None:
                        summary = profiler.finish()
                        (cfg.out / f"hub-fanout-{n}.profile.json").write_text(json.dumps(summary, indent=2) + "\n")
                        rd["hub_profile"] = summary
                    if target == "hub" and not sample:
                        sample = next((res["sample"] for res in results if res["sample"]), b"")
                    rounds.append(rd)
                    log(
                        f"suite: fanout N={n} {target} round {r + 1}: {rd['delivered']}/{rd['expected']} delivered in {rd['seconds']:.3f}s"
                        f" = {rd['deliveries_per_s']:.0f}/s; p50 {rd['deliver_ms']['p50']} ms p99 {rd['deliver_ms']['p99']} ms;"
                        f" missing {rd['missing']}; cpu {_cpu_brief(cpu, (target, 'postgres', 'receivers'))}"
                    )
                receivers.stop()
                receivers = None
                rates = [x["deliveries_per_s"] for x in rounds]
                median = sorted(rounds, key=lambda x: x["deliveries_per_s"])[len(rounds) // 2]
                per_size[target] = {
                    "connect": connect,
                    "deliveries_per_s": median["deliveries_per_s"],
                    # the server process's own CPU (user + system: its socket writes included) per delivery, median round
                    "server_cpu_us_per_delivery": statistics.median(x["server_cpu_us_per_delivery"] or 0 for x in rounds),
                    "deliveries_per_s_rounds": rates,
                    "median_round": median,
                    "rounds": [{k2: v for k2, v in x.items() if k2 != "deliver_cdf_ms"} for x in rounds],
                    "missing_total": sum(x["missing"] for x in rounds),
                }
            hub_rate = per_size["hub"]["deliveries_per_s"]
            bare_rate = per_size["bare"]["deliveries_per_s"]
            per_size["ratio"] = round(hub_rate / bare_rate, 3) if bare_rate else 0.0
            hub_us, bare_us = per_size["hub"]["server_cpu_us_per_delivery"], per_size["bare"]["server_cpu_us_per_delivery"]
            # the same comparison in CPU per delivery (bare / hub: >= 1.0 means the hub costs at most what bare does),
            # which does not depend on whether the machine or the server process ran out first
            per_size["cpu_ratio"] = round(bare_us / hub_us, 3) if hub_us and bare_us else None
            per_size["payload_bytes"] = len(sample)
            out["sizes"][str(n)] = per_size
            log(f"suite: fanout N={n}: hub {hub_rate:.0f}/s, bare {bare_rate:.0f}/s, ratio {per_size['ratio']:.3f}")
        return out
    finally:
        if receivers is not None:
            receivers.stop()
        _stop(hub, "hub")
        _stop(bare, "bare websockets server")
        pg.stop()


def _synthetic_message(conv: str, sender: str, text_bytes: int) -> bytes:
    """A ``message`` frame shaped like the hub's (only when the hub round captured none)."""
    import uuid

    m = {"conversation_id": conv, "message_id": str(uuid.uuid4()), "seq": 1, "sender_id": sender, "client_msg_id": "f0.0",
         "body": {"kind": "text", "text": "x" * text_bytes}, "ts": int(time.time() * 1000)}
    return json.dumps({"type": "message", "message": m}, separators=(",", ":")).encode()


# --- latency and durable (bench.run's phases) ------------------------------------------------------


def scenario_latency_durable(cfg: SuiteConfig, latency: bool, durable: bool) -> dict[str, Any]:
    bench = _bench(
        cfg,
        cfg.latency_clients,
        rate=cfg.latency_rate,
        duration=cfg.latency_duration,
        warmup=cfg.latency_warmup,
        durable_duration=cfg.durable_duration,
        durable_warmup=cfg.latency_warmup,
        history_rows=cfg.history_rows,
    )
    pg = PgEnv()
    relay: BareProcess | None = None
    results: dict[str, Any] = {}
    try:
        bench.pgdata, bench.dsn = pg.data_dir, pg.dsn
        clients = asyncio.run(seed_clients(pg.dsn, bench.cfg.clients))
        asyncio.run(seed_history(pg.dsn, cfg.history_rows, cfg.text_bytes + 40))
        log(f"suite: seeded {len(clients)} users in {len(clients) // 2} direct conversations and {cfg.history_rows} older messages")
        results["quiet_check"] = bench._quiet_check()
        if durable:
            results["raw_baseline"] = bench._raw_baseline(pg.dsn, clients)
        bench.hub = _start_hub(cfg, pg, "latency" if latency else "durable")
        bench._start_workers(clients)
        results["connect"] = bench._await_connected()
        if latency:
            hub_open = bench._open_loop()
            hub_open["bottleneck"] = _bottleneck(hub_open["cpu"])
            results["hub"] = hub_open
        if durable:
            closed = bench._closed_loop()
            closed["bottleneck"] = _bottleneck(closed["cpu"])
            results["durable"] = closed
        bench._stop_workers()
        _stop(bench.hub, "hub")
        bench.hub = None
        if latency:
            mapping = {c.token: [c.user_id, c.conversation_id, c.peer_user_id] for c in clients}
            map_file = pg.tmp / "relay-map.json"
            map_file.write_text(json.dumps(mapping))
            relay = BareProcess("relay", free_port(), cfg.out / "bare-relay.log", ["--map", str(map_file)])
            relay.wait_ready()
            log(f"suite: bare Starlette relay pid {relay.pid} ready on 127.0.0.1:{relay.port}")
            bench.hub = relay  # type: ignore[assignment]  # same interface: pid, ws_url, stop
            bench._start_workers(clients)
            results["bare_connect"] = bench._await_connected()
            bare_open = bench._open_loop()
            bare_open["bottleneck"] = _bottleneck(bare_open["cpu"]).replace("hub", "bare relay")
            results["bare"] = _rename_server(bare_open, "bare")
            bench._stop_workers()
        return results
    finally:
        bench._stop_workers()
        if isinstance(bench.hub, HubProcess):
            _stop(bench.hub, "hub")
        _stop(relay, "bare relay")
        pg.stop()


def _latency_summary(r: dict[str, Any]) -> dict[str, Any]:
    hub, bare = r["hub"], r["bare"]
    h50, h99 = hub["deliver_ms"]["p50"], hub["deliver_ms"]["p99"]
    b50, b99 = bare["deliver_ms"]["p50"], bare["deliver_ms"]["p99"]
    return {
        "hub_p50_ms": h50,
        "hub_p99_ms": h99,
        "bare_p50_ms": b50,
        "bare_p99_ms": b99,
        "ratio_p50": round(h50 / b50, 2) if h50 and b50 else None,
        "ratio_p99": round(h99 / b99, 2) if h99 and b99 else None,
        "lost": hub["lost"],
        "target_p99_ms": TARGET_P99_DELIVER_MS,
        "met": h99 is not None and h99 <= TARGET_P99_DELIVER_MS and hub["lost"] == 0,
    }


# --- memory --------------------------------------------------------------------------------------------


def _rss_settled(pid: int, min_wait: float = 3.0, max_wait: float = 25.0) -> dict[str, Any]:
    """RSS of ``pid`` once it stops moving: 0.5 s samples; settled when the last 4 (2 s) are
    within 0.5% of each other, after at least ``min_wait`` s (at most ``max_wait``)."""
    proc = psutil.Process(pid)
    samples: list[int] = []
    started = time.monotonic()
    while True:
        samples.append(int(proc.memory_info().rss))
        waited = time.monotonic() - started
        last = samples[-4:]
        if waited >= min_wait and len(last) == 4 and (max(last) - min(last)) <= 0.005 * max(last):
            break
        if waited >= max_wait:
            break
        time.sleep(0.5)
    full = proc.memory_full_info()
    return {"rss": int(statistics.median(samples[-4:])), "uss": int(full.uss), "waited_s": round(time.monotonic() - started, 1), "samples": len(samples)}


async def _one_connection(url: str, client: BenchClient) -> None:
    """Warm-up: one handshake, ``hello``, close (imports and first-use caches are not per-connection)."""
    from websockets.asyncio.client import connect

    async with connect(
        url,
        subprotocols=["bankhub.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {client.token}"},
        compression=None,
        ping_interval=None,
        local_addr=(client.source_ip, 0),
    ) as ws:
        await asyncio.wait_for(ws.recv(), 10)


def _memory_side(cfg: SuiteConfig, bench: Bench, server: HubProcess | BareProcess, clients: list[BenchClient], name: str) -> dict[str, Any]:
    bench.hub = server  # type: ignore[assignment]
    asyncio.run(_one_connection(server.ws_url, clients[-1]))
    before = _rss_settled(server.pid, min_wait=2.0)
    cpu_meter = bench._meter()
    cpu_before = cpu_meter.snapshot()
    log(f"suite: memory ({name}): RSS before {before['rss'] / 2**20:.1f} MiB; connecting {len(clients)} clients")
    bench._start_workers(clients)
    connect = bench._await_connected()
    cpu_connect = CpuMeter.delta(cpu_before, cpu_meter.snapshot())
    after = _rss_settled(server.pid)
    n = connect["connected"]
    per = (after["rss"] - before["rss"]) / n if n else 0.0
    per_uss = (after["uss"] - before["uss"]) / n if n else 0.0
    log(f"suite: memory ({name}): RSS after {after['rss'] / 2**20:.1f} MiB with {n} connections = {per / 1024:.1f} KiB per connection")
    bench._stop_workers()
    cpu_connect[name] = cpu_connect.pop("hub", {})
    return {
        "connected": n,
        "connect": connect,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_connection": round(per, 1),
        "uss_bytes_per_connection": round(per_uss, 1),
        "kib_per_connection": round(per / 1024, 2),
        "connect_cpu": cpu_connect,
    }


def scenario_memory(cfg: SuiteConfig) -> dict[str, Any]:
    bench = _bench(cfg, cfg.memory_clients)
    pg = PgEnv()
    server: HubProcess | BareProcess | None = None
    out: dict[str, Any] = {}
    try:
        bench.pgdata, bench.dsn = pg.data_dir, pg.dsn
        clients = asyncio.run(seed_clients(pg.dsn, bench.cfg.clients))
        out["quiet_check"] = bench._quiet_check()
        server = _start_hub(cfg, pg, "memory")
        out["hub"] = _memory_side(cfg, bench, server, clients, "hub")
        _stop(server, "hub")
        server = BareProcess("ws", free_port(), cfg.out / "bare-ws-memory.log")
        server.wait_ready()
        log(f"suite: bare websockets server pid {server.pid} ready on 127.0.0.1:{server.port}")
        out["bare"] = _memory_side(cfg, bench, server, clients, "bare")
        _stop(server, "bare websockets server")
        server = None
        h, b = out["hub"]["bytes_per_connection"], out["bare"]["bytes_per_connection"]
        out["ratio"] = round(h / b, 3) if b > 0 else None
        return out
    finally:
        bench._stop_workers()
        bench.hub = None
        _stop(server, "server")
        pg.stop()


# --- reconnect storm ---------------------------------------------------------------------------------


_QUERY_KINDS = [
    ("session lookup (handshake auth)", ("FROM sessions s JOIN users u",)),
    ("sync", ("LATERAL",)),
    ("asyncpg pool reset on release", ("pg_advisory_unlock_all", "CLOSE ALL", "UNLISTEN", "RESET ALL")),
    ("session re-check (every 30 s, all connections)", ("s.id = ANY", "inactive")),
    # asyncpg reads the codecs of array types (uuid[], bigint[]) once per pooled connection, on
    # the first statement that uses them: at most the pool size in all, not per reconnect
    ("asyncpg type introspection, once per pooled connection", ("typeinfo_tree", "set_config(")),
]
_NOT_PER_RECONNECT = ("asyncpg pool reset on release", "asyncpg type introspection, once per pooled connection")
_IDLE_WINDOW_S = 3.0


def _classify(statements: list[tuple[str, int]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for query, calls in statements:
        for label, markers in _QUERY_KINDS:
            if any(m in query for m in markers):
                break
        else:
            label = "other"
        kinds[label] = kinds.get(label, 0) + calls
    return kinds


def _short_reason(reason: str) -> str:
    """``HTTP 503: {"type":...,"code":"unavailable",...`` -> ``HTTP 503 unavailable``."""
    m = re.match(r'HTTP (\d+): .*?"code":"([a-z_]+)"', reason)
    return f"HTTP {m.group(1)} {m.group(2)}" if m else reason


def scenario_storm(cfg: SuiteConfig) -> dict[str, Any]:
    n = cfg.storm_clients
    # the warm-up phase: every client sends one message, so every conversation has history
    pre_rate = min(2500.0, float(n))
    bench = _bench(cfg, n, rate=pre_rate, duration=max(1.0, n / pre_rate), warmup=0, drain=5)
    pg = PgEnv(stat_statements=True)
    out: dict[str, Any] = {"clients": n, "behind": cfg.storm_behind, "concurrency": cfg.storm_concurrency}
    try:
        bench.pgdata, bench.dsn = pg.data_dir, pg.dsn
        out["query_counter"] = "pg_stat_statements" if pg.stat_statements else "pg_stat_database (xact_commit + xact_rollback)"
        clients = asyncio.run(seed_clients(pg.dsn, bench.cfg.clients))
        out["quiet_check"] = bench._quiet_check()
        bench.hub = _start_hub(cfg, pg, "storm")
        bench._start_workers(clients)
        out["connect"] = bench._await_connected()
        pre = bench._open_loop()
        out["pre_phase"] = {k: pre[k] for k in ("offered_rate", "clients", "sent", "acked", "delivered", "lost", "errors")}
        time.sleep(2.0)
        # the node's periodic jobs (notice scheduler, desk and alert sweeps, presence flushes) run
        # whatever the clients do: their rate, measured with every client connected and idle, is
        # taken out of the per-reconnect figure (the statements table still lists them)
        idle_from = asyncio.run(statement_counts(pg.dsn, pg.stat_statements))
        idle_t0 = time.monotonic()
        time.sleep(_IDLE_WINDOW_S)
        before = asyncio.run(statement_counts(pg.dsn, pg.stat_statements))
        idle_s = time.monotonic() - idle_t0
        idle = statement_delta(idle_from, before)
        window_t0 = time.monotonic()
        meter = bench._meter()
        drop_ns = time.time_ns() + _NS
        plan = StormPlan(drop_ns, cfg.storm_behind, cfg.storm_concurrency, cfg.storm_timeout)
        log(f"suite: storm: {out['connect']['connected']} clients drop at once in 1 s, reconnect and sync (behind {cfg.storm_behind})")
        for _, cmd in bench.workers:
            cmd.send(("storm", plan))
        while time.time_ns() < drop_ns:
            time.sleep(0.001)
        cpu_start = meter.snapshot(every_process=True)
        profiler = Profiler(bench.hub.pid, 5, cfg.out / "hub-storm.collapsed.txt") if cfg.profile else None
        results: list[StormResult] = []
        progress: dict[int, dict[str, int]] = {}
        deadline = time.monotonic() + cfg.storm_timeout + 60
        next_line = time.monotonic() + 1
        procs = [p for p, _ in bench.workers]
        while len(results) < len(bench.workers):
            msg = _next(bench.reports, procs, deadline)
            if msg[0] == "storm_progress":
                progress[msg[1]] = msg[2]
            elif msg[0] == "storm_result":
                results.append(msg[2])
            if time.monotonic() >= next_line and progress:
                next_line += 1
                tot = {k: sum(p[k] for p in progress.values()) for k in ("reconnected", "synced", "failed")}
                log(f"  [storm t={(time.time_ns() - drop_ns) / _NS:5.1f}s] reconnected {tot['reconnected']}  synced {tot['synced']}  failed {tot['failed']}")
        cpu = CpuMeter.delta(cpu_start, meter.snapshot(every_process=True))
        time.sleep(2.0)  # pg_stat_database is flushed by idle backends at most once a second
        after = asyncio.run(statement_counts(pg.dsn, pg.stat_statements))
        window_s = time.monotonic() - window_t0
        if profiler is not None:
            summary = profiler.finish()
            (cfg.out / "hub-storm.profile.json").write_text(json.dumps(summary, indent=2) + "\n")
            out["hub_profile"] = summary
        synced_us = [x for r in results for x in r.synced_us]
        hello_us = [x for r in results for x in r.hello_us]
        reconnected = sum(r.reconnected for r in results)
        failed_attempts: dict[str, int] = {}
        errors: dict[str, int] = {}
        for r in results:
            for key, v in r.failed_attempts.items():
                key = _short_reason(key)
                failed_attempts[key] = failed_attempts.get(key, 0) + v
            for key, v in r.errors.items():
                errors[key] = errors.get(key, 0) + v
        delta = statement_delta(before, after)
        per: dict[str, float] = {}
        if "statements" in delta:
            kinds = _classify(delta["statements"])
            per = {label: round(calls / reconnected, 3) for label, calls in kinds.items()} if reconnected else {}
            total = sum(kinds.values())
            reset = kinds.get("asyncpg pool reset on release", 0)
            once = sum(kinds.get(k, 0) for k in _NOT_PER_RECONNECT) - reset
            idle_kinds = _classify(idle["statements"])
            idle_calls = sum(v for k, v in idle_kinds.items() if k not in _NOT_PER_RECONNECT)
            background = round(idle_calls * window_s / idle_s, 1)
            app = max(0.0, total - reset - once - background)
        else:
            kinds, total, reset, once, app = {}, delta["xacts"], 0, 0, delta["xacts"]
            background = round(idle["xacts"] * window_s / idle_s, 1)
        all_synced = sum(r.synced for r in results)
        out.update(
            {
                "reconnected": reconnected,
                "synced": all_synced,
                "failed": sum(r.failed for r in results),
                "sync_retries": sum(r.sync_retries for r in results),
                "handshake_attempts": sum(r.attempts for r in results),
                "failed_attempts": failed_attempts,
                "sync_errors": errors,
                "messages_returned": sum(r.messages_returned for r in results),
                "full_resync_s": round(max(synced_us) / 1e6, 3) if synced_us else None,
                "all_resynced": all_synced == n,
                "synced_ms": latency_summary(synced_us),
                "synced_cdf_ms": latency_curve(synced_us),
                "hello_ms": latency_summary(hello_us),
                "hello_cdf_ms": latency_curve(hello_us),
                "cpu": cpu,
                "saturated": _saturated(cpu, ("hub", "postgres", "loadgen")),
                "queries": {
                    "statements": delta.get("statements", [])[:20],
                    "by_kind": kinds,
                    "by_kind_per_reconnect": per,
                    "statements_per_reconnect": round(total / reconnected, 3) if reconnected else None,
                    "app_queries_per_reconnect": round(app / reconnected, 3) if reconnected else None,
                    "pool_reset_statements_per_reconnect": round(reset / reconnected, 3) if reconnected else None,
                    "per_pooled_connection_statements": once,
                    "background_statements_estimated": background,
                    "background_idle_window": {"seconds": round(idle_s, 2), "statements": idle.get("statements", [])[:10]},
                    "transactions": delta["xacts"],
                    "transactions_per_reconnect": round(delta["xacts"] / reconnected, 3) if reconnected else None,
                },
            }
        )
        bench._stop_workers()
        return out
    finally:
        bench._stop_workers()
        _stop(bench.hub, "hub")
        bench.hub = None
        pg.stop()


# --- tables ----------------------------------------------------------------------------------------


def _ok(flag: bool) -> str:
    return "MET" if flag else "MISSED"


def _lat(s: dict[str, Any]) -> str:
    if not s or not s.get("n"):
        return "n/a"
    return f"p50 {s['p50']:.2f}  p99 {s['p99']:.2f}  max {s['max']:.2f} ms (n={s['n']})"


def table(name: str, r: dict[str, Any]) -> str:
    if name in ("publish", "broadcast"):
        from .accounts import table as account_table

        return account_table(name, r)
    if name == "alerts":
        from .alerts import table as alerts_table

        return alerts_table(name, r)
    if name == "dlp":
        from .dlp_corpus import table as dlp_table

        return dlp_table(r)
    lines = [f"{name}"]
    if name == "fanout":
        lines[0] += f"  ({r['messages_per_round']} messages per round, 1 sender -> N members of one group; median of {r['rounds']} rounds)"
        for n, s in r["sizes"].items():
            h, b = s["hub"], s["bare"]
            lines += [
                f"  N={n:<6} hub   {h['deliveries_per_s']:>9.0f} deliveries/s  rounds {h['deliveries_per_s_rounds']}  missing {h['missing_total']}"
                f"  deliver {_lat(h['median_round']['deliver_ms'])}",
                f"  {'':8} bare  {b['deliveries_per_s']:>9.0f} deliveries/s  rounds {b['deliveries_per_s_rounds']}  missing {b['missing_total']}"
                f"  deliver {_lat(b['median_round']['deliver_ms'])}",
                f"  {'':8} ratio {s['ratio']:.3f}   [target >= {TARGETS['fanout_ratio_min']}: {_ok(s['ratio'] >= TARGETS['fanout_ratio_min'])}]"
                f"   server CPU per delivery: hub {h['server_cpu_us_per_delivery']} us, bare {b['server_cpu_us_per_delivery']} us (bare/hub {s['cpu_ratio']})",
                f"  {'':8} cpu hub run:  {_cpu_brief(h['median_round']['cpu'], ('hub', 'postgres', 'receivers'))}",
                f"  {'':8} cpu bare run: {_cpu_brief(b['median_round']['cpu'], ('bare', 'receivers'))}",
                f"  {'':8} saturated: hub run: {h['median_round']['saturated']}; bare run: {b['median_round']['saturated']}",
            ]
    elif name == "latency":
        s = r["summary"]
        h, b = r["hub"], r["bare"]
        lines[0] += f"  (open loop, {h['offered_rate']:.0f} msg/s over {h['clients']} clients, {h['duration_s']:g}s measured)"
        lines += [
            f"  hub        send->deliver {_lat(h['deliver_ms'])}  lost {h['lost']}  late {h['late']}  [target p99 <= {TARGET_P99_DELIVER_MS:g} ms: {_ok(s['met'])}]",
            f"  bare relay send->deliver {_lat(b['deliver_ms'])}  lost {b['lost']}",
            f"  ratio      p50 {s['ratio_p50']}x  p99 {s['ratio_p99']}x",
            f"  cpu hub run:  {_cpu_brief(h['cpu'], ('hub', 'postgres', 'loadgen'))}",
            f"  cpu bare run: {_cpu_brief(b['cpu'], ('bare', 'loadgen'))}",
            f"  bottleneck hub run: {h['bottleneck']}; bare run: {b['bottleneck']}",
        ]
    elif name == "durable":
        d, raw = r["durable"], r["raw_baseline"]
        lines += [
            f"  hub        {d['acked_per_s']:.0f} msg/s durable (closed loop, {d['clients']} clients x {d['inflight_per_client']} in flight)  lost {d['lost']}",
            f"  raw        {raw['rows_per_s']:.0f} rows/s (asyncpg executemany, {raw['batch']} rows/txn)",
            f"  ratio      {r['ratio']:.3f}   [target >= {TARGET_DURABLE_RATIO:g}: {_ok(r['ratio'] >= TARGET_DURABLE_RATIO)}]",
            f"  cpu        {_cpu_brief(d['cpu'], ('hub', 'postgres', 'loadgen'))}",
            f"  bottleneck {d['bottleneck']}",
        ]
    elif name == "memory":
        h, b = r["hub"], r["bare"]
        ratio = r["ratio"] or 0.0
        lines += [
            f"  hub        {h['kib_per_connection']:.1f} KiB RSS per idle connection ({h['connected']} connections; "
            f"{h['rss_before']['rss'] / 2**20:.0f} -> {h['rss_after']['rss'] / 2**20:.0f} MiB; USS {h['uss_bytes_per_connection'] / 1024:.1f} KiB/conn)",
            f"  bare ws    {b['kib_per_connection']:.1f} KiB RSS per idle connection ({b['connected']} connections; "
            f"{b['rss_before']['rss'] / 2**20:.0f} -> {b['rss_after']['rss'] / 2**20:.0f} MiB)",
            f"  ratio      {ratio:.2f}   [target <= {TARGETS['memory_ratio_max']}: {_ok(0 < ratio <= TARGETS['memory_ratio_max'])}]",
        ]
    elif name == "storm":
        q = r["queries"]
        full = r["full_resync_s"]
        lines[0] += f"  ({r['clients']} clients drop at once (RST), reconnect immediately and sync; counter: {r['query_counter']})"
        lines += [
            f"  resynced   {r['synced']}/{r['clients']}   failed {r['failed']}   handshake attempts {r['handshake_attempts']}  refused: {r['failed_attempts'] or 0}",
            f"  sync       error answers {r['sync_errors'] or 0}; syncs retried {r['sync_retries']}",
            f"  all resynced after {full} s   [target <= {TARGETS['storm_resync_s_max']:g} s: {_ok(bool(full is not None and full <= TARGETS['storm_resync_s_max'] and r['all_resynced']))}]",
            f"  drop->hello   {_lat(r['hello_ms'])}",
            f"  drop->synced  {_lat(r['synced_ms'])}",
            f"  queries    {q['statements_per_reconnect']} statements per reconnect: {q['by_kind_per_reconnect']}",
            f"             app queries per reconnect {q['app_queries_per_reconnect']}   [target <= {TARGETS['storm_queries_per_reconnect_max']:g}: "
            f"{_ok(bool(q['app_queries_per_reconnect'] is not None and q['app_queries_per_reconnect'] <= TARGETS['storm_queries_per_reconnect_max']))}]"
            f"  (not counted: {q.get('per_pooled_connection_statements', 0)} once-per-pooled-connection statements, "
            f"~{q.get('background_statements_estimated', 0)} of the node's periodic jobs at their idle rate)",
            f"  cpu        {_cpu_brief(r['cpu'], ('hub', 'postgres', 'loadgen'))}",
            f"  saturated  {r['saturated']}",
        ]
    return "\n".join(lines)


def ratios(all_results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline rows: scenario, figure, hub, baseline, ratio, target, met."""
    rows: list[dict[str, Any]] = []
    f = all_results.get("fanout")
    if f:
        for n, s in f["sizes"].items():
            rows.append({"scenario": f"fanout N={n}", "figure": "deliveries/s", "hub": s["hub"]["deliveries_per_s"], "baseline": s["bare"]["deliveries_per_s"],
                         "baseline_name": "bare websockets broadcast()", "ratio": s["ratio"], "target": f">= {TARGETS['fanout_ratio_min']}", "met": s["ratio"] >= TARGETS["fanout_ratio_min"]})
            rows.append({"scenario": f"fanout N={n}", "figure": "server CPU us/delivery", "hub": s["hub"]["server_cpu_us_per_delivery"],
                         "baseline": s["bare"]["server_cpu_us_per_delivery"], "baseline_name": "bare websockets broadcast()",
                         "ratio": s.get("cpu_ratio"), "target": f"bare/hub >= {TARGETS['fanout_ratio_min']}", "met": bool(s.get("cpu_ratio") and s["cpu_ratio"] >= TARGETS["fanout_ratio_min"])})
    lat = all_results.get("latency")
    if lat:
        s = lat["summary"]
        rows.append({"scenario": "latency p50", "figure": "send->deliver ms", "hub": s["hub_p50_ms"], "baseline": s["bare_p50_ms"],
                     "baseline_name": "bare Starlette relay", "ratio": s["ratio_p50"], "target": "-", "met": None})
        rows.append({"scenario": "latency p99", "figure": "send->deliver ms", "hub": s["hub_p99_ms"], "baseline": s["bare_p99_ms"],
                     "baseline_name": "bare Starlette relay", "ratio": s["ratio_p99"], "target": f"hub p99 <= {TARGET_P99_DELIVER_MS:g} ms", "met": s["met"]})
    mem = all_results.get("memory")
    if mem:
        rows.append({"scenario": "memory", "figure": "KiB RSS per idle connection", "hub": mem["hub"]["kib_per_connection"], "baseline": mem["bare"]["kib_per_connection"],
                     "baseline_name": "bare websockets server", "ratio": mem["ratio"], "target": f"<= {TARGETS['memory_ratio_max']}",
                     "met": bool(mem["ratio"] and mem["ratio"] <= TARGETS["memory_ratio_max"])})
    d = all_results.get("durable")
    if d:
        rows.append({"scenario": "durable", "figure": "msg/s vs rows/s", "hub": d["durable"]["acked_per_s"], "baseline": d["raw_baseline"]["rows_per_s"],
                     "baseline_name": "raw asyncpg executemany", "ratio": d["ratio"], "target": f">= {TARGET_DURABLE_RATIO:g}", "met": d["ratio"] >= TARGET_DURABLE_RATIO})
    st = all_results.get("storm")
    if st:
        q = st["queries"]
        rows.append({"scenario": "storm", "figure": "s until all resynced", "hub": st["full_resync_s"], "baseline": None, "baseline_name": "-",
                     "ratio": None, "target": f"<= {TARGETS['storm_resync_s_max']:g} s", "met": bool(st["full_resync_s"] is not None and st["full_resync_s"] <= TARGETS["storm_resync_s_max"] and st["all_resynced"])})
        rows.append({"scenario": "storm", "figure": "app queries per reconnect", "hub": q["app_queries_per_reconnect"], "baseline": None, "baseline_name": "-",
                     "ratio": None, "target": "<= 1", "met": bool(q["app_queries_per_reconnect"] is not None and q["app_queries_per_reconnect"] <= 1)})
        rows.append({"scenario": "storm", "figure": "all statements per reconnect", "hub": q["statements_per_reconnect"], "baseline": None, "baseline_name": "-",
                     "ratio": None, "target": "-", "met": None})
    from .accounts import ratio_rows
    from .alerts import ratio_rows as alert_rows

    rows += ratio_rows(all_results)
    rows += alert_rows(all_results)
    return rows


def ratio_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return str(v)

    head = f"{'scenario':<14} {'figure':<28} {'hub':>10} {'baseline':>10} {'ratio':>7}  {'target':<22} result"
    lines = [head, "-" * len(head)]
    for r in rows:
        met = "-" if r["met"] is None else _ok(r["met"])
        lines.append(f"{r['scenario']:<14} {r['figure']:<28} {fmt(r['hub']):>10} {fmt(r['baseline']):>10} {fmt(r['ratio']):>7}  {r['target']:<22} {met}")
    return "\n".join(lines)


# --- running -------------------------------------------------------------------------------------------


def run_scenarios(cfg: SuiteConfig) -> dict[str, dict[str, Any]]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "scenarios").mkdir(exist_ok=True)
    nofile = raise_nofile_limit()
    log(f"suite: scenarios {cfg.scenarios}; open-file limit {nofile}; output in {cfg.out}")
    done: dict[str, dict[str, Any]] = {}
    started = time.monotonic()

    def finish(name: str, result: dict[str, Any], seconds: float) -> None:
        result["scenario"] = name
        result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        result["seconds"] = round(seconds, 1)
        result["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
        result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        (cfg.out / "scenarios" / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=_json_default) + "\n")
        done[name] = result
        log("\n" + "=" * 100 + "\n" + table(name, result) + "\n" + "=" * 100)

    order = [s for s in SCENARIOS if s in cfg.scenarios]
    if "latency" in order or "durable" in order:
        t = time.monotonic()
        log(f"suite: === {' + '.join(s for s in ('latency', 'durable') if s in order)} ===")
        r = scenario_latency_durable(cfg, "latency" in order, "durable" in order)
        secs = time.monotonic() - t
        if "latency" in order:
            lat = {k: r[k] for k in ("quiet_check", "connect", "hub", "bare", "bare_connect")}
            lat["summary"] = _latency_summary(lat)
            finish("latency", lat, secs)
        if "durable" in order:
            d = {k: r[k] for k in ("quiet_check", "connect", "raw_baseline", "durable")}
            raw = d["raw_baseline"]["rows_per_s"]
            d["ratio"] = round(d["durable"]["acked_per_s"] / raw, 3) if raw else 0.0
            finish("durable", d, secs)
    from .accounts import scenario_broadcast, scenario_publish  # it imports this module's helpers
    from .alerts import scenario_alerts
    from .dlp_corpus import scenario_dlp  # pure: no hub, no database

    for name, fn in (
        ("fanout", scenario_fanout),
        ("memory", scenario_memory),
        ("storm", scenario_storm),
        ("publish", scenario_publish),
        ("broadcast", scenario_broadcast),
        ("alerts", scenario_alerts),
        ("dlp", scenario_dlp),
    ):
        if name in order:
            t = time.monotonic()
            log(f"suite: === {name} === ({time.monotonic() - started:.0f}s into the suite)")
            finish(name, fn(cfg), time.monotonic() - t)
    log(f"suite: done in {time.monotonic() - started:.0f}s")
    return done


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.decode(errors="replace")
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def parse_args(argv: list[str] | None = None) -> SuiteConfig:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes everywhere (explicit flags still win)")
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory (default bench/out)")
    p.add_argument("--workers", type=int, default=2, help="load-generator / receiver processes (default 2)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S", help="before each scenario, wait up to S seconds for an idle machine (<10%% busy)")
    p.add_argument("--profile", action="store_true", help="sample the hub with py-spy (fanout's largest N, latency, durable, storm)")
    p.add_argument("--text-bytes", type=int, default=64, help="message text length (default 64)")
    p.add_argument("--fanout-sizes", help="comma-separated group sizes N (default 1000,5000)")
    p.add_argument("--fanout-messages", type=int, help="messages K per round, <= 100: the hub's per-connection burst (default 50)")
    p.add_argument("--fanout-repeat", type=int, help="rounds per size and server; the median is reported (default 3)")
    p.add_argument(
        "--fanout-chatter",
        action="store_true",
        help="fanout: the hub's sender also sends `typing` before every other message and a `read` after its acks "
        "(typing and receipts reach every member of a group of up to 100; try --fanout-sizes 100,1000,5000)",
    )
    p.add_argument("--latency-clients", type=int, help="latency/durable clients (default 2000)")
    p.add_argument("--latency-rate", type=float, help="latency: offered msg/s (default 2000)")
    p.add_argument("--latency-duration", type=float, help="latency: measured seconds (default 10)")
    p.add_argument("--latency-warmup", type=float, help="latency/durable warm-up seconds (default 2)")
    p.add_argument("--durable-duration", type=float, help="durable: measured seconds (default 10)")
    p.add_argument("--history-rows", type=int, default=50_000, help="latency/durable: older messages seeded (default 50000)")
    p.add_argument("--memory-clients", type=int, help="memory: idle connections N (default 5000)")
    p.add_argument("--storm-clients", type=int, help="storm: clients (default 5000)")
    p.add_argument("--storm-behind", type=int, default=1, help="storm: each client syncs from its last seq minus this (default 1)")
    p.add_argument("--storm-concurrency", type=int, default=0, help="storm: handshakes in flight per worker, 0 = all at once (default 0)")
    p.add_argument("--storm-timeout", type=float, default=60.0, help="storm: give up on a client after this many seconds (default 60)")
    p.add_argument("--publish-sizes", help="publish: two follower counts small,large (default 1000,1000000; --quick 1000,100000)")
    p.add_argument("--publish-count", type=int, help="publish: measured publishes per account (default 200)")
    p.add_argument("--publish-warmup", type=int, help="publish: warm-up publishes per account (default 20)")
    p.add_argument("--broadcast-followers", type=int, help="broadcast: connected followers N (default 5000)")
    p.add_argument("--broadcast-notices", type=int, help="broadcast: notices K per round (default 50)")
    p.add_argument("--broadcast-repeat", type=int, help="broadcast: rounds per server; the median is reported (default 3)")
    p.add_argument("--alerts-customers", type=int, help="alerts: customers (recipients; all connected in the latency run) (default 2000)")
    p.add_argument("--alerts-concurrency", type=int, help="alerts: requests in flight per load-generator process, throughput runs (default 32)")
    p.add_argument("--alerts-duration", type=float, help="alerts: measured seconds per run (default 10)")
    p.add_argument("--alerts-rate", type=float, help="alerts: offered alerts/s in the latency run (default 500)")
    p.add_argument("--broadcast-inflight", type=int, default=4, help="broadcast: publish requests in flight in the first hub run (default 4)")
    p.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the hub")
    p.add_argument(
        "--hub-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the hub as `bankhub serve --workers N` with an embedded Valkey as its broker (default 1: one process, "
        "in-process broker); its CPU figures then count the supervisor, the workers and Valkey (latency, durable, storm only)",
    )
    p.add_argument(
        "--hub-valkey",
        action="store_true",
        help="a hub of one process with the embedded Valkey broker too (compare with --hub-workers N alike)",
    )
    a = p.parse_args(argv)
    unknown = [x for x in a.scenarios if x not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    base = _QUICK if a.quick else _FULL
    pick = {k: getattr(a, k) if getattr(a, k) is not None else v for k, v in base.items()}
    sizes = [int(x) for x in a.fanout_sizes.split(",")] if a.fanout_sizes else pick["fanout_sizes"]
    publish_sizes = [int(x) for x in a.publish_sizes.split(",")] if a.publish_sizes else _PUBLISH_SIZES["quick" if a.quick else "full"]
    if len(set(publish_sizes)) != 2:
        p.error("--publish-sizes wants two different follower counts: small,large")
    hub_env = {}
    for item in a.hub_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BANKHUB_"):
            p.error(f"--hub-env wants BANKHUB_NAME=VALUE, got {item!r}")
        hub_env[name] = value
    if a.hub_workers < 1:
        p.error("--hub-workers wants at least 1")
    # the other scenarios meter (CPU, RSS) the hub's one process
    multi = [x for x in (list(dict.fromkeys(a.scenarios)) or list(SCENARIOS)) if x not in _MULTI_WORKER_SCENARIOS]
    if (a.hub_workers > 1 or a.hub_valkey) and multi:
        p.error(f"--hub-workers/--hub-valkey work with {', '.join(_MULTI_WORKER_SCENARIOS)} only, not {', '.join(multi)}")
    return SuiteConfig(
        scenarios=list(dict.fromkeys(a.scenarios)) or list(SCENARIOS),
        quick=a.quick,
        out=a.out,
        workers=a.workers,
        wait_quiet=a.wait_quiet,
        profile=a.profile,
        text_bytes=a.text_bytes,
        fanout_sizes=sizes,
        fanout_messages=int(pick["fanout_messages"]),
        fanout_repeat=max(1, int(pick["fanout_repeat"])),
        fanout_chatter=a.fanout_chatter,
        latency_clients=int(pick["latency_clients"]),
        latency_rate=float(pick["latency_rate"]),
        latency_duration=float(pick["latency_duration"]),
        latency_warmup=float(pick["latency_warmup"]),
        durable_duration=float(pick["durable_duration"]),
        history_rows=a.history_rows,
        memory_clients=int(pick["memory_clients"]),
        storm_clients=int(pick["storm_clients"]),
        storm_behind=a.storm_behind,
        storm_concurrency=a.storm_concurrency,
        storm_timeout=a.storm_timeout,
        hub_env=hub_env,
        hub_workers=a.hub_workers,
        hub_valkey=a.hub_valkey,
        publish_sizes=sorted(publish_sizes),
        publish_count=max(1, int(pick["publish_count"])),
        publish_warmup=max(0, int(pick["publish_warmup"])),
        broadcast_followers=int(pick["broadcast_followers"]),
        broadcast_notices=int(pick["broadcast_notices"]),
        broadcast_repeat=max(1, int(pick["broadcast_repeat"])),
        alerts_customers=max(2, int(pick["alerts_customers"])),
        alerts_concurrency=max(1, int(pick["alerts_concurrency"])),
        alerts_duration=float(pick["alerts_duration"]),
        alerts_rate=float(pick["alerts_rate"]),
        broadcast_inflight=max(1, a.broadcast_inflight),
    )


def main(argv: list[str] | None = None) -> int:
    from .report import write_report

    cfg = parse_args(argv)
    stop_on_signals()
    try:
        done = run_scenarios(cfg)
    except KeyboardInterrupt:
        log("suite: interrupted; everything was stopped")
        return 130
    rows = ratios(done)
    doc = {"scenarios": done, "ratios": rows, "targets": TARGETS}
    print(json.dumps(doc, indent=2, sort_keys=True, default=_json_default))
    text = "\n\n".join(table(name, r) for name, r in done.items()) + "\n\n" + ratio_table(rows) + "\n"
    (cfg.out / "suite.txt").write_text(text)
    log("\n" + ratio_table(rows))
    report = write_report(cfg.out)
    log(f"suite: wrote {cfg.out / 'suite.txt'}, {cfg.out / 'scenarios'}/*.json and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
