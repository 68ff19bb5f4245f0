"""The Python SDK's recall/edit state machine (:class:`bankhub_client.MessageLog`) and
the decoding of the change bodies: live or synced, before or after their target."""

from __future__ import annotations

import json

import pytest

from bankhub_client import EditBody, MessageLog, RecallBody, RecalledBody, TextBody
from bankhub_client.models import Message, UnknownBody
from bankhub_client.revise import EditFrame, RecallFrame, is_change
from bankhub_client.wire import decode_body, decode_notice_body, encode

C = "conv-1"


def _msg(seq: int, mid: str, body: object, ts: int | None = None, edited_ts: int | None = None, conv: str = C) -> Message:
    return Message(
        conversation_id=conv, message_id=mid, seq=seq, sender_id="u1", client_msg_id=f"c{seq}", body=body,  # type: ignore[arg-type]
        ts=ts if ts is not None else 1000 + seq, edited_ts=edited_ts,
    )


def _edit(seq: int, target: str, text: str) -> Message:
    return _msg(seq, f"e{seq}", EditBody(message_id=target, body=TextBody(text=text)))


def _recall(seq: int, target: str) -> Message:
    return _msg(seq, f"r{seq}", RecallBody(message_id=target))


def test_edit_and_recall_after_the_target_live() -> None:
    log = MessageLog()
    assert log.apply(_msg(1, "m1", TextBody(text="hello"))) is not None
    changed = log.apply(_edit(2, "m1", "hello there"))
    assert changed is not None and changed.message_id == "m1" and changed.text == "hello there" and changed.edited_ts == 1002
    assert log.get("e2") is None  # a change is never shown
    changed = log.apply(_recall(3, "m1"))
    assert changed is not None and changed.body == RecalledBody()
    assert [m.message_id for m in log.conversation(C)] == ["m1"]


def test_a_change_that_arrives_before_its_target_waits_for_it() -> None:
    log = MessageLog()
    assert log.apply(_edit(5, "m1", "v2")) is None
    assert log.get("m1") is None
    shown = log.apply(_msg(1, "m1", TextBody(text="v1")))
    assert shown is not None and shown.text == "v2" and shown.edited_ts == 1005
    log2 = MessageLog()
    log2.apply(_recall(6, "m1"))
    log2.apply(_edit(5, "m1", "v2"))  # an older change does not replace a later one waiting
    shown = log2.apply(_msg(1, "m1", TextBody(text="v1")))
    assert shown is not None and shown.body == RecalledBody()


def test_a_recall_is_final_and_the_later_edit_wins_in_any_order() -> None:
    log = MessageLog()
    log.apply(_msg(1, "m1", TextBody(text="v1")))
    log.apply(_recall(4, "m1"))
    assert log.apply(_edit(3, "m1", "v2")) is None  # late edit after the recall
    # a stale copy of the target (e.g. a sync answered before the recall) does not undo it
    assert log.apply(_msg(1, "m1", TextBody(text="v1"))) is None
    m1 = log.get("m1")
    assert m1 is not None and m1.body == RecalledBody()

    log = MessageLog()
    log.apply(_msg(1, "m1", TextBody(text="v1")))
    log.apply(_edit(3, "m1", "v3"))
    assert log.apply(_edit(2, "m1", "v2")) is None  # older edit arrives late
    m1 = log.get("m1")
    assert m1 is not None and m1.text == "v3"


def test_history_and_sync_deliver_the_current_body() -> None:
    """A synced target already carries its current body and edited_ts; the change
    messages synced after it change nothing more."""
    log = MessageLog()
    synced = [
        _msg(1, "m1", TextBody(text="v2"), edited_ts=1002),
        _msg(2, "e2", EditBody(message_id="m1", body=TextBody(text="v2"))),
        _msg(3, "m3", RecalledBody()),
        _msg(4, "r4", RecallBody(message_id="m3")),
    ]
    for m in synced:
        log.apply(m)
    assert [(m.message_id, m.body) for m in log.conversation(C)] == [("m1", TextBody(text="v2")), ("m3", RecalledBody())]


def test_a_change_never_crosses_conversations_and_waiting_changes_are_bounded() -> None:
    log = MessageLog(max_waiting=3)
    log.apply(_msg(1, "m1", TextBody(text="mine"), conv="other"))
    assert log.apply(_recall(2, "m1")) is None  # a change in C for a message of another conversation
    m1 = log.get("m1")
    assert m1 is not None and m1.text == "mine"
    for i in range(10):
        log.apply(_recall(10 + i, f"x{i}"))
    assert len(log._waiting) == 3


def test_messages_kept_are_bounded() -> None:
    log = MessageLog(max_messages=2)
    for i in range(1, 5):
        log.apply(_msg(i, f"m{i}", TextBody(text=str(i))))
    assert len(log) == 2 and log.get("m1") is None and log.get("m4") is not None


def test_bodies_decode_leniently() -> None:
    def dec(obj: object) -> object:
        return decode_body(json.dumps(obj).encode())

    assert dec({"kind": "recalled"}) == RecalledBody()
    assert dec({"kind": "recall", "message_id": "m"}) == RecallBody(message_id="m")
    assert dec({"kind": "edit", "message_id": "m", "body": {"kind": "text", "text": "t"}}) == EditBody(
        message_id="m", body=TextBody(text="t")
    )
    assert dec({"kind": "edit", "message_id": "m", "body": {"kind": "recalled"}}) == EditBody(message_id="m", body=RecalledBody())
    for bad in ({"kind": "recall"}, {"kind": "edit", "message_id": "m"}, {"kind": "edit", "message_id": 3, "body": {"kind": "recalled"}}):
        assert isinstance(dec(bad), UnknownBody)
    # a notice never carries these
    assert isinstance(decode_notice_body(b'{"kind":"recalled"}'), UnknownBody)
    assert is_change(_recall(1, "m")) and not is_change(_msg(1, "m", TextBody(text="t")))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            EditFrame(id="1", conversation_id="c", message_id="m", client_msg_id="k", body=TextBody(text="t")),
            {"type": "edit", "id": "1", "conversation_id": "c", "message_id": "m", "client_msg_id": "k", "body": {"kind": "text", "text": "t"}},
        ),
        (RecallFrame(id="2", conversation_id="c", message_id="m"), {"type": "recall", "id": "2", "conversation_id": "c", "message_id": "m"}),
    ],
)
def test_frames_encode_as_the_hub_expects(frame: EditFrame | RecallFrame, expected: dict[str, object]) -> None:
    assert json.loads(encode(frame)) == expected
