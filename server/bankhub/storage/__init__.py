"""Postgres storage: one module per table group; all SQL of the hub lives here."""

from .conversations import ConversationStore
from .db import Database, StorageUnavailable
from .keys import ConversationKeyStore, KeyUnavailable
from .messages import Appended, MessageStore, NewMessage
from .migrate import migrate
from .sessions import SessionStore
from .users import UserStore

__all__ = [
    "Database",
    "StorageUnavailable",
    "ConversationKeyStore",
    "KeyUnavailable",
    "ConversationStore",
    "MessageStore",
    "NewMessage",
    "Appended",
    "SessionStore",
    "UserStore",
    "migrate",
]
