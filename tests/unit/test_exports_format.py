"""The signed eDiscovery export format, on values: JSONL shapes, the EML transcript, the
manifest's digests, and every way a tampered export must fail verification."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping

import pytest

from bankhub.compliance import export_format as fmt
from bankhub.compliance.export_sealing import ExportUnreadable, open_export, seal_export
from bankhub.crypto.keyring import DataKey
from bankhub.crypto.signing import SigningKey, b64url, verify
from bankhub.protocol.cards import card_payload, notice_payload

KEY = SigningKey("sig-test", b"\x01" * 32)
OTHER = SigningKey("sig-other", b"\x02" * 32)
CONV = "0190b3c6-0000-7000-8000-000000000001"
EXPORT = "0190b3c6-0000-7000-8000-0000000000ee"
LI = fmt.Person("0190b3c6-0000-7000-8000-00000000000a", "c.li", "李雷", "customer")
WANG = fmt.Person("0190b3c6-0000-7000-8000-00000000000b", "rm.wang", "王芳", "rm")
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _stays() -> list[fmt.Stay]:
    return [
        fmt.Stay(LI.user_id, "c.li", "2026-12-01T00:00:00.000Z"),
        fmt.Stay(WANG.user_id, "rm.wang", "2026-12-01T00:00:00.000Z"),
    ]


def _export() -> bytes:
    b = fmt.ExportBuilder(EXPORT)
    stays = _stays()
    conv = fmt.ConversationRecord(CONV, "direct", None, "2026-12-01T00:00:00.000Z", stays)
    for p in (LI, WANG):
        b.person(p)
    path = b.add_attachment("0190b3c6-0000-7000-8000-0000000000f1", "image/png", PICTURE)
    texts = [
        (1, LI, {"kind": "text", "text": "我对这笔¥2,000扣款有异议"}, [], []),
        (
            2,
            WANG,
            {"kind": "text", "text": "we will refund it"},
            [fmt.RevisionRecord(1, "edit", "2026-12-02T00:01:00.000Z", 3, {"kind": "text", "text": "we guarantee a refund"})],
            [],
        ),
        (3, LI, {"kind": "image", "media_id": "0190b3c6-0000-7000-8000-0000000000f1", "content_type": "image/png"}, [],
         [fmt.AttachmentRecord("0190b3c6-0000-7000-8000-0000000000f1", "image/png", path, len(PICTURE))]),
    ]
    for seq, sender, body, revs, atts in texts:
        created = f"2026-12-02T00:00:0{seq}.000Z"
        b.add_message(
            fmt.MessageRecord(
                conversation_id=CONV, conversation_kind="direct", conversation_title=None, seq=seq,
                message_id=f"0190b3c6-0000-7000-8000-00000000010{seq}", sender=sender, created_at=created, kind=body["kind"],
                body=body, members_at_send=fmt.members_at(stays, created), revisions=revs, attachments=atts,
            )
        )
    b.add_conversation(conv)
    b.add_notice({"id": "n1", "body": {"kind": "text", "text": "branch closed Friday"}})
    b.add_alert({"id": "a1", "title": "Card payment", "body": "¥99.00 at Metro"})
    return b.finish(created_at=dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc), scope={"custodians": ["c.li"]}, key=KEY)


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _rewrite(data: bytes, changes: Mapping[str, bytes | None]) -> bytes:
    """The same export with files replaced (None: removed); a new name is added."""
    out = [(n, changes.get(n, b)) for n, b in _entries(data) if not (n in changes and changes[n] is None)]
    names = {n for n, _ in out}
    out += [(n, b) for n, b in changes.items() if n not in names and b is not None]
    return fmt.write_zip([(n, b) for n, b in out if b is not None])


def test_the_layout_is_deterministic_and_complete() -> None:
    data = _export()
    names = [n for n, _ in _entries(data)]
    assert names[:2] == ["manifest.json", "manifest.sig"]
    assert names[2:] == sorted(names[2:])
    assert set(names) == {
        "manifest.json", "manifest.sig", "messages.jsonl", "conversations.jsonl", f"conversations/{CONV}.eml",
        "attachments/0190b3c6-0000-7000-8000-0000000000f1/full.png", "notices.jsonl", "alerts.jsonl",
    }
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
    assert _export() == data  # the same content gives the same bytes


def test_messages_jsonl_has_one_record_per_message_with_its_context() -> None:
    data = _export()
    msgs = fmt.open_jsonl(fmt.read_export(data, "messages.jsonl"))
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    first = msgs[0]
    assert set(first) >= {"conversation_id", "conversation_kind", "conversation_title", "seq", "message_id", "sender", "created_at",
                          "kind", "body", "members_at_send", "revisions", "attachments"}
    assert first["sender"] == {"user_id": LI.user_id, "username": "c.li", "display_name": "李雷", "role": "customer"}
    assert first["created_at"] == "2026-12-02T00:00:01.000Z"
    assert [s["username"] for s in first["members_at_send"]] == ["c.li", "rm.wang"]
    assert msgs[1]["revisions"][0]["replaced"] == {"kind": "text", "text": "we guarantee a refund"}
    assert msgs[2]["attachments"][0]["path"] == "attachments/0190b3c6-0000-7000-8000-0000000000f1/full.png"
    convs = fmt.open_jsonl(fmt.read_export(data, "conversations.jsonl"))
    assert convs[0]["conversation_id"] == CONV and convs[0]["messages"] == 3 and len(convs[0]["membership"]) == 2
    assert fmt.read_export(data, "attachments/0190b3c6-0000-7000-8000-0000000000f1/full.png") == PICTURE


def test_members_at_send_follows_the_membership_history() -> None:
    stays = [
        fmt.Stay("a", "a", "2026-01-01T00:00:00.000Z"),
        fmt.Stay("b", "b", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"),
        fmt.Stay("c", "c", "2026-01-05T00:00:00.000Z"),
    ]
    assert [s.user_id for s in fmt.members_at(stays, "2026-01-01T12:00:00.000Z")] == ["a"]
    assert [s.user_id for s in fmt.members_at(stays, "2026-01-02T00:00:00.000Z")] == ["a", "b"]
    assert [s.user_id for s in fmt.members_at(stays, "2026-01-03T00:00:00.000Z")] == ["a"]  # left at that instant
    assert [s.user_id for s in fmt.members_at(stays, "2026-01-06T00:00:00.000Z")] == ["a", "c"]


def test_the_eml_parses_back_and_holds_each_message_and_the_attachment() -> None:
    raw = fmt.read_export(_export(), f"conversations/{CONV}.eml")
    assert raw.isascii()  # UTF-8 text travels quoted-printable or base64; headers RFC 2047
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"].addresses[0].username == "c.li"
    assert [a.username for a in msg["To"].addresses] == ["rm.wang"]
    assert msg["Message-ID"] == f"<{CONV}.{EXPORT}@bankhub.invalid>"
    assert msg["Date"].datetime == dt.datetime(2026, 12, 2, 0, 0, 3, tzinfo=dt.timezone.utc)
    assert "李雷" in str(msg["Subject"]) or "c.li" in str(msg["From"])
    transcript = msg.get_body(preferencelist=("plain",))
    assert transcript is not None
    text = transcript.get_content()
    assert "我对这笔¥2,000扣款有异议" in text and "we will refund it" in text
    assert "before: we guarantee a refund" in text  # the edit's original
    assert "2026-12-02T00:00:01.000Z" in text and "李雷 (c.li)" in text
    parts = list(msg.iter_attachments())
    # the attachment by reference (RFC 2046 external-body, local-file): its path in the zip, its type
    # inside; its bytes are in the zip once, never a second base64 copy in the transcript
    assert len(parts) == 1 and parts[0].get_content_type() == "message/external-body"
    assert parts[0].get_param("access-type") == "local-file"
    path = parts[0].get_param("name")
    assert path == "attachments/0190b3c6-0000-7000-8000-0000000000f1/full.png"
    assert [p.get_content_type() for p in parts[0].iter_parts()] == ["image/png"]
    assert fmt.read_export(_export(), str(path)) == PICTURE
    assert base64.b64encode(PICTURE)[:40] not in raw and PICTURE not in raw


def test_the_manifest_lists_the_digest_of_every_file() -> None:
    data = _export()
    manifest = json.loads(fmt.read_export(data, "manifest.json"))
    assert manifest["format"] == "bankhub.export.v1" and manifest["export_id"] == EXPORT and manifest["key_id"] == KEY.key_id
    assert manifest["counts"] == {"messages": 3, "conversations": 1, "attachments": 1, "notices": 1, "alerts": 1, "revisions": 1}
    files = {n: b for n, b in _entries(data) if n not in ("manifest.json", "manifest.sig")}
    assert {f["path"]: (f["bytes"], f["sha256"]) for f in manifest["files"]} == {
        n: (len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items()
    }
    result = fmt.verify_export(data)
    assert result.ok and result.problems == [] and result.files_checked == len(files)
    assert result.key_id == KEY.key_id and result.fingerprint == fmt.key_fingerprint(KEY.public_key)
    assert fmt.verify_export(data, public_key=KEY.public_key).ok


def test_verification_reads_a_path(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "x.zip"
    p.write_bytes(_export())
    assert fmt.verify_export(p).ok and fmt.verify_export(str(p)).ok


@pytest.mark.parametrize("name", ["messages.jsonl", "conversations.jsonl", f"conversations/{CONV}.eml", "notices.jsonl",
                                  "alerts.jsonl", "attachments/0190b3c6-0000-7000-8000-0000000000f1/full.png"])
def test_a_changed_byte_in_any_file_fails(name: str) -> None:
    data = _export()
    original = dict(_entries(data))[name]
    changed = bytes([original[0] ^ 1]) + original[1:]
    result = fmt.verify_export(_rewrite(data, {name: changed}))
    assert not result.ok and result.problems == [f"digest differs: {name}"]


def test_a_removed_or_added_file_fails() -> None:
    data = _export()
    removed = fmt.verify_export(_rewrite(data, {"alerts.jsonl": None}))
    assert not removed.ok and removed.problems == ["missing file: alerts.jsonl"]
    added = fmt.verify_export(_rewrite(data, {"attachments/x/evil.png": b"planted"}))
    assert not added.ok and added.problems == ["file not in the manifest: attachments/x/evil.png"]
    longer = fmt.verify_export(_rewrite(data, {"alerts.jsonl": dict(_entries(data))["alerts.jsonl"] + b"{}\n"}))
    assert not longer.ok and longer.problems == ["size differs: alerts.jsonl"]


def test_a_changed_manifest_fails() -> None:
    data = _export()
    manifest = dict(_entries(data))["manifest.json"]
    forged = manifest.replace(b'"messages": 3', b'"messages": 2')
    assert forged != manifest
    result = fmt.verify_export(_rewrite(data, {"manifest.json": forged}))
    assert not result.ok and result.problems == ["the manifest signature does not verify"]
    # a forger who re-signs with their own key gets a valid self-signed export, but not the pinned key's
    theirs = forged.replace(b64url(KEY.public_key).encode(), b64url(OTHER.public_key).encode()).replace(b"sig-test", b"sig-other")
    sig = OTHER.sign(fmt.manifest_payload(theirs))
    resigned = _rewrite(data, {"manifest.json": theirs, "manifest.sig": json.dumps({"alg": "Ed25519", **sig}).encode()})
    self_signed = fmt.verify_export(resigned)
    assert self_signed.fingerprint == fmt.key_fingerprint(OTHER.public_key) != fmt.key_fingerprint(KEY.public_key)
    assert not fmt.verify_export(resigned, public_key=KEY.public_key).ok


def test_a_wrong_pinned_key_fails() -> None:
    result = fmt.verify_export(_export(), public_key=OTHER.public_key)
    assert not result.ok
    assert "the manifest's public key is not the pinned key" in result.problems
    assert "the manifest signature does not verify" in result.problems
    assert result.fingerprint == fmt.key_fingerprint(OTHER.public_key)


def test_a_card_or_notice_signature_never_verifies_as_a_manifest_and_back() -> None:
    data = _export()
    manifest = dict(_entries(data))["manifest.json"]
    # a card signed over bytes an attacker chose to equal the manifest: the domain prefix differs
    card = KEY.sign(card_payload(KEY.key_id, CONV, "m", "s", 1, {"kind": "card", "template": "offer", "title": "x"}))
    notice = KEY.sign(notice_payload(KEY.key_id, "a", "n", {"kind": "text", "text": "x"}))
    raw = KEY.sign(manifest)  # a signature over the bare manifest, without the domain prefix
    for sig in (card, notice, raw):
        result = fmt.verify_export(_rewrite(data, {"manifest.sig": json.dumps({"alg": "Ed25519", **sig}).encode()}))
        assert not result.ok and result.problems == ["the manifest signature does not verify"]
    # and the manifest's signature verifies neither as the card payload nor the bare manifest
    manifest_sig = json.loads(dict(_entries(data))["manifest.sig"])["sig"]
    assert verify(KEY.public_key, fmt.manifest_payload(manifest), manifest_sig)
    assert not verify(KEY.public_key, manifest, manifest_sig)
    assert not verify(KEY.public_key, card_payload(KEY.key_id, CONV, "m", "s", 1, {"kind": "card"}), manifest_sig)
    assert not fmt.MANIFEST_DOMAIN.startswith(card_payload(KEY.key_id, CONV, "m", "s", 1, {})[:len(fmt.MANIFEST_DOMAIN)])


def test_not_a_zip_or_unsafe_names_fail_without_raising() -> None:
    assert fmt.verify_export(b"not a zip").problems == ["not a readable zip: BadZipFile"]
    data = _export()
    unsafe = fmt.verify_export(_rewrite(data, {"../escape": b"x"}))
    assert not unsafe.ok and "unsafe paths: ../escape" in unsafe.problems
    assert not fmt.verify_export(_rewrite(data, {"manifest.sig": None})).ok


def test_keywords_match_text_captions_cards_and_ignore_case() -> None:
    assert fmt.matches_keywords([fmt.searchable_text({"kind": "text", "text": "Add me on WeChat"})], ["wechat"])
    assert fmt.matches_keywords([fmt.searchable_text({"kind": "image", "media_id": "m", "caption": "收据"})], ["收据"])
    assert fmt.matches_keywords([fmt.searchable_text({"kind": "card", "template": "offer", "title": "Gold", "fields": [{"label": "Rate", "value": "4%"}]})], ["RATE"])
    assert not fmt.matches_keywords([fmt.searchable_text({"kind": "text", "text": "hello"})], ["refund"])
    assert fmt.matches_keywords(["anything"], [])


def test_sealed_at_rest_round_trips_and_detects_damage() -> None:
    key = DataKey(b"\x07" * 32)
    data = bytes(range(256)) * 9000  # several chunks
    sealed = seal_export(key, EXPORT, data)
    assert b"".join(open_export(key, EXPORT, sealed)) == data
    with pytest.raises(ExportUnreadable):
        list(open_export(key, "0190b3c6-0000-7000-8000-0000000000ef", sealed))  # another export's place
    step = 12 + (1 << 20) + 16
    with pytest.raises(ExportUnreadable):
        list(open_export(key, EXPORT, sealed[:step]))  # cut at a chunk boundary: the first chunk is not the last
    assert b"".join(open_export(key, EXPORT, seal_export(key, EXPORT, b""))) == b""


def test_members_at_send_compares_exact_database_times() -> None:
    """A member added in the transaction that posted the message (the same now(), microseconds)
    was a member when it was sent; a message's millisecond time would place it before the join."""
    joined = dt.datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    stay = fmt.Stay("z", "c.zhang", fmt.rfc3339(joined))
    timed = [(joined, None, stay)]
    assert fmt.members_at_time(timed, joined) == [stay]
    assert fmt.members_at_time(timed, joined - dt.timedelta(microseconds=1)) == []
    ms = int(joined.timestamp() * 1000)  # what a message carries
    assert dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc) < joined
