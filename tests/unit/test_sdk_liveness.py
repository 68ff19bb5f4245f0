"""The SDK's pure typing helpers: when to send ``typing``, and who is typing now."""

from __future__ import annotations

import pytest

from bankhub_client import TypingBoard, TypingEvent, TypingSender


def test_the_sender_sends_one_start_per_interval_and_one_stop() -> None:
    s = TypingSender(interval=3.0)
    assert s.input(0.0) is True
    assert s.input(1.0) is False and s.input(2.99) is False
    assert s.input(3.0) is True  # a refresh keeps the other side's indicator on
    assert s.stop() is True
    assert s.stop() is False  # nothing to stop
    assert s.input(3.1) is True  # typing again right after sending
    with pytest.raises(ValueError):
        TypingSender(interval=0)


def _ev(user: str, active: bool, conv: str = "c", ttl_ms: int = 6000) -> TypingEvent:
    return TypingEvent(conversation_id=conv, user_id=user, active=active, ttl_ms=ttl_ms)


def test_the_board_shows_and_clears_and_expires() -> None:
    b = TypingBoard()
    b.on_typing(_ev("wang", True), 0.0)
    b.on_typing(_ev("li", True, conv="other"), 0.0)
    assert b.typing("c", 1.0) == ["wang"]
    b.on_typing(_ev("wang", False), 2.0)
    assert b.typing("c", 2.0) == []
    b.on_typing(_ev("wang", True), 3.0)
    assert b.typing("c", 8.9) == ["wang"]
    assert b.typing("c", 9.0) == []  # a lost stop: gone after ttl
    b.on_typing(_ev("wang", True), 10.0)
    b.clear("c", "wang")  # their message arrived
    assert b.typing("c", 10.0) == []


def test_the_board_is_bounded() -> None:
    b = TypingBoard(max_entries=2)
    for i in range(5):
        b.on_typing(_ev(f"u{i}", True), 0.0)
    assert b.typing("c", 0.0) == ["u3", "u4"]
