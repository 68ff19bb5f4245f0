"""Keep credentials out of logs.

uvicorn logs each WebSocket handshake with its path *and query string*, which is where a
browser's ticket travels. This filter rewrites such values before any handler sees them.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactSecrets", "install"]

_SECRET = re.compile(r"((?:ticket|token|access_token|password)=)[^&\s\"']+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _BEARER.sub(r"\1[redacted]", _SECRET.sub(r"\1[redacted]", message))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install() -> None:
    """Attach the filter to the loggers that may see request lines."""
    redact = RedactSecrets()
    for name in ("uvicorn.error", "uvicorn.access", "bankhub"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(redact)
