"""The WebSocket endpoint ``/v1/ws``: authenticate the handshake, then move frames.

The handshake is refused *before* it is accepted (an HTTP problem response, not a
WebSocket close) when the credentials are missing or invalid (401), the Origin is not
allowed (403), or the ``bankhub.v1`` subprotocol is not offered (400). Credentials are
``Authorization: Bearer <token>`` for native clients or ``?ticket=`` — a single-use
30-second ticket from ``POST /v1/ws-tickets`` — for browsers; a bearer token in the URL
is never accepted.

The handshake is also refused with 429 ``too_many_connections`` when the node already
holds ``max_sockets_per_ip`` sockets from the client's address (checked before the
credentials) or ``max_sockets_per_user`` sockets of the signed-in user.

After ``hello``, every received frame goes through the sans-I/O
:class:`~bankhub.protocol.session.ServerSession` and accepted requests go to the actions.
Nothing a client sends can raise out of the read loop: an unexpected fault there is
logged by its exception type only (never the frame) and closes the socket with 1011.
When the session (or such a fault) ends the connection, reading stops, the requests
already accepted finish and their answers are written, and only then is the socket
closed: every accepted request gets its answer before the close frame.

A connection from which no frame (a message or a WebSocket ping) arrives for
``limits.idle_timeout`` seconds is closed with 4000 (the timestamp is kept by the
transport, :class:`~bankhub.gateway.transport.HubWebSocketProtocol`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.types import Receive as AsgiReceive
from starlette.types import Scope as AsgiScope
from starlette.types import Send as AsgiSend
from starlette.websockets import WebSocket

from .. import logredact, logs, tracing
from ..actions import accounts as account_actions
from ..actions import alerts as alert_actions
from ..actions import liveness as liveness_actions
from ..actions import messages as message_actions
from ..actions import revise as revise_actions
from ..actions import sessions as session_actions
from .. import policy
from ..actions.errors import ActionError, require
from ..actions.limits import HANDSHAKES_PER_IP, enforce
from ..http.problems import problem
from ..metrics import TALLY
from ..hub import Hub
from ..models import Session
from ..protocol.frames import (
    PROTOCOL_FEATURES,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    ClientFrame,
    CloseCode,
    Edit,
    Error,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    Read,
    ReadAlerts,
    Recall,
    ReadNotices,
    Send,
    ServerFrame,
    Typing,
    WatchPresence,
    Sync,
    SyncInbox,
    Synced,
    encode,
)
from ..protocol.session import Accept, Close, Reject, ServerSession
from ..storage import StorageUnavailable
from ..delivery.connection import Connection

__all__ = ["websocket_endpoint", "DirectWebSocket", "WS_PATH"]

WS_PATH = "/v1/ws"

log = logging.getLogger("bankhub.gateway")

CLOSE_FLUSH_TIMEOUT = 5.0
"""Seconds a closing connection waits for its accepted requests, and then for their answers
to be written, before it closes anyway (a client that stopped reading cannot hold it open)."""


class DirectWebSocket:
    """The hub's ASGI app, with WebSockets to :data:`WS_PATH` handed straight to
    :func:`websocket_endpoint`.

    Every middleware of the app passes WebSockets through untouched, and the endpoint answers
    every error itself; but each layer's coroutine frame lives as long as the socket does —
    about 5 KiB per open connection for the middlewares and the router. Everything else
    (HTTP, lifespan, other WebSocket paths) goes to ``app``.
    """

    __slots__ = ("app",)

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: AsgiReceive, send: AsgiSend) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path == WS_PATH:
                scope["app"] = self.app  # what Starlette sets: the endpoint finds the hub through it
                await websocket_endpoint(WebSocket(scope, receive=receive, send=send))
                return
        await self.app(scope, receive, send)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _authenticate(hub: Hub, ws: WebSocket) -> Session | tuple[int, str, str]:
    """The session for this handshake, or ``(status, code, detail)`` to refuse it with."""
    origin = ws.headers.get("origin")
    if origin is not None and not hub.origin_allowed(origin, ws.headers.get("host", "")):
        return 403, "origin_not_allowed", "this Origin may not open a WebSocket to this hub"
    if SUBPROTOCOL not in ws.scope.get("subprotocols", []):
        return 400, "subprotocol_required", f"offer the WebSocket subprotocol {SUBPROTOCOL!r}"
    if "token" in ws.query_params or "access_token" in ws.query_params:
        return 400, "token_in_url", "never put a bearer token in a URL; use a ticket from POST /v1/ws-tickets"
    auth = ws.headers.get("authorization", "")
    try:
        ip = ws.client.host if ws.client else "unknown"
        await enforce(hub, f"handshake:{ip}", HANDSHAKES_PER_IP, fail_closed=False)
    except ActionError:
        return 429, "rate_limited", "too many connection attempts from this address; retry later"
    try:
        if auth:
            scheme, _, token = auth.partition(" ")
            session = await session_actions.authenticate_token(hub, token.strip()) if scheme.lower() == "bearer" else None
        elif ticket := ws.query_params.get("ticket"):
            session = await session_actions.redeem_ws_ticket(hub, ticket)
        else:
            return 401, "unauthorized", "missing credentials: Authorization: Bearer <token> or ?ticket="
    except StorageUnavailable:
        return 503, "unavailable", "storage unavailable; retry shortly"
    if session is None:
        return 401, "unauthorized", "invalid, expired or revoked credentials"
    return session


def _too_many(detail: str) -> tuple[int, str, str]:
    return 429, "too_many_connections", detail


async def _deny(ws: WebSocket, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
    """Refuse the handshake with a problem response, counted by ``code`` (bankhub.metrics)."""
    TALLY.refused[code] += 1  # metrics
    await ws.send_denial_response(problem(status, code, detail, headers))


async def websocket_endpoint(ws: WebSocket) -> None:
    hub: Hub = ws.app.state.hub
    if hub.draining:
        await _deny(ws, 503, "draining", "this node is shutting down; connect to another")
        return
    ip = ws.client.host if ws.client else "unknown"
    sockets = hub.registry.sockets
    # the address's slot is taken before any await, so a flood of parallel handshakes from
    # one address cannot pass the check together (nor make the hub verify their credentials)
    if not sockets.take_ip(ip, hub.settings.max_sockets_per_ip):
        await _deny(ws, *_too_many("too many open connections from this address; close some first"))
        return
    try:
        auth = await _authenticate(hub, ws)
        if not isinstance(auth, Session):
            status, code, detail = auth
            await _deny(ws, status, code, detail, {"WWW-Authenticate": "Bearer"} if status == 401 else None)
            return
        uid = auth.user.id
        if not sockets.take_user(uid, hub.settings.max_sockets_per_user):
            await _deny(ws, *_too_many("too many open connections for this user; close some first"))
            return
        try:
            await _serve(hub, ws, auth)
        finally:
            sockets.release_user(uid)
    finally:
        sockets.release_ip(ip)


async def _serve(hub: Hub, ws: WebSocket, session: Session) -> None:
    """Accept the socket, say ``hello`` and move frames until either side closes."""
    await ws.accept(subprotocol=SUBPROTOCOL)
    limits = hub.session_limits
    conn = Connection(
        uuid.uuid4().hex,
        ws,
        session,
        queue_limit=limits.outbound_queue,
        fill_gap=hub.messages.range,
    )
    # this task's lines, and those of the request tasks created below, carry the ids; the
    # connection's writer and gap-fill tasks bind its ids themselves (Connection._own_context)
    logs.bind(connection_id=conn.id, user_id=session.user.id, node=hub.settings.node_name)
    # queued before the connection is registered: a signal that arrives while the user's
    # channel is being subscribed is queued behind it, so hello stays the first frame
    TALLY.frames_out["hello"] += 1  # metrics
    conn.push(
        encode(
            Hello(
                protocol=PROTOCOL_VERSION,
                session_id=session.id,
                user_id=session.user.id,
                username=session.user.username,
                role=session.user.role.value,
                node=hub.settings.node_name,
                server_time=_now_ms(),
                limits=limits.as_limits(),
                features=list(PROTOCOL_FEATURES),
            )
        ).decode()
    )
    try:
        if await hub.registry.add(conn):
            hub.presence.arrived(session.user.id)  # queued: no task of this connection's
    except Exception:
        log.warning("broker unavailable; refusing connection", exc_info=True)
        # through the connection, so what it batched (hello) and its close code agree with the socket
        conn.close(CloseCode.INTERNAL_ERROR, "broker unavailable")
        await conn.finish(CLOSE_FLUSH_TIMEOUT)
        return
    log.debug("connection opened")  # the ids bound above say whose
    proto = ServerSession(limits)
    idle = _IdleWatch(conn, limits.idle_timeout, ws.scope.get("extensions", {}).get("bankhub.last_heard"))
    ending: Close | None = None
    try:
        try:
            ending = await _read_loop(hub, ws, conn, proto)
        except Exception as exc:
            # a fault of ours, not the client's frame: log its type only, never the frame
            log.error("read loop failed (%s); closing the connection with 1011", type(exc).__name__)
            ending = Close(CloseCode.INTERNAL_ERROR, "internal error")
        if ending is not None and conn.close_code is None:
            await _close_after_answers(conn, ending)
    finally:
        idle.cancel()
        hub.presence.left(conn, await hub.registry.remove(conn))
        if conn.close_code is None:
            conn.close(CloseCode.NORMAL, "")
        conn.cancel_tasks()
        # what is queued is written (bounded wait), then the socket is closed
        await conn.finish(CLOSE_FLUSH_TIMEOUT)
        log.debug("connection closed with %s", conn.close_code)


async def _close_after_answers(conn: Connection, ending: Close) -> None:
    """Close with ``ending`` once every accepted request is answered (bounded wait)."""
    inflight = conn.inflight()
    if inflight:
        await asyncio.wait(inflight, timeout=CLOSE_FLUSH_TIMEOUT)
    # the queued answers are written before the close frame
    conn.close(ending.code, ending.reason, flush=True)


async def _read_loop(hub: Hub, ws: WebSocket, conn: Connection, proto: ServerSession) -> Close | None:
    """Move frames until the client goes away (None) or the session decides to close."""
    receive = ws.receive
    while conn.close_code is None:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            conn.close(message.get("code", CloseCode.GOING_AWAY), "")
            return None
        text = message.get("text")
        outcome = proto.receive(text if text is not None else message.get("bytes"), binary=text is None)
        if isinstance(outcome, Accept):
            TALLY.frames_in[str(outcome.frame.__struct_config__.tag)] += 1  # metrics
            if isinstance(outcome.frame, Ping):
                TALLY.frames_out["pong"] += 1
                conn.push(encode(Pong(server_time=_now_ms(), id=outcome.frame.id)).decode())
            else:
                conn._spawn(_handle(hub, conn, outcome.frame))
        elif isinstance(outcome, Reject):
            TALLY.frames_in["rejected"] += 1
            TALLY.frames_out["error"] += 1
            TALLY.errors[outcome.error.code] += 1
            conn.push(encode(outcome.error).decode())
        elif isinstance(outcome, Close):
            return outcome  # read no further: the requests accepted so far are answered first
    return None


class _IdleWatch:
    """Closes ``conn`` with 4000 once no frame came from the client for ``timeout`` seconds.

    ``last_heard`` (the transport's ``bankhub.last_heard`` extension) gives the loop time of
    the client's last frame, a WebSocket ping included; a pong to the server's own ping
    does not count. One timer per connection, re-armed only when it fires: nothing is
    done per frame here. Without the extension (another ASGI server) nothing is watched.
    """

    __slots__ = ("_conn", "_timeout", "_last_heard", "_loop", "_handle")

    def __init__(self, conn: Connection, timeout: float, last_heard: Callable[[], float] | None) -> None:
        self._conn = conn
        self._timeout = timeout
        self._last_heard = last_heard
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        if last_heard is not None:
            self._handle = self._loop.call_later(timeout, self._check)

    def _check(self) -> None:
        self._handle = None
        if self._conn.close_code is not None or self._last_heard is None:
            return
        quiet = self._loop.time() - self._last_heard()
        if quiet >= self._timeout:
            self._conn.close(CloseCode.IDLE_TIMEOUT, f"idle: no frame for {self._timeout:g} s")
        else:
            self._handle = self._loop.call_later(self._timeout - quiet, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _handle(hub: Hub, conn: Connection, frame: ClientFrame) -> None:
    """Run one request and queue its answer. Every request gets exactly one answer."""
    reply: ServerFrame | None
    frame_id = getattr(frame, "id", None)
    try:
        # a service-widget visitor sends only the frames of the service-desk chat
        require(policy.may_use_frame(conn.user, str(type(frame).__struct_config__.tag)))
        if isinstance(frame, Send):
            with tracing.span("ws.send", conversation_id=frame.conversation_id):
                reply = await message_actions.send(hub, conn.user, frame, origin=conn.id)
        elif isinstance(frame, Read):
            reply = await message_actions.read(hub, conn.user, frame)
        elif isinstance(frame, Sync):
            synced = await message_actions.sync(hub, conn.user, frame)
            convs = synced.conversations
            # Cursors only for the user's own conversations: those in the answer, and the
            # listed ones storage found the user a member of (quiet ones included: the
            # declared position is what the next signal is checked against). A key of
            # ``since`` is client input: it is never kept just because it was sent.
            cursors = conn.cursors
            for cid, seq in synced.listed.items():
                cursors.set(cid, seq)
            for c in convs:
                if c.messages:
                    cursors.set(c.conversation_id, c.messages[-1].seq)
            # one more query only for users who follow official accounts
            accounts = await account_actions.sync(hub, conn.user, frame.accounts, frame.limit) if conn.follows else []
            for acc in accounts:
                seen = conn.notice_seen
                if acc.cursor > seen.get(acc.account_id, 0):
                    seen[acc.account_id] = acc.cursor
            reply = Synced(id=frame.id, conversations=convs, accounts=accounts)
        elif isinstance(frame, ReadNotices):
            reply = await account_actions.read(hub, conn.user, frame.account_id, frame.seq, frame.id)
        elif isinstance(frame, SyncInbox):
            reply = await alert_actions.sync_inbox(hub, conn.user, frame.id, frame.since, frame.limit)
            # the connection now holds the inbox up to the cursor: later pushes continue from it
            hub.alerting.delivery.synced(conn, reply.cursor, reply.alerts)
        elif isinstance(frame, ReadAlerts):
            if not frame.alert_ids and frame.up_to_seq is None:
                raise ActionError("invalid_frame", "read_alerts needs alert_ids, or up_to_seq, or both")
            reply = await alert_actions.mark(hub, conn.user, "read", frame.alert_ids, frame.up_to_seq, frame.id)
        elif isinstance(frame, Edit):
            reply = await revise_actions.edit(hub, conn.user, frame, origin=conn.id)
        elif isinstance(frame, Recall):
            reply = await revise_actions.recall(hub, conn.user, frame, origin=conn.id)
        elif isinstance(frame, Typing):
            await liveness_actions.typing(hub, conn.user, frame)
            reply = None  # accepted typing is never answered (docs/protocol.md)
        elif isinstance(frame, WatchPresence):
            reply = await liveness_actions.watch_presence(hub, conn, frame)
        else:  # pragma: no cover - the session only accepts the frames above
            reply = Error(code=ErrorCode.UNKNOWN_TYPE, message="unsupported frame", id=frame_id)
    except ActionError as exc:
        retry_ms = None if exc.retry_after is None else max(1, int(exc.retry_after * 1000))
        reply = Error(code=exc.code, message=exc.message, id=frame_id, retry_after_ms=retry_ms)
    except StorageUnavailable:
        reply = Error(code=ErrorCode.UNAVAILABLE, message="storage unavailable; nothing was stored, retry", id=frame_id)
    except Exception as exc:
        # the type and code locations only: an asyncpg error's message quotes row values
        ref = secrets.token_hex(4)
        log.error(
            "request %s failed on connection %s (reference %s): %s\n%s",
            type(frame).__name__,
            conn.id,
            ref,
            logredact.describe(exc),
            logredact.safe_traceback(exc, messages=False),
        )
        reply = Error(code=ErrorCode.INTERNAL, message=f"internal error; nothing was stored (reference {ref})", id=frame_id)
    if reply is not None:
        TALLY.frames_out[str(reply.__struct_config__.tag)] += 1  # metrics
        if isinstance(reply, Error):
            TALLY.errors[reply.code] += 1  # metrics: error frames by code
        conn.push(encode(reply).decode())
