"""The hub's HTTP API (``/v1``): login, conversations, history, WebSocket tickets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from ._version import __version__
from .errors import ApiError
from .models import Conversation, History, Me, Session, WsTicket
from .state import derive_endpoints
from .wire import ConversationEnvelope, ConversationList, Problem, WireHistory, to_message

__all__ = ["Api", "login"]

T = TypeVar("T")


class Api:
    """An HTTP client for one hub, authenticated by a session token.

    ``base_url`` is the hub's HTTP base (``https://hub.example``) or its WebSocket URL
    (``wss://hub.example/v1/ws``); both are understood. Every method raises
    :class:`~bankhub_client.ApiError` when the hub answers with an error
    (``application/problem+json``: ``status``, ``code``, ``detail``), and also for
    network failures (``status`` 0, ``code`` ``"network_error"``).

    Use it as ``async with Api(url, token) as api: ...`` or call :meth:`aclose`.
    ``transport`` is handed to ``httpx.AsyncClient`` (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = derive_endpoints(base_url).http_base
        self.token = token
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"user-agent": f"bankhub-client/{__version__}", "accept": "application/json", **(headers or {})},
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP connections (the session stays valid)."""
        await self._http.aclose()

    # --- requests -----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if auth:
            if not self.token:
                raise ApiError(401, "unauthenticated", "no session token: log in first")
            headers["authorization"] = f"Bearer {self.token}"
        content = None
        if json is not None:
            content = msgspec.json.encode(json)
            headers["content-type"] = "application/json"
        try:
            response = await self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(0, "network_error", f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _problem(response)
        return response

    @staticmethod
    def _decode(response: httpx.Response, type_: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=type_)
        except msgspec.DecodeError as exc:
            raise ApiError(response.status_code, "bad_response", f"unexpected response body: {exc}") from exc

    async def login(self, username: str, password: str) -> Session:
        """``POST /v1/sessions``: log in; the token is kept for later requests."""
        response = await self._request("POST", "/v1/sessions", json={"username": username, "password": password}, auth=False)
        session = self._decode(response, Session)
        self.token = session.token
        return session

    async def logout(self) -> None:
        """``DELETE /v1/sessions/current``: end the session (its connections close with 1008)."""
        await self._request("DELETE", "/v1/sessions/current")

    async def me(self) -> Me:
        """``GET /v1/me``: the logged-in user."""
        return self._decode(await self._request("GET", "/v1/me"), Me)

    async def conversations(self) -> list[Conversation]:
        """``GET /v1/conversations``: my conversations with their seq and read positions."""
        return self._decode(await self._request("GET", "/v1/conversations"), ConversationList).conversations

    async def open_direct(self, username: str) -> Conversation:
        """``POST /v1/conversations`` (direct): the direct conversation with ``username``,
        created if it does not exist yet (the same conversation every time)."""
        response = await self._request("POST", "/v1/conversations", json={"kind": "direct", "peer": username})
        return self._decode(response, ConversationEnvelope).conversation

    async def create_group(self, title: str, usernames: Sequence[str]) -> Conversation:
        """``POST /v1/conversations`` (group): a new group with me and ``usernames``."""
        body = {"kind": "group", "title": title, "members": list(usernames)}
        response = await self._request("POST", "/v1/conversations", json=body)
        return self._decode(response, ConversationEnvelope).conversation

    async def history(self, conversation_id: str, before_seq: int | None = None, limit: int = 50) -> History:
        """``GET /v1/conversations/{id}/messages``: up to ``limit`` messages with
        ``seq < before_seq`` (the newest when None), **newest first**. Page backwards
        with ``before_seq = page.messages[-1].seq`` while ``has_more``."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        params: dict[str, str | int] = {"limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/messages"
        wire = self._decode(await self._request("GET", path, params=params), WireHistory)
        try:
            messages = [to_message(m) for m in wire.messages]
        except msgspec.DecodeError as exc:
            raise ApiError(200, "bad_response", f"unexpected message body: {exc}") from exc
        return History(messages=messages, has_more=wire.has_more)

    async def ws_ticket(self) -> WsTicket:
        """``POST /v1/ws-tickets``: a single-use ticket for ``/v1/ws?ticket=...``."""
        return self._decode(await self._request("POST", "/v1/ws-tickets"), WsTicket)


def _problem(response: httpx.Response) -> ApiError:
    status = response.status_code
    problem = Problem()
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except msgspec.DecodeError:
        pass
    detail = problem.detail or problem.title or response.text[:500] or response.reason_phrase
    return ApiError(status, problem.code or f"http_{status}", detail, title=problem.title, type=problem.type)


async def login(
    base_url: str,
    username: str,
    password: str,
    *,
    timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Session:
    """Log in (``POST /v1/sessions``) and return the :class:`~bankhub_client.Session`.

    ``base_url`` may be the HTTP base or the WebSocket URL. Raises
    :class:`~bankhub_client.ApiError` (401 for wrong credentials).
    """
    async with Api(base_url, timeout=timeout, transport=transport) as api:
        return await api.login(username, password)
