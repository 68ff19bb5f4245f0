"""The bank's own messages: ``system`` bodies posted by the system user.

Handover notices, bot answers, queue notices and auto-replies go through the ordinary
group-commit path, so they are stored, numbered, signalled and synced like any message.
State changes commit first; their notices follow, with idempotency keys (``key``) so a
retry never posts twice. The event codes are :class:`bankhub.desk.system.SystemEvent`.
"""

from __future__ import annotations

import logging
import uuid

import msgspec

from ..hub import Hub, Pending
from ..protocol.frames import Message, SystemBody
from ..storage import NewMessage

__all__ = ["post"]

log = logging.getLogger("bankhub.desk")
_body = msgspec.json.Encoder()


async def post(
    hub: Hub, conversation_id: str, event: str, text: str, data: dict[str, str] | None = None, *, key: str | None = None
) -> Message | None:
    """Post a ``system`` message through group commit; ``key`` makes it idempotent.
    Returns the committed message (None if the node is draining or it was refused)."""
    body = SystemBody(event=event, text=text, data=data or {})
    new = NewMessage(
        sender=await hub.desk.system(),
        conversation_id=conversation_id,
        client_msg_id=key or f"sys:{uuid.uuid4()}",
        kind="system",
        body=_body.encode(body),
    )
    try:
        result = await hub.committer.submit(Pending(new=new, origin=None))
    except RuntimeError:
        log.warning("system message %s not posted: the node is draining", event)
        return None
    if result.message is None:
        log.warning("system message %s refused: %s %s", event, result.code, result.reason)
    return result.message
