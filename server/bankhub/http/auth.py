"""Bearer-token authentication for HTTP handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from ..actions import sessions as session_actions
from ..actions.errors import ActionError
from ..actions.limits import API_PER_USER, enforce
from ..models import Session

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["require_session"]


async def require_session(hub: Hub, request: Request) -> Session:
    """The caller's active session; raises ``unauthorized`` otherwise. Tokens in URLs are refused."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ActionError("unauthorized", "send Authorization: Bearer <token> (from POST /v1/sessions)")
    session = await session_actions.authenticate_token(hub, token.strip())
    if session is None:
        raise ActionError("unauthorized", "invalid, expired or revoked token")
    await enforce(hub, f"api:{session.user.id}", API_PER_USER, fail_closed=False)
    return session
