"""The web assets shipped in the package: the SDK copy is current, and no page or script
needs an inline script or style (the Content-Security-Policy forbids both)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from bankhub.web import CONTENT_TYPES, WEB_ROOT
from bankhub.web.sync_sdk import SOURCE, TARGET, stale, sync


def test_the_packaged_sdk_is_an_exact_copy_of_clients_web_src() -> None:
    assert SOURCE.is_dir(), f"no SDK sources at {SOURCE}"
    names = stale()
    assert not names, f"server/bankhub/web/static/sdk is stale ({', '.join(names)}): run python -m bankhub.web.sync_sdk"
    assert (TARGET / "bankhub.js").is_file()


def test_sync_copies_changes_and_removes_what_the_source_dropped(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a.js").write_text("export const a = 1;\n")
    (src / "notes.md").write_text("not copied")
    assert stale(src, dst) == ["a.js"]
    assert sync(src, dst) == ["a.js"]
    assert stale(src, dst) == [] and not (dst / "notes.md").exists()
    (src / "a.js").write_text("export const a = 2;\n")
    (dst / "gone.js").write_text("")
    assert stale(src, dst) == ["a.js", "gone.js"]
    sync(src, dst)
    assert (dst / "a.js").read_text() == "export const a = 2;\n" and not (dst / "gone.js").exists()


class _Inline(HTMLParser):
    """Finds what a strict CSP would block: inline scripts, style elements and attributes, handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}=javascript:")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline script text")


def test_no_page_has_inline_script_or_style() -> None:
    pages = sorted(WEB_ROOT.rglob("*.html"))
    assert {p.stem for p in (WEB_ROOT / "pages").glob("*.html")} >= {"app", "staff", "console", "compliance"}
    for page in pages:
        parser = _Inline()
        parser.feed(page.read_text(encoding="utf-8"))
        assert not parser.found, f"{page.relative_to(WEB_ROOT)}: {parser.found}"


def test_scripts_neither_write_html_nor_evaluate_text() -> None:
    # the app builds the DOM with createElement/textContent only: what a user typed is never parsed
    risky = re.compile(r"\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*[\"']on")
    scripts = [*(WEB_ROOT / "static" / "app").rglob("*.js"), *(WEB_ROOT / "static" / "staff").rglob("*.js")]
    for script in sorted([*scripts, *(WEB_ROOT / "static" / "compliance").rglob("*.js")]):
        found = risky.findall(script.read_text(encoding="utf-8"))
        assert not found, f"{script.name}: {found}"


def test_every_shipped_file_has_a_known_type_and_the_manifest_is_installable() -> None:
    for path in (WEB_ROOT / "static").rglob("*"):
        if path.is_file():
            assert path.suffix in CONTENT_TYPES, f"{path.relative_to(WEB_ROOT)} would be answered 404: unknown type"
    manifest = json.loads((WEB_ROOT / "static" / "app" / "manifest.webmanifest").read_text(encoding="utf-8"))
    assert manifest["start_url"] == "/app/" and manifest["scope"] == "/app/" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert (WEB_ROOT / icon["src"].removeprefix("/")).is_file() or (WEB_ROOT / "static" / icon["src"].removeprefix("/static/")).is_file()
