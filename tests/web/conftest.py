"""The browser harness: Debian's Chromium driven by Playwright, against a real node.

* ``chromium`` (session): the path of ``/usr/bin/chromium``. When it (or the CJK font) is
  missing it is installed once from the OS packages (``apt-get update && apt-get install -y
  chromium fonts-wqy-microhei``), so
  README line 2 needs nothing more on a fresh machine; a failed install fails the browser
  tests with the reason (they are never skipped). ``playwright install`` is never used: it
  downloads a browser build, which cannot be fetched here.
* ``browser`` (per test, on the test's event loop): Chromium launched headless with
  :data:`CHROMIUM_ARGS`.
* ``hub``: a real node (Postgres and all) from the ``nodes`` fixture of ``tests/conftest.py``.
* :func:`new_phone` / :func:`new_desktop`: a browser context on the hub at a phone (375×812)
  or desktop viewport, zh-CN; every console error, page error and CSP violation in it fails
  the test (:class:`PageErrors`).
* ``shots``: the directory this test's screenshots go to, ``tests/web/artifacts/<test>/``
  (git-ignored; the path is printed at the end of the run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright

from bankhub.runner import RunningNode

from ..conftest import DEMO_PASSWORD, Nodes

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ARTIFACTS", "PageErrors", "new_phone", "new_desktop", "sign_in"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # a fake microphone (a tone) and no permission prompt: the voice-note tests record with it
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
ARTIFACTS = Path(os.environ.get("BANKHUB_WEB_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
# a CJK font, so the zh-CN screens (and their screenshots) show characters, not boxes
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
OS_PACKAGES = ["chromium", "fonts-wqy-microhei"]
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 800}


def _install_chromium() -> None:
    """``apt-get update && apt-get install -y chromium``; raises with apt's last words if it fails."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install it: install Chromium from your OS packages")
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update"], ["install", "-y", "--no-install-recommends", *OS_PACKAGES]):
        done = subprocess.run([*sudo, apt, *step], env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:]
            raise RuntimeError(f"`apt-get {' '.join(step)}` failed (exit {done.returncode}); install Chromium by hand:\n{tail}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable, installed from the OS packages when missing (once per run)."""
    if not os.access(CHROMIUM, os.X_OK) or not os.path.exists(CJK_FONT):
        try:
            _install_chromium()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}: {exc}", pytrace=False)
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there", pytrace=False)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def hub(nodes: Nodes) -> RunningNode:
    """A real node for the browser to talk to."""
    return await nodes.start()


_shots_taken: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _shots_taken:
        terminalreporter.write_line(f"browser screenshots: {ARTIFACTS} ({len(_shots_taken)} test(s))")


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot directory (emptied first)."""
    directory = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    _shots_taken.append(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


class PageErrors:
    """Collects console errors, uncaught page errors and CSP violations of a context's pages."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[re.Pattern[str]] = []

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        if message.type != "error" or any(p.search(f"{message.text} {where}") for p in self.expected):
            return
        if "status of 401" in message.text and where.endswith("/v1/web/session"):
            return  # the signed-out page asking whether it has a session: the documented answer is 401
        if "status of 404" in message.text and where.endswith("/v1/service/sessions/current"):
            return  # the desk asking for my open service session: none is the documented 404
        self.errors.append(f"console error: {message.text} ({where})")

    def allow(self, pattern: str) -> None:
        """Tolerate console errors matching ``pattern`` (e.g. the failed fetches of an offline spell)."""
        self.expected.append(re.compile(pattern))

    def assert_none(self) -> None:
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)


async def _context(browser: Browser, hub: RunningNode, errors: PageErrors, **options: object) -> BrowserContext:
    context = await browser.new_context(base_url=hub.http_url, locale="zh-CN", timezone_id="Asia/Shanghai", **options)  # type: ignore[arg-type]
    context.on("page", errors.watch)
    return context


async def new_phone(browser: Browser, hub: RunningNode, errors: PageErrors) -> BrowserContext:
    """A phone-sized context (375×812, touch, mobile)."""
    return await _context(browser, hub, errors, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)


async def new_desktop(browser: Browser, hub: RunningNode, errors: PageErrors) -> BrowserContext:
    return await _context(browser, hub, errors, viewport=DESKTOP)


async def sign_in(page: Page, username: str, path: str = "/app/", password: str = DEMO_PASSWORD) -> None:
    """Open ``path`` and sign in through the form, as a person would (labels, not selectors)."""
    await page.goto(path)
    await page.get_by_label(re.compile("用户名|Username")).fill(username)
    await page.get_by_label(re.compile("密码|Password")).fill(password)
    await page.get_by_role("button", name=re.compile("登录|Sign in")).click()
    try:
        await page.get_by_role("tablist").wait_for(timeout=15000)
    except Error as exc:
        raise AssertionError(f"{username} could not sign in at {path}: {exc}") from None
