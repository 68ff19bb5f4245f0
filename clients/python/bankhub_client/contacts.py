"""Contacts (hub feature ``contacts``): the ``contact`` event and the HTTP calls.

* :class:`ContactEvent` — yielded by :meth:`Client.events <bankhub_client.Client.events>`
  when my contacts change on any device: ``request`` (someone asks; ``request_id``),
  ``request_withdrawn``, ``accepted``, ``declined`` (by me, on another device),
  ``removed``, ``blocked``, ``unblocked``. ``user`` is the other side.
* :class:`ContactsApi` — ``/v1/contacts…`` (mixed into :class:`~bankhub_client.Api`):
  list contacts, requests and blocks (every page), ask by username or phone (the hub
  answers the same whether or not the account exists), accept, decline, withdraw, remove,
  block, unblock, invite codes (create, revoke, redeem).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from msgspec import Struct

from ._mixin import HttpMixin

__all__ = [
    "INVITE_LINK_PREFIX",
    "ContactUser",
    "ContactEvent",
    "Contact",
    "IncomingRequest",
    "OutgoingRequest",
    "Invite",
    "ContactsApi",
]

INVITE_LINK_PREFIX = "bankhub://contact/"
_PAGE = 200


class ContactUser(Struct, frozen=True):
    """Another user as my contacts show them."""

    id: str
    username: str
    display_name: str


class ContactEvent(Struct, tag="contact", tag_field="type", frozen=True, omit_defaults=True):
    """My contacts changed (see the module docstring for ``event``)."""

    event: str
    user: ContactUser
    request_id: str | None = None


class Contact(Struct, frozen=True):
    """A contact (or a user I block), and since when."""

    user: ContactUser
    since: dt.datetime


class IncomingRequest(Struct, frozen=True):
    """A pending request to me: accept or decline it by ``id``."""

    id: str
    user: ContactUser
    created_at: dt.datetime


class OutgoingRequest(Struct, frozen=True):
    """A request I sent, as I addressed it (``handle``: the username or E.164 phone
    number); whether it reached anyone is never shown."""

    id: str
    handle: str
    created_at: dt.datetime


class Invite(Struct, frozen=True):
    """A single-use invite code: show ``code`` as text and ``link`` as a QR code."""

    code: str
    link: str
    expires_at: dt.datetime


class _Contacts(Struct):
    contacts: list[Contact]
    next_cursor: str | None


class _Incoming(Struct):
    requests: list[IncomingRequest]
    next_cursor: str | None


class _Outgoing(Struct):
    requests: list[OutgoingRequest]
    next_cursor: str | None


class _Revoked(Struct):
    revoked: int


class ContactsApi(HttpMixin):
    """Contacts over HTTP; mixed into :class:`~bankhub_client.Api`."""

    async def _every(self, path: str, type_: type[Any], field: str) -> list[Any]:
        params: dict[str, str | int] = {"limit": _PAGE}
        items: list[Any] = []
        while True:
            page = self._decode(await self._request("GET", path, params=params), type_)
            items += getattr(page, field)
            if page.next_cursor is None:
                return items
            params = {"limit": _PAGE, "cursor": page.next_cursor}

    async def contacts(self) -> list[Contact]:
        """``GET /v1/contacts``, every page: my contacts by username."""
        found: list[Contact] = await self._every("/v1/contacts", _Contacts, "contacts")
        return found

    async def incoming_requests(self) -> list[IncomingRequest]:
        """``GET /v1/contacts/requests/incoming``, every page, newest first."""
        found: list[IncomingRequest] = await self._every("/v1/contacts/requests/incoming", _Incoming, "requests")
        return found

    async def outgoing_requests(self) -> list[OutgoingRequest]:
        """``GET /v1/contacts/requests/outgoing``, every page, newest first."""
        found: list[OutgoingRequest] = await self._every("/v1/contacts/requests/outgoing", _Outgoing, "requests")
        return found

    async def request_contact(self, *, username: str | None = None, phone: str | None = None) -> None:
        """``POST /v1/contacts/requests``: ask the user with ``username`` or ``phone``
        (exactly one). Returns once the hub took it; it never says whether the account
        exists — a new contact shows up as a :class:`ContactEvent` ``accepted``."""
        if (username is None) == (phone is None):
            raise ValueError("give exactly one of username and phone")
        body = {"username": username} if username is not None else {"phone": phone}
        await self._request("POST", "/v1/contacts/requests", json=body)

    async def accept_request(self, request_id: str) -> Contact:
        """``POST /v1/contacts/requests/{id}/accept``: returns the new contact."""
        found: Contact = self._decode(await self._request("POST", f"/v1/contacts/requests/{request_id}/accept"), Contact)
        return found

    async def decline_request(self, request_id: str) -> None:
        """``POST /v1/contacts/requests/{id}/decline`` (its sender is not told)."""
        await self._request("POST", f"/v1/contacts/requests/{request_id}/decline")

    async def withdraw_request(self, request_id: str) -> None:
        """``DELETE /v1/contacts/requests/{id}``: withdraw a request I sent."""
        await self._request("DELETE", f"/v1/contacts/requests/{request_id}")

    async def remove_contact(self, user_id: str) -> None:
        """``DELETE /v1/contacts/{user_id}``."""
        await self._request("DELETE", f"/v1/contacts/{user_id}")

    async def blocked(self) -> list[Contact]:
        """``GET /v1/contacts/blocks``, every page: the users I block."""
        found: list[Contact] = await self._every("/v1/contacts/blocks", _Contacts, "contacts")
        return found

    async def block(self, user_id: str) -> None:
        """``PUT /v1/contacts/blocks/{user_id}`` (idempotent)."""
        await self._request("PUT", f"/v1/contacts/blocks/{user_id}")

    async def unblock(self, user_id: str) -> None:
        """``DELETE /v1/contacts/blocks/{user_id}`` (idempotent)."""
        await self._request("DELETE", f"/v1/contacts/blocks/{user_id}")

    async def create_invite(self) -> Invite:
        """``POST /v1/contacts/invites``: a new single-use, expiring invite code."""
        found: Invite = self._decode(await self._request("POST", "/v1/contacts/invites"), Invite)
        return found

    async def revoke_invites(self) -> int:
        """``POST /v1/contacts/invites/revoke``: returns how many usable codes were revoked."""
        found: _Revoked = self._decode(await self._request("POST", "/v1/contacts/invites/revoke"), _Revoked)
        return found.revoked

    async def redeem_invite(self, code: str) -> Contact:
        """``POST /v1/contacts/invites/redeem`` with a code or its ``bankhub://contact/`` link:
        its owner becomes my contact."""
        found: Contact = self._decode(await self._request("POST", "/v1/contacts/invites/redeem", json={"code": code}), Contact)
        return found


def decode_contact_event(data: str | bytes) -> ContactEvent:
    """A ``contact`` frame (raises ``msgspec.DecodeError`` for anything else)."""
    return msgspec.json.decode(data, type=ContactEvent)
