"""``bankhub export ...``: eDiscovery exports from the command line.

* ``export request --as OFFICER --custodian USER ... | --conversation ID ... [--from T] [--to T]
  [--keyword K ...] --reason CODE [--case-ref REF]`` — file a request (as that compliance officer);
* ``export reject ID --as OFFICER`` — reject a pending request (its requester: withdraw it);
* ``export approve`` — refused (exit 1): anyone who can run this command can name any officer,
  so the SECOND officer's approval is only given through the HTTP API by a signed-in officer
  (the compliance console, ``/compliance/``), which then builds the export on the node;
* ``export list --as OFFICER [--limit N]`` — the requests, newest first (N within 1..200);
* ``export run ID --as OFFICER --out FILE`` — build an approved export (``running`` or
  ``failed``) here, with a progress bar on stderr; only its requester or approver; a ``ready``
  export is refused (it is never rebuilt: download it). The result is stored (sealed) like a
  node's build and written to FILE a chunk at a time (never whole in memory), audited
  ``export.downloaded`` before it appears at FILE;
* ``export download ID --as OFFICER --out FILE`` — the stored zip (requester or approver only);
* ``export verify FILE [--key KEY | --hub URL]`` — check an export offline, no database needed:
  the signature over the manifest, every file's size and SHA-256, and that the zip holds
  exactly the files the manifest lists. The signer is AUTHENTICATED only against a key you
  trust: ``--key`` (a base64url Ed25519 public key, a JWK file, or a saved ``GET
  /v1/signing-keys`` answer) or ``--hub URL`` (fetches ``URL/v1/signing-keys``). Prints the
  files checked, the signer's key id and fingerprint, then the verdict. Exit 0: verifies and
  the signer is authenticated; 1: FAILED — a check failed, or the pinned key (or keys file, or
  hub) holds no key of the manifest's id; 2: consistent (the manifest's signature matches the
  key the manifest itself names, every digest matches) but the signer is NOT authenticated —
  anyone can make such a zip with a key of their own; 3: could not run (no such file, an
  unreadable or malformed ``--key``, ``--hub`` unreachable or not a signing-keys answer), no verdict.

Every step is audited as through the HTTP API (``export.requested`` ... ``export.downloaded``),
with the officer named by ``--as`` as the actor and ``"via": "cli"`` and the operating-system
user in the details. Exit codes otherwise as every command: 1 a refusal, 2 could not run
(``verify`` alone uses 2 for NOT AUTHENTICATED and 3 for could not run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import common
from .common import CannotRun
from .holds import cli_origin

if TYPE_CHECKING:
    from ..actions.exports import ExportDeps, ExportView
    from ..models import User
    from ..storage.db import Database

__all__ = ["register", "parse_key", "ProgressBar", "NoSuchKey", "VERIFY_COULD_NOT_RUN"]

BAR_WIDTH = 30

# `export verify` answers 0 OK, 1 FAILED, 2 NOT AUTHENTICATED: "could not run" needs a code of its own
VERIFY_COULD_NOT_RUN = 3


class NoSuchKey(Exception):
    """A keys file (a JWK set) that holds Ed25519 keys, none of them the manifest's ``kid``:
    the pinned keys are not the signer's — a FAILED verdict, not a failure to run."""


class ProgressBar:
    """A one-line text progress bar on a stream (stderr), redrawn per batch."""

    def __init__(self, stream: Any = None, label: str = "messages") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = BAR_WIDTH if total == 0 else min(BAR_WIDTH, BAR_WIDTH * done // total)
        pct = 100 if total == 0 else min(100, 100 * done // total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {pct:3d}% {done}/{total} {self.label}")
        self.stream.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CannotRun(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise CannotRun(f"a time needs an offset (e.g. Z): {text!r}")
    return value


def parse_key(text: str, key_id: str | None = None) -> bytes:
    """The raw Ed25519 public key of ``--key``: unpadded base64url of 32 bytes, or a file holding
    a JWK, or a JWK set (``{"keys": [...]}``, as ``GET /v1/signing-keys`` answers: the key whose
    ``kid`` is ``key_id``)."""
    from ..crypto.signing import unb64url

    path = Path(text)
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            raise CannotRun(f"{text}: not a JWK file") from None
        keys = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
        if not isinstance(keys, list):
            raise CannotRun(f"{text}: not a JWK file")
        chosen = [k for k in keys if isinstance(k, dict) and (len(keys) == 1 or k.get("kid") == key_id)]
        if not chosen and any(isinstance(k, dict) and k.get("kty") == "OKP" and k.get("crv") == "Ed25519" for k in keys):
            raise NoSuchKey(f"{text} holds no key {key_id or '(manifest.sig names none)'}: the signer is not a pinned key")
        if not chosen or chosen[0].get("kty") != "OKP" or chosen[0].get("crv") != "Ed25519":
            raise CannotRun(f"{text}: no Ed25519 JWK" + (f" with kid {key_id}" if key_id else ""))
        text = str(chosen[0].get("x", ""))
    try:
        raw = unb64url(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CannotRun("--key is a base64url Ed25519 public key (32 bytes) or a JWK file")
    return raw


def _signature_key_id(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("manifest.sig")
            if info.file_size > 4096:
                return None
            kid = json.loads(z.read(info)).get("key_id")
            return kid if isinstance(kid, str) else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError):
        return None


MAX_KEYS_ANSWER = 1 << 20


def fetch_hub_key(url: str, key_id: str | None) -> bytes | None:
    """The raw public key whose ``kid`` is ``key_id`` from ``URL/v1/signing-keys`` (the hub's
    published keys: trust it as far as you trust that address and its TLS certificate); None
    when the hub publishes no such key (the signer is not that hub)."""
    import httpx

    from ..crypto.signing import unb64url

    if not url.startswith(("https://", "http://")):
        raise CannotRun("--hub is the hub's base URL, e.g. https://hub.example.com")
    try:
        with httpx.Client(timeout=15, follow_redirects=False) as client:
            r = client.get(url.rstrip("/") + "/v1/signing-keys")
    except httpx.HTTPError as exc:
        raise CannotRun(f"--hub: could not fetch the signing keys ({type(exc).__name__})") from None
    if r.status_code != 200 or len(r.content) > MAX_KEYS_ANSWER:
        raise CannotRun(f"--hub: GET /v1/signing-keys answered {r.status_code}")
    try:
        doc = r.json()
        keys = doc["keys"] if isinstance(doc, dict) else None
    except (ValueError, KeyError):
        keys = None
    if not isinstance(keys, list):
        raise CannotRun("--hub: not a signing-keys answer")
    chosen = [k for k in keys if isinstance(k, dict) and k.get("kid") == key_id and k.get("kty") == "OKP" and k.get("crv") == "Ed25519"]
    if not chosen:
        return None
    try:
        raw = unb64url(str(chosen[0].get("x", "")))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CannotRun("--hub: the published key is not an Ed25519 public key")
    return raw


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        return _verify(args)
    except CannotRun as exc:
        # not a verdict: 2 is NOT AUTHENTICATED here, so "could not run" is 3
        print(f"bankhub export verify: {exc}", file=sys.stderr)
        return VERIFY_COULD_NOT_RUN


def _verify(args: argparse.Namespace) -> int:
    from ..compliance.export_format import verify_export

    if not Path(args.file).is_file():
        raise CannotRun(f"no such file: {args.file}")
    if args.key and args.hub:
        raise CannotRun("give --key or --hub, not both")
    key: bytes | None = None
    if args.key:
        try:
            key = parse_key(args.key, _signature_key_id(args.file))
        except NoSuchKey as miss:
            print(f"signer key id: {_signature_key_id(args.file) or '-'}")
            print("FAILED:")
            print(f"  {miss}")
            return 1
    elif args.hub:
        signer = _signature_key_id(args.file)
        key = fetch_hub_key(args.hub, signer)
        if key is None:
            print(f"signer key id: {signer or '-'}")
            print("FAILED:")
            print(f"  the hub at {args.hub} publishes no key {signer or '(manifest.sig names none)'}: the signer is not that hub")
            return 1
    result = verify_export(args.file, public_key=key)
    print(f"files checked: {result.files_checked}")
    print(f"signer key id: {result.key_id or '-'}")
    print(f"signer key fingerprint: {result.fingerprint or '-'}" + ("" if key else "  (compare with GET /v1/signing-keys)"))
    if not result.ok:
        print("FAILED:")
        for problem in result.problems:
            print(f"  {problem}")
        return 1
    if not result.authenticated:
        print(
            f"NOT AUTHENTICATED: export {result.export_id} is consistent (its signature matches the key its own manifest "
            "names, every digest matches), but the signer is NOT authenticated: anyone can sign a zip with a key of their "
            "own. Pin the hub's key: --key (GET /v1/signing-keys) or --hub URL"
        )
        return 2
    print(f"OK: export {result.export_id} verifies; the signer is authenticated (the pinned key)")
    return 0


def _deps(db: Database, args: argparse.Namespace) -> ExportDeps:
    from ..actions.exports import ExportDeps
    from ..blobs import make_blob_store
    from ..crypto.keyring import Keyring
    from ..storage.alerts import AlertStore
    from ..storage.exports import ExportStore
    from ..storage.media import MediaStore
    from ..storage.messages import MessageStore
    from ..storage.revisions import RevisionStore
    from ..storage.signing_keys import SigningKeyStore
    from ..storage.users import UserStore

    settings = common.env_settings()
    keyring = Keyring(common.key_provider(args))
    messages = MessageStore(db, keyring)
    return ExportDeps(
        db=db,
        keyring=keyring,
        settings=settings,
        store=ExportStore(db),
        users=UserStore(db),
        messages=messages,
        revisions=RevisionStore(messages, keyring),
        media=MediaStore(db),
        blobs=make_blob_store(settings),
        signing=SigningKeyStore(db, keyring),
        alerts=AlertStore(db, keyring),
        auditor=db,
    )


async def _officer(deps: ExportDeps, username: str) -> User:
    user = await deps.users.by_username(username)
    if user is None:
        raise CannotRun(f"no such user: {username}")
    return user


def _show(v: ExportView) -> str:
    scope = v.scope
    who = ",".join(c.username for c in scope.custodians) or "-"
    return (
        f"{v.export_id}  {v.state:<16} requested_by={v.requested_by} approved_by={v.approved_by or '-'} "
        f"custodians={who} conversations={len(scope.conversation_ids)} progress={v.progress.done}/{v.progress.total}"
        + (f" bytes={v.bytes} sha256={v.sha256}" if v.sha256 else "")
        + (f" error={v.error}" if v.error else "")
    )


def _with_deps(args: argparse.Namespace, fn: Any) -> Any:
    async def run(db: Database) -> Any:
        deps = _deps(db, args)
        try:
            return await fn(deps)
        finally:
            await deps.blobs.close()

    return common.with_db(args, run)


def cmd_request(args: argparse.Namespace) -> int:
    from ..actions.exports import request_export

    since, until = _time(args.since), _time(args.until)

    async def go(deps: ExportDeps) -> ExportView:
        return await request_export(
            deps, await _officer(deps, args.as_user), custodians=args.custodian or [], conversation_ids=args.conversation or [],
            since=since, until=until, keywords=args.keyword or [], reason=args.reason, case_ref=args.case_ref, ip=None,
            via=cli_origin(),
        )

    view = _with_deps(args, go)
    print(_show(view))
    print("a second compliance officer approves it, signed in to the compliance console (/compliance/)")
    return 0


APPROVE_REFUSED = (
    "an export is approved by a second compliance officer signed in to the compliance console "
    "(/compliance/, or POST /v1/compliance/exports/{export_id}/approve); the command line cannot approve"
)


def cmd_approve(args: argparse.Namespace) -> int:
    """Refused: the command line names its officer, so it cannot be the second of two."""
    print(APPROVE_REFUSED, file=sys.stderr)
    return 1


def cmd_reject(args: argparse.Namespace) -> int:
    from ..actions.exports import reject_export

    async def go(deps: ExportDeps) -> ExportView:
        return await reject_export(deps, await _officer(deps, args.as_user), args.id, None, via=cli_origin())

    print(_show(_with_deps(args, go)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..actions.exports import list_exports

    if not 1 <= args.limit <= 200:
        raise CannotRun("--limit must be within 1..200")

    async def go(deps: ExportDeps) -> list[Any]:
        return await list_exports(deps, await _officer(deps, args.as_user), None, args.limit)

    rows = _with_deps(args, go)[: args.limit]
    for view, _ in rows:
        print(_show(view))
    if not rows:
        print("no exports")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..actions.exports import run_here

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CannotRun(f"--out: no directory {str(out.parent)!r}")
    bar = ProgressBar()

    async def go(deps: ExportDeps) -> int:
        actor = await _officer(deps, args.as_user)
        try:
            # the zip is written a chunk at a time and appears at --out only once audited
            row = await run_here(deps, actor, args.id, out, via=cli_origin(), on_progress=bar)
        except OSError as exc:
            raise CannotRun(f"--out: {exc.strerror or type(exc).__name__}") from None
        finally:
            bar.end()
        return row.size or 0

    size = _with_deps(args, go)
    print(f"wrote {args.out} ({size} bytes); verify it: bankhub export verify {args.out}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..actions.exports import download_export

    async def go(deps: ExportDeps) -> int:
        _, chunks = await download_export(deps, await _officer(deps, args.as_user), args.id, None, via=cli_origin())
        size = 0
        with open(args.out, "wb") as f:
            async for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        return size

    size = _with_deps(args, go)
    print(f"wrote {args.out} ({size} bytes); verify it: bankhub export verify {args.out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``export`` and its subcommands to the ``bankhub`` parser's subparsers."""
    group = common.Group(subparsers, "export", "eDiscovery exports: request, approve, build, download, verify offline")
    req = group.add("request", "request an export as a compliance officer (a second one approves it)", cmd_request, key_file=True)
    req.add_argument("--as", dest="as_user", required=True, metavar="OFFICER", help="the requesting compliance officer's username")
    req.add_argument("--custodian", action="append", metavar="USERNAME", help="a custodian (repeat; at most 50)")
    req.add_argument("--conversation", action="append", metavar="ID", help="a conversation id (repeat; at most 200)")
    req.add_argument("--from", dest="since", metavar="TIME", help="RFC 3339: messages at or after it")
    req.add_argument("--to", dest="until", metavar="TIME", help="RFC 3339: messages before it")
    req.add_argument("--keyword", action="append", metavar="WORD", help="only messages containing it, any case (repeat; at most 20)")
    req.add_argument("--reason", required=True, help="a privileged-read reason code (e.g. regulatory_request)")
    req.add_argument("--case-ref", help="the case reference")
    rej = group.add("reject", "reject a requested export (its requester: withdraw it)", cmd_reject, key_file=True)
    rej.add_argument("id", help="the export id")
    rej.add_argument("--as", dest="as_user", required=True, metavar="OFFICER", help="the deciding compliance officer's username")
    # kept so that it answers with where to approve instead of "invalid choice"
    appr = group.add("approve", "refused: a second officer approves an export in the compliance console", cmd_approve, database=False)
    appr.add_argument("id", nargs="?", help=argparse.SUPPRESS)
    appr.add_argument("--as", dest="as_user", metavar="OFFICER", help=argparse.SUPPRESS)
    appr.add_argument("--file", help=argparse.SUPPRESS)
    lst = group.add("list", "list export requests, newest first", cmd_list, key_file=True)
    lst.add_argument("--as", dest="as_user", required=True, metavar="OFFICER", help="a compliance officer's username")
    lst.add_argument("--limit", type=int, default=50, help="how many (1-200, default 50)")
    run = group.add("run", "build an approved export here (progress on stderr), store it and write it to a file", cmd_run, key_file=True)
    run.add_argument("id", help="the export id")
    run.add_argument("--as", dest="as_user", required=True, metavar="OFFICER", help="the requester's or approver's username")
    run.add_argument("--out", required=True, metavar="FILE", help="where to write the zip")
    dl = group.add("download", "download a ready export (its requester or approver)", cmd_download, key_file=True)
    dl.add_argument("id", help="the export id")
    dl.add_argument("--as", dest="as_user", required=True, metavar="OFFICER", help="the requester's or approver's username")
    dl.add_argument("--out", required=True, metavar="FILE", help="where to write the zip")
    ver = group.add("verify", "verify an export offline: signature, every digest, no file added or missing", cmd_verify, database=False)
    ver.add_argument("file", help="the export zip")
    ver.add_argument("--key", help="pin the signer: a base64url Ed25519 public key, a JWK file, or a saved GET /v1/signing-keys answer")
    ver.add_argument("--hub", metavar="URL", help="pin the signer to the key the hub at URL publishes (GET URL/v1/signing-keys)")
