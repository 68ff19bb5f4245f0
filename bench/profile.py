"""Optional sampling profile of the hub process with py-spy (``--profile``).

py-spy is not a dependency: ``.venv/bin/pip install py-spy``. It samples the hub
without pausing it (``--nonblocking``) and writes collapsed stacks ("raw" format: one
line per distinct stack, frames separated by ``;``, then a sample count). This module
summarises them: where the hub spends its samples by leaf function (self time) and by
any function on the stack (inclusive time). py-spy leaves out samples where the process
was idle, so ``busy_pct`` (samples taken / samples possible) is how busy the hub was.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "summarize_collapsed", "py_spy_path"]

_COUNT = re.compile(r"^(.*) (\d+)$")

# Where a hub sample belongs: the first rule whose marker is on the stack wins.
CATEGORIES: list[tuple[str, str]] = [
    # official-account notices: the node's fan-out runs inside the publishing request (in-process broker)
    ("notice fan-out: NoticeFanout._deliver (encode once, queue per follower)", "NoticeFanout._deliver"),
    ("notice publish request: publish_notice (auth, SQL, audit)", "publish_notice"),
    ("commit: append transaction (SQL + row building)", "MessageStore.lock_txn"),
    ("commit: append transaction (SQL + row building)", "MessageStore.append_txn"),
    ("fan-out after commit: outbox publish -> registry -> connection queues", "Outbox.publish"),
    ("group-commit batcher bookkeeping", "Batcher._run"),
    ("WebSocket writes: Connection.writer -> send_text", "Connection.writer"),
    ("WebSocket writes: framed bytes -> transport.write", "HubWebSocketProtocol.write_wire"),
    ("WebSocket writes: framed bytes -> transport.write", "Connection._write_out"),
    ("WebSocket reads: _read_loop (receive, ServerSession.receive)", "_read_loop"),
    # "_handle (" and not "_handle": Starlette's sender frame lives in _exception_handler.py
    ("request handling: _handle -> send -> submit", "_handle ("),
    # py-spy sometimes loses the outer frames of a task's stack: a write is a write
    ("WebSocket writes: Connection.writer -> send_text", "WebSocketsSansIOProtocol.send"),
    ("WebSocket protocol callbacks (data_received, frame parsing)", "data_received"),
    ("connection set-up / teardown (websocket_endpoint)", "websocket_endpoint"),
]
_LOOP_ONLY = "event loop with no Python frame above it (uvloop C code, syscalls; py-spy also counts some epoll waits here)"


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """One ``py-spy record`` run against ``pid`` for ``seconds``."""

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 100) -> None:
        exe = py_spy_path()
        if exe is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.output = output
        self.expected = rate * max(1, round(seconds))
        argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate)]
        argv += ["--format", "raw", "--nonblocking", "--output", str(output)]
        self._log = output.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def finish(self, timeout: float = 30.0) -> dict[str, object]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        finally:
            self._log.close()
        if not self.output.exists():
            return {"error": f"py-spy wrote nothing; see {self.output.with_suffix('.log')}"}
        return summarize_collapsed(self.output.read_text(), self.expected)


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: merge a function's lines."""
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    return f"{func} ({Path(path).name})"


def summarize_collapsed(text: str, expected: int | None = None, top: int = 25) -> dict[str, object]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    category: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        m = _COUNT.match(line.strip())
        if not m:
            continue
        stack, count = m.group(1), int(m.group(2))
        frames = [_frame_name(f) for f in stack.split(";") if f]
        # py-spy puts "process ..." / "thread ..." pseudo-frames first; they are not code
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
        for label, marker in CATEGORIES:
            if any(marker in f for f in frames):
                category[label] += count
                break
        else:
            category[_LOOP_ONLY if frames[-1].startswith("Runner.run") else "other"] += count

    def share(c: Counter[str], limit: int = top) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in c.most_common(limit)] if total else []

    # the event loop's entry frames are on (nearly) every stack: they say nothing
    for name, n in list(inclusive.items()):
        if n >= 0.85 * total:
            del inclusive[name]
    busy = round(100 * total / expected, 1) if expected else None
    return {
        "samples": total,
        "busy_pct": busy,
        "categories_pct": share(category, len(category)),
        "self_pct": share(self_time),
        "inclusive_pct": share(inclusive),
    }
