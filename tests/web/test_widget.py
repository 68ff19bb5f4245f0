"""The embeddable service widget in real Chromium, on a partner page of another origin.

A tiny HTTP server on another loopback port plays the partner's site: its page includes
``/widget/loader.js`` with a visitor token the test minted as the partner's backend would.
The visitor opens the widget, starts a service-desk chat and reads the bot's answer — with
localStorage and sessionStorage throwing in every frame (blocked storage, #15616) and no
cookie set. A page of an origin the partner did not register gets no working widget: the
browser refuses to frame it (CSP frame-ancestors) and no token is ever exchanged.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from bankhub.actions import widget as widget_actions
from bankhub_client.widget import mint_visitor_token

from ..conftest import Nodes
from .conftest import PageErrors

expect.set_options(timeout=20_000)

# blocked storage, as in a WebView or a browser blocking third-party storage: any use throws
BLOCKED_STORAGE = """
for (const name of ["localStorage", "sessionStorage"]) {
  Object.defineProperty(window, name, { configurable: true, get() { throw new DOMException("storage is blocked", "SecurityError"); } });
}
"""


class _Site:
    """A partner site: one page at ``/``, served from its own loopback port (its own origin)."""

    def __init__(self) -> None:
        self.page = b""
        self.pages: dict[str, bytes] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
                found = site.page if self.path == "/" else site.pages.get(self.path)
                body = found if found is not None else b"not found"
                self.send_response(200 if found is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, hub_url: str, partner_id: str, token: str) -> None:
        self.page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>Partner shop</title></head>
<body><h1>Partner shop</h1><p>Our products.</p>
<script src="{hub_url}/widget/loader.js" data-partner="{partner_id}" data-visitor-token="{token}"></script>
</body></html>""".encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[_Site, _Site]]:
    shop, stranger = _Site(), _Site()
    yield shop, stranger
    shop.close()
    stranger.close()


async def test_the_widget_on_a_partner_page_starts_a_service_desk_chat(
    browser: Browser, nodes: Nodes, sites: tuple[_Site, _Site], shots: Path
) -> None:
    shop, stranger = sites
    hub = await nodes.start(widget_dev_origins="loopback")  # the partner's page is plain http on loopback
    partner, secret = await widget_actions.add_partner(hub.hub.db, hub.hub.keyring.provider, "shop", [shop.origin])
    assert shop.origin != hub.http_url  # another port: another origin
    shop.serve(hub.http_url, partner.id, mint_visitor_token(secret, partner.id, "member-7", "Visitor Wu", ttl=300))

    errors = PageErrors()
    errors.allow("favicon.ico")  # the partner's test site has none
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1000, "height": 760})
    await context.add_init_script(BLOCKED_STORAGE)
    context.on("page", errors.watch)
    page = await context.new_page()
    await page.goto(shop.origin + "/")
    launcher = page.get_by_role("button", name="在线客服")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await launcher.click()
    await expect(launcher).to_have_attribute("aria-expanded", "true")

    widget = page.frame_locator("#bankhub-widget-frame")
    await widget.get_by_role("button", name="开始咨询").click()
    log = widget.get_by_role("log")
    await expect(log.get_by_text(re.compile("Hello Visitor Wu, I am the bank's assistant"))).to_be_visible()
    await widget.get_by_label("输入消息").fill("我的卡丢了")
    await widget.get_by_role("button", name="发送").click()
    await expect(log.get_by_text("我的卡丢了", exact=True)).to_be_visible()
    await expect(log.get_by_text(re.compile("95588"))).to_be_visible()  # the bot's answer about a lost card
    await page.screenshot(path=str(shots / "01-widget-on-partner-page.png"))

    assert await context.cookies() == []  # no cookie, first- or third-party
    errors.assert_none()

    # a page of an origin the partner did not register: the browser will not frame the widget,
    # so its token is never exchanged
    stranger.serve(hub.http_url, partner.id, mint_visitor_token(secret, partner.id, "stranger-1", "Stranger", ttl=300))
    other = await context.new_page()
    refused: list[str] = []
    other.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    await other.goto(stranger.origin + "/")
    await other.get_by_role("button", name="在线客服").click()
    for _ in range(50):
        if refused:
            break
        await asyncio.sleep(0.1)
    assert refused, "Chromium did not report the frame-ancestors refusal"
    await expect(other.frame_locator("#bankhub-widget-frame").get_by_role("button", name="开始咨询")).to_have_count(0)
    async with hub.hub.db.connection("test_widget_visitors") as conn:
        assert await conn.fetchval("SELECT count(*) FROM widget_visitors WHERE external_id = 'stranger-1'") == 0
        assert await conn.fetchval("SELECT count(*) FROM widget_visitors WHERE external_id = 'member-7'") == 1
    await context.close()


async def test_a_token_posted_by_another_frame_is_ignored(browser: Browser, nodes: Nodes, sites: tuple[_Site, _Site]) -> None:
    """The frame takes a token only from its parent page, of a registered origin: a frame of
    another origin on the same page that posts a valid token into the widget gets nowhere."""
    shop, stranger = sites
    hub = await nodes.start(widget_dev_origins="loopback")
    partner, secret = await widget_actions.add_partner(hub.hub.db, hub.hub.keyring.provider, "shop", [shop.origin])
    spoofed = mint_visitor_token(secret, partner.id, "spoof-1", "Spoofed", ttl=300)
    stranger.pages["/spoof"] = f"""<!doctype html><meta charset="utf-8"><script>
setInterval(() => {{
  for (let i = 0; i < parent.frames.length; i++) parent.frames[i].postMessage({{type: "bankhub:visitor-token", token: "{spoofed}"}}, "*");
}}, 100);
</script>""".encode()
    # the partner page: the widget waiting for its own token (none given), and a foreign frame
    shop.page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>Partner shop</title></head>
<body><iframe src="{stranger.origin}/spoof" title="ad"></iframe>
<script src="{hub.http_url}/widget/loader.js" data-partner="{partner.id}"></script></body></html>""".encode()

    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(shop.origin + "/")
    await page.get_by_role("button", name="在线客服").click()
    widget = page.frame_locator("#bankhub-widget-frame")
    await expect(widget.get_by_role("status")).to_have_text("等待合作方页面的访客身份…")
    await asyncio.sleep(2)  # twenty spoofed posts later
    await expect(widget.get_by_role("status")).to_have_text("等待合作方页面的访客身份…")
    await expect(widget.get_by_role("button", name="开始咨询")).to_be_hidden()
    async with hub.hub.db.connection("test_widget_spoof") as conn:
        assert await conn.fetchval("SELECT count(*) FROM widget_nonces") == 0  # no token was ever exchanged
    await context.close()
