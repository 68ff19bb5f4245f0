"""The hub's web faces, served from this package: no CDN, no Node.js, no build step.

* ``/app/`` the customer app (an installable PWA: ``/app/manifest.webmanifest`` and the
  service worker ``/app/sw.js``, whose scope is ``/app/``), ``/staff/`` the staff
  workbench, ``/console/`` the head-office and branch console, ``/compliance/`` the compliance
  console: HTML shells from ``pages/``;
* ``/static/<path>`` the files under ``static/`` (the app's modules, its stylesheet and
  icons, and the JavaScript SDK in ``static/sdk/``, a copy of ``clients/web/src/`` made by
  ``python -m bankhub.web.sync_sdk``).

Every file is answered with an explicit content type, a strong ``ETag`` (``If-None-Match``
answers 304) and ``Cache-Control: no-cache``: the browser keeps its copy but asks each time,
so a new release is seen at once and an unchanged file costs a 304. Names are resolved
inside the package only: ``..``, hidden files, and types not in :data:`CONTENT_TYPES` are 404.

:class:`SecurityHeaders` adds :data:`SECURITY_HEADERS` (a strict Content-Security-Policy
with no inline script or style, ``nosniff``, ``no-referrer``) to every HTTP answer of the
hub, pages, files and API alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ROUTES", "SECURITY_HEADERS", "CONTENT_SECURITY_POLICY", "CONTENT_TYPES", "SecurityHeaders", "WEB_ROOT"]

WEB_ROOT = Path(__file__).resolve().parent
_STATIC = WEB_ROOT / "static"
_PAGES = WEB_ROOT / "pages"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response (kept if a handler set its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self._headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _not_found() -> Response:
    # the problem module is imported late: pages must not pull the HTTP API into this module's import
    from ..http.problems import problem

    return problem(404, "not_found", "no such file")


def _file(path: Path, request: Request, *, extra: dict[str, str] | None = None) -> Response:
    """``path`` (already resolved inside the package) with its type, ETag and cache headers."""
    media = CONTENT_TYPES.get(path.suffix.lower())
    if media is None or not path.is_file():
        return _not_found()
    data = path.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", **(extra or {})}
    wanted = request.headers.get("if-none-match", "")
    if etag in (t.strip() for t in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(b"" if request.method == "HEAD" else data, media_type=media, headers=headers)


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when it names a file inside ``root`` with no hidden or parent parts."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) else None


async def static_file(request: Request) -> Response:
    path = _inside(_STATIC, request.path_params["path"])
    return _file(path, request) if path is not None else _not_found()


def _page(name: str) -> Route:
    async def page(request: Request) -> Response:
        return _file(_PAGES / f"{name}.html", request)

    return Route(f"/{name}/", page, methods=["GET", "HEAD"], name=f"page_{name}")


def _redirect(name: str) -> Route:
    async def redirect(request: Request) -> Response:
        return RedirectResponse(f"/{name}/", status_code=308)

    return Route(f"/{name}", redirect, methods=["GET", "HEAD"])


async def manifest(request: Request) -> Response:
    return _file(_STATIC / "app" / "manifest.webmanifest", request)


async def service_worker(request: Request) -> Response:
    # served from /app/ so its default scope is /app/; the header says so explicitly, and the
    # browser must always fetch it afresh to see a new release
    return _file(_STATIC / "app" / "sw.js", request, extra={"Service-Worker-Allowed": "/app/", "Cache-Control": "no-cache, max-age=0"})


ROUTES: list[Route] = [
    *(_page(name) for name in ("app", "staff", "console", "compliance")),
    *(_redirect(name) for name in ("app", "staff", "console", "compliance")),
    Route("/app/manifest.webmanifest", manifest, methods=["GET", "HEAD"]),
    Route("/app/sw.js", service_worker, methods=["GET", "HEAD"]),
    Route("/static/{path:path}", static_file, methods=["GET", "HEAD"]),
]
