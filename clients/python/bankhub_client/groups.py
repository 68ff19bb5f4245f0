"""Groups (hub feature ``groups.admin``): create, rename, invite, remove, leave, roles, org
groups and the member list, over HTTP (mixed into :class:`~bankhub_client.Api`).

Membership changes reach devices live: ``conversation_added`` / ``conversation_removed``
to whoever gained or lost the group, and a ``system`` message in the group (its ``event``
one of :data:`GROUP_EVENTS`) that every member sees live and through sync. A client that
shows a member list refreshes it on such a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from msgspec import Struct

from ._mixin import HttpMixin

__all__ = ["GROUP_EVENTS", "Group", "GroupMember", "GroupsApi"]

GROUP_EVENTS = frozenset(
    {
        "group_created",
        "group_renamed",
        "group_members_added",
        "group_member_removed",
        "group_member_left",
        "group_role_changed",
        "group_owner_changed",
    }
)
"""The ``event`` codes of the ``system`` messages groups carry (docs/protocol.md, "Groups")."""


class Group(Struct, frozen=True):
    """A group: ``org`` the org code of an org group (None: hand-made); ``my_role`` owner,
    admin or member (None: an org group's administrator who is no member);
    ``max_members`` the cap (None: an org group)."""

    conversation_id: str
    title: str | None
    org: str | None
    my_role: str | None
    members: int
    max_members: int | None


class GroupMember(Struct, frozen=True):
    user_id: str
    username: str
    display_name: str
    role: str


class _MemberPage(Struct):
    members: list[GroupMember]
    next_cursor: str | None


class _Left(Struct):
    conversation_id: str
    left: bool


def _g(conversation_id: str) -> str:
    return f"/v1/groups/{quote(conversation_id, safe='')}"


class GroupsApi(HttpMixin):
    """Group endpoints; mixed into :class:`~bankhub_client.Api`."""

    async def _group(self, method: str, path: str, json: Any = None) -> Group:
        found: Group = self._decode(await self._request(method, path, json=json), Group)
        return found

    async def new_group(self, title: str, usernames: Sequence[str]) -> Group:
        """``POST /v1/groups``: a group I own with ``usernames`` (a customer: their contacts;
        staff: staff). ``group_full`` (409) over the size cap."""
        return await self._group("POST", "/v1/groups", {"title": title, "members": list(usernames)})

    async def new_org_group(self, title: str, org: str) -> Group:
        """``POST /v1/org-groups`` (administrators): all active staff of org ``org`` and below."""
        return await self._group("POST", "/v1/org-groups", {"title": title, "org": org})

    async def group(self, conversation_id: str) -> Group:
        """``GET /v1/groups/{id}``."""
        return await self._group("GET", _g(conversation_id))

    async def rename_group(self, conversation_id: str, title: str) -> Group:
        """``PUT /v1/groups/{id}/title`` (owner and admins)."""
        return await self._group("PUT", _g(conversation_id) + "/title", {"title": title})

    async def invite(self, conversation_id: str, usernames: Sequence[str]) -> Group:
        """``POST /v1/groups/{id}/members`` (owner and admins)."""
        return await self._group("POST", _g(conversation_id) + "/members", {"members": list(usernames)})

    async def remove_member(self, conversation_id: str, username: str) -> Group:
        """``DELETE /v1/groups/{id}/members/{username}`` (owner: anyone else; admins: members)."""
        return await self._group("DELETE", f"{_g(conversation_id)}/members/{quote(username, safe='')}")

    async def set_member_role(self, conversation_id: str, username: str, role: str) -> Group:
        """``PUT /v1/groups/{id}/members/{username}/role`` (the owner): ``admin``, ``member``,
        or ``owner`` to hand ownership on."""
        return await self._group("PUT", f"{_g(conversation_id)}/members/{quote(username, safe='')}/role", {"role": role})

    async def leave_group(self, conversation_id: str) -> None:
        """``POST /v1/groups/{id}/leave``."""
        self._decode(await self._request("POST", _g(conversation_id) + "/leave"), _Left)

    async def group_members(self, conversation_id: str, *, page_size: int = 200) -> list[GroupMember]:
        """``GET /v1/groups/{id}/members``: every member, in join order (every page)."""
        path = _g(conversation_id) + "/members"
        params: dict[str, str | int] = {"limit": page_size}
        page: _MemberPage = self._decode(await self._request("GET", path, params=params), _MemberPage)
        members = list(page.members)
        while page.next_cursor is not None:
            page = self._decode(await self._request("GET", path, params={**params, "cursor": page.next_cursor}), _MemberPage)
            members += page.members
        return members

