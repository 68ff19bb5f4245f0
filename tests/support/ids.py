"""Id helpers for forgery tests."""

from __future__ import annotations

__all__ = ["other_id"]


def other_id(value: str) -> str:
    """The same id with its last four hex digits changed: always a different id, never by chance the same one."""
    tail = "0000" if value[-4:] != "0000" else "ffff"
    return value[:-4] + tail
