"""Compliance officers' privileged reads: every one needs a reason code and is audited first.

Compliance is not a member of the conversations it inspects, so the membership policy
would hide them; instead :func:`bankhub.policy.may_read_privileged` admits compliance
officers with a valid reason, and the audit row (``privileged_read``: who, which
conversation, which reason, which case reference) is committed *before* any message is
returned — a read that cannot be audited does not happen.

This is the only path that shows what a recall or edit replaced: with each page come the
kept bodies (``message_revisions``) of the page's recalled or edited messages.
"""

from __future__ import annotations

import uuid

from .. import policy
from ..hub import Hub
from ..models import MessageRevision, User
from ..protocol.frames import Message
from .audit import PRIVILEGED_READ, record
from .errors import ActionError, require
from .sensitive import refuse_sensitive

__all__ = ["read_conversation"]

MAX_PAGE = 200


async def read_conversation(
    hub: Hub,
    actor: User,
    conversation_id: str,
    *,
    reason: str,
    case_ref: str | None,
    before_seq: int | None,
    limit: int,
    ip: str | None,
) -> tuple[list[Message], bool, list[MessageRevision]]:
    """A page of the conversation's history as members see it (newest first), whether more
    precede it, and the bodies recalls and edits replaced in the page's messages."""
    require(policy.may_read_privileged(actor, reason))
    refuse_sensitive(case_ref=case_ref)  # kept in the privileged_read audit row
    try:
        uuid.UUID(conversation_id)
    except ValueError:
        raise ActionError("not_found", "no such conversation") from None
    if not await hub.conversations.exists(conversation_id):
        raise ActionError("not_found", "no such conversation")
    limit = max(1, min(limit, MAX_PAGE))
    await record(
        hub,
        actor=actor,
        action=PRIVILEGED_READ,
        target=f"conversation:{conversation_id}",
        reason=reason,
        ip=ip,
        details={"case_ref": (case_ref or "")[:128] or None, "before_seq": before_seq, "limit": limit},
    )
    page = await hub.messages.history(conversation_id, before_seq, limit)
    revisions = await hub.revisions.for_compliance(conversation_id, [m.message_id for m in page])
    return page, bool(page) and page[-1].seq > 1, revisions
