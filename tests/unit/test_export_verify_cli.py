"""``bankhub export verify`` exit codes: 0 OK, 1 FAILED, 2 NOT AUTHENTICATED, 3 could not run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankhub.cli import main
from bankhub.crypto.signing import b64url

from .test_exports_format import KEY, OTHER, _export


def _jwk(key_id: str, public: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "kid": key_id, "x": b64url(public)}


@pytest.fixture()
def export_zip(tmp_path: Path) -> Path:
    path = tmp_path / "export.zip"
    path.write_bytes(_export())
    return path


def test_pinned_to_the_signers_key_in_a_keys_file_is_ok(export_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [_jwk(OTHER.key_id, OTHER.public_key), _jwk(KEY.key_id, KEY.public_key)]}))
    assert main(["export", "verify", str(export_zip), "--key", str(keys)]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_keys_file_without_the_manifests_key_id_is_failed_not_could_not_run(
    export_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a saved GET /v1/signing-keys answer of another hub (two keys, neither the signer's): a verdict
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [_jwk("sig-a", OTHER.public_key), _jwk("sig-b", b"\x07" * 32)]}))
    assert main(["export", "verify", str(export_zip), "--key", str(keys)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and f"holds no key {KEY.key_id}" in out and "OK" not in out


def test_unpinned_is_not_authenticated(export_zip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "verify", str(export_zip)]) == 2
    assert "NOT AUTHENTICATED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--key", "not-a-key"],
        ["--hub", "ftp://hub.example"],
        ["--key", b64url(KEY.public_key), "--hub", "https://hub.example"],
    ],
)
def test_could_not_run_is_3_never_a_verdict_code(export_zip: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "verify", str(export_zip), *argv]) == 3
    captured = capsys.readouterr()
    assert "bankhub export verify:" in captured.err and "OK" not in captured.out


def test_a_missing_file_or_a_usage_error_is_3(tmp_path: Path) -> None:
    assert main(["export", "verify", str(tmp_path / "missing.zip")]) == 3
    with pytest.raises(SystemExit) as exited:
        main(["export", "verify", str(tmp_path / "missing.zip"), "--no-such-option"])
    assert exited.value.code == 3
