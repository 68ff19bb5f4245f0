"""``bankhub serve --workers N``: N worker nodes on one port, as a real subprocess.

The supervisor runs as the operator would start it (``bankhub serve --workers 2``) against the
test Postgres and a Valkey of the test's own; clients find out which worker serves them from
``hello.node`` (``<BANKHUB_NODE_NAME>-w<i>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from bankhub.cli.workers import NO_BROKER

from ..support.nodeproc import BANKHUB, NodeProcess, NodeProcesses
from ..support.traffic import RawWitness, create_group, eventually, login_all
from ..support.workers import raw_on_worker, worker_process, worker_processes

pytestmark = pytest.mark.timeout(90)


async def test_two_workers_share_one_port_and_deliver_across_workers(dsn: str, procs: NodeProcesses) -> None:
    """Both workers answer on the one port, as nodes ``hub-w1`` and ``hub-w2``; a message sent
    on a connection to one worker reaches a member connected to the other; SIGTERM drains both
    (their sockets close with 1012) and the supervisor exits 0 with its workers gone."""
    node = procs.spawn("hub", env={"DATABASE_URL": dsn}, args=["--workers", "2"])
    await node.wait_ready()
    children = worker_processes(node)
    assert len(children) == 2, [c.cmdline() for c in children]
    # every worker's figures go to one private directory of this supervisor, removed when it exits
    metrics_dirs = {c.environ()["PROMETHEUS_MULTIPROC_DIR"] for c in children}
    assert len(metrics_dirs) == 1
    metrics_dir = Path(metrics_dirs.pop())
    assert metrics_dir.name.startswith(f"bankhub-metrics-{node_supervisor_pid(node)}-")
    assert stat.S_IMODE(metrics_dir.stat().st_mode) == 0o700
    tokens = await login_all(node.http_url, ("rm.wang", "c.li", "c.zhang"))
    conv = await create_group(node.http_url, tokens["rm.wang"], "workers", ("c.li", "c.zhang"))
    li = await raw_on_worker(node, "c.li", tokens["c.li"], "hub-w1")
    zhang = await raw_on_worker(node, "c.zhang", tokens["c.zhang"], "hub-w2")
    try:
        for sender, receiver, text in ((li, zhang, "from w1"), (zhang, li, "from w2")):
            await sender.send_text(conv, text, f"{sender.node}-1")
            await eventually(lambda: f"{sender.node}-1" in sender.answers, "the sender's answer", 10)
            assert sender.answers[f"{sender.node}-1"][1]["type"] == "sent", sender.answers
            await eventually(lambda: bool(receiver.messages(conv)) and receiver.messages(conv)[-1][1]["body"]["text"] == text,
                             f"{receiver.name} to get the message sent on the other worker", 10)

        node.terminate()
        assert await node.wait_exit(40) == 0, node.log_tail()
        await eventually(lambda: not li.open and not zhang.open, "both sockets to close", 5)
        assert (li.close_code, zhang.close_code) == (1012, 1012)
        assert not any(c.is_running() for c in children), "a worker outlived the supervisor"
        log = node.log_path.read_text()
        assert "SIGTERM: stopping 2 worker(s)" in log and "all workers stopped" in log, node.log_tail()
        assert not metrics_dir.exists(), "the metrics directory outlived the supervisor"
    finally:
        await li.close()
        await zhang.close()


async def test_a_worker_killed_is_restarted_on_the_same_port(dsn: str, procs: NodeProcesses) -> None:
    """``kill -9`` of worker 1: the supervisor logs it and starts a new worker 1 (another pid,
    the same node name), which serves on the same port again; the host's ``/metrics`` (any
    worker answers it) stops counting the dead worker's connections."""
    node = procs.spawn("hub", env={"DATABASE_URL": dsn}, args=["--workers", "2"])
    await node.wait_ready()
    tokens = await login_all(node.http_url, ("c.li", "c.zhang"))
    first = await raw_on_worker(node, "c.li", tokens["c.li"], "hub-w1")
    other = await raw_on_worker(node, "c.zhang", tokens["c.zhang"], "hub-w2")
    try:
        await eventually_async(lambda: open_connections(node), 2, "/metrics to count both workers' connections", 10)
        victim = worker_process(node, 1)
        os.kill(victim.pid, signal.SIGKILL)
        await eventually(lambda: not first.open, "the killed worker's socket to drop", 5)
        await eventually(lambda: "restarting it in 0.5 s" in node.log_path.read_text(), "the restart line", 5)
        again = await raw_on_worker(node, "c.li", tokens["c.li"], "hub-w1")
        await again.close()
        assert victim.pid not in [c.pid for c in worker_processes(node)]
        assert len(worker_processes(node)) == 2
        # the dead worker's gauge is dropped (bankhub.metrics.worker_exited), not summed on
        await eventually_async(lambda: open_connections(node), 1, "/metrics to drop the dead worker's connections", 10)
        assert other.open
        node.terminate()
        assert await node.wait_exit(40) == 0, node.log_tail()
    finally:
        await first.close()
        await other.close()


def node_supervisor_pid(node: NodeProcess) -> int:
    """The supervisor's pid (the node process is a launcher that execs it: the same pid)."""
    return node.pid


async def eventually_async(read: Callable[[], Awaitable[float]], want: float, what: str, timeout: float) -> None:
    """Until ``await read()`` is ``want`` (bounded by ``timeout``); the loop is never blocked."""
    deadline = time.monotonic() + timeout
    last: float | None = None
    while time.monotonic() < deadline:
        last = await read()
        if last == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last} != {want}")


async def open_connections(node: NodeProcess) -> float:
    """``bankhub_ws_connections`` of the host (scraped from loopback: no token needed)."""
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{node.http_url}/metrics", headers={"connection": "close"})
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        if line.startswith("bankhub_ws_connections "):
            return float(line.split()[1])
    raise AssertionError(f"no bankhub_ws_connections in /metrics:\n{r.text[:2000]}")


async def test_workers_do_not_outlive_a_supervisor_killed_with_9(dsn: str, procs: NodeProcesses) -> None:
    """``kill -9`` of the supervisor alone: the kernel sends each worker SIGTERM
    (``PR_SET_PDEATHSIG``); they drain and exit instead of serving on without a supervisor."""
    node = procs.spawn("hub", env={"DATABASE_URL": dsn}, args=["--workers", "2"])
    await node.wait_ready()
    children = worker_processes(node)
    assert len(children) == 2
    os.kill(node.pid, signal.SIGKILL)

    def gone(p: psutil.Process) -> bool:
        try:
            return bool(p.status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    await eventually(lambda: all(gone(p) for p in children), "the workers to exit", 30)


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")}
    full.update(env)
    return subprocess.run([str(BANKHUB), "serve", *args], env=full, capture_output=True, text=True, timeout=60)


def test_more_than_one_worker_without_a_broker_is_refused_in_one_line(dsn: str, key_file: str) -> None:
    proc = _serve({"BANKHUB_DATABASE_URL": dsn, "BANKHUB_KEY_FILE": key_file}, "--workers", "2")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"bankhub serve: --workers 2 {NO_BROKER}"]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "257"])
def test_workers_must_be_a_positive_whole_number(bad: str) -> None:
    proc = subprocess.run([str(BANKHUB), "serve", "--workers", bad], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "argument --workers" in proc.stderr and "usage:" in proc.stderr


async def test_one_worker_is_todays_single_process_node(dsn: str, procs: NodeProcesses) -> None:
    """The default (and ``--workers 1``) serves in the process started: no supervisor, no
    child, the node name as configured."""
    node = procs.spawn("solo", env={"DATABASE_URL": dsn}, args=["--workers", "1"])
    await node.wait_ready()
    assert worker_processes(node) == []
    tokens = await login_all(node.http_url, ("c.li",))
    w = await RawWitness.connect("c.li", node.ws_url, tokens["c.li"])
    assert w.node == "solo"
    await w.close()
    node.terminate()
    assert await node.wait_exit(40) in (0, -signal.SIGTERM)


def test_dev_banner_names_the_workers() -> None:
    from bankhub.cli.serve import _banner

    assert "(embedded Postgres, in-process broker)" in _banner(8000, False)
    assert "(embedded Postgres, 3 workers, embedded Valkey)" in _banner(8000, False, workers=3)



@pytest.mark.timeout(180)
async def test_dev_with_workers_runs_them_on_an_embedded_valkey_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """``bankhub dev --workers 2``: the banner says so, both workers (``dev-w1``, ``dev-w2``)
    answer on the dev port on the embedded Valkey, which wants a password (given to the workers
    in ``BANKHUB_REDIS_URL``, never on a command line or in the log); a Ctrl-C (SIGINT to the
    terminal's process group) stops the workers, Valkey and Postgres, and ``dev`` exits 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "var"
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BANKHUB), "dev", "--workers", "2", "--port", str(port), "--data-dir", str(data)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # the "terminal's" group
            env={k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")},
        )
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 120  # initdb on first run
        while seen != {"dev-w1", "dev-w2"}:
            assert time.monotonic() < deadline and proc.poll() is None, f"workers seen: {seen}"
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"connection": "close"}, timeout=2)
                if r.status_code == 200:
                    assert r.json()["checks"]["broker"] is True
                    seen.add(r.json()["node"])
            await asyncio.sleep(0.1)
        everything = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey" in p.name() for p in everything), [p.name() for p in everything]
        workers = [p for p in everything if "--worker-index" in p.cmdline()]
        urls = {p.environ()["BANKHUB_REDIS_URL"] for p in workers}
        assert len(workers) == 2 and len(urls) == 1, urls
        url = urls.pop()
        password, _, rest = url.removeprefix("redis://:").partition("@127.0.0.1:")
        assert len(password) >= 32 and rest.endswith("/0"), "the embedded Valkey has no password"
        valkey_port = int(rest.removesuffix("/0"))
        assert f"started embedded Valkey on 127.0.0.1:{valkey_port}" in log_path.read_text(errors="replace")
        with socket.create_connection(("127.0.0.1", valkey_port), timeout=5) as anyone:
            anyone.sendall(b"*1\r\n$4\r\nKEYS\r\n")
            assert anyone.recv(100).startswith(b"-NOAUTH"), "another local user may use the embedded Valkey"
        assert not any(password in " ".join(p.cmdline()) for p in everything)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = log_path.read_text(errors="replace")
    assert proc.returncode == 0, text
    assert "bankhub dev is running (embedded Postgres, 2 workers, embedded Valkey)" in text
    assert "SIGINT: stopping 2 worker(s)" in text and text.rstrip().endswith("bankhub dev stopped"), text[-3000:]
    # the Ctrl-C did not reach Valkey: it served the workers until they had drained
    assert "redis broker lost" not in text, text[-3000:]
    assert password not in text, "the Valkey password is in the log"

    def running(p: psutil.Process) -> bool:
        # a process may exit between the two questions
        try:
            return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    assert not [p for p in everything if running(p)]
    pgdata = str((data / "pg").resolve())
    await eventually(
        lambda: not [p for p in psutil.process_iter(["cmdline"]) if pgdata in " ".join(p.info["cmdline"] or [])],
        "Postgres to stop", 10,
    )
