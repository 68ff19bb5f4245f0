"""Relationship-manager assignment: a customer's RM changes, access moves with it at once."""

from __future__ import annotations


from .. import policy
from ..hub import Hub
from ..models import User
from . import rm as rm_actions
from .errors import ActionError, require

__all__ = ["reassign_customer"]


async def reassign_customer(hub: Hub, actor: User, customer_name: str, rm_name: str, *, ip: str | None = None) -> User:
    """Assign ``customer_name`` to the RM ``rm_name``.

    The old RM loses the customer's direct conversation in the same transaction that
    records the new assignment (no window where both or neither have it); the new RM
    gains it with its whole history. Audited as ``customer.reassigned`` in that same
    transaction. Then the old RM's connections drop the conversation on every node, the
    new RM's gain it and the customer is told (see :func:`bankhub.actions.rm.notify_handover`).
    """
    customer = await hub.users.by_username(customer_name)
    new_rm = await hub.users.by_username(rm_name)
    if customer is None or new_rm is None:
        raise ActionError("not_found", "no such customer or RM")
    require(
        policy.may_reassign_customer(
            actor, customer, new_rm, await hub.users.org_ancestry(customer.org_id), await hub.users.org_ancestry(new_rm.org_id)
        )
    )
    # information barriers: checked in the reassignment's transaction (actions/rm.py reassign)
    if customer.rm_id == new_rm.id:
        return customer
    await rm_actions.reassign(hub, actor, customer, new_rm, ip=ip)
    updated = await hub.users.by_username(customer_name)
    assert updated is not None
    return updated
