"""The media settings: parsed from the environment, bounded, and checked for production."""

from __future__ import annotations

import base64
import os

import pytest

from bankhub.settings import Settings, SettingsError

BASE = {"database_url": "postgresql://x/y", "key_file": "/etc/bankhub/keys.json"}


def test_media_settings_come_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "BANKHUB_MEDIA_MAX_IMAGE_BYTES": "5000000",
            "BANKHUB_MEDIA_MAX_VOICE_SECONDS": "60",
            "BANKHUB_MEDIA_BLOB_BACKEND": "s3",
            "BANKHUB_MEDIA_S3_ENDPOINT": "https://s3.example.com",
            "BANKHUB_MEDIA_CLAMD": "127.0.0.1:3310",
        }
    )
    assert (s.media_max_image_bytes, s.media_max_voice_seconds, s.media_blob_backend) == (5_000_000, 60.0, "s3")
    assert s.media_s3_endpoint == "https://s3.example.com" and s.media_clamd == "127.0.0.1:3310"


@pytest.mark.parametrize(
    "env",
    [
        {"BANKHUB_MEDIA_BLOB_BACKEND": "ftp"},
        {"BANKHUB_MEDIA_MAX_PIXELS": "0"},
        {"BANKHUB_MEDIA_MAX_PIXELS": "100000000"},  # over Pillow's own bomb guard
        {"BANKHUB_MEDIA_URL_TTL_SECONDS": "5"},
        {"BANKHUB_MEDIA_MAX_IMAGE_BYTES": "10"},
    ],
)
def test_out_of_bounds_media_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_secret_media_settings_are_never_shown() -> None:
    s = Settings(**BASE, media_url_key="c2VjcmV0", media_s3_secret_key="hunter2")  # type: ignore[arg-type]
    assert "c2VjcmV0" not in repr(s) and "hunter2" not in repr(s)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"media_blob_backend": "s3", "media_s3_endpoint": "https://s3"}, "BANKHUB_MEDIA_S3_BUCKET"),
        ({"media_url_key": "not-base64!"}, "BANKHUB_MEDIA_URL_KEY"),
        ({"media_url_key": base64.b64encode(b"short").decode()}, "BANKHUB_MEDIA_URL_KEY"),
        ({"media_clamd": "clamd"}, "BANKHUB_MEDIA_CLAMD"),
    ],
)
def test_a_production_node_refuses_incomplete_media_settings(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**BASE, **overrides).validate()  # type: ignore[arg-type]


def test_complete_media_settings_validate() -> None:
    Settings(
        **BASE,  # type: ignore[arg-type]
        media_blob_backend="s3",
        media_s3_endpoint="https://s3",
        media_s3_bucket="b",
        media_s3_access_key="a",
        media_s3_secret_key="s",
        media_url_key=base64.b64encode(os.urandom(32)).decode(),
        media_clamd="unix:/run/clamav/clamd.ctl",
    ).validate()
    Settings(**BASE, media_clamd="[::1]:3310").validate()  # type: ignore[arg-type]
