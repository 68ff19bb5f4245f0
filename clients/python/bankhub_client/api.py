"""The hub's HTTP API (``/v1``): login, conversations, history, WebSocket tickets,
official accounts and their notices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from .cards import parse_signing_keys
from ._version import __version__
from .alerts import AlertsApi
from .desk import DeskApi
from .groups import GroupsApi
from .liveness import LivenessApi
from .contacts import ContactsApi
from .media import MediaApi
from .errors import ApiError
from .models import (
    Account,
    AccountReceipt,
    ArticleBody,
    Conversation,
    FollowedAccount,
    History,
    Me,
    NoticePage,
    NoticeRecord,
    NoticeStats,
    Session,
    Target,
    TextBody,
    WsTicket,
)
from .state import derive_endpoints
from .wire import (
    AccountList,
    AccountRead,
    ConversationEnvelope,
    ConversationList,
    FollowedList,
    Problem,
    WireHistory,
    WireNoticeList,
    WireNoticePage,
    WireNoticeRecord,
    WireStats,
    to_message,
    to_notice,
    to_notice_record,
)

__all__ = ["Api", "login"]

T = TypeVar("T")


class Api(AlertsApi, DeskApi, GroupsApi, LivenessApi, ContactsApi, MediaApi):
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
        """``GET /v1/conversations``: my conversations with their seq and read positions (every page)."""
        found: ConversationList = await self._get_all("/v1/conversations", ConversationList, "conversations")
        return found.conversations

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

    # --- official accounts ----------------------------------------------------------

    async def accounts(self, query: str = "") -> list[Account]:
        """``GET /v1/accounts``: the official accounts I may follow, ``query`` matching
        their handle or name (all when empty); ``following`` says which I follow."""
        params: dict[str, str | int] = {"q": query} if query else {}
        found: AccountList = await self._get_all("/v1/accounts", AccountList, "accounts", params)
        return found.accounts

    async def my_accounts(self) -> list[FollowedAccount]:
        """``GET /v1/me/accounts``: the accounts I follow, with my exact unread counts (every page)."""
        found: FollowedList = await self._get_all("/v1/me/accounts", FollowedList, "accounts")
        return found.accounts

    async def account(self, account_id: str) -> Account:
        """``GET /v1/accounts/{id}``: one account (404 when it is not for me)."""
        return self._decode(await self._request("GET", _account_path(account_id)), Account)

    async def follow(self, account_id: str) -> Account:
        """``PUT /v1/accounts/{id}/follow``: follow (idempotent). Notices published
        before are history, not unread."""
        return self._decode(await self._request("PUT", _account_path(account_id, "follow")), Account)

    async def unfollow(self, account_id: str) -> None:
        """``DELETE /v1/accounts/{id}/follow``: stop following (403 for a mandatory account)."""
        await self._request("DELETE", _account_path(account_id, "follow"))

    async def notices(self, account_id: str, before_seq: int | None = None, limit: int = 50) -> NoticePage:
        """``GET /v1/accounts/{id}/notices``: up to ``limit`` (at most 200) of the
        account's notices for me with ``seq < before_seq`` (the newest when None),
        **newest first**. Page backwards with ``before_seq = page.notices[-1].seq``
        while ``has_more``. Recalled notices keep their place without a body."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        params: dict[str, str | int] = {"limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        wire = self._decode(await self._request("GET", _account_path(account_id, "notices"), params=params), WireNoticePage)
        try:
            notices = [to_notice(n) for n in wire.notices]
        except msgspec.DecodeError as exc:
            raise ApiError(200, "bad_response", f"unexpected notice body: {exc}") from exc
        return NoticePage(notices=notices, has_more=wire.has_more)

    async def signing_keys(self) -> dict[str, bytes]:
        """``GET /v1/signing-keys`` (no sign-in needed): the hub's public Ed25519 keys that
        sign cards and notices, ``{key_id: raw 32-byte public key}``."""
        response = await self._request("GET", "/v1/signing-keys", auth=False)
        try:
            return parse_signing_keys(msgspec.json.decode(response.content))
        except msgspec.DecodeError as exc:
            raise ApiError(response.status_code, "bad_response", f"unexpected response body: {exc}") from exc

    async def read_notices(self, account_id: str, seq: int) -> AccountReceipt:
        """``PUT /v1/accounts/{id}/read``: move my read position up to ``seq`` (never
        backwards; clamped to the end). My connections get an ``account_receipt``."""
        if seq < 0:
            raise ValueError("seq must be >= 0")
        response = await self._request("PUT", _account_path(account_id, "read"), json={"seq": seq})
        read = self._decode(response, AccountRead)
        return AccountReceipt(account_id=read.account_id, read_seq=read.read_seq, unread=read.unread)

    # --- official accounts: administrators -----------------------------------------------

    async def create_account(
        self,
        handle: str,
        name: str,
        *,
        description: str = "",
        audience: str = "customer",
        owner_org: str | None = None,
        is_default: bool = False,
        requires_approval: bool = False,
    ) -> Account:
        """``POST /v1/accounts``: create an official account (administrators).

        ``audience``: ``customer`` or ``staff``; ``owner_org``: the owning org's code
        (default: mine); ``is_default``: new users of its audience follow it;
        ``requires_approval``: each notice needs a second administrator's approval.
        409 when the handle is taken."""
        body: dict[str, Any] = {
            "handle": handle,
            "name": name,
            "description": description,
            "audience": audience,
            "is_default": is_default,
            "requires_approval": requires_approval,
        }
        if owner_org is not None:
            body["owner_org"] = owner_org
        return self._decode(await self._request("POST", "/v1/accounts", json=body), Account)

    async def publish_notice(
        self,
        account_id: str,
        body: str | TextBody | ArticleBody,
        *,
        target: Target | None = None,
        scheduled_at: dt.datetime | None = None,
    ) -> NoticeRecord:
        """``POST /v1/accounts/{id}/notices``: publish a notice (a ``str`` is a text notice).

        ``target`` narrows the audience (default: every follower); ``scheduled_at`` (a
        timezone-aware time) defers it. The record's ``status`` says what happened:
        ``published`` (with its ``seq``), ``scheduled``, or ``pending_approval`` on an
        account that requires a second administrator. Raises ``ValueError`` for a naive
        ``scheduled_at`` (ambiguous across time zones; the hub refuses it too)."""
        if isinstance(body, str):
            body = TextBody(text=body)
        payload: dict[str, Any] = {"body": body}
        if target is not None:
            payload["target"] = target
        if scheduled_at is not None:
            if scheduled_at.tzinfo is None or scheduled_at.utcoffset() is None:
                raise ValueError("scheduled_at must be timezone-aware")
            payload["scheduled_at"] = scheduled_at
        return await self._record("POST", _account_path(account_id, "notices"), json=payload)

    async def approve_notice(self, notice_id: str) -> NoticeRecord:
        """``POST /v1/notices/{id}/approve``: approve a pending notice (not its author's
        own); it is published, or scheduled. 409 when it is not pending."""
        return await self._record("POST", _notice_path(notice_id, "approve"))

    async def reject_notice(self, notice_id: str) -> NoticeRecord:
        """``POST /v1/notices/{id}/reject``: reject a pending notice; it never goes out."""
        return await self._record("POST", _notice_path(notice_id, "reject"))

    async def recall_notice(self, notice_id: str, reason: str) -> NoticeRecord:
        """``POST /v1/notices/{id}/recall``: withdraw a published notice; followers get
        ``notice_recalled`` and see it without its body. ``reason`` is required and
        kept for compliance. 409 when it was recalled already."""
        return await self._record("POST", _notice_path(notice_id, "recall"), json={"reason": reason})

    async def notice_stats(self, notice_id: str) -> NoticeStats:
        """``GET /v1/notices/{id}/stats``: targeted followers, online deliveries, reads."""
        return self._decode(await self._request("GET", _notice_path(notice_id, "stats")), WireStats).stats

    async def outbox(self, account_id: str, status: str | None = None, limit: int = 50) -> list[NoticeRecord]:
        """``GET /v1/accounts/{id}/outbox``: the account's notices for its
        administrators, newest first, optionally of one ``status``; ``limit`` at most 200."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        wire = self._decode(await self._request("GET", _account_path(account_id, "outbox"), params=params), WireNoticeList)
        return [self._to_record(w, 200) for w in wire.notices]

    async def _record(self, method: str, path: str, *, json: Any = None) -> NoticeRecord:
        response = await self._request(method, path, json=json)
        return self._to_record(self._decode(response, WireNoticeRecord), response.status_code)

    @staticmethod
    def _to_record(wire: WireNoticeRecord, status: int) -> NoticeRecord:
        try:
            return to_notice_record(wire)
        except msgspec.DecodeError as exc:
            raise ApiError(status, "bad_response", f"unexpected notice body: {exc}") from exc


def _account_path(account_id: str, *rest: str) -> str:
    return "/".join([f"/v1/accounts/{quote(account_id, safe='')}", *rest])


def _notice_path(notice_id: str, action: str) -> str:
    return f"/v1/notices/{quote(notice_id, safe='')}/{action}"


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
