"""RFC 9457 problem responses with stable ``code`` values."""

from __future__ import annotations

import msgspec
from starlette.responses import Response

__all__ = ["problem", "json_response"]

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_encoder = msgspec.json.Encoder()


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "type": f"https://bankhub.dev/problems/{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    return Response(_encoder.encode(body), status_code=status, media_type="application/problem+json", headers=headers)


def json_response(data: object, status: int = 200) -> Response:
    return Response(_encoder.encode(data), status_code=status, media_type="application/json")
