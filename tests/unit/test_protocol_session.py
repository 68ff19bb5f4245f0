"""The sans-I/O protocol core, fed frames directly with a hand-driven clock."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bankhub.protocol.frames import Ping, Read, Send, Sync, TextBody
from bankhub.protocol.session import Accept, Close, Reject, ServerSession, SessionLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session(**limits: float) -> tuple[ServerSession, Clock]:
    clock = Clock()
    return ServerSession(SessionLimits(**limits), clock=clock), clock  # type: ignore[arg-type]


SEND = {"type": "send", "id": "1", "conversation_id": "c", "client_msg_id": "m", "body": {"kind": "text", "text": "hi"}}


def test_valid_frames_are_accepted_as_typed_requests() -> None:
    s, _ = session()
    out = s.receive(json.dumps(SEND))
    assert out == Accept(Send(id="1", conversation_id="c", client_msg_id="m", body=TextBody(text="hi")))
    assert s.receive('{"type":"read","id":"2","conversation_id":"c","seq":5}') == Accept(Read("2", "c", 5))
    assert s.receive('{"type":"sync","id":"3"}') == Accept(Sync("3", {}, 100))
    assert s.receive('{"type":"ping"}') == Accept(Ping(None))


def _code(out: object) -> str:
    assert isinstance(out, Reject), out
    return out.error.code


def test_each_kind_of_bad_frame_gets_its_error_code_and_the_id_when_readable() -> None:
    s, _ = session()
    assert _code(s.receive("{not json")) == "malformed"
    assert _code(s.receive("[]")) == "malformed"
    assert _code(s.receive('"text"')) == "malformed"
    assert _code(s.receive(b"\x00", binary=True)) == "malformed"
    out = s.receive('{"type":"fly","id":"f1"}')
    assert isinstance(out, Reject) and out.error.code == "unknown_type" and out.error.id == "f1"
    assert _code(s.receive('{"id":"x"}')) == "unknown_type"
    out = s.receive('{"type":"read","id":"r1","conversation_id":"c","seq":-1}')
    assert isinstance(out, Reject) and out.error.code == "invalid_frame" and out.error.id == "r1"
    assert _code(s.receive(json.dumps({**SEND, "extra": 1}))) == "invalid_frame"
    assert _code(s.receive(json.dumps({**SEND, "body": {"kind": "text", "text": ""}}))) == "invalid_frame"
    assert _code(s.receive(json.dumps({**SEND, "body": {"kind": "text", "text": "x" * 4001}}))) == "invalid_frame"
    # an id that is not a short string is not echoed
    out = s.receive('{"type":"fly","id":{"a":1}}')
    assert isinstance(out, Reject) and out.error.id is None


def test_oversize_frame_closes_with_1009_and_the_session_stays_closed() -> None:
    s, _ = session(max_frame_bytes=100)
    assert s.receive("x" * 101) == Close(1009, "frame exceeds 100 bytes")
    assert isinstance(s.receive('{"type":"ping"}'), Close)
    # the limit counts UTF-8 bytes, not characters
    s2, _ = session(max_frame_bytes=100)
    assert isinstance(s2.receive("元" * 34), Close)


def test_rate_limit_rejects_with_retry_hint_then_recovers() -> None:
    s, clock = session(frames_per_second=2, frame_burst=2)
    assert isinstance(s.receive('{"type":"ping"}'), Accept)
    assert isinstance(s.receive('{"type":"ping"}'), Accept)
    out = s.receive('{"type":"ping","id":"p"}')
    assert isinstance(out, Reject) and out.error.code == "rate_limited" and out.error.id == "p"
    assert out.error.retry_after_ms == 500
    clock.now += 0.5
    assert isinstance(s.receive('{"type":"ping"}'), Accept)


def test_sustained_abuse_closes_with_1008_but_occasional_mistakes_do_not() -> None:
    s, clock = session(max_strikes=3, strike_window=10)
    for _ in range(3):
        assert isinstance(s.receive("bad"), Reject)
    assert s.receive("bad") == Close(1008, "too many invalid or rate-limited frames")
    s2, clock2 = session(max_strikes=3, strike_window=10)
    for _ in range(10):
        assert isinstance(s2.receive("bad"), Reject)
        clock2.now += 4  # spread out: never more than 3 within the window
    assert isinstance(s2.receive('{"type":"ping"}'), Accept)


def test_token_bucket_refills_up_to_burst() -> None:
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) > 0
    assert b.take(100.0) == 0.0  # refilled, but capped at burst
    assert [b.take(100.0) for _ in range(3)][-1] > 0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)), st.booleans())
def test_arbitrary_input_never_raises_and_always_gets_an_outcome(data: bytes | str, binary: bool) -> None:
    s, _ = session()
    out = s.receive(data, binary=binary)
    assert isinstance(out, (Accept, Reject, Close))


frames = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["send", "read", "sync", "ping", "pong", ""]),
        "id": st.one_of(st.text(max_size=70), st.integers(), st.none()),
        "conversation_id": st.one_of(st.text(max_size=70), st.integers()),
        "seq": st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
        "body": st.one_of(st.none(), st.fixed_dictionaries({"kind": st.sampled_from(["text", "image"]), "text": st.text(max_size=20)})),
    }
)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_mutated_frames_are_accepted_only_when_valid(frame: dict[str, object]) -> None:
    s, _ = session()
    out = s.receive(json.dumps(frame))
    if isinstance(out, Reject):
        assert out.error.code in {"malformed", "unknown_type", "invalid_frame"}
    else:
        assert isinstance(out, Accept)


def test_a_node_enforces_exactly_the_text_limit_it_announces() -> None:
    s, _ = session(max_text_chars=10)
    assert s.limits.as_limits().max_text_chars == 10
    ok = s.receive(json.dumps({**SEND, "body": {"kind": "text", "text": "x" * 10}}))
    assert isinstance(ok, Accept)
    out = s.receive(json.dumps({**SEND, "body": {"kind": "text", "text": "x" * 11}}))
    assert isinstance(out, Reject) and out.error.code == "invalid_frame" and out.error.id == "1"
    try:
        SessionLimits(max_text_chars=5000)
    except ValueError:
        pass
    else:
        raise AssertionError("a limit above the protocol's maximum was accepted")


# --- deeply nested JSON: every decode failure is a malformed answer, never an exception ---


NESTED = [
    "[" * 30000,
    '{"a":' * 30000,
    '{"a":' * 2000 + "1" + "}" * 2000,  # well-formed, only too deep
    "[" * 2000 + "]" * 2000,
    '{"type":"ping","id":"p","x":' + "[" * 30000,
    '{"type":"sync","id":"s","since":' + '{"a":' * 30000,
    '{"type":"sync","id":"s","accounts":' + "[" * 2000 + "]" * 2000 + "}",
]


def test_deeply_nested_json_is_answered_malformed_and_never_raises() -> None:
    s, clock = session(max_frame_bytes=256 * 1024, max_strikes=100)
    for frame in NESTED:
        out = s.receive(frame)
        assert isinstance(out, Reject) and out.error.code == "malformed", (frame[:40], out)
        out = s.receive(frame.encode())
        assert isinstance(out, Reject) and out.error.code == "malformed", (frame[:40], out)
    # also when the frame is refused for the rate first (its id is peeked at, not decoded blindly)
    s, clock = session(max_frame_bytes=256 * 1024, frame_burst=1, frames_per_second=1.0)
    assert isinstance(s.receive('{"type":"ping"}'), Accept)
    out = s.receive("[" * 30000)
    assert isinstance(out, Reject) and out.error.code == "rate_limited"
    # and the session goes on: a valid frame after all of it is accepted
    clock.now += 5
    assert s.receive('{"type":"ping","id":"after"}') == Accept(Ping("after"))


def test_hello_limits_announce_the_abuse_threshold_and_the_idle_timeout() -> None:
    limits = SessionLimits(max_strikes=7, strike_window=3.5, idle_timeout=42.0).as_limits()
    assert (limits.max_strikes, limits.strike_window, limits.idle_timeout) == (7, 3.5, 42.0)
    # the announced threshold is the enforced one: strike max_strikes + 1 closes with 1008
    s, _ = session(max_strikes=7, strike_window=3.5)
    outs = [s.receive("{not json") for _ in range(8)]
    assert all(isinstance(o, Reject) for o in outs[:7])
    assert outs[7] == Close(1008, "too many invalid or rate-limited frames")
