from __future__ import annotations

from bankhub.protocol.cursors import DeliveryCursors, Verdict


def test_in_order_delivery_duplicates_and_gaps() -> None:
    c = DeliveryCursors()
    assert c.offer("a", 5) is Verdict.DELIVER  # first sight starts the cursor
    assert c.offer("a", 6) is Verdict.DELIVER
    assert c.offer("a", 6) is Verdict.DUPLICATE
    assert c.offer("a", 3) is Verdict.DUPLICATE
    assert c.offer("a", 9) is Verdict.GAP
    assert c.get("a") == 6  # a gap does not move the cursor
    assert c.advance("a", 7) and c.advance("a", 8) and not c.advance("a", 8)
    assert c.offer("a", 9) is Verdict.DELIVER


def test_sync_declares_the_position_and_never_moves_it_back() -> None:
    c = DeliveryCursors()
    c.set("a", 10)
    c.set("a", 4)
    assert c.get("a") == 10
    assert c.offer("a", 10) is Verdict.DUPLICATE
    assert c.offer("a", 11) is Verdict.DELIVER
    assert c.snapshot() == {"a": 11}
    assert c.offer("b", 1) is Verdict.DELIVER  # conversations are independent
