"""A blob store in a local directory (the default), shared by nodes on a volume.

Each blob is one file at ``<root>/<key>~``: the ``~`` (a character keys cannot hold) keeps
files and directories apart, so ``a/b`` and ``a/b/c`` are both possible, as in object
storage. A write goes to a temp file in the same
directory, is fsynced, then renamed over the target: ``rename`` is atomic on POSIX file
systems (NFS included, within a directory), so a reader on any node sees the old or the
new file whole, never a partial one, and two nodes writing one key at once leave one of the
two. Files are created mode 0600 and directories 0700: only the hub's user reads them
(they hold ciphertext anyway). File I/O runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from .base import BlobNotFound, BlobUnavailable, check_key

__all__ = ["LocalBlobStore"]


class LocalBlobStore:
    """See the module docstring."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / (check_key(key) + "~")).resolve()
        # check_key already refuses "..": this is the belt to its braces (a symlink placed in the volume)
        if not path.is_relative_to(self.root):
            raise BlobUnavailable("a blob path resolves outside the store")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # the rename itself is durable once the directory is synced
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass  # some file systems do not sync directories; the data itself is synced

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key) from None

    def _delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def _run(self, fn: object, *args: object) -> object:
        try:
            return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]
        except (BlobNotFound, BlobUnavailable, ValueError):
            raise
        except OSError as exc:
            raise BlobUnavailable(f"local blob store: {type(exc).__name__} (errno {exc.errno})") from None

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        await self._run(self._put, key, bytes(data))

    async def get(self, key: str) -> bytes:
        check_key(key)
        out = await self._run(self._get, key)
        assert isinstance(out, bytes)
        return out

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._run(self._delete, key)

    async def exists(self, key: str) -> bool:
        check_key(key)
        return bool(await self._run(self._exists, key))

    async def close(self) -> None:
        return None
