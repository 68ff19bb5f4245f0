"""Who may recall or edit a message, and until when: :func:`bankhub.policy.may_revise`
with the elapsed time injected (the database measures it), at the window's edges."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
import pytest

from bankhub import policy
from bankhub.models import Membership, RevisionTarget, Role, User
from bankhub.protocol.frames import ClientFrame, Edit, Recall
from bankhub.protocol.session import Accept, Reject, ServerSession
from bankhub.settings import Settings

LI = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
RM = User("rm1", "rm.wang", "Wang", Role.RM, "bj")
GONE = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1", disabled=True)
SENT = dt.datetime(2026, 12, 7, 9, 0, 0, tzinfo=dt.timezone.utc)
MEMBER = Membership("conv", "direct", LI.id, "member", 3, 3)
RECALL, EDIT = 120.0, 900.0


def _target(**kw: object) -> RevisionTarget:
    fields: dict[str, object] = dict(
        conversation_id="conv", message_id="m1", seq=1, sender_id=LI.id, kind="text", created_at=SENT, edits=0,
        recalled=False, readable=True,
    )
    fields.update(kw)
    return RevisionTarget(**fields)  # type: ignore[arg-type]


def _at(seconds: float) -> float:
    """``seconds`` after the message's commit (what target_txn measures by the database's clock)."""
    return seconds


@pytest.mark.parametrize(
    ("change", "window", "seconds", "allowed"),
    [
        ("recall", RECALL, 0, True),
        ("recall", RECALL, 119.999, True),
        ("recall", RECALL, 120, True),  # the window's last instant is inside it
        ("recall", RECALL, 120.001, False),
        ("recall", RECALL, 600, False),
        ("edit", EDIT, 899.999, True),
        ("edit", EDIT, 900, True),
        ("edit", EDIT, 900.001, False),
    ],
)
def test_window_edges(change: str, window: float, seconds: float, allowed: bool) -> None:
    decision = policy.may_revise(LI, MEMBER, _target(), change, _at(seconds), window, 20)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.code == "forbidden" and f"{change} window" in decision.reason


def test_the_window_is_the_elapsed_time_whatever_a_clock_reads() -> None:
    # the message's stamped time is not consulted: only the elapsed time the database measured
    for stamped in (SENT - dt.timedelta(hours=1), SENT + dt.timedelta(hours=1)):
        assert policy.may_revise(LI, MEMBER, _target(created_at=stamped), "recall", 1.0, RECALL, 20).allowed
        assert policy.may_revise(LI, MEMBER, _target(created_at=stamped), "recall", 121.0, RECALL, 20).code == "forbidden"


def test_window_messages_name_the_window() -> None:
    assert "(2 minutes after sending)" in policy.may_revise(LI, MEMBER, _target(), "recall", _at(121), RECALL, 20).reason
    assert "(15 minutes after sending)" in policy.may_revise(LI, MEMBER, _target(), "edit", _at(901), EDIT, 20).reason
    assert "(1 minute after" in policy.may_revise(LI, MEMBER, _target(), "recall", _at(61), 60, 20).reason
    # a zero window turns the feature off
    assert not policy.may_revise(LI, MEMBER, _target(), "recall", _at(0.001), 0, 20).allowed


def test_only_the_sender_of_a_text_message_in_this_conversation() -> None:
    now = _at(1)
    rm_member = Membership("conv", "direct", RM.id, "member", 3, 3)
    # someone else's message: forbidden (the RM sees it, but did not send it)
    assert policy.may_revise(RM, rm_member, _target(), "recall", now, RECALL, 20).code == "forbidden"
    assert policy.may_revise(RM, rm_member, _target(), "edit", now, EDIT, 20).code == "forbidden"
    # not a member: not found (existence does not leak); disabled: forbidden
    assert policy.may_revise(LI, None, _target(), "recall", now, RECALL, 20).code == "not_found"
    assert policy.may_revise(LI, rm_member, _target(), "recall", now, RECALL, 20).code == "not_found"
    assert policy.may_revise(GONE, MEMBER, _target(), "recall", now, RECALL, 20).code == "forbidden"
    # no such message, or one of another conversation
    assert policy.may_revise(LI, MEMBER, None, "recall", now, RECALL, 20).code == "not_found"
    assert policy.may_revise(LI, MEMBER, _target(conversation_id="other"), "edit", now, EDIT, 20).code == "not_found"
    # not a system notice, a card, an edit/recall message, an unreadable body
    for kind in ("system", "card", "edit", "recall", "image"):
        d = policy.may_revise(LI, MEMBER, _target(kind=kind), "recall", now, RECALL, 20)
        assert d.code == "forbidden" and "only a text message" in d.reason
    assert policy.may_revise(LI, MEMBER, _target(readable=False), "edit", now, EDIT, 20).code == "forbidden"


def test_not_twice_recalled_not_edited_once_recalled_and_edits_are_bounded() -> None:
    now = _at(1)
    gone = _target(recalled=True, kind="recalled")
    assert "recalled" in policy.may_revise(LI, MEMBER, gone, "recall", now, RECALL, 20).reason
    assert "recalled" in policy.may_revise(LI, MEMBER, gone, "edit", now, EDIT, 20).reason
    assert policy.may_revise(LI, MEMBER, _target(edits=19), "edit", now, EDIT, 20).allowed
    assert policy.may_revise(LI, MEMBER, _target(edits=20), "edit", now, EDIT, 20).code == "forbidden"
    assert policy.may_revise(LI, MEMBER, _target(edits=20), "recall", now, RECALL, 20).allowed  # can still withdraw it


def test_a_block_refuses_an_edit_but_not_a_recall() -> None:
    now = _at(1)
    assert not policy.may_revise(LI, MEMBER, _target(), "edit", now, EDIT, 20, blocked=True).allowed
    assert policy.may_revise(LI, MEMBER, _target(), "recall", now, RECALL, 20, blocked=True).allowed


def test_settings_defaults() -> None:
    s = Settings()
    assert (s.message_recall_seconds, s.message_edit_seconds, s.message_max_edits) == (120.0, 900.0, 20)
    env = Settings.from_env({"BANKHUB_MESSAGE_RECALL_SECONDS": "30", "BANKHUB_MESSAGE_EDIT_SECONDS": "60"})
    assert (env.message_recall_seconds, env.message_edit_seconds) == (30.0, 60.0)


def test_frames_validate_at_the_boundary() -> None:
    decode = msgspec.json.Decoder(ClientFrame).decode
    edit = decode(b'{"type":"edit","id":"1","conversation_id":"c","message_id":"m","client_msg_id":"k","body":{"kind":"text","text":"hi"}}')
    assert isinstance(edit, Edit) and edit.body.text == "hi"
    assert isinstance(decode(b'{"type":"recall","id":"1","conversation_id":"c","message_id":"m"}'), Recall)
    for bad in (
        b'{"type":"recall","id":"1","conversation_id":"c"}',  # no message_id
        b'{"type":"recall","id":"1","conversation_id":"c","message_id":"m","extra":1}',
        b'{"type":"edit","id":"1","conversation_id":"c","message_id":"m","client_msg_id":"k","body":{"kind":"text","text":""}}',
        b'{"type":"edit","id":"1","conversation_id":"c","message_id":"m","body":{"kind":"text","text":"x"}}',  # no client_msg_id
        # a client may not send the server's own kinds
        b'{"type":"edit","id":"1","conversation_id":"c","message_id":"m","client_msg_id":"k","body":{"kind":"recalled"}}',
        b'{"type":"send","id":"1","conversation_id":"c","client_msg_id":"k","body":{"kind":"recall","message_id":"m"}}',
        b'{"type":"send","id":"1","conversation_id":"c","client_msg_id":"k","body":{"kind":"edit","message_id":"m","body":{"kind":"text","text":"x"}}}',
    ):
        with pytest.raises(msgspec.ValidationError):
            decode(bad)


def test_session_refuses_an_over_long_edit() -> None:
    # the node's limit (here below the protocol's 4000) binds an edit as it binds a send
    session = ServerSession(dataclasses.replace(Settings().session_limits(), max_text_chars=100))
    long = '{"type":"edit","id":"1","conversation_id":"c","message_id":"m","client_msg_id":"k","body":{"kind":"text","text":"%s"}}'
    assert isinstance(session.receive(long % ("x" * 100)), Accept)
    outcome = session.receive(long % ("x" * 101))
    assert isinstance(outcome, Reject) and outcome.error.code == "invalid_frame"
