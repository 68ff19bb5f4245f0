"""A load-generator process: owns a share of the bench clients and their WebSockets.

Both members of every direct conversation live in the same worker, so one worker sees
the whole life of each of its messages — the ``send`` it wrote, the ``sent`` ack the
hub returned to the sender and the ``message`` the peer received — and times all three
with the same clock (``time.time_ns``). A message is keyed by its ``client_msg_id``
(also used as the frame id).

The orchestrator drives the worker through a pipe: ``("open", OpenLoopPlan)``,
``("closed", ClosedLoopPlan)``, ``("stop",)``; the worker answers on a shared queue:
``("connected", ...)``, ``("progress", ...)`` about once a second, ``("result", PhaseResult)``.

``("storm", StormPlan)`` (the suite's reconnect storm) drops every socket at once,
reconnects and syncs; it answers ``("storm_result", StormResult)`` and reports
``("storm_progress", worker, {...})`` once a second meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .hubproc import raise_nofile_limit
from .model import BenchClient, ClosedLoopPlan, OpenLoopPlan, PhaseResult, StormPlan, StormResult

__all__ = ["worker_main"]

_NS = 1_000_000_000
_CONNECT_TRIES = 5  # pauses 0.25, 0.5, 1, 2 s between tries
_IDLE_LIMIT_S = 900.0  # a worker never outlives a silent orchestrator by more than this


# --- the frames we read (everything else — hello, pong, receipts — is skipped) ------------


class _MessageRef(msgspec.Struct):
    client_msg_id: str
    seq: int = 0


class _SentFrame(msgspec.Struct, tag="sent", tag_field="type"):
    id: str
    seq: int = 0


class _MessageFrame(msgspec.Struct, tag="message", tag_field="type"):
    message: _MessageRef


class _ErrorFrame(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    id: str | None = None


class _SyncConversation(msgspec.Struct):
    conversation_id: str
    last_seq: int
    messages: list[_MessageRef]


class _SyncedFrame(msgspec.Struct, tag="synced", tag_field="type"):
    id: str
    conversations: list[_SyncConversation]


_decoder = msgspec.json.Decoder(_SentFrame | _MessageFrame | _ErrorFrame)
_sync_decoder = msgspec.json.Decoder(_SyncedFrame | _ErrorFrame)
_encoder = msgspec.json.Encoder()


class _SendFrame(msgspec.Struct, tag="send", tag_field="type"):
    id: str
    conversation_id: str
    client_msg_id: str
    body: dict[str, str]


# --- state ------------------------------------------------------------------------------


class _Track:
    """One message in flight: when it was sent, acked, delivered."""

    __slots__ = ("sender", "send_ns", "ack_ns", "deliver_ns", "measured")

    def __init__(self, sender: _Client, send_ns: int, measured: bool) -> None:
        self.sender = sender
        self.send_ns = send_ns
        self.ack_ns = 0
        self.deliver_ns = 0
        self.measured = measured


@dataclass(eq=False)
class _Client:
    index: int
    info: BenchClient
    ws: ClientConnection
    open: bool = True
    held: int = 0  # the highest seq seen in the client's conversation (its sync cursor)
    slots: asyncio.Semaphore | None = None  # closed loop: free in-flight slots
    reader: asyncio.Task[None] | None = field(default=None, repr=False)


class _Window:
    """The measured interval of a phase, in ``time.time_ns`` units."""

    __slots__ = ("start", "end")

    def __init__(self, start: int = 0, end: int = 0) -> None:
        self.start = start
        self.end = end

    def __contains__(self, t: int) -> bool:
        return self.start <= t < self.end


class Worker:
    def __init__(self, worker: int, ws_url: str, clients: list[BenchClient], reports: Queue[Any]) -> None:
        self.worker = worker
        self.ws_url = ws_url
        self.infos = clients
        self.reports = reports
        self.clients: list[_Client] = []
        self.tracks: dict[str, _Track] = {}
        self.result = PhaseResult(worker, "idle")
        self.window = _Window()
        self.errors: Counter[str] = Counter()
        self.stopping = False
        self.storm_state: dict[str, int] | None = None  # storm progress, while one runs

    # --- connections ------------------------------------------------------------------

    async def connect_all(self, concurrency: int = 25, timeout: float = 120.0) -> tuple[int, int, float, dict[str, int]]:
        """Open every client's socket (``concurrency`` handshakes at a time, up to
        ``_CONNECT_TRIES`` tries each with a growing pause, as a real client retries a refused handshake).

        Returns (connected, left out, seconds, failed attempts by reason).
        """
        started = time.perf_counter()
        gate = asyncio.Semaphore(concurrency)
        by_index: dict[int, _Client] = {}
        failures: Counter[str] = Counter()

        async def one(i: int, info: BenchClient) -> None:
            async with gate:
                for attempt in range(_CONNECT_TRIES):
                    try:
                        by_index[i] = _Client(i, info, await self._open(info))
                        return
                    except Exception as exc:
                        failures[_reason(exc)] += 1
                        if attempt == _CONNECT_TRIES - 1:
                            return
                        await asyncio.sleep(0.25 * 2**attempt)

        await asyncio.wait_for(asyncio.gather(*(one(i, c) for i, c in enumerate(self.infos))), timeout)
        # a client whose peer did not connect would count every message as lost: leave the pair out
        connected_users = {by_index[i].info.user_id for i in by_index}
        for i in sorted(by_index):
            c = by_index[i]
            if c.info.peer_user_id in connected_users:
                self.clients.append(c)
            else:
                await c.ws.close()
        for c in self.clients:
            c.reader = asyncio.create_task(self._read(c))
        return len(self.clients), len(self.infos) - len(self.clients), time.perf_counter() - started, dict(failures)

    async def _open(self, info: BenchClient, open_timeout: float = 15.0, hello_timeout: float = 10.0) -> ClientConnection:
        """One handshake as ``info``, from its own source address; returns after ``hello``."""
        ws = await connect(
            self.ws_url,
            subprotocols=["bankhub.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {info.token}"},
            compression=None,
            ping_interval=None,  # the hub pings; no client-side keep-alive traffic
            open_timeout=open_timeout,
            close_timeout=2,
            local_addr=(info.source_ip, 0),  # passed on to loop.create_connection
        )
        try:
            hello = msgspec.json.decode(await asyncio.wait_for(ws.recv(), hello_timeout))
            if hello.get("type") != "hello":
                raise RuntimeError(f"first frame was {hello.get('type')!r}, not hello")
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    async def close_all(self, timeout: float = 10.0) -> None:
        self.stopping = True
        closes = [asyncio.ensure_future(c.ws.close()) for c in self.clients]
        if closes:
            await asyncio.wait(closes, timeout=timeout)
        for c in self.clients:
            if c.reader is not None:
                c.reader.cancel()

    # --- receiving ----------------------------------------------------------------------

    async def _read(self, c: _Client) -> None:
        decode = _decoder.decode
        try:
            async for raw in c.ws:
                now = time.time_ns()
                try:
                    frame = decode(raw)
                except msgspec.ValidationError:
                    continue  # hello, pong, receipt...
                if type(frame) is _MessageFrame:
                    if frame.message.seq > c.held:
                        c.held = frame.message.seq
                    self._on_delivered(frame.message.client_msg_id, now)
                elif type(frame) is _SentFrame:
                    if frame.seq > c.held:
                        c.held = frame.seq
                    self._on_ack(frame.id, now)
                elif type(frame) is _ErrorFrame:
                    self._on_error(frame, now)
        except ConnectionClosed:
            pass
        finally:
            c.open = False
            if not self.stopping:
                self.result.disconnects += 1

    def _on_ack(self, cmid: str, now: int) -> None:
        tr = self.tracks.get(cmid)
        if tr is None or tr.ack_ns:
            return
        tr.ack_ns = now
        r = self.result
        r.acked += 1
        if now in self.window:
            r.acked_in_window += 1
        if tr.measured:
            r.ack_us.append((now - tr.send_ns) // 1000)
        if tr.sender.slots is not None:
            tr.sender.slots.release()
        if tr.deliver_ns:
            del self.tracks[cmid]

    def _on_delivered(self, cmid: str, now: int) -> None:
        tr = self.tracks.get(cmid)
        if tr is None or tr.deliver_ns:
            return  # a duplicate delivery, or a message of an earlier phase
        tr.deliver_ns = now
        r = self.result
        r.delivered += 1
        if tr.measured:
            r.deliver_us.append((now - tr.send_ns) // 1000)
        if tr.ack_ns:
            del self.tracks[cmid]

    def _on_error(self, frame: _ErrorFrame, now: int) -> None:
        self.errors[frame.code] += 1
        tr = self.tracks.pop(frame.id, None) if frame.id else None
        if tr is not None and not tr.ack_ns and tr.sender.slots is not None:
            tr.sender.slots.release()

    # --- sending ------------------------------------------------------------------------

    async def _send(self, c: _Client, cmid: str, text: str, send_ns: int, measured: bool) -> bool:
        self.tracks[cmid] = _Track(c, send_ns, measured)
        frame = _SendFrame(id=cmid, conversation_id=c.info.conversation_id, client_msg_id=cmid, body={"kind": "text", "text": text})
        try:
            await c.ws.send(_encoder.encode(frame).decode())
        except ConnectionClosed:
            self.tracks.pop(cmid, None)
            self.errors["send_on_closed_socket"] += 1
            return False
        self.result.sent += 1
        return True

    @staticmethod
    def _text(cmid: str, size: int) -> str:
        head = f"bench {cmid} "
        return head + "x" * max(0, size - len(head))

    async def open_loop(self, plan: OpenLoopPlan) -> PhaseResult:
        self._begin("open", plan.start_ns, plan.warmup_s, plan.duration_s)
        r = self.result
        total = int(plan.rate * (plan.warmup_s + plan.duration_s))
        r.scheduled = total
        interval = _NS / plan.rate
        late_ns = int(plan.late_ms * 1_000_000)
        hard_end = plan.start_ns + int((plan.warmup_s + plan.duration_s + 10) * _NS)
        n = len(self.clients)
        k = 0
        while k < total and n:
            now = time.time_ns()
            if now > hard_end:
                self.errors["schedule_abandoned"] += total - k
                break
            due = plan.start_ns + int(k * interval)
            if due > now:
                await asyncio.sleep((due - now) / _NS)
                continue
            # everything due by now goes out in this turn of the loop
            while k < total and plan.start_ns + int(k * interval) <= now:
                due = plan.start_ns + int(k * interval)
                c = self.clients[k % n]
                k += 1
                if not c.open:
                    self.errors["client_disconnected"] += 1
                    continue
                cmid = f"o{self.worker}.{k}"
                send_ns = time.time_ns()
                lag = send_ns - due
                measured = due >= self.window.start
                if lag > late_ns:
                    r.late += 1
                if measured:
                    r.lag_us.append(lag // 1000)
                await self._send(c, cmid, self._text(cmid, plan.text_bytes), send_ns, measured)
        await self._drain(plan.drain_s)
        return self._finish()

    async def closed_loop(self, plan: ClosedLoopPlan) -> PhaseResult:
        self._begin("closed", plan.start_ns, plan.warmup_s, plan.duration_s)
        end = self.window.end
        gap = int(_NS / plan.max_client_rate)
        pool = [c for c in self.clients if c.open]
        if plan.clients:
            # keep pairs whole so that every peer reads what it is sent
            pool = pool[: plan.clients]
        seq = 0

        async def pump(c: _Client) -> None:
            nonlocal seq
            slots = c.slots = asyncio.Semaphore(plan.inflight)
            next_at = plan.start_ns
            while True:
                now = time.time_ns()
                if now >= end or not c.open:
                    return
                if slots.locked():
                    try:
                        await asyncio.wait_for(slots.acquire(), (end - now) / _NS)
                    except TimeoutError:
                        return
                else:
                    await slots.acquire()
                now = time.time_ns()
                if now < next_at:
                    await asyncio.sleep((next_at - now) / _NS)
                    now = time.time_ns()
                if now >= end:
                    return
                next_at = max(now, next_at + gap)
                seq += 1
                cmid = f"d{self.worker}.{seq}"
                if not await self._send(c, cmid, self._text(cmid, plan.text_bytes), now, now in self.window):
                    return

        now = time.time_ns()
        if plan.start_ns > now:
            await asyncio.sleep((plan.start_ns - now) / _NS)
        await asyncio.gather(*(pump(c) for c in pool))
        await self._drain(plan.drain_s)
        for c in pool:
            c.slots = None
        return self._finish()

    async def storm(self, plan: StormPlan) -> StormResult:
        """Drop every socket at ``plan.drop_ns`` (TCP RST), reconnect at once, ``sync``.

        Each client's handshake (with up to ``_CONNECT_TRIES`` tries, the same pauses as at
        start-up) and its ``sync`` are timed from ``plan.drop_ns``, the same instant in
        every worker. After its ``synced`` a client reads as before (later phases work).
        """
        res = StormResult(self.worker, clients=len(self.clients))
        failures: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        state = self.storm_state = {"clients": len(self.clients), "reconnected": 0, "synced": 0, "failed": 0}
        now = time.time_ns()
        if plan.drop_ns > now:
            await asyncio.sleep((plan.drop_ns - now) / _NS)
        self.stopping = True  # the readers' ends below are not disconnects
        readers = [c.reader for c in self.clients if c.reader is not None]
        for t in readers:
            t.cancel()
        for c in self.clients:
            c.open = False
            c.ws.transport.abort()  # RST: the hub sees the connection reset, as on a network blip
        await asyncio.gather(*readers, return_exceptions=True)
        self.stopping = False
        deadline_ns = plan.drop_ns + int(plan.timeout_s * _NS)
        gate = asyncio.Semaphore(plan.concurrency) if plan.concurrency > 0 else None

        def left() -> float:
            return max(0.01, (deadline_ns - time.time_ns()) / _NS)

        async def handshake(c: _Client) -> ClientConnection:
            if gate is None:
                return await self._open(c.info, open_timeout=left(), hello_timeout=left())
            async with gate:
                return await self._open(c.info, open_timeout=left(), hello_timeout=left())

        async def one(c: _Client) -> None:
            ws: ClientConnection | None = None
            for attempt in range(_CONNECT_TRIES):
                res.attempts += 1
                try:
                    ws = await handshake(c)
                    break
                except Exception as exc:
                    failures[_reason(exc)] += 1
                    if attempt == _CONNECT_TRIES - 1 or time.time_ns() >= deadline_ns:
                        break
                    await asyncio.sleep(0.25 * 2**attempt)
            if ws is None:
                res.failed += 1
                state["failed"] += 1
                return
            t = time.time_ns()
            res.reconnected += 1
            state["reconnected"] += 1
            res.hello_us.append((t - plan.drop_ns) // 1000)
            c.ws = ws
            c.open = True
            since = {c.info.conversation_id: max(0, c.held - plan.behind)}
            try:
                for attempt in range(_CONNECT_TRIES):
                    fid = f"s{self.worker}.{c.index}.{attempt}"
                    await ws.send(_encoder.encode({"type": "sync", "id": fid, "since": since, "limit": plan.sync_limit}).decode())
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), left())
                        try:
                            frame = _sync_decoder.decode(raw)
                        except msgspec.ValidationError:
                            continue  # a live frame or a receipt: not the answer
                        if frame.id == fid:
                            break
                    if type(frame) is _SyncedFrame:
                        break
                    errors[frame.code] += 1
                    # `unavailable` / `internal`: nothing happened, retry (as the protocol says), after a pause
                    if frame.code not in ("unavailable", "internal") or attempt == _CONNECT_TRIES - 1:
                        break
                    res.sync_retries += 1
                    await asyncio.sleep(0.25 * 2**attempt)
                if type(frame) is _ErrorFrame:
                    res.failed += 1
                    state["failed"] += 1
                else:
                    t = time.time_ns()
                    res.synced += 1
                    state["synced"] += 1
                    res.synced_us.append((t - plan.drop_ns) // 1000)
                    res.last_synced_ns = max(res.last_synced_ns, t)
                    for conv in frame.conversations:
                        res.messages_returned += len(conv.messages)
                        for m in conv.messages:
                            c.held = max(c.held, m.seq)
            except (ConnectionClosed, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                res.failed += 1
                state["failed"] += 1
            if c.open:
                c.reader = asyncio.create_task(self._read(c))

        try:
            await asyncio.gather(*(one(c) for c in self.clients))
        finally:
            self.storm_state = None
        res.failed_attempts = dict(failures)
        res.errors = dict(errors)
        return res

    # --- phase bookkeeping ----------------------------------------------------------------

    def _begin(self, phase: str, start_ns: int, warmup_s: float, duration_s: float) -> None:
        self.tracks.clear()
        self.errors.clear()
        self.result = PhaseResult(self.worker, phase)
        w0 = start_ns + int(warmup_s * _NS)
        self.window = _Window(w0, w0 + int(duration_s * _NS))
        self.result.window_s = duration_s

    async def _drain(self, drain_s: float) -> None:
        """Wait (bounded) until every sent message is acked and delivered."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if not any(True for _ in self._outstanding()):
                return
            await asyncio.sleep(0.05)

    def _outstanding(self) -> Any:
        return (t for t in self.tracks.values() if not (t.ack_ns and t.deliver_ns))

    def _finish(self) -> PhaseResult:
        r = self.result
        for t in self._outstanding():
            if t.ack_ns:
                r.lost += 1
            else:
                r.unacked += 1
        r.errors = dict(self.errors)
        self.tracks.clear()
        self.result = PhaseResult(self.worker, "idle")
        self.window = _Window()
        return r

    def progress(self) -> dict[str, int]:
        r = self.result
        return {
            "sent": r.sent,
            "acked": r.acked,
            "delivered": r.delivered,
            "late": r.late,
            "errors": sum(self.errors.values()),
            "in_flight": len(self.tracks),
            "disconnects": r.disconnects,
        }


def _reason(exc: Exception) -> str:
    """A short, countable description of a failed handshake."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}: {exc.response.body[:120].decode(errors='replace') if exc.response.body else ''}"
    return f"{type(exc).__name__}: {str(exc)[:80]}"


# --- the process ----------------------------------------------------------------------------


async def _main(worker: int, ws_url: str, clients: list[BenchClient], commands: Connection, reports: Queue[Any]) -> None:
    w = Worker(worker, ws_url, clients, reports)
    loop = asyncio.get_running_loop()
    parent = os.getppid()

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(1.0)
            if w.result.phase != "idle":
                reports.put(("progress", worker, w.result.phase, time.time_ns(), w.progress()))
            if w.storm_state is not None:
                reports.put(("storm_progress", worker, dict(w.storm_state)))

    ok, failed, secs, reasons = await w.connect_all()
    reports.put(("connected", worker, ok, failed, secs, reasons))
    ticker = asyncio.create_task(report_progress())
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < _IDLE_LIMIT_S and os.getppid() == parent:
            ready = await loop.run_in_executor(None, commands.poll, 1.0)
            if not ready:
                continue
            cmd = commands.recv()
            if cmd[0] == "open":
                reports.put(("result", worker, await w.open_loop(cmd[1])))
            elif cmd[0] == "closed":
                reports.put(("result", worker, await w.closed_loop(cmd[1])))
            elif cmd[0] == "storm":
                reports.put(("storm_result", worker, await w.storm(cmd[1])))
            elif cmd[0] == "stop":
                break
            idle_since = time.monotonic()
    finally:
        ticker.cancel()
        await w.close_all()


def worker_main(worker: int, ws_url: str, clients: list[BenchClient], commands: Connection, reports: Queue[Any]) -> None:
    """Entry point of a load-generator process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us in order
    raise_nofile_limit()
    try:
        import uvloop

        uvloop.run(_main(worker, ws_url, clients, commands, reports))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_main(worker, ws_url, clients, commands, reports))
