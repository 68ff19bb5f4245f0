"""Recall and edit (hub feature ``edit``): the body kinds, the frames, and
:class:`MessageLog`, the pure state that applies changes to the messages they target.

A recall or edit is a message of its own in the conversation's seq stream: its body is
:class:`EditBody` (``message_id`` and that message's *current* body: the new text, or
:class:`RecalledBody` once withdrawn) or :class:`RecallBody`. It arrives like any message,
live or through ``sync``, and is applied to its target, never shown itself. The target as
history and ``sync`` return it already carries its current body (``RecalledBody`` after a
recall) and ``edited_ts``.

:class:`MessageLog` holds what a user sees: feed it every message (live, synced, history,
and the ones :meth:`Client.edit <bankhub_client.Client.edit>` / :meth:`~bankhub_client.Client.recall`
return) and it applies each change to its target — at once, or when the target arrives
(a change can come first, e.g. when the target is older than a history page). A recall is
final; of two versions of an edited message the later edit wins, whatever order they come in.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
from msgspec import Struct

from .models import EditBody, Message, RecallBody, RecalledBody, TextBody

__all__ = [
    "RecalledBody",
    "EditBody",
    "RecallBody",
    "EditFrame",
    "RecallFrame",
    "MessageLog",
    "decode_revision_body",
    "is_change",
    "REVISION_KINDS",
]


REVISION_KINDS = frozenset({"edit", "recall", "recalled"})


def decode_revision_body(obj: dict[str, Any]) -> EditBody | RecallBody | RecalledBody | None:
    """One of this module's bodies from a decoded JSON object (None: not one, or malformed)."""
    kind = obj.get("kind")
    try:
        if kind == "recalled":
            return RecalledBody()
        if kind == "recall":
            return msgspec.convert({"message_id": obj.get("message_id")}, RecallBody)
        if kind == "edit":
            inner = obj.get("body")
            if not isinstance(inner, dict):
                return None
            body: TextBody | RecalledBody
            if inner.get("kind") == "recalled":
                body = RecalledBody()
            elif inner.get("kind") == "text" and isinstance(inner.get("text"), str):
                body = TextBody(text=inner["text"])
            else:
                return None
            return EditBody(message_id=msgspec.convert(obj.get("message_id"), str), body=body)
    except msgspec.ValidationError:
        return None
    return None


class EditFrame(Struct, tag="edit", tag_field="type"):
    id: str
    conversation_id: str
    message_id: str
    client_msg_id: str
    body: TextBody


class RecallFrame(Struct, tag="recall", tag_field="type"):
    id: str
    conversation_id: str
    message_id: str


def is_change(message: Message) -> bool:
    """True for an edit or recall message (apply it; do not show it)."""
    return isinstance(message.body, (EditBody, RecallBody))


class MessageLog:
    """The messages a user sees, with recalls and edits applied (no I/O).

    ``max_messages`` bounds the messages kept (the oldest by arrival are dropped first);
    ``max_waiting`` bounds the changes kept for targets not seen yet.
    """

    def __init__(self, *, max_messages: int = 10_000, max_waiting: int = 1_000) -> None:
        self._messages: OrderedDict[str, Message] = OrderedDict()
        self._waiting: OrderedDict[str, Message] = OrderedDict()  # target id -> its latest change
        self._max_messages = max_messages
        self._max_waiting = max_waiting

    def __len__(self) -> int:
        return len(self._messages)

    def get(self, message_id: str) -> Message | None:
        """A shown message as it reads now (None: unknown, or a change message)."""
        return self._messages.get(message_id)

    def conversation(self, conversation_id: str) -> list[Message]:
        """The conversation's shown messages in seq order (change messages left out)."""
        return sorted((m for m in self._messages.values() if m.conversation_id == conversation_id), key=lambda m: m.seq)

    def apply(self, message: Message) -> Message | None:
        """Take one message; return the message whose shown state it changed — the target
        of a change, or a new message — or None (a change still waiting for its target, a
        stale change, a duplicate)."""
        body = message.body
        if isinstance(body, (EditBody, RecallBody)):
            target = self._messages.get(body.message_id)
            if target is None or target.conversation_id != message.conversation_id:
                self._wait(body.message_id, message)
                return None
            return self._change(target, message)
        known = self._messages.get(message.message_id)
        if known is not None and not _newer(message, known):
            return None  # what we hold is as recent (a recall is final; the later edit wins)
        self._messages[message.message_id] = message
        self._messages.move_to_end(message.message_id)
        while len(self._messages) > self._max_messages:
            self._messages.popitem(last=False)
        change = self._waiting.pop(message.message_id, None)
        if change is not None and change.conversation_id == message.conversation_id:
            self._change(message, change)
        return self._messages.get(message.message_id)

    def _wait(self, target_id: str, change: Message) -> None:
        held = self._waiting.get(target_id)
        if held is None or change.seq > held.seq:
            self._waiting[target_id] = change
            self._waiting.move_to_end(target_id)
        while len(self._waiting) > self._max_waiting:
            self._waiting.popitem(last=False)

    def _change(self, target: Message, change: Message) -> Message | None:
        body = change.body
        if isinstance(body, RecallBody) or (isinstance(body, EditBody) and isinstance(body.body, RecalledBody)):
            updated = msgspec.structs.replace(target, body=RecalledBody())
        elif isinstance(body, EditBody):
            updated = msgspec.structs.replace(target, body=body.body, edited_ts=change.ts)
        else:  # pragma: no cover - apply() passes changes only
            return None
        if not _newer(updated, target):
            return None
        self._messages[target.message_id] = updated
        return updated


def _newer(candidate: Message, held: Message) -> bool:
    """Whether ``candidate`` shows a later state of the message than ``held``."""
    if isinstance(held.body, RecalledBody):
        return False  # final
    if isinstance(candidate.body, RecalledBody):
        return True
    return (candidate.edited_ts or 0) > (held.edited_ts or 0)
