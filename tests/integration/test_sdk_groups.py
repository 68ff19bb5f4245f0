"""The Python SDK's group calls against a real hub."""

from __future__ import annotations

import pytest

from bankhub.runner import RunningNode
from bankhub_client import Api, ApiError, SystemBody

from ..conftest import login
from .test_groups import befriend


async def test_a_group_through_the_sdk(node: RunningNode) -> None:
    await befriend(node, "c.li", "c.zhang")
    await befriend(node, "c.li", "c.zhou")
    async with Api(node.http_url, await login(node, "c.li")) as li, Api(node.http_url, await login(node, "c.zhang")) as zhang:
        group = await li.new_group("Weekend", ["c.zhang"])
        assert group.my_role == "owner" and group.members == 2 and group.org is None
        assert (await li.rename_group(group.conversation_id, "Long weekend")).title == "Long weekend"
        assert (await li.invite(group.conversation_id, ["c.zhou"])).members == 3
        assert (await li.set_member_role(group.conversation_id, "c.zhang", "admin")).members == 3
        members = await li.group_members(group.conversation_id, page_size=1)
        assert {m.username: m.role for m in members} == {"c.li": "owner", "c.zhang": "admin", "c.zhou": "member"}
        assert members[-1].username == "c.zhou"  # join order
        assert (await zhang.remove_member(group.conversation_id, "c.zhou")).members == 2
        with pytest.raises(ApiError) as refused:
            await zhang.remove_member(group.conversation_id, "c.li")
        assert refused.value.status == 403
        await li.leave_group(group.conversation_id)
        assert (await zhang.group(group.conversation_id)).my_role == "owner"
        history = await zhang.history(group.conversation_id)
        events = [m.body.event for m in reversed(history.messages) if isinstance(m.body, SystemBody)]
        assert events == ["group_renamed", "group_members_added", "group_role_changed", "group_member_removed",
                          "group_member_left", "group_owner_changed"]
    async with Api(node.http_url, await login(node, "ho.admin")) as ho:
        org = await ho.new_org_group("Beijing staff", "BJ")
        assert org.org == "BJ" and org.max_members is None and org.members == 2
