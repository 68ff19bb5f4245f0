"""The media rules of the policy, and the image/voice body kinds of the protocol."""

from __future__ import annotations

import msgspec
import pytest

from bankhub import policy
from bankhub.models import Membership, Role, User
from bankhub.protocol.frames import Body, ClientFrame, ImageBody, MessageBody, VoiceBody

LI = User("c1", "c.li", "Li", Role.CUSTOMER, "bj", rm_id="rm1")
RM = User("rm1", "rm.wang", "Wang", Role.RM, "bj")
GONE = User("c3", "c.gone", "Gone", Role.CUSTOMER, "bj", rm_id="rm1", disabled=True)
VISITOR = User("v1", "w.visitor", "Visitor", Role.CUSTOMER, "bj", visitor=True)


def _member(user: User, kind: str = "direct") -> Membership:
    return Membership("conv", kind, user.id, "member", 0, 0)


def test_only_members_upload() -> None:
    assert policy.may_upload_media(LI, _member(LI)).allowed
    assert policy.may_upload_media(LI, None).code == "not_found"
    assert policy.may_upload_media(LI, _member(RM)).code == "not_found"  # someone else's membership
    assert policy.may_upload_media(GONE, _member(GONE)).code == "forbidden"
    assert policy.may_upload_media(VISITOR, _member(VISITOR)).code == "not_found"  # a widget visitor: service chats only
    assert policy.may_upload_media(VISITOR, _member(VISITOR, "service")).allowed


def test_only_current_members_see_media_and_only_when_ready() -> None:
    assert policy.may_view_media(RM, member=True, visible=True, uploader_id=LI.id, attached=True).allowed
    for member, visible in ((False, True), (True, False), (False, False)):
        decision = policy.may_view_media(RM, member=member, visible=visible, uploader_id=LI.id, attached=True)
        assert decision.code == "not_found" and decision.reason == "no such media"  # one answer for all
    assert policy.may_view_media(GONE, member=True, visible=True, uploader_id=LI.id, attached=True).code == "forbidden"


def test_an_unsent_item_is_its_uploaders_draft() -> None:
    assert policy.may_view_media(LI, member=True, visible=True, uploader_id=LI.id, attached=False).allowed
    decision = policy.may_view_media(RM, member=True, visible=True, uploader_id=LI.id, attached=False)
    assert decision.code == "not_found" and decision.reason == "no such media"  # as for an id that does not exist
    assert policy.may_view_media(LI, member=False, visible=True, uploader_id=LI.id, attached=False).code == "not_found"  # left: gone for the uploader too


@pytest.mark.parametrize(
    "uploader,media_conv,state,code",
    [
        ("c1", "conv", "ready", None),
        ("rm1", "conv", "ready", "not_found"),  # someone else's upload
        ("c1", "other", "ready", "not_found"),  # uploaded into another conversation
        ("c1", "conv", "quarantined", "media_not_ready"),
        ("c1", "conv", "rejected", "media_rejected"),
    ],
)
def test_a_sender_attaches_only_their_own_ready_upload_of_this_conversation(uploader: str, media_conv: str, state: str, code: str | None) -> None:
    decision = policy.may_attach_media(LI, uploader_id=uploader, media_conversation_id=media_conv, conversation_id="conv", state=state)
    assert decision.allowed is (code is None) and decision.code == code


def test_a_disabled_sender_attaches_nothing() -> None:
    decision = policy.may_attach_media(GONE, uploader_id="c3", media_conversation_id="conv", conversation_id="conv", state="ready")
    assert decision.code == "forbidden"


def _send(body: dict[str, object]) -> object:
    frame = {"type": "send", "id": "1", "conversation_id": "c", "client_msg_id": "m", "body": body}
    return msgspec.json.decode(msgspec.json.encode(frame), type=ClientFrame)


def test_clients_send_image_and_voice_bodies() -> None:
    image = _send({"kind": "image", "media_id": "0193", "caption": "receipt"})
    assert getattr(image, "body") == ImageBody(media_id="0193", caption="receipt")
    voice = _send({"kind": "voice", "media_id": "0193"})
    assert getattr(voice, "body") == VoiceBody(media_id="0193")
    assert msgspec.json.encode(ImageBody(media_id="m")) == b'{"kind":"image","media_id":"m"}'


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "image"},
        {"kind": "image", "media_id": ""},
        {"kind": "image", "media_id": "m", "caption": "x" * 1001},
        {"kind": "image", "media_id": "m", "caption": "a bell \x07 in it"},
        {"kind": "image", "media_id": "m", "url": "https://evil.example/x.jpg"},
        {"kind": "image", "media_id": "m", "width": 0},
        {"kind": "voice", "media_id": "m", "caption": "voice has none"},
        {"kind": "voice", "media_id": "m", "waveform": [101]},
        {"kind": "voice", "media_id": "m", "waveform": [1] * 65},
        {"kind": "voice", "media_id": "m", "duration_ms": -1},
        {"kind": "video", "media_id": "m"},
    ],
)
def test_malformed_media_bodies_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        _send(body)


def test_stored_media_bodies_decode_as_message_bodies() -> None:
    for body in (
        ImageBody(media_id="m", caption="c", content_type="image/png", width=3, height=4),
        VoiceBody(media_id="m", content_type="audio/ogg", duration_ms=1500, waveform=[0, 50, 100]),
    ):
        assert msgspec.json.decode(msgspec.json.encode(body), type=MessageBody) == body
        assert msgspec.json.decode(msgspec.json.encode(body), type=Body) == body
