"""Postgres storage: one module per table group; all SQL of the hub lives here."""

from .contacts import ContactStore
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
    "ContactStore",
    "MessageStore",
    "NewMessage",
    "Appended",
    "SessionStore",
    "UserStore",
    "migrate",
]
