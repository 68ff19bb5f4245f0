"""Blob stores for media bytes: one interface (:mod:`.base`), a local directory (:mod:`.local`,
the default) and S3-compatible object storage (:mod:`.s3`); :func:`make_blob_store` picks
one from the settings."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .base import BlobError, BlobNotFound, BlobStore, BlobUnavailable, InvalidBlobKey, check_key
from .local import LocalBlobStore
from .s3 import S3BlobStore

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "BlobStore",
    "BlobError",
    "BlobNotFound",
    "BlobUnavailable",
    "InvalidBlobKey",
    "check_key",
    "LocalBlobStore",
    "S3BlobStore",
    "make_blob_store",
    "default_media_dir",
]


def default_media_dir(database_url: str) -> Path:
    """Where media go when ``BANKHUB_MEDIA_DIR`` is unset: a directory under the system's temp
    directory, one per database (so nodes of one database on one host share it). For
    development only; production sets a shared volume."""
    digest = hashlib.sha256(database_url.encode("utf-8")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"bankhub-media-{digest}"


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name (``BANKHUB_MEDIA_BLOB_BACKEND``)."""
    if settings.media_blob_backend == "s3":
        if not (settings.media_s3_endpoint and settings.media_s3_bucket and settings.media_s3_access_key and settings.media_s3_secret_key):
            raise ValueError(
                "BANKHUB_MEDIA_BLOB_BACKEND=s3 needs BANKHUB_MEDIA_S3_ENDPOINT, BANKHUB_MEDIA_S3_BUCKET, BANKHUB_MEDIA_S3_ACCESS_KEY and "
                "BANKHUB_MEDIA_S3_SECRET_KEY"
            )
        return S3BlobStore(
            settings.media_s3_endpoint,
            settings.media_s3_bucket,
            region=settings.media_s3_region,
            access_key=settings.media_s3_access_key,
            secret_key=settings.media_s3_secret_key,
        )
    return LocalBlobStore(settings.media_dir or default_media_dir(settings.database_url))
