"""Reactions to committed customer messages: the service bot and RM auto-replies.

:func:`observe` is called by the group-commit flush after the batch is committed and its
signals published, never blocking it: it only schedules work on ``hub.desk``. The bot
answers in a ``service`` conversation (:func:`bankhub.actions.service.on_customer_message`);
an away or off-duty RM's auto-reply goes into a ``direct`` conversation
(:func:`bankhub.actions.rm.auto_reply`). One conversation's reactions run one at a time on
this node, in commit order.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hub import Hub, Pending
from ..models import Role
from ..storage import Appended
from . import rm, service

__all__ = ["observe"]


def observe(hub: Hub, batch: Sequence[Pending], results: Sequence[Appended]) -> None:
    """Schedule the bot and auto-replies for a committed batch (cheap checks only)."""
    desk = hub.desk
    if desk.stopped:
        return
    for pending, result in zip(batch, results, strict=True):
        if result.status != "stored" or result.message is None:
            continue
        sender = pending.new.sender
        if sender.role is not Role.CUSTOMER:
            continue
        if result.kind == "service":
            message = result.message
            desk.spawn(
                desk.serialised(message.conversation_id, lambda m=message, s=sender: service.on_customer_message(hub, s, m))  # type: ignore[misc]
            )
        elif result.kind == "direct" and desk.unavailable_rms:
            for uid in result.recipients:
                if uid in desk.unavailable_rms:
                    desk.spawn(rm.auto_reply(hub, result.message.conversation_id, sender, uid))
