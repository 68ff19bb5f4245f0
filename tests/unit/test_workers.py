"""The supervisor's restart rule (:class:`bankhub.cli.workers.Backoff`), port sharing, and its
loop run on tiny child processes (no Postgres, no hub)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bankhub.cli.workers import (
    METRICS_DIR_PREFIX,
    Backoff,
    _Supervisor,
    fresh_metrics_dir,
    listen_socket,
    reserve_port,
    supervise,
    worker_argv,
    worker_node_name,
)


def test_restarts_back_off_then_give_up_on_a_worker_that_keeps_failing() -> None:
    b = Backoff()
    assert [b.after_exit(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert b.after_exit(1.0) is None


def test_a_worker_that_ran_long_enough_starts_the_back_off_again() -> None:
    b = Backoff()
    assert [b.after_exit(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert b.after_exit(b.stable) == 0.5
    assert b.after_exit(1.0) == 1.0


def test_workers_share_the_port_the_supervisor_holds_and_only_listeners_get_connections() -> None:
    hold = reserve_port("127.0.0.1", 0)
    port = hold.getsockname()[1]
    a, b = listen_socket("127.0.0.1", port), listen_socket("127.0.0.1", port)
    clients: list[socket.socket] = []
    try:
        for s in (a, b):
            s.listen()
            s.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(20)]
        accepted = 0
        deadline = time.monotonic() + 5
        while accepted < 20 and time.monotonic() < deadline:
            ready, _, _ = select.select([a, b], [], [], 0.1)
            for s in ready:
                with contextlib.suppress(BlockingIOError):
                    conn, _ = s.accept()
                    conn.close()
                    accepted += 1
        assert accepted == 20  # none went to the supervisor's socket, which never listens
        # a socket without SO_REUSEPORT cannot take the port, even once the workers are gone,
        # and even with SO_REUSEADDR as an intruder would set it (the hold has none)
        a.close()
        b.close()
        other = socket.socket()
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", port))
            raise AssertionError("the port was free while the supervisor held it")
        except OSError:
            pass
        finally:
            other.close()
    finally:
        for c in clients:
            c.close()
        a.close()
        b.close()
        hold.close()


def test_worker_node_names() -> None:
    assert [worker_node_name("hub-1", i) for i in (1, 2)] == ["hub-1-w1", "hub-1-w2"]


INTRUDER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
        s.listen()
    except OSError as exc:
        print(exc.errno)
        sys.exit(0)
    print("bound")
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another user needs root")
def test_another_user_cannot_bind_the_held_port_while_no_worker_listens() -> None:
    """Another local user (uid 65534) with SO_REUSEADDR and SO_REUSEPORT cannot bind the port
    the supervisor holds: it would otherwise take the hub's connections (logins, tokens)."""
    hold = reserve_port("127.0.0.1", 0)
    try:
        port = hold.getsockname()[1]
        # the system's interpreter: another user may not be able to run this one (a venv under /root)
        python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
        if python is None:
            pytest.skip("no system python3 for the other user")
        out = subprocess.run(
            [python, "-I", "-c", INTRUDER, str(port)], user=65534, group=65534, capture_output=True, text=True, timeout=30,
            cwd="/",
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(errno.EADDRINUSE), out.stdout
        # and the workers still join the hold
        listen_socket("127.0.0.1", port).close()
    finally:
        hold.close()


def test_a_second_supervisor_on_the_same_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A second hold of the same port (a double start, an overlapping deploy) is EADDRINUSE, and
    ``supervise`` exits 2 with one line, starting no worker, as a second single-process node would."""
    hold = reserve_port("127.0.0.1", 0)
    try:
        port = hold.getsockname()[1]
        with pytest.raises(OSError) as refused:
            reserve_port("127.0.0.1", port).close()
        assert refused.value.errno == errno.EADDRINUSE
        assert supervise(2, env={}, host="127.0.0.1", port=port, base_name="hub") == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"bankhub: cannot bind 127.0.0.1:{port}: Address already in use"]
        # a listening worker's port is refused the same way
        w = listen_socket("127.0.0.1", port)
        w.listen()
        hold.close()
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", port).close()
        w.close()
    finally:
        hold.close()


def test_workers_do_not_import_from_the_working_directory(tmp_path: Path) -> None:
    """A ``bankhub/`` (or ``uvicorn.py``) in the service's working directory is not what a
    worker imports: the worker's command line keeps the working directory off ``sys.path``."""
    (tmp_path / "bankhub").mkdir()
    (tmp_path / "bankhub" / "__init__.py").write_text("raise SystemExit(42)\n")
    # a supervisor pid that is not our parent: the real worker stops at once with 70
    out = subprocess.run(worker_argv(1, 1), cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("BANKHUB_")})
    assert out.returncode == 70, (out.returncode, out.stderr[-2000:])


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


SERVES = """
    import signal, sys, time, pathlib
    def stop(*_):
        pathlib.Path(sys.argv[1]).write_text("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    pathlib.Path(sys.argv[1] + ".ready").touch()
    time.sleep(60)
"""

# fails once worker 1 (SERVES, marker argv[1]) is ready for SIGTERM: a loaded machine may be slow
FAILS_LATER = """
    import pathlib, sys, time
    deadline = time.monotonic() + 20
    while not pathlib.Path(sys.argv[1] + ".ready").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    raise SystemExit(3)
"""


def _quick() -> Backoff:
    return Backoff(first=0.01, most=0.02, stable=30.0, max_failures=2)


def test_the_supervisor_gives_up_on_a_worker_that_keeps_failing_and_exits_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker 2 fails at once every time: after its restarts the supervisor stops worker 1
    with SIGTERM (it drains) and exits 1."""
    serves = _script(tmp_path, "serves.py", SERVES)
    fails = _script(tmp_path, "fails.py", FAILS_LATER)
    marker = tmp_path / "w1"

    def argv(index: int, supervisor: int) -> list[str]:
        return [sys.executable, serves, str(marker)] if index == 1 else [sys.executable, fails, str(marker)]

    caplog.set_level(logging.INFO, "bankhub.cli.workers")
    t0 = time.monotonic()
    code = _Supervisor(2, os.environ, "127.0.0.1", 0, "hub", argv=argv, backoff=_quick, stop_timeout=10).run()
    assert code == 1
    assert time.monotonic() - t0 < 20
    assert marker.read_text() == "SIGTERM", "the healthy worker was not stopped with SIGTERM"
    text = caplog.text
    assert text.count("worker 2 (pid") == 3 and "3 quick failures in a row; giving up" in text, text


def test_a_worker_that_cannot_be_started_is_retried_and_the_others_keep_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed fork/exec while restarting worker 2 (here: no such executable) is one log line
    and a back-off, not an error that SIGKILLs worker 1: worker 1 is stopped with SIGTERM only
    when the supervisor gives up, and the supervisor exits 1 without a traceback."""
    serves = _script(tmp_path, "serves.py", SERVES)
    fails = _script(tmp_path, "fails.py", FAILS_LATER)
    marker = tmp_path / "w1"
    starts: list[int] = []

    def argv(index: int, supervisor: int) -> list[str]:
        if index == 1:
            return [sys.executable, serves, str(marker)]
        starts.append(index)
        return [sys.executable, fails, str(marker)] if len(starts) == 1 else [str(tmp_path / "no-such-python")]

    caplog.set_level(logging.INFO, "bankhub.cli.workers")
    code = _Supervisor(2, os.environ, "127.0.0.1", 0, "hub", argv=argv, backoff=_quick, stop_timeout=10).run()
    assert code == 1
    assert marker.read_text() == "SIGTERM", "the healthy worker was killed instead of drained"
    assert "worker 2 could not be started (No such file or directory); trying again in" in caplog.text, caplog.text
    assert len(starts) == 3, starts


def test_a_sigterm_during_start_up_stops_every_worker_and_starts_none(tmp_path: Path) -> None:
    """SIGTERM to the supervisor while its workers start: each is stopped (SIGTERM), none is
    started again, exit 0."""
    serves = _script(tmp_path, "serves.py", SERVES)
    markers = [tmp_path / "w1", tmp_path / "w2"]
    started: list[int] = []

    def argv(index: int, supervisor: int) -> list[str]:
        started.append(index)
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the workers start
        return [sys.executable, serves, str(markers[index - 1])]

    code = _Supervisor(2, os.environ, "127.0.0.1", 0, "hub", argv=argv, backoff=_quick, stop_timeout=10).run()
    assert code == 0
    assert started == [1, 2]


def _sigterm_when(ready: Path) -> Any:
    """SIGTERM to this process (the supervisor) once ``ready`` exists; the previous SIGALRM handler."""

    def check(*_: object) -> None:
        if ready.exists():
            signal.setitimer(signal.ITIMER_REAL, 0)
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    return previous


def test_the_stop_timeout_kills_a_worker_that_does_not_drain(tmp_path: Path) -> None:
    """A worker still running ``stop_timeout`` after SIGTERM is killed; the exit is 1."""
    ready = tmp_path / "ready"
    stuck = _script(tmp_path, "stuck.py", f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    sup = _Supervisor(1, os.environ, "127.0.0.1", 0, "hub", argv=lambda i, p: [sys.executable, stuck], stop_timeout=0.5)
    t0 = time.monotonic()
    previous = _sigterm_when(ready)
    try:
        assert sup.run() == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sup.forced and sup.slots[0].last_code == -signal.SIGKILL
    assert time.monotonic() - t0 < 30


def test_a_metrics_directory_left_by_a_killed_supervisor_is_removed_at_the_next_start(tmp_path: Path) -> None:
    """``bankhub-metrics-<pid>-*`` of a supervisor that is gone is removed; one of a running
    supervisor is kept; the new one is private (0700) and named with this pid."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"{METRICS_DIR_PREFIX}{gone.pid}-abc"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"x")
    live = tmp_path / f"{METRICS_DIR_PREFIX}{os.getppid()}-def"
    live.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    new = Path(fresh_metrics_dir(str(tmp_path)))
    assert not stale.exists() and live.exists() and other.exists()
    assert new.name.startswith(f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    assert stat.S_IMODE(new.stat().st_mode) == 0o700


class _AllAt(Backoff):
    """Every failed slot is due again at one moment (so two restarts fall in one round)."""

    at = 0.0

    def after_exit(self, ran_for: float) -> float | None:
        return max(0.0, _AllAt.at - time.monotonic())


def test_no_worker_is_restarted_once_a_stop_signal_has_arrived(tmp_path: Path) -> None:
    """Both workers fail and are due again in the same round; SIGTERM arrives while the first
    is restarted: the second is not started (it would be stopped 50 ms later)."""
    serves = _script(tmp_path, "serves.py", SERVES)
    fails = _script(tmp_path, "fails.py", "raise SystemExit(3)\n")
    calls: list[int] = []

    def argv(index: int, supervisor: int) -> list[str]:
        calls.append(index)
        if len(calls) <= 2:
            return [sys.executable, fails]
        os.kill(os.getpid(), signal.SIGTERM)  # the stop lands during the first restart
        return [sys.executable, serves, str(tmp_path / f"w{index}")]

    _AllAt.at = time.monotonic() + 2.0
    _Supervisor(2, os.environ, "127.0.0.1", 0, "hub", argv=argv, backoff=_AllAt, stop_timeout=10).run()
    assert calls == [1, 2, 1]


def test_a_worker_that_fails_its_drain_makes_the_exit_1(tmp_path: Path) -> None:
    """SIGTERM to the supervisor; one worker ends its drain with an error (exit 5): exit 1."""
    ready = tmp_path / "ready"
    bad = _script(tmp_path, "bad.py", f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    sup = _Supervisor(1, os.environ, "127.0.0.1", 0, "hub", argv=lambda i, p: [sys.executable, bad], stop_timeout=10)
    previous = _sigterm_when(ready)
    try:
        assert sup.run() == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sup.slots[0].last_code == 5


def test_stop_timeout_is_a_flag_below_kubernetes_default_grace_period() -> None:
    """``--stop-timeout`` on ``serve`` and ``dev``: default :data:`STOP_TIMEOUT` (25 s, below
    Kubernetes' default 30 s ``terminationGracePeriodSeconds``); seconds > 0, else a usage error."""
    import argparse

    from bankhub.cli.serve import register_nodes
    from bankhub.cli.workers import STOP_TIMEOUT

    parser = argparse.ArgumentParser()
    register_nodes(parser.add_subparsers())
    assert STOP_TIMEOUT < 30
    assert parser.parse_args(["serve"]).stop_timeout == STOP_TIMEOUT
    assert parser.parse_args(["dev"]).stop_timeout == STOP_TIMEOUT
    assert parser.parse_args(["serve", "--workers", "2", "--stop-timeout", "50"]).stop_timeout == 50.0
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--stop-timeout", bad])


def test_an_error_in_the_supervisor_still_lets_the_workers_drain(tmp_path: Path) -> None:
    """Whatever breaks the supervisor's loop, its workers get SIGTERM (they drain), not SIGKILL."""
    serves = _script(tmp_path, "serves.py", SERVES)
    fails = _script(tmp_path, "fails.py", FAILS_LATER)
    marker = tmp_path / "w1"
    calls: list[int] = []

    def argv(index: int, supervisor: int) -> list[str]:
        calls.append(index)
        if index == 1:
            return [sys.executable, serves, str(marker)]
        if len(calls) == 2:
            return [sys.executable, fails, str(marker)]
        raise RuntimeError("the supervisor itself fails while restarting worker 2")

    sup = _Supervisor(2, os.environ, "127.0.0.1", 0, "hub", argv=argv, backoff=_quick, stop_timeout=10)
    with pytest.raises(RuntimeError):
        sup.run()
    assert marker.read_text() == "SIGTERM", "the healthy worker was killed instead of drained"
    assert all(s.proc is None for s in sup.slots)


def test_a_ctrl_c_while_the_embedded_valkey_starts_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dev --workers N``: a Ctrl-C that lands while Valkey starts (SIGINT is blocked then, so
    it is raised when the mask is lifted) still stops that Valkey, not only at interpreter exit."""
    import argparse

    import psutil  # type: ignore[import-untyped]

    from bankhub.cli import serve
    from bankhub.settings import Settings

    started: list[Any] = []
    real = serve._embedded_valkey

    def valkey_then_ctrl_c(password: str) -> Any:
        server = real(password)
        start = server.start

        def start_then_interrupted(*args: Any, **kwargs: Any) -> None:
            start(*args, **kwargs)
            started.append(psutil.Process(server._process.pid))
            raise KeyboardInterrupt

        server.start = start_then_interrupted
        return server

    monkeypatch.setattr(serve, "_embedded_valkey", valkey_then_ctrl_c)
    args = argparse.Namespace(port=0, host="127.0.0.1", tls=False, data_dir="var", workers=2, stop_timeout=1.0)
    with pytest.raises(KeyboardInterrupt):
        serve._dev_workers(args, Settings(database_url="postgresql://unused/x", node_name="dev"), "postgresql://unused/x")
    assert started, "Valkey did not start"
    with contextlib.suppress(psutil.NoSuchProcess):
        assert not started[0].is_running() or started[0].status() == psutil.STATUS_ZOMBIE, "Valkey was left running"
