"""The Python SDK's pure bookkeeping (bankhub_client.state, bankhub_client.wire).

No network: these check the decisions the client's I/O code acts on — which incoming
message is yielded, dropped or triggers a sync, which sends are resent after a
reconnect, how URLs are derived and how fast reconnects are retried.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankhub_client.models import Limits, Message, TextBody, UnknownBody
from bankhub_client.state import (
    CloseAction,
    CursorTracker,
    Endpoints,
    FrameIds,
    Inbox,
    Pacer,
    PendingSends,
    ReconnectPolicy,
    Route,
    SyncedConversation,
    Verdict,
    classify_close,
    classify_handshake_status,
    derive_endpoints,
    send_retry_delay,
    validate_id,
    validate_text,
    with_ticket,
)
from bankhub_client.wire import (
    HelloFrame,
    MessageFrame,
    PingFrame,
    ReadFrame,
    SendFrame,
    SyncedFrame,
    SyncFrame,
    decode_server_frame,
    encode,
    to_message,
)

ME = "user-me"
BOB = "user-bob"


def msg(seq: int, conv: str = "c1", sender: str = BOB, cmid: str | None = None, text: str = "hi") -> Message:
    return Message(
        conversation_id=conv,
        message_id=f"m-{conv}-{seq}",
        seq=seq,
        sender_id=sender,
        client_msg_id=cmid or f"cm-{conv}-{seq}",
        body=TextBody(text=text),
        ts=1_700_000_000_000 + seq,
    )


# --- URL derivation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "http_base", "ws_url"),
    [
        ("http://localhost:8080", "http://localhost:8080", "ws://localhost:8080/v1/ws"),
        ("http://localhost:8080/", "http://localhost:8080", "ws://localhost:8080/v1/ws"),
        ("ws://localhost:8080/v1/ws", "http://localhost:8080", "ws://localhost:8080/v1/ws"),
        ("ws://localhost:8080/v1/ws/", "http://localhost:8080", "ws://localhost:8080/v1/ws"),
        ("ws://localhost:8080", "http://localhost:8080", "ws://localhost:8080/v1/ws"),
        ("https://hub.example", "https://hub.example", "wss://hub.example/v1/ws"),
        ("wss://hub.example/v1/ws", "https://hub.example", "wss://hub.example/v1/ws"),
        ("https://hub.example/v1", "https://hub.example", "wss://hub.example/v1/ws"),
        ("https://proxy.example/chat", "https://proxy.example/chat", "wss://proxy.example/chat/v1/ws"),
        ("wss://proxy.example/chat/v1/ws", "https://proxy.example/chat", "wss://proxy.example/chat/v1/ws"),
        ("HTTP://127.0.0.1:9000", "http://127.0.0.1:9000", "ws://127.0.0.1:9000/v1/ws"),
        ("http://[::1]:8080", "http://[::1]:8080", "ws://[::1]:8080/v1/ws"),
    ],
)
def test_derive_endpoints_from_http_or_ws_url(url: str, http_base: str, ws_url: str) -> None:
    assert derive_endpoints(url) == Endpoints(http_base=http_base, ws_url=ws_url)


def test_derive_endpoints_is_idempotent_both_ways() -> None:
    e = derive_endpoints("https://hub.example:8443/prefix")
    assert derive_endpoints(e.ws_url) == e
    assert derive_endpoints(e.http_base) == e


@pytest.mark.parametrize(
    "url", ["ftp://hub", "hub.example:8080", "http://", "http://hub/v1/ws?ticket=x", "http://hub/#frag", ""]
)
def test_derive_endpoints_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        derive_endpoints(url)


def test_with_ticket_quotes_the_ticket() -> None:
    assert with_ticket("wss://hub/v1/ws", "a+b/c=") == "wss://hub/v1/ws?ticket=a%2Bb%2Fc%3D"


# --- cursors: dedup, order, gaps ------------------------------------------------------


def test_offer_delivers_in_order_and_drops_duplicates() -> None:
    t = CursorTracker()
    assert t.get("c1") is None
    assert t.offer("c1", 1) is Verdict.DELIVER
    assert t.offer("c1", 2) is Verdict.DELIVER
    assert t.offer("c1", 2) is Verdict.DUPLICATE
    assert t.offer("c1", 1) is Verdict.DUPLICATE
    assert t.get("c1") == 2


def test_unknown_conversation_starts_at_zero_so_a_missing_first_message_is_a_gap() -> None:
    t = CursorTracker()
    assert t.offer("new", 2) is Verdict.GAP
    assert t.get("new") is None  # a gap moves nothing


def test_offer_reports_gap_and_does_not_advance() -> None:
    t = CursorTracker({"c1": 5})
    assert t.offer("c1", 7) is Verdict.GAP
    assert t.position("c1") == 5
    assert t.offer("c1", 6) is Verdict.DELIVER
    assert t.offer("c1", 7) is Verdict.DELIVER


def test_conversations_are_independent() -> None:
    t = CursorTracker({"a": 3})
    assert t.offer("b", 1) is Verdict.DELIVER
    assert t.offer("a", 1) is Verdict.DUPLICATE
    assert t.snapshot() == {"a": 3, "b": 1}


def test_seed_never_moves_backwards_and_snapshot_is_a_copy() -> None:
    t = CursorTracker()
    t.seed("c1", 10)
    t.seed("c1", 4)
    assert t.position("c1") == 10
    snap = t.snapshot()
    snap["c1"] = 0
    assert t.position("c1") == 10
    with pytest.raises(ValueError):
        t.seed("c1", -1)


def test_accept_from_sync_is_authoritative_but_still_deduplicates() -> None:
    t = CursorTracker({"c1": 3})
    assert t.accept("c1", 3) is False
    assert t.accept("c1", 4) is True
    assert t.accept("c1", 7) is True  # synced lists have no gaps: skipped seqs do not exist
    assert t.accept("c1", 5) is False
    assert t.position("c1") == 7


def test_own_send_beyond_a_hole_is_held_aside_then_absorbed() -> None:
    t = CursorTracker({"c1": 5})
    # my send committed as 7 while 6 (someone else's) is still on its way
    assert t.hold("c1", 7) is True
    assert t.position("c1") == 5
    assert t.has_hole_before("c1", 7)
    assert t.holes() == ["c1"]
    assert t.offer("c1", 7) is Verdict.DUPLICATE  # my own echo is not yielded
    assert t.offer("c1", 6) is Verdict.DELIVER
    assert t.position("c1") == 7  # 6 filled the hole; 7 absorbed
    assert not t.has_hole_before("c1", 7)
    assert t.holes() == []
    assert t.offer("c1", 8) is Verdict.DELIVER


def test_hold_next_seq_advances_directly() -> None:
    t = CursorTracker({"c1": 5})
    assert t.hold("c1", 6) is False
    assert t.position("c1") == 6
    assert t.hold("c1", 3) is False  # old: nothing changes
    assert t.position("c1") == 6


def test_sync_fills_hole_and_skips_held_own_send() -> None:
    t = CursorTracker({"c1": 5})
    t.hold("c1", 7)
    assert [s for s in (6, 7, 8) if t.accept("c1", s)] == [6, 8]
    assert t.position("c1") == 8
    assert t.holes() == []


def test_seed_absorbs_held_seqs() -> None:
    t = CursorTracker({"c1": 1})
    t.hold("c1", 4)
    t.hold("c1", 6)
    t.seed("c1", 3)
    assert t.position("c1") == 4  # 4 was held just after the new cursor
    assert t.has_hole_before("c1", 6)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_any_lossy_duplicating_reordering_stream_plus_sync_yields_each_seq_once_in_order(
    n: int, data: st.DataObject
) -> None:
    """Live frames may be lost, repeated or reordered; a GAP triggers a sync that
    returns everything after the cursor. Whatever happens, the yielded seqs are
    exactly 1..n, once each, in order."""
    live = data.draw(st.lists(st.integers(min_value=1, max_value=n), max_size=3 * n))
    t = CursorTracker()
    yielded: list[int] = []

    def sync() -> None:
        for seq in range(t.position("c1") + 1, n + 1):
            if t.accept("c1", seq):
                yielded.append(seq)

    for seq in live:
        verdict = t.offer("c1", seq)
        if verdict is Verdict.DELIVER:
            yielded.append(seq)
        elif verdict is Verdict.GAP:
            sync()
    sync()  # the sync after a reconnect
    assert yielded == list(range(1, n + 1))


# --- pending sends ---------------------------------------------------------------------


def test_pending_add_joins_same_client_msg_id_and_refuses_conflicting_text() -> None:
    p = PendingSends()
    a, created = p.add("c1", "k1", "hello")
    assert created
    b, created = p.add("c1", "k1", "hello")
    assert b is a and not created
    with pytest.raises(ValueError):
        p.add("c1", "k1", "other text")
    c, created = p.add("c2", "k1", "other text")  # same key in another conversation is another send
    assert created and c is not a
    assert len(p) == 2


def test_pending_transmission_bookkeeping_and_resend_after_connection_loss() -> None:
    p = PendingSends()
    a, _ = p.add("c1", "k1", "one")
    b, _ = p.add("c1", "k2", "two")
    c, _ = p.add("c2", "k3", "three")
    assert p.due(0.0) == [a, b, c]
    p.transmitting(a, "s1")
    p.transmitting(b, "s2")
    assert p.due(0.0) == [c]
    assert p.by_frame("s1") is a and p.by_frame("s2") is b
    assert p.remove(a)  # acknowledged
    assert p.by_frame("s1") is None

    p.connection_lost()
    # every unacknowledged send is due again, in the original order, same client_msg_id
    assert p.due(0.0) == [b, c]
    assert [e.client_msg_id for e in p.due(0.0)] == ["k2", "k3"]
    assert p.by_frame("s2") is None  # answers to old frames are not attributed any more
    p.transmitting(b, "s9")
    assert b.attempts == 2
    assert p.by_frame("s9") is b


def test_pending_retry_later_defers_the_entry() -> None:
    p = PendingSends()
    a, _ = p.add("c1", "k1", "one")
    b, _ = p.add("c1", "k2", "two")
    p.transmitting(a, "s1")
    p.transmitting(b, "s2")
    p.retry_later(a, not_before=10.0)
    assert p.by_frame("s1") is None
    assert p.due(9.0) == []
    assert p.next_due_in(9.0) == pytest.approx(1.0)
    assert p.due(10.0) == [a]
    assert p.next_due_in(11.0) == 0.0
    p.remove(a)
    assert p.next_due_in(11.0) is None  # b is in flight: nothing waits


def test_pending_remove_is_idempotent() -> None:
    p = PendingSends()
    a, _ = p.add("c1", "k1", "one")
    assert p.remove(a)
    assert not p.remove(a)
    assert list(p) == []


# --- inbox: routing frames -------------------------------------------------------------


def test_inbox_yields_others_messages_in_order_drops_duplicates_and_flags_gaps() -> None:
    inbox = Inbox(ME, {"c1": 0})
    assert inbox.on_message(msg(1)).route is Route.YIELD
    assert inbox.on_message(msg(1)).route is Route.DROP
    assert inbox.on_message(msg(3)).route is Route.GAP
    assert inbox.on_message(msg(2)).route is Route.YIELD


def test_inbox_sent_acknowledges_pending_send_and_builds_the_message() -> None:
    inbox = Inbox(ME)
    entry, _ = inbox.pending.add("c1", "k1", "hello")
    inbox.pending.transmitting(entry, "s1")
    acked = inbox.on_sent("s1", "c1", "k1", "m-1", 1, 123)
    assert acked is not None and acked.pending is entry and not acked.hole
    assert acked.message == Message("c1", "m-1", 1, ME, "k1", TextBody("hello"), 123)
    assert len(inbox.pending) == 0
    assert inbox.cursors.position("c1") == 1
    # my own message echoed back as a live message is not yielded
    assert inbox.on_message(msg(1, sender=ME, cmid="k1")).route is Route.DROP
    # a repeated sent (e.g. for the resend of the same send) answers nothing pending
    assert inbox.on_sent("s1", "c1", "k1", "m-1", 1, 123) is None


def test_inbox_sent_with_mismatched_key_is_ignored() -> None:
    inbox = Inbox(ME)
    entry, _ = inbox.pending.add("c1", "k1", "hello")
    inbox.pending.transmitting(entry, "s1")
    assert inbox.on_sent("s1", "c1", "other", "m-1", 1, 0) is None
    assert len(inbox.pending) == 1


def test_inbox_own_message_seen_before_sent_completes_the_send() -> None:
    inbox = Inbox(ME, {"c1": 4})
    entry, _ = inbox.pending.add("c1", "k1", "hello")
    inbox.pending.transmitting(entry, "s1")
    routed = inbox.on_message(msg(5, sender=ME, cmid="k1"))
    assert routed.route is Route.ACK and routed.pending is entry and not routed.hole
    assert len(inbox.pending) == 0
    assert inbox.on_sent("s1", "c1", "k1", "m-c1-5", 5, 0) is None  # already done


def test_inbox_sent_beyond_a_hole_reports_the_hole() -> None:
    inbox = Inbox(ME, {"c1": 4})
    entry, _ = inbox.pending.add("c1", "k1", "hello")
    inbox.pending.transmitting(entry, "s1")
    acked = inbox.on_sent("s1", "c1", "k1", "m", 6, 0)
    assert acked is not None and acked.hole
    assert inbox.on_message(msg(5)).route is Route.YIELD  # the missing one arrives
    assert not inbox.cursors.has_hole_before("c1", 6)
    assert inbox.on_message(msg(7)).route is Route.YIELD


def test_inbox_my_messages_from_other_devices_are_yielded() -> None:
    inbox = Inbox(ME, {"c1": 0})
    assert inbox.on_message(msg(1, sender=ME, cmid="from-phone")).route is Route.YIELD


def test_inbox_synced_yields_new_messages_in_seq_order_once() -> None:
    inbox = Inbox(ME, {"c1": 2})
    inbox.on_message(msg(3))  # arrived live meanwhile
    result = inbox.on_synced(
        [
            SyncedConversation("c1", [msg(4), msg(3), msg(5)], has_more=False),
            SyncedConversation("c2", [msg(1, "c2"), msg(2, "c2")], has_more=True),
        ]
    )
    assert [(m.conversation_id, m.seq) for m in result.delivered] == [("c1", 4), ("c1", 5), ("c2", 1), ("c2", 2)]
    assert result.more
    assert inbox.cursors.snapshot() == {"c1": 5, "c2": 2}
    again = inbox.on_synced([SyncedConversation("c1", [msg(5)], has_more=False)])
    assert again.delivered == [] and not again.more


def test_inbox_synced_has_more_without_messages_does_not_loop() -> None:
    inbox = Inbox(ME)
    assert not inbox.on_synced([SyncedConversation("c1", [], has_more=True)]).more


def test_reconnect_scenario_committed_send_is_found_by_sync_not_resent() -> None:
    """The connection dropped after the server committed my send but before `sent`
    arrived: the sync after the reconnect returns it, completing the send."""
    inbox = Inbox(ME, {"c1": 1})
    lost, _ = inbox.pending.add("c1", "k-lost-ack", "committed before the drop")
    never, _ = inbox.pending.add("c1", "k-never-arrived", "lost with the connection")
    inbox.pending.transmitting(lost, "s1")
    inbox.pending.transmitting(never, "s2")
    inbox.pending.connection_lost()

    result = inbox.on_synced(
        [SyncedConversation("c1", [msg(2), msg(3, sender=ME, cmid="k-lost-ack"), msg(4)], has_more=False)]
    )
    assert [m.seq for m in result.delivered] == [2, 4]
    assert [a.pending for a in result.acked] == [lost]
    assert result.acked[0].message.seq == 3
    # only the send the server never got is resent, with its original client_msg_id
    assert [e.client_msg_id for e in inbox.pending.due(0.0)] == ["k-never-arrived"]
    assert inbox.cursors.position("c1") == 4


def test_reconnect_scenario_resend_answered_duplicate() -> None:
    """The resend of a send the server had stored is answered with the original."""
    inbox = Inbox(ME, {"c1": 7})
    entry, _ = inbox.pending.add("c1", "k1", "hello")
    inbox.pending.transmitting(entry, "s1")
    inbox.pending.connection_lost()
    inbox.on_synced([])  # the sync found nothing new (e.g. the message was seq 7)
    (due,) = inbox.pending.due(0.0)
    inbox.pending.transmitting(due, "s2")
    acked = inbox.on_sent("s2", "c1", "k1", "m-orig", 7, 42)
    assert acked is not None and acked.message.seq == 7 and not acked.hole
    assert len(inbox.pending) == 0
    assert inbox.cursors.position("c1") == 7


# --- retry policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1000, CloseAction.STOP),
        (1001, CloseAction.RECONNECT),
        (1006, CloseAction.RECONNECT),
        (None, CloseAction.RECONNECT),
        (1008, CloseAction.AUTH),
        (1009, CloseAction.FATAL),
        (1011, CloseAction.RECONNECT),
        (1012, CloseAction.RECONNECT),
        (4008, CloseAction.RECONNECT),
        (1002, CloseAction.FATAL),
        (4999, CloseAction.FATAL),
    ],
)
def test_classify_close(code: int | None, action: CloseAction) -> None:
    assert classify_close(code) is action


@pytest.mark.parametrize(
    ("status", "action"),
    [(401, CloseAction.AUTH), (403, CloseAction.AUTH), (429, CloseAction.RECONNECT), (502, CloseAction.RECONNECT),
     (503, CloseAction.RECONNECT), (404, CloseAction.FATAL), (400, CloseAction.FATAL)],
)
def test_classify_handshake_status(status: int, action: CloseAction) -> None:
    assert classify_handshake_status(status) is action


def test_backoff_is_exponential_capped_and_jittered_downwards() -> None:
    p = ReconnectPolicy(initial_delay=0.5, max_delay=10.0, multiplier=2.0, jitter=0.5)
    assert [p.delay(n, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert p.delay(3, 0.999999) == pytest.approx(1.0, rel=1e-5)  # at most halved
    assert p.delay(10_000, 0.0) == 10.0  # no overflow
    for n in range(1, 20):
        for r in (0.0, 0.3, 0.99):
            assert 0.0 <= p.delay(n, r) <= 10.0


def test_backoff_bounds_attempts_and_time() -> None:
    p = ReconnectPolicy(max_attempts=3, max_elapsed=60.0)
    assert p.allows(1, 0.0) and p.allows(3, 59.9)
    assert not p.allows(4, 0.0)
    assert not p.allows(2, 60.0)
    unbounded = ReconnectPolicy(max_attempts=None, max_elapsed=None)
    assert unbounded.allows(10_000, 1e9)


@pytest.mark.parametrize(
    "kwargs", [{"jitter": 1.5}, {"multiplier": 0.5}, {"max_attempts": 0}, {"initial_delay": -1.0}]
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


def test_send_retry_delay_prefers_server_hint() -> None:
    assert send_retry_delay("rate_limited", 1500, 1) == 1.5
    assert send_retry_delay("unavailable", None, 1) == 0.25
    assert send_retry_delay("unavailable", None, 3) == 1.0
    assert send_retry_delay("unavailable", None, 50) == 8.0


def test_pacer_allows_a_burst_then_spaces_frames() -> None:
    pacer = Pacer(rate=10.0, burst=3, now=0.0)
    assert [pacer.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.reserve(0.0) == pytest.approx(0.1)
    assert pacer.reserve(0.0) == pytest.approx(0.2)  # bookings queue up
    assert pacer.reserve(1.0) == 0.0  # refilled


def test_pacer_for_limits_stays_under_the_server_limits() -> None:
    pacer = Pacer.for_limits(Limits(frames_per_second=50.0, frame_burst=100), now=0.0)
    assert pacer.rate < 50.0 and pacer.burst < 100


# --- validation, ids -----------------------------------------------------------------


def test_validate_text_respects_hello_limits() -> None:
    limits = Limits(max_text_chars=5)
    assert validate_text("héllo", limits) == TextBody("héllo")
    with pytest.raises(ValueError):
        validate_text("toolong", limits)
    with pytest.raises(ValueError):
        validate_text("", limits)


def test_validate_id() -> None:
    assert validate_id("x", "a" * 64) == "a" * 64
    for bad in ("", "a" * 65):
        with pytest.raises(ValueError):
            validate_id("x", bad)


def test_frame_ids_are_unique() -> None:
    ids = FrameIds()
    got = {ids.next("s") for _ in range(100)} | {ids.next("y") for _ in range(100)}
    assert len(got) == 200


# --- wire format ---------------------------------------------------------------------


def test_client_frames_encode_as_the_protocol_expects() -> None:
    send = SendFrame(id="s1", conversation_id="c1", client_msg_id="k1", body=TextBody("hi"))
    assert json.loads(encode(send)) == {
        "type": "send", "id": "s1", "conversation_id": "c1", "client_msg_id": "k1", "body": {"kind": "text", "text": "hi"}
    }
    assert json.loads(encode(ReadFrame(id="r1", conversation_id="c1", seq=3))) == {
        "type": "read", "id": "r1", "conversation_id": "c1", "seq": 3
    }
    assert json.loads(encode(SyncFrame(id="y1", since={"c1": 4}, limit=100))) == {
        "type": "sync", "id": "y1", "since": {"c1": 4}, "limit": 100
    }
    assert json.loads(encode(PingFrame(id="p1"))) == {"type": "ping", "id": "p1"}


def test_server_frames_decode_leniently() -> None:
    hello = decode_server_frame(
        b'{"type":"hello","protocol":1,"session_id":"s","user_id":"u","username":"alice","role":"rm",'
        b'"node":"n1","server_time":1,"limits":{"max_frame_bytes":1000,"max_text_chars":10,"max_sync_limit":50,'
        b'"frames_per_second":5.0,"frame_burst":10,"outbound_queue":64,"new_limit":1},"extra":true}'
    )
    assert isinstance(hello, HelloFrame)
    assert hello.limits.max_text_chars == 10
    assert decode_server_frame(b'{"type":"hologram","conversation_id":"c1"}') is None  # a future frame type
    with pytest.raises(msgspec.DecodeError):
        decode_server_frame(b'{"type":"sent","id":"s1"}')  # a known type missing fields
    with pytest.raises(msgspec.DecodeError):
        decode_server_frame(b"not json")


def test_message_bodies_of_unknown_kind_do_not_break_decoding() -> None:
    frame = decode_server_frame(
        b'{"type":"synced","id":"y1","conversations":[{"conversation_id":"c1","last_seq":2,"read_seq":0,'
        b'"unread":2,"has_more":false,"messages":['
        b'{"conversation_id":"c1","message_id":"m1","seq":1,"sender_id":"u","client_msg_id":"k1",'
        b'"body":{"kind":"text","text":"hi"},"ts":5},'
        b'{"conversation_id":"c1","message_id":"m2","seq":2,"sender_id":"u","client_msg_id":"k2",'
        b'"body":{"kind":"image","url":"x"},"ts":6}]}]}'
    )
    assert isinstance(frame, SyncedFrame)
    first, second = (to_message(m) for m in frame.conversations[0].messages)
    assert first.text == "hi" and first.body == TextBody("hi")
    assert second.text is None
    assert second.body == UnknownBody(kind="image", data={"kind": "image", "url": "x"})


def test_message_frame_round_trip() -> None:
    frame = decode_server_frame(
        b'{"type":"message","message":{"conversation_id":"c1","message_id":"m1","seq":9,"sender_id":"u",'
        b'"client_msg_id":"k","body":{"kind":"text","text":"yo"},"ts":7}}'
    )
    assert isinstance(frame, MessageFrame)
    assert to_message(frame.message) == Message("c1", "m1", 9, "u", "k", TextBody("yo"), 7)
