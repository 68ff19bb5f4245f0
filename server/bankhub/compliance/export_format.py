"""The signed eDiscovery export: its layout, its records, and its offline verification.

Pure: values in, bytes out (and bytes or a path in, a verdict out). The hub's builder
(:mod:`bankhub.actions.exports`) reads and decrypts what is in scope and feeds it to an
:class:`ExportBuilder`; anyone holding the zip checks it with :func:`verify_export` (``bankhub
export verify``), without a database or a hub.

**Layout** (a zip; entries in a fixed order — ``manifest.json``, ``manifest.sig``, then every
other file sorted by path — with a fixed timestamp and no absolute or ``..`` path, so the
same content gives the same bytes):

* ``messages.jsonl`` — one :class:`MessageRecord` per message in scope, by conversation, then seq;
* ``conversations.jsonl`` — one :class:`ConversationRecord` per conversation (with its
  membership history from ``membership_log``);
* ``conversations/<conversation_id>.eml`` — one RFC 5322 message per conversation for review
  tools: a readable UTF-8 transcript (quoted-printable) and, per attachment, a MIME part
  ``message/external-body; access-type="local-file"; name="attachments/<media_id>/full.<ext>"``
  (RFC 2046) whose inner headers give its type: the bytes are in the zip once, referenced by path;
* ``attachments/<media_id>/<file>`` — the pictures and voice notes the messages carry;
* ``notices.jsonl`` — official-account notices that targeted the custodians in the range;
* ``alerts.jsonl`` — the custodians' transactional alerts in the range;
* ``manifest.json`` — :data:`FORMAT`, export id, time, scope, counts, the signer's key id and
  public key, and ``{path, bytes, sha256}`` of every other file;
* ``manifest.sig`` — ``{"alg": "Ed25519", "key_id", "sig"}``: the hub's Ed25519 signature
  (base64url) over :data:`MANIFEST_DOMAIN` ``+`` the bytes of ``manifest.json``. The domain
  prefix means a card or notice signature (whose payloads start otherwise) can never verify
  as a manifest's, nor a manifest's as theirs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from .. import text
from ..crypto.signing import SigningKey, b64url, unb64url, verify

__all__ = [
    "FORMAT",
    "MANIFEST_DOMAIN",
    "MANIFEST",
    "SIGNATURE",
    "ADDRESS_DOMAIN",
    "Person",
    "Stay",
    "RevisionRecord",
    "AttachmentRecord",
    "MessageRecord",
    "ConversationRecord",
    "ExportBuilder",
    "VerifyResult",
    "verify_export",
    "manifest_payload",
    "key_fingerprint",
    "members_at",
    "members_at_time",
    "searchable_text",
    "matches_keywords",
    "rfc3339",
    "attachment_name",
    "conversation_eml",
    "transcript_lines",
    "one_line",
    "header_value",
    "CONTINUATION",
    "write_zip",
    "write_zip_to",
    "ExportTooLarge",
    "open_jsonl",
    "read_export",
]

FORMAT = "bankhub.export.v1"
MANIFEST_DOMAIN = b"bankhub.export.manifest.v1\n"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ADDRESS_DOMAIN = "bankhub.invalid"
"""The mail domain of the transcript's addresses (``username@bankhub.invalid``): reserved, never routable."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 16
_COPY_BLOCK = 1 << 20
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
}


def rfc3339(ts: dt.datetime | int) -> str:
    """A time as RFC 3339 UTC with milliseconds (``int``: milliseconds since the epoch)."""
    if isinstance(ts, int):
        ts = dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
    return ts.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def attachment_name(media_id: str, content_type: str) -> str:
    """Where an attachment lives in the zip: ``attachments/<media_id>/full.<ext>``."""
    return f"attachments/{media_id}/full.{_EXTENSIONS.get(content_type, 'bin')}"


# --- records ------------------------------------------------------------------------------------


class Person(msgspec.Struct, gc=False):
    user_id: str
    username: str
    display_name: str
    role: str


class Stay(msgspec.Struct, gc=False):
    """One stay of a member in a conversation (``left_at`` None: still a member)."""

    user_id: str
    username: str
    joined_at: str
    left_at: str | None = None


class RevisionRecord(msgspec.Struct, gc=False):
    """What an edit or recall replaced: ``replaced`` is the body before it, ``changed_at`` when."""

    revision: int
    kind: str  # edit | recall
    changed_at: str
    change_seq: int
    replaced: dict[str, Any]


class AttachmentRecord(msgspec.Struct, gc=False):
    media_id: str
    content_type: str
    path: str | None  # None: the item could not be read (``problem`` says why)
    bytes: int = 0
    problem: str | None = None


class MessageRecord(msgspec.Struct, gc=False):
    conversation_id: str
    conversation_kind: str
    conversation_title: str | None
    seq: int
    message_id: str
    sender: Person
    created_at: str
    kind: str
    body: dict[str, Any]  # as members see it (the current text after edits; a marker after a recall)
    members_at_send: list[Stay]
    revisions: list[RevisionRecord] = []
    attachments: list[AttachmentRecord] = []
    edited_at: str | None = None


class ConversationRecord(msgspec.Struct, gc=False):
    conversation_id: str
    kind: str
    title: str | None
    created_at: str
    membership: list[Stay]
    messages: int = 0


def members_at(stays: Iterable[Stay], at: str) -> list[Stay]:
    """The stays that cover time ``at`` (joined at or before it, not left by then): who was a
    member when a message was committed (membership and messages share the database clock)."""
    t = _parse_time(at)
    return [s for s in stays if _parse_time(s.joined_at) <= t and (s.left_at is None or _parse_time(s.left_at) > t)]


def members_at_time(stays: Iterable[tuple[dt.datetime, dt.datetime | None, Stay]], at: dt.datetime) -> list[Stay]:
    """:func:`members_at` on the exact database times (``(joined_at, left_at, stay)``): a member
    added in the transaction that committed the message (the same ``now()``) was a member."""
    return [s for joined, left, s in stays if joined <= at and (left is None or left > at)]


def searchable_text(body: Mapping[str, Any]) -> str:
    """The words of a body (as builtins) a keyword may match: text, captions, card titles and
    fields, system texts; an edit marker's new text."""
    kind = body.get("kind")
    parts: list[str] = []
    if kind in ("text", "system"):
        parts.append(str(body.get("text", "")))
    elif kind == "image":
        parts.append(str(body.get("caption") or ""))
    elif kind == "card":
        parts.append(str(body.get("title", "")))
        for f in body.get("fields") or []:
            parts += [str(f.get("label", "")), str(f.get("value", ""))]
    elif kind == "edit":
        inner = body.get("body")
        if isinstance(inner, Mapping):
            parts.append(searchable_text(inner))
    return "\n".join(p for p in parts if p)


def matches_keywords(texts: Iterable[str], keywords: Sequence[str]) -> bool:
    """Whether any of ``keywords`` occurs in any of ``texts``, ignoring case (no keywords: all match)."""
    if not keywords:
        return True
    folded = [k.casefold() for k in keywords]
    return any(k in t.casefold() for t in texts for k in folded)


def key_fingerprint(public_key: bytes) -> str:
    """``SHA256:<base64url>`` of the raw 32-byte public key: what to compare with the key a
    trusted ``GET /v1/signing-keys`` lists."""
    return "SHA256:" + b64url(hashlib.sha256(public_key).digest())


def manifest_payload(manifest: bytes) -> bytes:
    """What ``manifest.sig`` signs: the domain prefix, then the manifest's bytes."""
    return MANIFEST_DOMAIN + manifest


# --- the transcript ------------------------------------------------------------------------------


# shown as <U+XXXX>, never acted on: C0 (but tab, CR, LF) and C1 controls, DEL, and the bidi
# controls (embeddings, overrides, isolates, LRM/RLM) that would reorder what a reviewer reads
_SHOWN_AS_CODE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAK = re.compile(r"\r\n|[\r\n\u2028\u2029]")
CONTINUATION = "    | "
"""The prefix of every further line of a message's (or an original's) text in the transcript:
no text can start a line that looks like another message's ``[time] #seq sender:`` header."""


def transcript_lines(value: str) -> list[str]:
    """``value`` split at its line breaks (LF, CR, CRLF, U+2028, U+2029), each line with every
    control and bidi control shown as ``<U+XXXX>``."""
    return [_SHOWN_AS_CODE.sub(lambda c: f"<U+{ord(c.group()):04X}>", part) for part in _BREAK.split(value)]


def one_line(value: str) -> str:
    """``value`` as one transcript line: its lines joined with `` ⏎ ``, controls shown as codes."""
    return " \u23ce ".join(transcript_lines(value))


def header_value(value: str, max_chars: int = 200) -> str:
    """A value fit for a mail header (a title, a display name): every control, line break and
    bidi control replaced (:func:`bankhub.text.header_line`), so no text can fail a build."""
    return text.header_line(value, max_chars) or ""


def _address(p: Person) -> Address:
    return Address(display_name=header_value(p.display_name, 120), username=p.username, domain=ADDRESS_DOMAIN)


def _continued(first: str, value: str, last: str = "") -> list[str]:
    lines = transcript_lines(value)
    out = [first + lines[0]] + [CONTINUATION + line for line in lines[1:]]
    out[-1] += last
    return out


def _line(m: MessageRecord) -> str:
    who = f"{one_line(m.sender.display_name)} ({m.sender.username})"
    b = m.body
    kind = m.kind
    if kind == "text":
        what = str(b.get("text", ""))
    elif kind == "image":
        what = "[picture" + (f": {b['caption']}" if b.get("caption") else "") + "]"
    elif kind == "voice":
        what = f"[voice note, {int(b.get('duration_ms') or 0) // 1000} s]"
    elif kind == "card":
        what = f"[card {b.get('template', '')}: {b.get('title', '')}]"
    elif kind == "system":
        what = f"[system] {b.get('text', '')}"
    elif kind == "edit":
        what = f"[edited message {b.get('message_id', '')}]"
    elif kind == "recall":
        what = f"[recalled message {b.get('message_id', '')}]"
    elif kind == "recalled":
        what = "[recalled by the sender]"
    else:
        what = f"[{kind}]"
    out = _continued(f"[{m.created_at}] #{m.seq} {who}: ", what)
    if m.edited_at:
        out.append(f"    (edited {m.edited_at})")
    for r in m.revisions:
        replaced = searchable_text(r.replaced) or f"[{r.replaced.get('kind', '')}]"
        out += _continued(f"    ({r.kind} at {r.changed_at}; before: ", replaced, ")")
    for a in m.attachments:
        out.append(f"    attachment: {a.path or a.media_id + ' (unavailable: ' + (a.problem or '') + ')'}")
    return "\n".join(out)


def _external_part(a: AttachmentRecord) -> EmailMessage:
    """An attachment by reference (RFC 2046 ``message/external-body``, ``access-type=local-file``):
    ``name`` is its path in the zip, the inner headers its type; its bytes are in the zip once."""
    inner = MIMEPart(policy=SMTP)
    inner["Content-Type"] = a.content_type if "/" in a.content_type else "application/octet-stream"
    inner["Content-ID"] = f"<{a.media_id}@{ADDRESS_DOMAIN}>"
    inner["Content-Disposition"] = f'attachment; filename="{a.media_id}-{a.path.rsplit("/", 1)[-1] if a.path else "full"}"'
    part = EmailMessage(policy=SMTP)
    part["Content-Type"] = f'message/external-body; access-type="local-file"; name="{a.path}"'
    part.set_payload([inner])
    return part


def conversation_eml(
    conv: ConversationRecord, messages: Sequence[MessageRecord], people: Mapping[str, Person], files: Collection[str], export_id: str
) -> bytes:
    """One RFC 5322 message for review tools: headers, the transcript, and one
    ``message/external-body`` part per attachment whose path is in ``files`` (the paths the
    zip holds): a reference to ``attachments/<media_id>/full.<ext>``, never a second copy."""
    msg = EmailMessage(policy=SMTP)
    senders = [m.sender for m in messages]
    first = senders[0] if senders else next(iter(people.values()), None)
    others: dict[str, Person] = {}
    for s in conv.membership:
        p = people.get(s.user_id)
        if p is not None and (first is None or p.user_id != first.user_id):
            others[p.user_id] = p
    if first is not None:
        msg["From"] = _address(first)
    if others:
        msg["To"] = [_address(p) for p in others.values()]
    else:
        msg["To"] = "undisclosed-recipients:;"
    last = messages[-1].created_at if messages else conv.created_at
    msg["Date"] = format_datetime(_parse_time(last).astimezone(dt.timezone.utc))
    label = conv.title or ", ".join(p.display_name for p in people.values() if any(s.user_id == p.user_id for s in conv.membership))
    # a title or a display name may hold any text a Line refuses (U+2028, controls): cleaned
    msg["Subject"] = f"[bankhub {conv.kind}] {header_value(label)} ({len(messages)} messages)"
    msg["Message-ID"] = f"<{conv.conversation_id}.{export_id}@{ADDRESS_DOMAIN}>"
    msg["X-Bankhub-Conversation-Id"] = conv.conversation_id
    head = [
        f"Conversation {conv.conversation_id} ({conv.kind}{': ' + one_line(conv.title) if conv.title else ''})",
        f"Created {conv.created_at}; {len(messages)} message(s) in this export.",
        "Members over time:",
        *(f"  {s.username}: {s.joined_at} - {s.left_at or 'now'}" for s in conv.membership),
        "",
    ]
    transcript = "\n".join(head + [_line(m) for m in messages]) + "\n"
    msg.set_content(transcript, charset="utf-8", cte="quoted-printable")
    refs: list[str] = []
    for m in messages:
        for a in m.attachments:
            if a.path is None or a.path not in files or a.path in refs:
                continue
            refs.append(a.path)
            if len(refs) == 1:
                msg.make_mixed()
            msg.attach(_external_part(a))
    if msg.is_multipart():
        # a fixed boundary (the default is random): the same export gives the same bytes
        msg.set_boundary("=_bankhub_" + hashlib.sha256(f"{export_id}/{conv.conversation_id}".encode()).hexdigest()[:32])
    return msg.as_bytes()


# --- building -----------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder(order="deterministic")


class ExportTooLarge(Exception):
    """The export's files grew past the builder's ``max_bytes``."""


class _Staged:
    """A file of the export written to the work directory, its size and SHA-256 computed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        self._f: Any = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.sha256 = ""

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            self.sha256 = self._hash.hexdigest()


class ExportBuilder:
    """Collects the records of one export in a work directory and writes the signed zip.

    Add conversations and their messages (a conversation's transcript is written, and its
    records dropped from memory, when both it and its messages are in: :meth:`add_conversation`
    after its messages, or :meth:`flush_conversation`), attachments, notices and alerts; then
    :meth:`write` (a file) or :meth:`finish` (bytes) writes the manifest, its signature and
    the zip. Every file goes to disk as it is added, its SHA-256 computed while it is written:
    memory holds one record, one attachment or one conversation's records at a time, never
    the export. ``max_bytes``: the most bytes of files (:class:`ExportTooLarge` past it).
    Use it as a context manager (or :meth:`close`): the work directory is removed."""

    def __init__(self, export_id: str, *, workdir: str | Path | None = None, max_bytes: int | None = None) -> None:
        self.export_id = export_id
        self._tmp = tempfile.TemporaryDirectory(prefix="bankhub-export-", dir=workdir)
        self._dir = Path(self._tmp.name)
        self.max_bytes = max_bytes
        self.staged_bytes = 0
        self._staged: dict[str, _Staged] = {}
        self._messages = self._stage("messages.jsonl")
        self._conversations: dict[str, ConversationRecord] = {}
        self._by_conversation: dict[str, list[MessageRecord]] = {}
        self._flushed: set[str] = set()
        self._people: dict[str, Person] = {}
        self._notices = self._stage("notices.jsonl")
        self._alerts = self._stage("alerts.jsonl")
        self.counts: dict[str, int] = {"messages": 0, "conversations": 0, "attachments": 0, "notices": 0, "alerts": 0, "revisions": 0}

    def __enter__(self) -> ExportBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the work directory (idempotent)."""
        for f in self._staged.values():
            f.close()
        self._tmp.cleanup()

    def _stage(self, path: str) -> _Staged:
        f = _Staged(self._dir / f"{len(self._staged):06d}")
        self._staged[path] = f
        return f

    def _write(self, f: _Staged, data: bytes) -> None:
        if self.max_bytes is not None and self.staged_bytes + len(data) > self.max_bytes:
            raise ExportTooLarge(f"the export's files exceed {self.max_bytes} bytes")
        f.write(data)
        self.staged_bytes += len(data)

    def person(self, p: Person) -> None:
        self._people.setdefault(p.user_id, p)

    def add_conversation(self, conv: ConversationRecord) -> None:
        """Add a conversation; when its messages were added before, its transcript is written now."""
        self._conversations[conv.conversation_id] = conv
        had = conv.conversation_id in self._by_conversation
        self._by_conversation.setdefault(conv.conversation_id, [])
        if had:
            self.flush_conversation(conv.conversation_id)

    def flush_conversation(self, conversation_id: str) -> None:
        """Write the conversation's transcript now and drop its records (no message of it may follow)."""
        conv = self._conversations[conversation_id]
        msgs = self._by_conversation.pop(conversation_id, [])
        conv.messages = len(msgs)
        eml = self._stage(f"conversations/{conversation_id}.eml")
        self._write(eml, conversation_eml(conv, msgs, self._people, self._staged, self.export_id))
        eml.close()
        self._flushed.add(conversation_id)

    def add_attachment(self, media_id: str, content_type: str, data: bytes) -> str:
        """Store an attachment's bytes (written to disk now); returns its path in the zip."""
        path = attachment_name(media_id, content_type)
        if path not in self._staged:
            f = self._stage(path)
            try:
                self._write(f, data)
            finally:
                f.close()
            self.counts["attachments"] += 1
        return path

    def add_message(self, m: MessageRecord) -> None:
        if m.conversation_id in self._flushed:
            raise ValueError("a message after its conversation's transcript was written")
        self.person(m.sender)
        self._write(self._messages, _encoder.encode(m) + b"\n")
        self._by_conversation.setdefault(m.conversation_id, []).append(m)
        self.counts["messages"] += 1
        self.counts["revisions"] += len(m.revisions)

    def add_notice(self, notice: Mapping[str, Any]) -> None:
        self._write(self._notices, _encoder.encode(dict(notice)) + b"\n")
        self.counts["notices"] += 1

    def add_alert(self, alert: Mapping[str, Any]) -> None:
        self._write(self._alerts, _encoder.encode(dict(alert)) + b"\n")
        self.counts["alerts"] += 1

    def _complete(self) -> None:
        for cid in sorted(self._conversations):
            if cid not in self._flushed:
                self.flush_conversation(cid)
        convs = self._stage("conversations.jsonl")
        for cid in sorted(self._conversations):
            self._write(convs, _encoder.encode(self._conversations[cid]) + b"\n")
        self.counts["conversations"] = len(self._conversations)
        for f in self._staged.values():
            f.close()

    def files(self) -> dict[str, bytes]:
        """Every file but the manifest and its signature, by path (reads them into memory: tests)."""
        self._complete()
        return {path: f.path.read_bytes() for path, f in self._staged.items()}

    def write(self, out: IO[bytes], *, created_at: dt.datetime, scope: Mapping[str, Any], key: SigningKey) -> None:
        """Write the signed zip to ``out`` (seekable), copying each file from disk a block at a time."""
        self._complete()
        manifest = {
            "format": FORMAT,
            "export_id": self.export_id,
            "created_at": rfc3339(created_at),
            "scope": dict(scope),
            "counts": dict(self.counts),
            "key_id": key.key_id,
            "public_key": b64url(key.public_key),
            "files": [{"path": path, "bytes": f.size, "sha256": f.sha256} for path, f in sorted(self._staged.items())],
        }
        manifest_bytes = json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1).encode() + b"\n"
        sig = key.sign(manifest_payload(manifest_bytes))
        sig_bytes = json.dumps({"alg": "Ed25519", "key_id": sig["key_id"], "sig": sig["sig"]}, sort_keys=True).encode() + b"\n"
        write_zip_to(
            out,
            [(MANIFEST, manifest_bytes), (SIGNATURE, sig_bytes), *((path, f.path) for path, f in sorted(self._staged.items()))],
        )

    def finish(self, *, created_at: dt.datetime, scope: Mapping[str, Any], key: SigningKey) -> bytes:
        """The signed zip as bytes (small exports, tests): :meth:`write` into memory."""
        buf = io.BytesIO()
        self.write(buf, created_at=created_at, scope=scope, key=key)
        return buf.getvalue()


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.file_size = size  # known up front: zip64 is chosen by size, as writestr does
    return info


def write_zip_to(out: IO[bytes], entries: Iterable[tuple[str, bytes | Path]]) -> None:
    """Write a zip of ``entries`` (bytes, or a file's path: copied a block at a time) to
    ``out``, in the order given, each with a fixed time and mode (deterministic)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            if isinstance(data, Path):
                with open(data, "rb") as src, z.open(_zip_info(name, data.stat().st_size), "w") as dst:
                    while block := src.read(_COPY_BLOCK):
                        dst.write(block)
            else:
                z.writestr(_zip_info(name, len(data)), data)


def write_zip(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip of ``entries`` in the order given, each with a fixed time and mode (deterministic)."""
    buf = io.BytesIO()
    write_zip_to(buf, entries)
    return buf.getvalue()


# --- verifying ----------------------------------------------------------------------------------


class VerifyResult(msgspec.Struct):
    """``ok`` only when every check passed; ``problems`` says exactly what failed.
    ``authenticated`` only when ``ok`` AND the signature was checked against a key the caller
    pinned: without one, ``ok`` says the zip is consistent with the key its own manifest names,
    which anyone can make with a key of their own."""

    ok: bool
    problems: list[str]
    files_checked: int = 0
    key_id: str | None = None
    fingerprint: str | None = None  # of the key the signature was checked against
    export_id: str | None = None
    counts: dict[str, int] = {}
    authenticated: bool = False


def _safe_name(name: str) -> bool:
    return not (name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0] or any(p in ("", ".", "..") for p in name.split("/")))


def _digest(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    h = hashlib.sha256()
    with z.open(info) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_export(source: bytes | str | Path, public_key: bytes | None = None) -> VerifyResult:
    """Check an export offline: the signature over the manifest (against ``public_key`` when
    pinned, else the manifest's own key — then compare :attr:`VerifyResult.fingerprint` with a
    trusted key list), the size and SHA-256 of every file it lists, and that the zip holds
    exactly those files. Never raises for bad input: a broken zip is a failed check."""
    problems: list[str] = []
    try:
        z = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return VerifyResult(False, [f"not a readable zip: {type(exc).__name__}"])
    with z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append("duplicate entries: " + ", ".join(dupes))
        unsafe = [n for n in names if not _safe_name(n)]
        if unsafe:
            problems.append("unsafe paths: " + ", ".join(sorted(unsafe)))
        by_name = {i.filename: i for i in infos}
        if MANIFEST not in by_name or SIGNATURE not in by_name:
            return VerifyResult(False, problems + [f"missing {MANIFEST} or {SIGNATURE}"])
        if by_name[MANIFEST].file_size > 64 << 20 or by_name[SIGNATURE].file_size > 4096:
            return VerifyResult(False, problems + ["manifest or signature too large"])
        manifest_bytes = z.read(MANIFEST)
        try:
            sig = json.loads(z.read(SIGNATURE))
            manifest = json.loads(manifest_bytes)
            if not isinstance(sig, dict) or not isinstance(manifest, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return VerifyResult(False, problems + ["manifest.json or manifest.sig is not valid JSON"])
        key_id = sig.get("key_id") if isinstance(sig.get("key_id"), str) else None
        result = VerifyResult(False, problems, key_id=key_id, export_id=manifest.get("export_id") if isinstance(manifest.get("export_id"), str) else None)
        counts = manifest.get("counts")
        if isinstance(counts, dict):
            result.counts = {str(k): v for k, v in counts.items() if isinstance(v, int)}
        if manifest.get("format") != FORMAT:
            problems.append(f"manifest format is not {FORMAT}")
        key = public_key
        if key is None:
            try:
                key = unb64url(manifest.get("public_key", ""))
            except ValueError:
                key = b""
            if len(key) != 32:
                problems.append("the manifest names no valid public key")
                key = None
        elif manifest.get("public_key") != b64url(public_key or b""):
            problems.append("the manifest's public key is not the pinned key")
        if key is not None:
            result.fingerprint = key_fingerprint(key)
            if sig.get("alg") != "Ed25519" or not isinstance(sig.get("sig"), str):
                problems.append("manifest.sig is not an Ed25519 signature")
            elif not verify(key, manifest_payload(manifest_bytes), sig["sig"]):
                problems.append("the manifest signature does not verify")
            if key_id is not None and manifest.get("key_id") != key_id:
                problems.append("manifest.sig and manifest.json name different keys")
        listed = manifest.get("files")
        if not isinstance(listed, list):
            problems.append("the manifest lists no files")
            listed = []
        seen: set[str] = set()
        for entry in listed:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                problems.append("a malformed file entry in the manifest")
                continue
            path = entry["path"]
            seen.add(path)
            info = by_name.get(path)
            if info is None:
                problems.append(f"missing file: {path}")
                continue
            if info.file_size != entry.get("bytes"):
                problems.append(f"size differs: {path}")
                continue
            try:
                digest = _digest(z, info)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                problems.append(f"unreadable file: {path} ({type(exc).__name__})")
                continue
            if digest != entry.get("sha256"):
                problems.append(f"digest differs: {path}")
                continue
            result.files_checked += 1
        extra = sorted(set(by_name) - seen - {MANIFEST, SIGNATURE})
        for path in extra:
            problems.append(f"file not in the manifest: {path}")
        result.ok = not problems
        result.authenticated = result.ok and public_key is not None
        return result


def open_jsonl(data: bytes) -> list[dict[str, Any]]:
    """The objects of a JSONL file (tests and review scripts)."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def read_export(source: bytes, name: str) -> bytes:
    """One file of an export zip."""
    with zipfile.ZipFile(io.BytesIO(source)) as z:
        return z.read(name)

