"""The WebSocket endpoint ``/v1/ws``: authenticate the handshake, then move frames.

The handshake is refused *before* it is accepted (an HTTP problem response, not a
WebSocket close) when the credentials are missing or invalid (401), the Origin is not
allowed (403), or the ``bankhub.v1`` subprotocol is not offered (400). Credentials are
``Authorization: Bearer <token>`` for native clients or ``?ticket=`` — a single-use
30-second ticket from ``POST /v1/ws-tickets`` — for browsers; a bearer token in the URL
is never accepted.

After ``hello``, every received frame goes through the sans-I/O
:class:`~bankhub.protocol.session.ServerSession` and accepted requests go to the actions.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from ..actions import accounts as account_actions
from ..actions import alerts as alert_actions
from ..actions import messages as message_actions
from ..actions import sessions as session_actions
from ..actions.errors import ActionError
from ..actions.limits import HANDSHAKES_PER_IP, enforce
from ..http.problems import problem
from ..models import Session
from ..protocol.frames import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    ClientFrame,
    CloseCode,
    Error,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    Read,
    ReadAlerts,
    ReadNotices,
    Send,
    ServerFrame,
    Sync,
    SyncInbox,
    Synced,
    encode,
)
from ..protocol.session import Accept, Close, Reject, ServerSession
from ..storage import StorageUnavailable
from .connection import Connection

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["websocket_endpoint"]

log = logging.getLogger("bankhub.gateway")


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


async def websocket_endpoint(ws: WebSocket) -> None:
    hub: Hub = ws.app.state.hub
    if hub.draining:
        await ws.send_denial_response(problem(503, "draining", "this node is shutting down; connect to another"))
        return
    auth = await _authenticate(hub, ws)
    if not isinstance(auth, Session):
        status, code, detail = auth
        await ws.send_denial_response(problem(status, code, detail, {"WWW-Authenticate": "Bearer"} if status == 401 else None))
        return
    session = auth
    await ws.accept(subprotocol=SUBPROTOCOL)
    limits = hub.session_limits
    conn = Connection(
        uuid.uuid4().hex,
        ws,
        session,
        queue_limit=limits.outbound_queue,
        fill_gap=hub.messages.range,
    )
    # queued before the connection is registered: a signal that arrives while the user's
    # channel is being subscribed is queued behind it, so hello stays the first frame
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
            )
        ).decode()
    )
    try:
        await hub.registry.add(conn)
    except Exception:
        log.warning("broker unavailable; refusing connection", exc_info=True)
        await ws.close(CloseCode.INTERNAL_ERROR, "broker unavailable")
        return
    writer = asyncio.create_task(conn.writer(), name=f"ws-writer-{conn.id}")
    proto = ServerSession(limits)
    try:
        await _read_loop(hub, ws, conn, proto)
    finally:
        await hub.registry.remove(conn)
        if conn.close_code is None:
            conn.close(CloseCode.NORMAL, "")
        conn.cancel_tasks()
        await writer


async def _read_loop(hub: Hub, ws: WebSocket, conn: Connection, proto: ServerSession) -> None:
    receive = ws.receive
    while conn.close_code is None:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            conn.close(message.get("code", CloseCode.GOING_AWAY), "")
            return
        text = message.get("text")
        outcome = proto.receive(text if text is not None else message.get("bytes"), binary=text is None)
        if isinstance(outcome, Accept):
            if isinstance(outcome.frame, Ping):
                conn.push(encode(Pong(server_time=_now_ms(), id=outcome.frame.id)).decode())
            else:
                conn._spawn(_handle(hub, conn, outcome.frame))
        elif isinstance(outcome, Reject):
            conn.push(encode(outcome.error).decode())
        elif isinstance(outcome, Close):
            conn.close(outcome.code, outcome.reason)
            return


async def _handle(hub: Hub, conn: Connection, frame: ClientFrame) -> None:
    """Run one request and queue its answer. Every request gets exactly one answer."""
    reply: ServerFrame
    frame_id = getattr(frame, "id", None)
    try:
        if isinstance(frame, Send):
            reply = await message_actions.send(hub, conn.user, frame, origin=conn.id)
        elif isinstance(frame, Read):
            reply = await message_actions.read(hub, conn.user, frame)
        elif isinstance(frame, Sync):
            convs = await message_actions.sync(hub, conn.user, frame)
            for c in convs:
                held = c.messages[-1].seq if c.messages else frame.since.get(c.conversation_id)
                if held is not None:
                    conn.cursors.set(c.conversation_id, held)
            for cid, seq in frame.since.items():
                conn.cursors.set(cid, seq)
            # one more query only for users who follow official accounts
            accounts = await account_actions.sync(hub, conn.user, frame.accounts, frame.limit) if conn.follows else []
            for acc in accounts:
                seen = conn.notice_seen
                if acc.cursor > seen.get(acc.account_id, 0):
                    seen[acc.account_id] = acc.cursor
            reply = Synced(id=frame.id, conversations=convs, accounts=accounts)
        elif isinstance(frame, ReadNotices):
            reply = await account_actions.read(hub, conn.user, frame.account_id, frame.seq, frame.id)
        elif isinstance(frame, (SyncInbox, ReadAlerts)):
            reply = await alert_actions.on_frame(hub, conn, frame)
        else:  # pragma: no cover - the session only accepts the frames above
            reply = Error(code=ErrorCode.UNKNOWN_TYPE, message="unsupported frame", id=frame_id)
    except ActionError as exc:
        retry_ms = None if exc.retry_after is None else max(1, int(exc.retry_after * 1000))
        reply = Error(code=exc.code, message=exc.message, id=frame_id, retry_after_ms=retry_ms)
    except StorageUnavailable:
        reply = Error(code=ErrorCode.UNAVAILABLE, message="storage unavailable; nothing was stored, retry", id=frame_id)
    except Exception:
        log.exception("request %s failed", type(frame).__name__)
        reply = Error(code=ErrorCode.INTERNAL, message="internal error; nothing was stored", id=frame_id)
    conn.push(encode(reply).decode())
