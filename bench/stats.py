"""Percentiles and CPU accounting per process group (hub, Postgres, load generators)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

__all__ = ["latency_summary", "latency_curve", "CpuMeter", "CpuSnapshot", "postgres_pids"]


def latency_summary(samples_us: Sequence[int]) -> dict[str, float | int | None]:
    """p50/p95/p99/max in milliseconds (nearest rank) and the sample count."""
    if not samples_us:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(samples_us)
    n = len(s)

    def pick(q: float) -> float:
        rank = max(1, min(n, int(q * n + 0.999999)))  # nearest rank: ceil(q * n)
        return round(s[rank - 1] / 1000, 3)

    return {"n": n, "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(s[-1] / 1000, 3)}


_CURVE_PCTS = [*range(0, 99), 99.0, 99.5, 99.9, 100.0]


def latency_curve(samples_us: Sequence[int]) -> list[tuple[float, float]]:
    """A compact CDF for plots: (percentile, milliseconds) at 0, 1, ..., 98, 99, 99.5, 99.9, 100."""
    if not samples_us:
        return []
    s = sorted(samples_us)
    n = len(s)
    return [(q, round(s[min(n - 1, max(0, int(q / 100 * n + 0.999999) - 1))] / 1000, 3)) for q in _CURVE_PCTS]


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster (first line of ``postmaster.pid``) and all its children."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        master = psutil.Process(pid)
        return [pid, *(c.pid for c in master.children(recursive=True))]
    except (OSError, ValueError, psutil.Error):
        return []


@dataclass
class CpuSnapshot:
    wall: float
    by_group: dict[str, dict[int, float]]  # group -> pid -> user+system CPU seconds
    machine_busy: float  # all cores' non-idle seconds since boot
    everyone: dict[int, tuple[str, float]] | None = None  # every process: pid -> (name, CPU seconds)


@dataclass
class CpuMeter:
    """CPU seconds used between two snapshots, per named group of processes.

    A group is a function returning its current pids (so Postgres backends that start
    later are counted). A process that has exited still counts with the CPU it had at the
    last snapshot that saw it — take snapshots often (the orchestrator does, once a
    second) and only what a process used in its last moments is lost. That matters: the
    hub's asyncpg pool replaces each connection, hence its Postgres backend, every 50 000
    queries.
    """

    groups: dict[str, Callable[[], Iterable[int]]]
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _last: dict[str, dict[int, float]] = field(default_factory=dict)  # group -> pid -> last CPU seen

    def _cpu(self, pid: int) -> float | None:
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            t = proc.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            self._procs.pop(pid, None)
            return None

    def snapshot(self, every_process: bool = False) -> CpuSnapshot:
        by_group: dict[str, dict[int, float]] = {}
        for name, pids in self.groups.items():
            last = self._last.setdefault(name, {})
            for pid in pids():
                cpu = self._cpu(pid)
                if cpu is not None:
                    last[pid] = cpu
            by_group[name] = dict(last)
        total = psutil.cpu_times()
        busy = float(sum(total) - total.idle - getattr(total, "iowait", 0.0) - getattr(total, "steal", 0.0))
        everyone = None
        if every_process:
            everyone = {}
            for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
                t = p.info["cpu_times"]
                if t is not None:
                    label = " ".join((p.info["cmdline"] or [p.info["name"] or "?"])[:3])[:80]
                    everyone[p.pid] = (label, float(t.user + t.system))
        return CpuSnapshot(time.monotonic(), by_group, busy, everyone)

    @staticmethod
    def delta(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, Any]:
        """Per group: CPU seconds, % of one core, and the busiest single process's % of one core."""
        wall = max(b.wall - a.wall, 1e-9)
        out: dict[str, Any] = {"wall_s": round(wall, 3)}
        for name, now in b.by_group.items():
            before = a.by_group.get(name, {})
            per_pid = {pid: max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in now.items()}
            total = sum(per_pid.values())
            out[name] = {
                "cpu_s": round(total, 3),
                "pct_of_core": round(100 * total / wall, 1),
                "busiest_process_pct_of_core": round(100 * max(per_pid.values(), default=0.0) / wall, 1),
            }
        cores = os.cpu_count() or 1
        machine = b.machine_busy - a.machine_busy
        ours = sum(g["cpu_s"] for g in out.values() if isinstance(g, dict))
        # kernel work not charged to a process (loopback softirqs), and anything else running
        out["other"] = {"cpu_s": round(max(0.0, machine - ours), 3), "pct_of_core": round(100 * max(0.0, machine - ours) / wall, 1)}
        out["machine_busy_pct"] = round(100 * machine / (wall * cores), 1)
        if a.everyone is not None and b.everyone is not None:
            mine = {pid for g in b.by_group.values() for pid in g} | {pid for g in a.by_group.values() for pid in g}
            others = [
                (cpu - a.everyone.get(pid, ("", 0.0))[1], label)
                for pid, (label, cpu) in b.everyone.items()
                if pid not in mine
            ]
            others.sort(reverse=True)
            out["top_other_processes"] = {f"{label} [{i}]": round(100 * cpu / wall, 1) for i, (cpu, label) in enumerate(others[:4]) if cpu > 0.05 * wall}
        out["cores"] = float(cores)
        return out
