"""How a :class:`~bankhub_client.Client` connects: one frozen, typed set of options.

The defaults are stated here and nowhere else; :meth:`Client.connect` and ``Client()``
both take a :class:`ClientOptions` (None: every default). One object can serve many
clients (``FAST = ClientOptions(reconnect=...)``); derive a variant with
:func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .state import ReconnectPolicy

__all__ = ["ClientOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """Options of a :class:`~bankhub_client.Client` (all keyword-only; times in seconds).

    Authentication:

    * ``use_ticket``: trade the session token for a single-use ticket
      (``POST /v1/ws-tickets``) before every (re)connect, instead of sending it as
      ``Authorization: Bearer``.

    Starting point. By default (no cursors) nothing that already exists is yielded: the
    client takes a snapshot of ``GET /v1/conversations`` right after the handshake and
    yields only messages after each conversation's ``last_seq`` there (read older ones
    with :meth:`Api.history`); likewise it takes ``GET /v1/me/accounts`` and yields only
    notices of followed official accounts published after it (read older ones with
    :meth:`Api.notices`).

    * ``cursors`` / ``account_cursors``: resume an earlier run (saved from
      :attr:`Client.cursors` and :attr:`Client.account_cursors`): the client syncs from
      them on connect and yields everything after them (conversations not listed from
      seq 1, accounts not listed from my read position: their unread notices). They are
      copied: changing the mapping later does not change the options.
    * ``inbox_cursor``: the alert inbox seq to resume from (:attr:`Client.inbox_cursor`);
      None: the inbox's position when connecting (with ``sync_on_connect=True``: 0, the
      whole inbox).
    * ``sync_on_connect``: sync on the first connection. None (the default): when
      ``cursors`` or ``account_cursors`` are given. True without cursors yields every
      conversation's whole history and every unread notice.

    Connection:

    * ``reconnect``: the backoff policy after a lost connection; None never reconnects.
    * ``open_timeout``: for the handshake and ``hello``.
    * ``request_timeout``: for each ``read``/``ping``/``sync`` answer (and the HTTP
      requests of the client's :class:`Api`).
    * ``send_timeout``: for a send's acknowledgement, across reconnects.
    * ``sync_limit``: the per-conversation page size of ``sync`` (at least 1; capped by
      ``hello.limits.max_sync_limit``).
    * ``gap_grace``: how long a seq hole before one of my own acknowledged sends may
      stay open before a sync fetches it.
    * ``max_message_bytes``: the largest incoming WebSocket message accepted (None: no
      limit).
    * ``ping_interval``: the WebSocket keep-alive ping (None: none). The hub closes a
      connection quiet for ``hello.limits.idle_timeout`` (90 s) with 4000.
    """

    use_ticket: bool = False
    sync_on_connect: bool | None = None
    cursors: Mapping[str, int] | None = None
    account_cursors: Mapping[str, int] | None = None
    inbox_cursor: int | None = None
    reconnect: ReconnectPolicy | None = ReconnectPolicy()
    request_timeout: float = 10.0
    send_timeout: float = 30.0
    open_timeout: float = 10.0
    sync_limit: int = 100
    gap_grace: float = 1.0
    max_message_bytes: int | None = 32 * 1024 * 1024
    ping_interval: float | None = 20.0

    def __post_init__(self) -> None:
        if self.sync_limit < 1:
            raise ValueError("sync_limit must be >= 1")
        # frozen means frozen: keep read-only copies, not the caller's dicts
        for name in ("cursors", "account_cursors"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    @property
    def resumes(self) -> bool:
        """Whether cursors were given: an earlier run is resumed."""
        return self.cursors is not None or self.account_cursors is not None

    @property
    def syncs_on_connect(self) -> bool:
        """``sync_on_connect``, its None resolved: sync first when resuming."""
        return self.resumes if self.sync_on_connect is None else self.sync_on_connect
