"""``REPORT.md`` and its plots, from the suite's scenario files (``<out>/scenarios/*.json``).

    .venv/bin/python -m bench.report [--out bench/out]   # rebuild the report without running anything

The report takes whatever scenario files are there (each says when it ran), so
re-running one scenario updates its section and keeps the others. Plots are PNGs made
with matplotlib's Agg backend, next to the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["write_report"]

HUB = "#1f5fa8"
BARE = "#9a9a9a"
ORDER = ("fanout", "latency", "memory", "durable", "storm", "publish", "broadcast", "alerts")


def _load(out: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in ORDER:
        path = out / "scenarios" / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def _commit() -> str:
    """The hub's commit, and the ``server/`` files with uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "server"], cwd=root, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    files = [line[3:] for line in dirty.splitlines() if line.strip()]
    return f"{head}` plus uncommitted changes in `{', '.join(files)}" if files else head


def _label_bars(ax: Any, bars: Any, fmt: str = "{:,.0f}") -> None:
    for b in bars:
        h = b.get_height()
        ax.annotate(fmt.format(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")


# --- plots ---------------------------------------------------------------------------------------------


def plot_bars(r: dict[str, dict[str, Any]], path: Path) -> bool:
    from .accounts import current_broadcast

    panels = [n for n in ORDER if n in r and (n != "broadcast" or current_broadcast(r[n]))]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        s = r[name]
        if name == "fanout":
            sizes = list(s["sizes"])
            x = range(len(sizes))
            hb = ax.bar([i - 0.2 for i in x], [s["sizes"][n]["hub"]["deliveries_per_s"] for n in sizes], 0.4, color=HUB, label="hub")
            bb = ax.bar([i + 0.2 for i in x], [s["sizes"][n]["bare"]["deliveries_per_s"] for n in sizes], 0.4, color=BARE, label="bare broadcast()")
            _label_bars(ax, hb)
            _label_bars(ax, bb)
            ax.set_xticks(list(x), [f"N={n}\nratio {s['sizes'][n]['ratio']:.2f}" for n in sizes])
            ax.set_title("fan-out: deliveries/s (higher is better)", fontsize=9)
        elif name == "latency":
            h, b = s["summary"], s["summary"]
            hb = ax.bar([-0.2, 0.8], [h["hub_p50_ms"] or 0, h["hub_p99_ms"] or 0], 0.4, color=HUB, label="hub")
            bb = ax.bar([0.2, 1.2], [b["bare_p50_ms"] or 0, b["bare_p99_ms"] or 0], 0.4, color=BARE, label="bare relay")
            _label_bars(ax, hb, "{:.1f}")
            _label_bars(ax, bb, "{:.1f}")
            ax.axhline(h["target_p99_ms"], color="#c0392b", lw=0.8, ls="--", label="p99 target")
            ax.set_xticks([0, 1], ["p50", "p99"])
            ax.set_title("1:1 send->deliver ms (lower is better)", fontsize=9)
        elif name == "memory":
            hb = ax.bar([0], [s["hub"]["kib_per_connection"]], 0.5, color=HUB, label="hub")
            bb = ax.bar([1], [s["bare"]["kib_per_connection"]], 0.5, color=BARE, label="bare websockets")
            _label_bars(ax, hb, "{:.1f}")
            _label_bars(ax, bb, "{:.1f}")
            ax.axhline(1.5 * s["bare"]["kib_per_connection"], color="#c0392b", lw=0.8, ls="--", label="1.5 x bare")
            ax.set_xticks([0, 1], ["hub", "bare"])
            ax.set_title(f"KiB RSS per idle connection (ratio {s['ratio']})", fontsize=9)
        elif name == "durable":
            hb = ax.bar([0], [s["durable"]["acked_per_s"]], 0.5, color=HUB, label="hub durable msg/s")
            bb = ax.bar([1], [s["raw_baseline"]["rows_per_s"]], 0.5, color=BARE, label="raw insert rows/s")
            _label_bars(ax, hb)
            _label_bars(ax, bb)
            ax.axhline(0.3 * s["raw_baseline"]["rows_per_s"], color="#c0392b", lw=0.8, ls="--", label="0.3 x raw")
            ax.set_xticks([0, 1], ["hub", "raw asyncpg"])
            ax.set_title(f"durable msg/s (ratio {s['ratio']})", fontsize=9)
        elif name == "storm":
            sm = s["synced_ms"]
            vals = [(sm.get("p50") or 0) / 1000, (sm.get("p99") or 0) / 1000, (s["full_resync_s"] or 0)]
            hb = ax.bar([0, 1, 2], vals, 0.5, color=HUB, label="hub")
            _label_bars(ax, hb, "{:.2f}")
            ax.axhline(5.0, color="#c0392b", lw=0.8, ls="--", label="target (all)")
            ax.set_xticks([0, 1, 2], ["p50", "p99", "all"])
            ax.set_title(f"storm: s from drop to synced ({s['clients']} clients)", fontsize=9)
        elif name == "publish":
            small, large = s["sizes"][str(s["small"])], s["sizes"][str(s["large"])]
            hb = ax.bar([-0.2, 0.8], [small["publish_ms"]["p50"] or 0, small["publish_ms"]["p99"] or 0], 0.4, color=BARE, label=f"{s['small']:,} followers")
            bb = ax.bar([0.2, 1.2], [large["publish_ms"]["p50"] or 0, large["publish_ms"]["p99"] or 0], 0.4, color=HUB, label=f"{s['large']:,} followers")
            _label_bars(ax, hb, "{:.1f}")
            _label_bars(ax, bb, "{:.1f}")
            ax.set_xticks([0, 1], ["p50", "p99"])
            ax.set_title(f"publish a notice, ms (mean ratio {s['ratio_mean']})", fontsize=9)
        elif name == "broadcast":
            hb = ax.bar([0, 1], [s["hub"]["deliveries_per_s"], s["hub_one_by_one"]["deliveries_per_s"]], 0.5, color=HUB, label="hub")
            bb = ax.bar([2], [s["bare"]["deliveries_per_s"]], 0.5, color=BARE, label="bare broadcast()")
            _label_bars(ax, hb)
            _label_bars(ax, bb)
            ax.axhline(1.0 * s["bare"]["deliveries_per_s"], color="#c0392b", lw=0.8, ls="--", label="1.0 x bare")
            ax.set_xticks([0, 1, 2], [f"hub, {s['publish_inflight']} in flight\n{s['ratio']}", f"hub, 1 by 1\n{s['ratio_one_by_one']}", "bare"])
            ax.set_title(f"notice deliveries/s to {s['followers']:,} online followers", fontsize=9)
        elif name == "alerts":
            d = s["latency"]["api_to_device_ms"]
            hb = ax.bar([0, 1], [d["p50"] or 0, d["p99"] or 0], 0.5, color=HUB, label=f"{s['latency']['rate']:g} alerts/s")
            _label_bars(ax, hb, "{:.1f}")
            ax.axhline(1000.0, color="#c0392b", lw=0.8, ls="--", label="target p99")
            ax.set_xticks([0, 1], ["p50", "p99"])
            ax.set_title(f"alerts: API -> device ms ({s['single']['alerts_per_s']:,.0f}/s accepted)", fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cdf(ax: Any, curve: list[list[float]], label: str, color: str, ls: str = "-") -> None:
    if curve:
        ax.plot([c[1] for c in curve], [c[0] for c in curve], label=label, color=color, ls=ls, lw=1.4)


def plot_fanout_cdf(s: dict[str, Any], path: Path) -> bool:
    sizes = list(s["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 3.5), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        x = s["sizes"][n]
        _cdf(ax, x["hub"]["median_round"]["deliver_cdf_ms"], f"hub ({x['hub']['deliveries_per_s']:,.0f}/s)", HUB)
        _cdf(ax, x["bare"]["median_round"]["deliver_cdf_ms"], f"bare broadcast() ({x['bare']['deliveries_per_s']:,.0f}/s)", BARE)
        ax.set_title(f"fan-out N={n}, {s['messages_per_round']} messages: send -> each delivery", fontsize=9)
        ax.set_xlabel("ms after the message was sent", fontsize=8)
        ax.set_ylabel("% of deliveries", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_latency_cdf(s: dict[str, Any], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _cdf(ax, s["hub"].get("deliver_cdf_ms", []), "hub", HUB)
    _cdf(ax, s["bare"].get("deliver_cdf_ms", []), "bare Starlette relay", BARE)
    ax.axvline(s["summary"]["target_p99_ms"], color="#c0392b", lw=0.8, ls="--", label="p99 target")
    ax.set_xscale("log")
    ax.set_xlabel("send -> deliver, ms (log)", fontsize=8)
    ax.set_ylabel("% of messages", fontsize=8)
    ax.set_title(f"1:1 latency at {s['hub']['offered_rate']:.0f} msg/s over {s['hub']['clients']} clients", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_storm_cdf(s: dict[str, Any], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _cdf(ax, s.get("hello_cdf_ms", []), "drop -> handshake done (hello)", HUB, "--")
    _cdf(ax, s.get("synced_cdf_ms", []), "drop -> synced", HUB)
    ax.axvline(5000, color="#c0392b", lw=0.8, ls="--", label="5 s target")
    ax.set_xlabel("ms after the drop", fontsize=8)
    ax.set_ylabel("% of clients", fontsize=8)
    ax.set_title(f"reconnect storm: {s['clients']} clients", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- text ------------------------------------------------------------------------------------------------


def _pct(cpu: dict[str, Any], group: str) -> str:
    x = cpu.get(group)
    return f"{x['pct_of_core']:.0f}%" if isinstance(x, dict) else "-"


def _cpu_row(label: str, cpu: dict[str, Any], groups: tuple[str, ...]) -> str:
    cells = " | ".join(_pct(cpu, g) for g in groups)
    return f"| {label} | {cells} | {cpu.get('other', {}).get('pct_of_core', 0):.0f}% | {cpu.get('machine_busy_pct', 0):.0f}% |"


def _cpu_table(rows: list[tuple[str, dict[str, Any]]], groups: tuple[str, ...]) -> list[str]:
    head = "| run | " + " | ".join(f"{g} (% of a core)" for g in groups) + " | other | machine (% of all cores) |"
    sep = "|---" * (len(groups) + 3) + "|"
    return [head, sep, *(_cpu_row(label, cpu, groups) for label, cpu in rows)]


def _interference(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A note per run where processes outside the benchmark took >= 10% of a core."""
    notes = []
    for label, cpu in runs:
        top = cpu.get("top_other_processes") or {}
        total = sum(top.values())
        if total >= 10:
            who = ", ".join(f"{name.rsplit(' [', 1)[0].split('/')[-1]} {pct:.0f}%" for name, pct in top.items())
            notes.append(f"- NOTE ({label}): processes outside the benchmark took {total:.0f}% of a core ({who}); compare runs, not single numbers.")
    return notes


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _when(s: dict[str, Any]) -> str:
    return f"_ran {s.get('finished_at', '?')}, {s.get('seconds', '?')} s; machine {s.get('quiet_check', {}).get('machine_busy_pct', '?')}% busy just before_"


def write_report(out: Path) -> Path:
    from .suite import TARGETS, ratio_table, ratios

    r = _load(out)
    lines = [
        "# bankhub benchmark suite",
        "",
        f"Hub at `{_commit()}` when the report was written (each scenario ran with the tree of its own time); {os.cpu_count()} cores; Python {sys.version.split()[0]}. "
        "Every figure is from this machine, with the hub, Postgres, the load generators and the "
        "baselines sharing its cores; see `bench/README.md` for how each is measured.",
        "",
    ]
    if not r:
        lines.append("No scenario results yet: run `python -m bench`.")
        path = out / "REPORT.md"
        path.write_text("\n".join(lines) + "\n")
        return path
    rows = ratios(r)
    lines += ["## Headline", "", "| scenario | figure | hub | baseline | baseline is | ratio | target | result |", "|---|---|---:|---:|---|---:|---|---|"]
    for row in rows:
        met = "–" if row["met"] is None else ("**met**" if row["met"] else "**missed**")
        lines.append(
            f"| {row['scenario']} | {row['figure']} | {_fmt(row['hub'])} | {_fmt(row['baseline'])} | {row['baseline_name']} | {_fmt(row['ratio'])} | {row['target']} | {met} |"
        )
    lines += ["", "```", ratio_table(rows), "```", ""]
    if plot_bars(r, out / "bars.png"):
        lines += ["![hub vs baseline, per scenario](bars.png)", ""]

    if "fanout" in r:
        s = r["fanout"]
        lines += [
            "## Fan-out to one large group",
            "",
            _when(s),
            "",
            f"One sender sends {s['messages_per_round']} messages at once to a group of N members, all online "
            "(the group is seeded by SQL: the API caps groups at 500). Deliveries/s = deliveries counted at the "
            "receivers ÷ time from the first send to the last delivery; the median of "
            f"{s['rounds']} rounds. The bare server is `websockets` with `broadcast()`, sending the hub's exact "
            f"`message` frame ({next(iter(s['sizes'].values())).get('payload_bytes', '?')} bytes) to the same receivers.",
            "",
            "| N | hub deliveries/s | bare deliveries/s | ratio | server CPU µs/delivery hub / bare | hub missing | hub p50 / p99 delivery ms | bare p50 / p99 ms | first hub delivery ms |",
            "|---:|---:|---:|---:|---|---:|---|---|---:|",
        ]
        cpu_rows = []
        for n, x in s["sizes"].items():
            h, b = x["hub"], x["bare"]
            hm, bm = h["median_round"], b["median_round"]
            lines.append(
                f"| {n} | {h['deliveries_per_s']:,.0f} | {b['deliveries_per_s']:,.0f} | {x['ratio']:.3f} | "
                f"{h.get('server_cpu_us_per_delivery')} / {b.get('server_cpu_us_per_delivery')} | {h['missing_total']} | "
                f"{hm['deliver_ms']['p50']} / {hm['deliver_ms']['p99']} | {bm['deliver_ms']['p50']} / {bm['deliver_ms']['p99']} | {hm['first_delivery_ms']} |"
            )
            cpu_rows += [(f"hub, N={n}", hm["cpu"]), (f"bare, N={n}", bm["cpu"])]
        lines += ["", *_cpu_table(cpu_rows, ("hub", "bare", "postgres", "receivers")), ""]
        for n, x in s["sizes"].items():
            lines.append(f"- N={n}: saturated in the hub run: {x['hub']['median_round']['saturated']}; in the bare run: {x['bare']['median_round']['saturated']}.")
        lines += _interference(cpu_rows)
        if plot_fanout_cdf(s, out / "fanout_cdf.png"):
            lines += ["", "![fan-out delivery latency](fanout_cdf.png)", ""]

    if "latency" in r:
        s = r["latency"]
        h, b, sm = s["hub"], s["bare"], s["summary"]
        lines += [
            "## 1:1 latency at a fixed rate",
            "",
            _when(s),
            "",
            f"bench.run's open loop: {h['offered_rate']:.0f} msg/s over {h['clients']} clients (pairs in direct conversations), "
            f"{h['duration_s']:g} s measured after {h['warmup_s']:g} s warm-up; the same load generators against a bare "
            "Starlette/uvicorn relay (in-memory dict, no database, same transport settings).",
            "",
            "| server | p50 ms | p95 ms | p99 ms | max ms | delivered | lost |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| hub | {h['deliver_ms']['p50']} | {h['deliver_ms']['p95']} | {h['deliver_ms']['p99']} | {h['deliver_ms']['max']} | {h['delivered']} | {h['lost']} |",
            f"| bare relay | {b['deliver_ms']['p50']} | {b['deliver_ms']['p95']} | {b['deliver_ms']['p99']} | {b['deliver_ms']['max']} | {b['delivered']} | {b['lost']} |",
            "",
            f"Target: hub p99 ≤ {sm['target_p99_ms']:g} ms — **{'met' if sm['met'] else 'missed'}**; hub/bare: p50 ×{sm['ratio_p50']}, p99 ×{sm['ratio_p99']}.",
            "",
            *_cpu_table([("hub", h["cpu"]), ("bare relay", b["cpu"])], ("hub", "bare", "postgres", "loadgen")),
            "",
            f"- hub run: {h['bottleneck']}; bare run: {b['bottleneck']}.",
            *_interference([("hub run", h["cpu"]), ("bare run", b["cpu"])]),
        ]
        if plot_latency_cdf(s, out / "latency_cdf.png"):
            lines += ["", "![1:1 latency CDF](latency_cdf.png)", ""]

    if "memory" in r:
        s = r["memory"]
        h, b = s["hub"], s["bare"]
        lines += [
            "## Memory per idle connection",
            "",
            _when(s),
            "",
            "RSS of the server process (psutil) once settled after connecting N authenticated, idle clients, minus "
            "its settled RSS before (after one warm-up connection), ÷ N.",
            "",
            "| server | connections | RSS before MiB | RSS after MiB | KiB per connection | USS KiB per connection |",
            "|---|---:|---:|---:|---:|---:|",
            f"| hub | {h['connected']} | {h['rss_before']['rss'] / 2**20:.1f} | {h['rss_after']['rss'] / 2**20:.1f} | {h['kib_per_connection']:.1f} | {h['uss_bytes_per_connection'] / 1024:.1f} |",
            f"| bare websockets | {b['connected']} | {b['rss_before']['rss'] / 2**20:.1f} | {b['rss_after']['rss'] / 2**20:.1f} | {b['kib_per_connection']:.1f} | {b['uss_bytes_per_connection'] / 1024:.1f} |",
            "",
            f"Ratio {s['ratio']} (target ≤ {TARGETS['memory_ratio_max']}: **{'met' if s['ratio'] and s['ratio'] <= TARGETS['memory_ratio_max'] else 'missed'}**).",
            "",
        ]

    if "durable" in r:
        s = r["durable"]
        d, raw = s["durable"], s["raw_baseline"]
        lines += [
            "## Durable throughput",
            "",
            _when(s),
            "",
            f"bench.run's closed loop ({d['clients']} clients × {d['inflight_per_client']} sends in flight, {d['duration_s']:g} s): "
            f"**{d['acked_per_s']:,.0f} msg/s** acknowledged after commit, vs **{raw['rows_per_s']:,.0f} rows/s** of raw "
            f"`executemany` ({raw['batch']} rows per transaction) into a `messages`-shaped table: ratio **{s['ratio']}** "
            f"(target ≥ {TARGETS['durable_ratio_min']}). Lost {d['lost']}; "
            f"{d['db']['msgs_per_transaction']} messages per commit.",
            "",
            *_cpu_table([("closed loop", d["cpu"])], ("hub", "postgres", "loadgen")),
            "",
            f"- {d['bottleneck']}.",
            *_interference([("closed loop", d["cpu"])]),
            "",
        ]

    if "storm" in r:
        s = r["storm"]
        q = s["queries"]
        lines += [
            "## Reconnect storm",
            "",
            _when(s),
            "",
            f"{s['clients']} connected clients drop their sockets at the same instant (TCP RST), reconnect at once "
            f"(handshakes per worker in flight: {s['concurrency'] or 'all'}) and send `sync` with their conversation's "
            f"last seq minus {s['behind']}. Counter: {s['query_counter']}.",
            "",
            f"- resynced **{s['synced']}/{s['clients']}**, failed {s['failed']}, handshake attempts {s['handshake_attempts']} "
            f"(refused: {s['failed_attempts'] or 'none'}); `sync` answered with errors {s['sync_errors'] or 'none'}, syncs retried {s.get('sync_retries', 0)}",
            f"- every client resynced after **{s['full_resync_s']} s** (target ≤ {TARGETS['storm_resync_s_max']:g} s); "
            f"drop→synced p50 {s['synced_ms']['p50']} ms, p99 {s['synced_ms']['p99']} ms; drop→hello p50 {s['hello_ms']['p50']} ms, p99 {s['hello_ms']['p99']} ms",
            f"- Postgres: **{q['app_queries_per_reconnect']} application queries per reconnect** (target ≤ 1), "
            f"{q['statements_per_reconnect']} statements in all; {q['transactions_per_reconnect']} transactions per reconnect (pg_stat_database)",
            "",
            "| statement kind | calls | per reconnect |",
            "|---|---:|---:|",
            *(f"| {k} | {v} | {q['by_kind_per_reconnect'].get(k, '–')} |" for k, v in q["by_kind"].items()),
            "",
            *_cpu_table([("storm", s["cpu"])], ("hub", "postgres", "loadgen")),
            "",
            f"- saturated: {s['saturated']}.",
            *_interference([("storm", s["cpu"])]),
        ]
        if plot_storm_cdf(s, out / "storm_cdf.png"):
            lines += ["", "![reconnect storm](storm_cdf.png)", ""]

    from .accounts import report_sections

    lines += report_sections(r, _cpu_table, _interference, _when)
    from .alerts import report_sections as alert_sections

    lines += alert_sections(r, _cpu_table, _interference, _when)
    missing = [n for n in ORDER if n not in r]
    if missing:
        lines += ["", f"_Not run yet: {', '.join(missing)}._"]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    a = p.parse_args(argv)
    print(write_report(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
