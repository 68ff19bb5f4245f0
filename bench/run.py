"""The first bankhub benchmark: latency at a paced load, and durable throughput.

    .venv/bin/python -m bench.run                  # 2000 clients, 2000 msg/s, 10 s
    .venv/bin/python -m bench.run --quick          # smoke run: 200 clients, 500 msg/s, 3 s

Steps: embedded Postgres + migrations → direct-SQL seeding → raw ``executemany`` baseline →
``bankhub serve`` in its own process → load generators in their own processes →
open-loop phase (paced sends; send→ack and send→deliver latency) → closed-loop phase
(as fast as the hub acks) → JSON + table. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from .env import PgEnv, stop_on_signals
from .hubproc import HubProcess, free_port, key_file_env, raise_nofile_limit
from .loadgen import worker_main
from .model import BenchClient, ClosedLoopPlan, OpenLoopPlan, PhaseResult
from .profile import Profiler
from .seed import db_counters, hot_table_stats, raw_insert_baseline, seed_clients, seed_history
from .stats import CpuMeter, CpuSnapshot, latency_curve, latency_summary, postgres_pids

__all__ = ["main"]

TARGET_P99_DELIVER_MS = 10.0
TARGET_DURABLE_RATIO = 0.3
_NS = 1_000_000_000


@dataclass(frozen=True)
class Config:
    clients: int
    rate: float
    duration: float
    warmup: float
    drain: float
    late_ms: float
    workers: int
    text_bytes: int
    durable_duration: float
    durable_warmup: float
    durable_clients: int
    inflight: int
    max_client_rate: float
    raw_rows: int
    raw_batch: int
    history_rows: int
    out: Path
    hub_env: dict[str, str]
    quick: bool
    profile: bool
    wait_quiet: float
    hub_gc_threshold: tuple[int, ...] | None


_FULL = {"clients": 2000, "rate": 2000.0, "duration": 10.0, "warmup": 2.0, "durable_duration": 10.0, "durable_warmup": 2.0, "drain": 5.0}
_QUICK = {"clients": 200, "rate": 500.0, "duration": 3.0, "warmup": 1.0, "durable_duration": 3.0, "durable_warmup": 1.0, "drain": 3.0}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the orchestration ------------------------------------------------------------------


class Bench:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        self.reports: Any = self.ctx.Queue()
        self.workers: list[tuple[BaseProcess, Connection]] = []
        self.hub: HubProcess | None = None
        self.pgdata: Path | None = None
        self.dsn = ""
        self.db_delta: dict[str, int] = {}
        self.table_stats: dict[str, dict[str, int]] = {}
        self.shares: list[int] = []  # connected clients per worker
        self.results: dict[str, Any] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        nofile = raise_nofile_limit()
        log(f"bench: open-file limit {nofile}")
        pg: PgEnv | None = None
        try:
            pg = PgEnv()
            tmp = pg.tmp
            self.pgdata = pg.data_dir
            dsn = self.dsn = pg.dsn

            t = time.perf_counter()
            clients = asyncio.run(seed_clients(dsn, cfg.clients))
            asyncio.run(seed_history(dsn, cfg.history_rows, cfg.text_bytes + 40))
            seed_s = time.perf_counter() - t
            log(
                f"bench: seeded {len(clients)} users, {len(clients) // 2} direct conversations, sessions"
                f" and {cfg.history_rows} older messages in {seed_s:.2f}s"
            )
            self.results["seed"] = {
                "clients": len(clients),
                "conversations": len(clients) // 2,
                "history_rows": cfg.history_rows,
                "seconds": round(seed_s, 3),
            }

            self.results["quiet_check"] = self._quiet_check()
            self.results["raw_baseline"] = self._raw_baseline(dsn, clients)

            hub_env = {**key_file_env(tmp), **cfg.hub_env}  # an explicit --hub-env wins
            self.hub = HubProcess(dsn, free_port(), cfg.out / "hub.log", hub_env, cfg.hub_gc_threshold)
            self.hub.wait_ready()
            log(f"bench: hub pid {self.hub.pid} ready on 127.0.0.1:{self.hub.port}")
            self._start_workers(clients)
            self.results["connect"] = self._await_connected()

            self.results["open_loop"] = self._open_loop()
            self.results["durable"] = self._closed_loop()
            self._stop_workers()
            return self.results
        finally:
            # cleanup is bounded (timeouts, then kill); a second Ctrl-C must not cut it short
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            self._stop_workers()
            if self.hub is not None:
                code = self.hub.stop()
                # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop
                log(f"bench: hub stopped (exit {code})")
            if pg is not None:
                pg.stop()  # and deletes its directory

    def _quiet_check(self, threshold: float = 10.0) -> dict[str, Any]:
        """How busy the machine is before we load it: other work skews every figure here.

        With ``--wait-quiet S`` this waits (up to S seconds) for a second under ``threshold`` % busy.
        """
        meter = CpuMeter({})
        deadline = time.monotonic() + self.cfg.wait_quiet
        waited = 0.0
        while True:
            before = meter.snapshot(every_process=True)
            time.sleep(1.0)
            cpu = CpuMeter.delta(before, meter.snapshot(every_process=True))
            busy: float = cpu["machine_busy_pct"]
            if busy <= threshold or time.monotonic() >= deadline:
                break
            waited += 1.0
            if waited % 10 == 1:
                log(f"bench: waiting for a quiet machine ({busy:.0f}% busy: {cpu.get('top_other_processes')})")
        if busy > threshold:
            log(f"bench: WARNING: the machine is {busy:.0f}% busy before the run (other processes: {cpu.get('top_other_processes')})")
        return {"machine_busy_pct": busy, "waited_s": waited, "top_other_processes": cpu.get("top_other_processes", {})}

    def _raw_baseline(self, dsn: str, clients: list[BenchClient]) -> dict[str, Any]:
        cfg = self.cfg
        body = json.dumps({"kind": "text", "text": "x" * cfg.text_bytes}, separators=(",", ":")).encode()
        meter = self._meter(with_hub=False)
        before = meter.snapshot()
        after: list[CpuSnapshot] = []
        raw = asyncio.run(
            raw_insert_baseline(dsn, clients, cfg.raw_rows, cfg.raw_batch, body, on_done=lambda: after.append(meter.snapshot()))
        )
        cpu = CpuMeter.delta(before, after[0] if after else meter.snapshot())
        out = {"batch": cfg.raw_batch, **{k: round(v, 3) for k, v in raw.items()}, "cpu": cpu}
        log(f"bench: raw executemany baseline: {int(raw['rows'])} rows in {raw['seconds']:.2f}s = {raw['rows_per_s']:.0f} rows/s")
        return out

    def _meter(self, with_hub: bool = True) -> CpuMeter:
        pgdata = self.pgdata
        groups = {
            "postgres": lambda: postgres_pids(pgdata) if pgdata else [],
            "bench_main": lambda: [os.getpid()],
        }
        if with_hub and self.hub is not None:
            hub_pid = self.hub.pid
            # `serve --workers N`: the supervisor, its workers and their Valkey
            hub_pids = self.hub.pids if isinstance(self.hub, HubProcess) else lambda: [hub_pid]
            groups["hub"] = hub_pids
            groups["loadgen"] = lambda: [p.pid for p, _ in self.workers if p.pid is not None and p.is_alive()]
        return CpuMeter(groups)  # type: ignore[arg-type]

    # --- load-generator processes -------------------------------------------------------------

    def _start_workers(self, clients: list[BenchClient]) -> None:
        assert self.hub is not None
        n = max(1, min(self.cfg.workers, len(clients) // 2))
        pairs = len(clients) // 2
        for w in range(n):
            lo, hi = 2 * (pairs * w // n), 2 * (pairs * (w + 1) // n)
            recv_end, send_end = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(
                target=worker_main,
                args=(w, self.hub.ws_url, clients[lo:hi], recv_end, self.reports),
                name=f"bench-loadgen-{w}",
                daemon=True,
            )
            proc.start()
            self.workers.append((proc, send_end))
        self.shares = [2 * (pairs * (w + 1) // n) - 2 * (pairs * w // n) for w in range(n)]

    def _await_connected(self, timeout: float = 180.0) -> dict[str, Any]:
        ok = failed = 0
        slowest = 0.0
        reasons: dict[str, int] = {}
        pending = len(self.workers)
        started = time.monotonic()
        deadline = started + timeout
        while pending:
            try:
                msg = self._next_report(min(deadline, time.monotonic() + 5))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                log(f"  [connect] clients still connecting ({time.monotonic() - started:.0f}s)")
                continue
            if msg[0] == "connected":
                _, w, w_ok, w_failed, secs, w_reasons = msg
                for reason, count in w_reasons.items():
                    reasons[reason] = reasons.get(reason, 0) + count
                ok += w_ok
                failed += w_failed
                slowest = max(slowest, secs)
                self.shares[w] = w_ok
                pending -= 1
        log(f"bench: {ok} clients connected ({failed} left out) in {slowest:.1f}s")
        if reasons:
            log(f"bench: failed handshake attempts (a client tries up to 5 times): {reasons}")
        if ok == 0:
            raise RuntimeError("no client could connect; see hub.log")
        return {"connected": ok, "failed": failed, "seconds": round(slowest, 2), "failed_attempts": reasons}

    def _next_report(self, deadline: float) -> tuple[Any, ...]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("load generators did not report in time")
            dead = [p.name for p, _ in self.workers if not p.is_alive()]
            if dead:
                raise RuntimeError(f"load generator(s) died: {dead}")
            try:
                msg: tuple[Any, ...] = self.reports.get(timeout=min(1.0, remaining))
                return msg
            except queue.Empty:
                continue

    def _stop_workers(self) -> None:
        workers, self.workers = self.workers, []
        for proc, commands in workers:
            try:
                if proc.is_alive():
                    commands.send(("stop",))
            except OSError:
                pass
        for proc, commands in workers:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            commands.close()

    # --- phases --------------------------------------------------------------------------------

    def _run_phase(self, name: str, plans: list[Any], warmup: float, duration: float) -> tuple[list[PhaseResult], dict[str, Any]]:
        """Send each worker its plan; print progress each second; collect results and CPU.

        CPU is measured over the whole phase (warm-up and drain included); the optional
        py-spy profile covers the measured window only.
        """
        meter = self._meter()
        start_ns: int = plans[0].start_ns
        for (_, commands), plan in zip(self.workers, plans, strict=True):
            commands.send((name, plan))
        while time.time_ns() < start_ns - 50_000_000:
            time.sleep(0.01)
        db_start = asyncio.run(db_counters(self.dsn))
        cpu_start = meter.snapshot(every_process=True)
        deadline = time.monotonic() + (start_ns - time.time_ns()) / _NS + warmup + duration + self.cfg.drain + 60
        profile_at = start_ns + int(warmup * _NS)
        profiler: Profiler | None = None
        results: list[PhaseResult] = []
        last: dict[int, dict[str, int]] = {}
        shown: dict[str, int] = {}
        tick = meter.snapshot()
        next_line = time.monotonic() + 1.0
        while len(results) < len(plans):
            try:
                msg = self._next_report(min(deadline, time.monotonic() + 0.25))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                msg = ("tick",)
            if self.cfg.profile and profiler is None and time.time_ns() >= profile_at and self.hub is not None:
                profiler = Profiler(self.hub.pid, duration, self.cfg.out / f"hub-{name}.collapsed.txt")
            if msg[0] == "progress":
                last[msg[1]] = msg[4]
            elif msg[0] == "result":
                results.append(msg[2])
            if time.monotonic() >= next_line and last:
                next_line += 1.0
                now_snap = meter.snapshot()
                shown, tick = self._progress_line(name, start_ns, last, shown, tick, now_snap), now_snap
        cpu = CpuMeter.delta(cpu_start, meter.snapshot(every_process=True))
        db_end = asyncio.run(db_counters(self.dsn))
        self.db_delta = {"write_transactions": db_end[0] - db_start[0], "wal_bytes": db_end[1] - db_start[1]}
        self.table_stats = asyncio.run(hot_table_stats(self.dsn))
        if profiler is not None:
            summary = profiler.finish()
            (self.cfg.out / f"hub-{name}.profile.json").write_text(json.dumps(summary, indent=2) + "\n")
            cpu["hub_profile"] = summary
            log(f"bench: hub profile ({name}) written to {self.cfg.out / f'hub-{name}.profile.json'}")
        return results, cpu

    def _progress_line(
        self, name: str, start_ns: int, last: dict[int, dict[str, int]], shown: dict[str, int], a: CpuSnapshot, b: CpuSnapshot
    ) -> dict[str, int]:
        total = {k: sum(p.get(k, 0) for p in last.values()) for k in ("sent", "acked", "delivered", "errors", "in_flight", "late")}
        d = {k: total[k] - shown.get(k, 0) for k in ("sent", "acked", "delivered")}
        cpu = CpuMeter.delta(a, b)
        t = (time.time_ns() - start_ns) / _NS

        def pct(group: str) -> str:
            g = cpu.get(group)
            return f"{g['pct_of_core']:.0f}%" if isinstance(g, dict) else "-"

        log(
            f"  [{name} t={t:5.1f}s] sent {d['sent']:>6}/s  acked {d['acked']:>6}/s  delivered {d['delivered']:>6}/s"
            f"  in-flight {total['in_flight']:>6}  late {total['late']}  errors {total['errors']}"
            f"  | cpu hub {pct('hub')} pg {pct('postgres')} loadgen {pct('loadgen')} other {pct('other')} machine {cpu['machine_busy_pct']}%"
        )
        return total

    def _open_loop(self) -> dict[str, Any]:
        cfg = self.cfg
        connected = sum(self.shares)
        start_ns = time.time_ns() + _NS // 2
        plans = [
            OpenLoopPlan(start_ns, cfg.rate * share / connected, cfg.warmup, cfg.duration, cfg.drain, cfg.late_ms, cfg.text_bytes)
            for share in self.shares
        ]
        log(f"bench: open loop: {cfg.rate:.0f} msg/s over {connected} clients, {cfg.warmup:g}s warm-up + {cfg.duration:g}s measured")
        results, cpu = self._run_phase("open", plans, cfg.warmup, cfg.duration)
        merged = _merge(results)
        out = {
            "offered_rate": cfg.rate,
            "clients": connected,
            "per_client_rate": round(cfg.rate / connected, 3),
            "warmup_s": cfg.warmup,
            "duration_s": cfg.duration,
            "scheduled": merged.scheduled,
            "sent": merged.sent,
            "late": merged.late,
            "late_threshold_ms": cfg.late_ms,
            "acked": merged.acked,
            "acked_rate": round(merged.acked_in_window / cfg.duration, 1),
            "delivered": merged.delivered,
            "lost": merged.lost,
            "unacked": merged.unacked,
            "errors": merged.errors,
            "disconnects": merged.disconnects,
            "deliver_ms": latency_summary(merged.deliver_us),
            "deliver_cdf_ms": latency_curve(merged.deliver_us),
            "ack_ms": latency_summary(merged.ack_us),
            "send_lag_ms": latency_summary(merged.lag_us),
            "cpu": cpu,
            "cpu_us_per_msg": _per_message(cpu, merged.acked),
            "db": {**_db_figures(self.db_delta, merged.acked), "tables_at_end": self.table_stats},
        }
        return out

    def _closed_loop(self) -> dict[str, Any]:
        cfg = self.cfg
        connected = sum(self.shares)
        wanted = cfg.durable_clients or connected
        start_ns = time.time_ns() + _NS // 2
        plans = []
        for share in self.shares:
            mine = 0 if not cfg.durable_clients else max(2, 2 * round(wanted * share / connected / 2))
            plans.append(
                ClosedLoopPlan(
                    start_ns, cfg.durable_warmup, cfg.durable_duration, cfg.drain, cfg.inflight, mine, cfg.max_client_rate, cfg.text_bytes
                )
            )
        senders = sum(p.clients or s for p, s in zip(plans, self.shares, strict=True))
        log(
            f"bench: closed loop (durable throughput): {senders} clients x up to {cfg.inflight} in flight, "
            f"{cfg.durable_warmup:g}s warm-up + {cfg.durable_duration:g}s measured"
        )
        results, cpu = self._run_phase("closed", plans, cfg.durable_warmup, cfg.durable_duration)
        merged = _merge(results)
        rate = merged.acked_in_window / cfg.durable_duration
        return {
            "clients": senders,
            "inflight_per_client": cfg.inflight,
            "max_client_rate": cfg.max_client_rate,
            "warmup_s": cfg.durable_warmup,
            "duration_s": cfg.durable_duration,
            "sent": merged.sent,
            "acked": merged.acked,
            "acked_in_window": merged.acked_in_window,
            "acked_per_s": round(rate, 1),
            "delivered": merged.delivered,
            "lost": merged.lost,
            "unacked": merged.unacked,
            "errors": merged.errors,
            "disconnects": merged.disconnects,
            "ack_ms": latency_summary(merged.ack_us),
            "deliver_ms": latency_summary(merged.deliver_us),
            "cpu": cpu,
            "cpu_us_per_msg": _per_message(cpu, merged.acked),
            "db": {**_db_figures(self.db_delta, merged.acked), "tables_at_end": self.table_stats},
        }


def _per_message(cpu: dict[str, Any], messages: int) -> dict[str, float]:
    """CPU microseconds per acked message, per process group (whole phase, drain included)."""
    if not messages:
        return {}
    return {g: round(1e6 * cpu[g]["cpu_s"] / messages, 1) for g in ("hub", "postgres", "loadgen") if isinstance(cpu.get(g), dict)}


def _db_figures(delta: dict[str, int], messages: int) -> dict[str, float]:
    """Write transactions (≈ hub commit batches) and WAL volume over a phase."""
    txns = delta["write_transactions"]
    return {
        "write_transactions": txns,
        "msgs_per_transaction": round(messages / txns, 2) if txns else 0.0,
        "wal_bytes_per_msg": round(delta["wal_bytes"] / messages, 1) if messages else 0.0,
    }


def _merge(results: list[PhaseResult]) -> PhaseResult:
    m = PhaseResult(-1, results[0].phase if results else "none")
    for r in results:
        for f in ("scheduled", "sent", "late", "acked", "acked_in_window", "delivered", "lost", "unacked", "disconnects"):
            setattr(m, f, getattr(m, f) + getattr(r, f))
        for code, count in r.errors.items():
            m.errors[code] = m.errors.get(code, 0) + count
        m.deliver_us.extend(r.deliver_us)
        m.ack_us.extend(r.ack_us)
        m.lag_us.extend(r.lag_us)
    return m


# --- reporting ----------------------------------------------------------------------------------


def _bottleneck(cpu: dict[str, Any]) -> str:
    """Name the side that ran out of CPU, from per-group % of one core."""
    hub = cpu.get("hub", {}).get("busiest_process_pct_of_core", 0.0)
    gen = cpu.get("loadgen", {}).get("busiest_process_pct_of_core", 0.0)
    pg = cpu.get("postgres", {}).get("pct_of_core", 0.0)
    machine = cpu.get("machine_busy_pct", 0.0)
    notes = []
    if hub >= 85:
        notes.append(f"hub event loop CPU-bound ({hub:.0f}% of a core)")
    if gen >= 85:
        notes.append(f"a load generator is CPU-bound ({gen:.0f}% of a core)")
    if machine >= 90:
        notes.append(f"machine saturated ({machine:.0f}% of {int(cpu.get('cores', 0))} cores; hub {hub:.0f}%, pg {pg:.0f}%, loadgen {cpu.get('loadgen', {}).get('pct_of_core', 0):.0f}%)")
    return "; ".join(notes) or f"no process CPU-bound (hub {hub:.0f}%, pg {pg:.0f}%, busiest loadgen {gen:.0f}%, machine {machine:.0f}%)"


def summarize(results: dict[str, Any], cfg: Config) -> dict[str, Any]:
    open_ = results["open_loop"]
    durable = results["durable"]
    raw = results["raw_baseline"]
    ratio = durable["acked_per_s"] / raw["rows_per_s"] if raw["rows_per_s"] else 0.0
    p99 = open_["deliver_ms"]["p99"]
    results["ratio"] = round(ratio, 3)
    results["targets"] = {
        "p99_deliver_ms": {"target_max": TARGET_P99_DELIVER_MS, "measured": p99, "met": p99 is not None and p99 <= TARGET_P99_DELIVER_MS, "note": "target is for 2000 msg/s over 2000 clients"},
        "durable_ratio": {"target_min": TARGET_DURABLE_RATIO, "measured": round(ratio, 3), "met": ratio >= TARGET_DURABLE_RATIO},
        "lost": {"target_max": 0, "measured": open_["lost"] + durable["lost"], "met": open_["lost"] + durable["lost"] == 0},
    }
    results["bottleneck"] = {"open_loop": _bottleneck(open_["cpu"]), "durable": _bottleneck(durable["cpu"])}
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    return results


def _us(per_msg: dict[str, float]) -> str:
    return "  ".join(f"{g} {v:.0f} us" for g, v in per_msg.items()) or "n/a"


def _db(db: dict[str, Any], seconds: float) -> str:
    tables = db.get("tables_at_end", {})
    dead = ", ".join(f"{name} {t['n_dead_tup']}" for name, t in tables.items() if name != "messages")
    return (
        f"db: {db['write_transactions']:.0f} write txns (~{db['write_transactions'] / seconds:.0f}/s), "
        f"{db['msgs_per_transaction']:.1f} msgs/txn, {db['wal_bytes_per_msg']:.0f} WAL bytes/msg; dead tuples: {dead or 'n/a'}"
    )


def _others(cpu: dict[str, Any]) -> list[str]:
    """A warning line when processes outside the benchmark took a noticeable share of the CPU."""
    other = cpu.get("other", {}).get("pct_of_core", 0.0)
    if other < 15:
        return []
    top = ", ".join(f"{name.rsplit(' [', 1)[0]} {pct:.0f}%" for name, pct in cpu.get("top_other_processes", {}).items())
    return [f"  NOTE           {other:.0f}% of a core went to processes outside the benchmark / kernel: {top or 'kernel'}"]


def table(r: dict[str, Any]) -> str:
    o, d, raw, t = r["open_loop"], r["durable"], r["raw_baseline"], r["targets"]

    def lat(s: dict[str, Any]) -> str:
        if not s["n"]:
            return "n/a"
        return f"p50 {s['p50']:.2f}  p95 {s['p95']:.2f}  p99 {s['p99']:.2f}  max {s['max']:.2f}  (n={s['n']})"

    def ok(flag: bool) -> str:
        return "MET" if flag else "MISSED"

    def cpu(c: dict[str, Any]) -> str:
        def g(name: str) -> str:
            x = c.get(name, {})
            return f"{x.get('cpu_s', 0):.1f}s ({x.get('pct_of_core', 0):.0f}%)"

        return f"hub {g('hub')}  postgres {g('postgres')}  loadgen {g('loadgen')}  bench {g('bench_main')}  other {g('other')}  | machine busy {c['machine_busy_pct']:.0f}% of {int(c['cores'])} cores, over {c['wall_s']:.1f}s"

    lines = [
        "",
        "bankhub benchmark" + ("  (quick)" if r["config"]["quick"] else ""),
        "=" * 100,
        f"machine        {r['machine']['cpus']} cores; {r['quiet_check']['machine_busy_pct']:.0f}% busy before the run"
        + (f"; EXPERIMENT: hub gc.set_threshold{tuple(r['config']['hub_gc_threshold'])}" if r["config"]["hub_gc_threshold"] else ""),
        *([f"connect        {r['connect']['failed']} of {r['config']['clients']} clients could not connect: {r['connect']['failed_attempts']}"] if r["connect"]["failed"] else []),
        f"open loop        offered {o['offered_rate']:.0f} msg/s over {o['clients']} clients ({o['per_client_rate']:g} msg/s each), {o['duration_s']:g}s measured after {o['warmup_s']:g}s warm-up",
        f"  achieved       {o['acked_rate']:.0f} msg/s acked in window; sent {o['sent']}/{o['scheduled']} scheduled, late (>{o['late_threshold_ms']:g} ms) {o['late']}",
        f"  delivered      {o['delivered']}   lost (acked, never delivered) {o['lost']}  [target 0: {ok(o['lost'] == 0)}]   unacked {o['unacked']}   errors {o['errors'] or 0}",
        f"  send->deliver  ms  {lat(o['deliver_ms'])}   [target p99 <= {TARGET_P99_DELIVER_MS:g} ms: {ok(t['p99_deliver_ms']['met'])}]",
        f"  send->ack      ms  {lat(o['ack_ms'])}",
        f"  send lag       ms  {lat(o['send_lag_ms'])}   (load generator behind schedule)",
        f"  cpu            {cpu(o['cpu'])}",
        f"  cpu per msg    {_us(o['cpu_us_per_msg'])}   | {_db(o['db'], o['duration_s'] + o['warmup_s'])}",
        f"  bottleneck     {r['bottleneck']['open_loop']}",
        *_others(o["cpu"]),
        f"durable          {d['acked_per_s']:.0f} msg/s acked (closed loop, {d['clients']} clients x {d['inflight_per_client']} in flight, {d['duration_s']:g}s)",
        f"  raw baseline   {raw['rows_per_s']:.0f} rows/s (asyncpg executemany, {raw['batch']} rows/txn, {int(raw['rows'])} rows)",
        f"  ratio          {r['ratio']:.3f}   [target >= {TARGET_DURABLE_RATIO:g}: {ok(t['durable_ratio']['met'])}]",
        f"  acked          {d['acked']} of {d['sent']} sent   delivered {d['delivered']}   lost {d['lost']}   unacked {d['unacked']}   errors {d['errors'] or 0}",
        f"  send->ack      ms  {lat(d['ack_ms'])}",
        f"  send->deliver  ms  {lat(d['deliver_ms'])}",
        f"  cpu            {cpu(d['cpu'])}",
        f"  cpu per msg    {_us(d['cpu_us_per_msg'])}   | {_db(d['db'], d['duration_s'] + d['warmup_s'])}",
        f"  bottleneck     {r['bottleneck']['durable']}",
        *_others(d["cpu"]),
        "=" * 100,
    ]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 200 clients, 500 msg/s, 3 s (explicit flags still win)")
    p.add_argument("--clients", type=int, help="connected clients (users), rounded up to even (default 2000)")
    p.add_argument("--rate", type=float, help="open loop: aggregate offered msg/s (default 2000)")
    p.add_argument("--duration", type=float, help="open loop: measured seconds (default 10)")
    p.add_argument("--warmup", type=float, help="open loop: warm-up seconds, excluded from figures (default 2)")
    p.add_argument("--drain", type=float, help="seconds to wait for outstanding acks/deliveries after a phase (default 5)")
    p.add_argument("--late-ms", type=float, default=5.0, help="a send this far behind schedule counts as late (default 5)")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument("--text-bytes", type=int, default=64, help="message text length (default 64)")
    p.add_argument("--durable-duration", type=float, help="closed loop: measured seconds (default 10)")
    p.add_argument("--durable-warmup", type=float, help="closed loop: warm-up seconds (default 2)")
    p.add_argument("--durable-clients", type=int, default=0, help="closed loop: sending clients (default 0 = all)")
    p.add_argument("--inflight", type=int, default=8, help="closed loop: max sends in flight per client (default 8)")
    p.add_argument("--max-client-rate", type=float, default=40.0, help="closed loop: per-client frames/s cap, under the hub's 50/s (default 40)")
    p.add_argument("--raw-rows", type=int, default=0, help="raw baseline rows (default: the open loop's message count, at least 20000)")
    p.add_argument(
        "--history-rows",
        type=int,
        default=50_000,
        help="older messages (in other conversations) the hub finds at start, with statistics; 0: start on an empty table (default 50000)",
    )
    p.add_argument("--raw-batch", type=int, default=256, help="raw baseline rows per transaction (default 256)")
    p.add_argument("--hub-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the hub (e.g. BANKHUB_DB_POOL_SIZE=20)")
    p.add_argument("--profile", action="store_true", help="sample the hub with py-spy during each measured window (pip install py-spy)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S", help="wait up to S seconds for the machine to be idle (<10%% busy) before loading it")
    p.add_argument(
        "--hub-gc-threshold",
        metavar="G0[,G1[,G2]]",
        help="experiment: run the hub with gc.set_threshold(G0, G1, G2) (Python's default is 700,10,10)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory (default bench/out)")
    a = p.parse_args(argv)
    base = _QUICK if a.quick else _FULL
    pick = {k: getattr(a, k) if getattr(a, k) is not None else v for k, v in base.items()}
    clients = int(pick["clients"])
    clients += clients % 2
    if clients < 2 or pick["rate"] <= 0 or pick["duration"] <= 0:
        p.error("need at least 2 clients, a positive rate and a positive duration")
    hub_env = {}
    for item in a.hub_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BANKHUB_"):
            p.error(f"--hub-env wants BANKHUB_NAME=VALUE, got {item!r}")
        hub_env[name] = value
    gc_threshold = None
    if a.hub_gc_threshold:
        try:
            gc_threshold = tuple(int(x) for x in a.hub_gc_threshold.split(","))
        except ValueError:
            p.error("--hub-gc-threshold wants up to three integers, e.g. 50000,20,100")
        if not 1 <= len(gc_threshold) <= 3:
            p.error("--hub-gc-threshold wants up to three integers, e.g. 50000,20,100")
    raw_rows = a.raw_rows or max(20_000, int(pick["rate"] * (pick["warmup"] + pick["duration"])))
    return Config(
        clients=clients,
        rate=float(pick["rate"]),
        duration=float(pick["duration"]),
        warmup=float(pick["warmup"]),
        drain=float(pick["drain"]),
        late_ms=a.late_ms,
        workers=a.workers,
        text_bytes=a.text_bytes,
        durable_duration=float(pick["durable_duration"]),
        durable_warmup=float(pick["durable_warmup"]),
        durable_clients=a.durable_clients,
        inflight=a.inflight,
        max_client_rate=min(a.max_client_rate, 49.0),
        raw_rows=raw_rows,
        raw_batch=a.raw_batch,
        history_rows=max(0, a.history_rows),
        out=a.out,
        hub_env=hub_env,
        quick=a.quick,
        profile=a.profile,
        wait_quiet=a.wait_quiet,
        hub_gc_threshold=gc_threshold,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    stop_on_signals()
    bench = Bench(cfg)
    try:
        results = summarize(bench.run(), cfg)
    except KeyboardInterrupt:
        log("bench: interrupted; everything was stopped")
        return 130
    text = json.dumps(results, indent=2, sort_keys=True)
    (cfg.out / "results.json").write_text(text + "\n")
    human = table(results)
    (cfg.out / "results.txt").write_text(human + "\n")
    print(text)
    log(human)
    log(f"bench: wrote {cfg.out / 'results.json'} and {cfg.out / 'results.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
