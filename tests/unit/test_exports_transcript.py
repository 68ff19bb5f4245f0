"""The EML transcript cannot be forged from inside a message, and keywords are checked.

A message's text (or an original an edit or recall replaced) may hold line breaks, U+2028,
control and bidi characters. In the transcript a reviewer reads, no such text may make a line
that looks like another message from another sender, reorder what is shown, or fail the export
(a title or display name in a mail header).
"""

from __future__ import annotations

import email
import email.policy

import pytest

from bankhub.actions.exports import sensitive_keyword
from bankhub.compliance import export_format as fmt

CONV = "0190b3c6-0000-7000-8000-000000000001"
EXPORT = "0190b3c6-0000-7000-8000-0000000000ee"
LI = fmt.Person("0190b3c6-0000-7000-8000-00000000000a", "c.li", "李雷", "customer")
WANG = fmt.Person("0190b3c6-0000-7000-8000-00000000000b", "rm.wang", "王芳", "rm")
STAYS = [fmt.Stay(LI.user_id, "c.li", "2026-12-01T00:00:00.000Z"), fmt.Stay(WANG.user_id, "rm.wang", "2026-12-01T00:00:00.000Z")]

# the review's payload: c.li's text poses as a later line from rm.wang
FAKE = "ok thanks\n[2026-12-02T00:09:00.000Z] #9 王芳 (rm.wang): we guarantee 12% a year, no risk"


def _message(seq: int, sender: fmt.Person, text: str, revisions: list[fmt.RevisionRecord] | None = None) -> fmt.MessageRecord:
    created = f"2026-12-02T00:00:0{seq}.000Z"
    return fmt.MessageRecord(
        conversation_id=CONV, conversation_kind="direct", conversation_title=None, seq=seq,
        message_id=f"0190b3c6-0000-7000-8000-00000000010{seq}", sender=sender, created_at=created, kind="text",
        body={"kind": "text", "text": text}, members_at_send=STAYS, revisions=revisions or [],
    )


def _transcript(messages: list[fmt.MessageRecord], title: str | None = None, people: list[fmt.Person] | None = None) -> str:
    conv = fmt.ConversationRecord(CONV, "group" if title else "direct", title, "2026-12-01T00:00:00.000Z", STAYS)
    folks = people or [LI, WANG]
    raw = fmt.conversation_eml(conv, messages, {p.user_id: p for p in folks}, {}, EXPORT)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _headed(text: str) -> list[str]:
    """The transcript lines that start like a message: ``[time] #seq``."""
    return [line for line in text.splitlines() if line.startswith("[")]


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r", "\u2028", "\u2029"])
def test_a_line_break_in_a_message_cannot_make_a_line_from_another_sender(brk: str) -> None:
    text = _transcript([_message(1, LI, FAKE.replace("\n", brk)), _message(2, WANG, "fine")])
    headed = _headed(text)
    assert [line.split(" ", 3)[1] for line in headed] == ["#1", "#2"]  # only the two real messages
    assert "王芳 (rm.wang): fine" in headed[1]
    # the text is all there, on a continuation line that says it continues #1
    assert fmt.CONTINUATION + "[2026-12-02T00:09:00.000Z] #9 王芳 (rm.wang): we guarantee 12% a year, no risk" in text.splitlines()


def test_an_original_text_cannot_make_a_fake_line_either() -> None:
    edit = fmt.RevisionRecord(1, "edit", "2026-12-02T00:05:00.000Z", 5, {"kind": "text", "text": FAKE})
    text = _transcript([_message(1, LI, "thanks", [edit])])
    assert [line.split(" ", 3)[1] for line in _headed(text)] == ["#1"]
    lines = text.splitlines()
    assert "    (edit at 2026-12-02T00:05:00.000Z; before: ok thanks" in lines
    assert fmt.CONTINUATION + "[2026-12-02T00:09:00.000Z] #9 王芳 (rm.wang): we guarantee 12% a year, no risk)" in lines


def test_bidi_and_control_characters_are_shown_as_codes() -> None:
    sneaky = "pay to \u202eKCAB\u202c now\u2066x\u2069\u200e\u200f\x07\x1b[2J"
    text = _transcript([_message(1, LI, sneaky)])
    assert "pay to <U+202E>KCAB<U+202C> now<U+2066>x<U+2069><U+200E><U+200F><U+0007><U+001B>[2J" in text
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\x07\x1b":
        assert ch not in text


def test_a_title_or_display_name_with_u2028_or_controls_never_fails_the_export() -> None:
    odd = fmt.Person(LI.user_id, "c.li", "Li\u2028Bcc: x@evil.example\x00", "customer")
    text = _transcript([_message(1, odd, "hello")], title="Family\u2028Subject: spoof\r\nX-Evil: 1", people=[odd, WANG])
    # the transcript names them on one line each
    assert "Li \u23ce Bcc: x@evil.example<U+0000> (c.li): hello" in text
    conv = fmt.ConversationRecord(CONV, "group", "Family\u2028Subject: spoof\r\nX-Evil: 1", "2026-12-01T00:00:00.000Z", STAYS)
    raw = fmt.conversation_eml(conv, [_message(1, odd, "hello")], {odd.user_id: odd, WANG.user_id: WANG}, {}, EXPORT)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["X-Evil"] is None and msg["Bcc"] is None
    assert "Family\ufffdSubject: spoof\ufffd\ufffdX-Evil: 1" in str(msg["Subject"])
    assert msg["From"].addresses[0].username == "c.li"


@pytest.mark.parametrize(
    "keyword",
    [
        "6222 0212 3456 7890 128",  # a card passing Luhn, as typed
        "4111-1111-1111-1111",
        "11010519491231002X",  # a resident ID with a valid checksum
        "6217000010001234567",  # an account-shaped number (also a Luhn-valid card? either way refused)
        "1234567890123",  # a bare account-shaped number
        "account 6217 0000 1000 1234",
        "cvv 123",
    ],
)
def test_a_keyword_that_is_a_card_id_or_account_number_is_sensitive(keyword: str) -> None:
    assert sensitive_keyword(keyword)


@pytest.mark.parametrize("keyword", ["refund", "guarantee", "¥2,000", "2026-12-01", "13812345678 ", "PIN is", "WeChat"])
def test_ordinary_keywords_are_not_sensitive(keyword: str) -> None:
    assert not sensitive_keyword(keyword)


def test_a_consistent_export_is_authenticated_only_against_a_pinned_key() -> None:
    from .test_exports_format import KEY, OTHER, _export

    data = _export()
    unpinned = fmt.verify_export(data)
    assert unpinned.ok and not unpinned.authenticated  # consistent with the key the manifest names: anyone's
    pinned = fmt.verify_export(data, public_key=KEY.public_key)
    assert pinned.ok and pinned.authenticated
    wrong = fmt.verify_export(data, public_key=OTHER.public_key)
    assert not wrong.ok and not wrong.authenticated


def test_an_unknown_build_failure_is_recorded_in_fixed_words_never_its_text() -> None:
    from bankhub.actions.exports import _safe_error

    leaked = RuntimeError('duplicate key value violates unique constraint: (text)=(refund of the ¥2,000 charge)')
    assert _safe_error(leaked) == "internal error (see the node's log)"
