"""Pictures and voice notes in real Chromium, against a real node.

* c.li sends rm.wang a photo from the customer app: a JPEG carrying EXIF GPS tags. rm.wang
  sees its thumbnail in the staff workbench and opens the full image in a dialog; the bytes
  the page fetches from the image's short-lived URL are a JPEG with no EXIF and no GPS.
  A file of a type the hub does not take, or whose content is not what it claims, is
  refused with a clear message.
* c.li records a voice note with Chromium's fake microphone (``--use-fake-device-for-media-stream``)
  and sends it; rm.wang sees its duration and waveform and plays it: the audio element plays.
* The chat screens with a picture, the full-image dialog and a voice note have no serious or
  critical axe-core violation.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from PIL import Image
from playwright.async_api import Browser, FilePayload, Page, expect

from bankhub.runner import RunningNode

from ..conftest import Nodes
from .conftest import PageErrors, new_desktop, new_phone, sign_in

expect.set_options(timeout=20_000)
_axe = Axe()

GPS_IFD = 0x8825
EXIF_IFD = 0x8769


async def check_screen(page: Page, shots: Path, name: str) -> None:
    """Screenshot ``name`` and fail on any serious or critical axe-core violation."""
    await page.screenshot(path=shots / f"{name}.png")
    results = await _axe.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )


def jpeg_with_gps(width: int = 1600, height: int = 1200) -> bytes:
    """A JPEG photo whose EXIF says where it was taken (Beijing) and with which camera."""
    image = Image.new("RGB", (width, height))
    for x in range(0, width, 16):  # not a flat colour: something a re-encoder has to keep
        for y in range(0, height, 16):
            image.paste(((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256), (x, y, x + 16, y + 16))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Phone 12"  # Model
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (39.0, 54.0, 27.0)
    gps[3] = "E"
    gps[4] = (116.0, 23.0, 17.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def payload(name: str, mime: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": data}


async def open_rm_chat(li: Page) -> None:
    await sign_in(li, "c.li")
    await li.get_by_role("button", name=re.compile("我的客户经理")).click()
    await expect(li.get_by_label("输入消息")).to_be_visible()


async def open_customer_chat(wang: Page) -> None:
    await sign_in(wang, "rm.wang", "/staff/")
    card = wang.locator('.card.customer[data-username="c.li"]')
    await card.get_by_role("button", name=re.compile("与 Li Lei 聊天")).click()
    await expect(wang.get_by_role("log")).to_be_visible()


async def loaded(page: Page, selector: str) -> None:
    """Wait until the image at ``selector`` has been decoded (its signed URL answered)."""
    await page.wait_for_function(
        "(sel) => { const img = document.querySelector(sel); return !!img && img.complete && img.naturalWidth > 0; }",
        arg=selector,
        timeout=20_000,
    )


async def test_photo_reaches_the_rm_as_a_thumbnail_and_a_full_image_without_exif(browser: Browser, nodes: Nodes, shots: Path) -> None:
    original = jpeg_with_gps()
    with Image.open(io.BytesIO(original)) as check:  # the photo really carries GPS
        assert check.getexif().get_ifd(GPS_IFD), "the test photo must carry GPS tags"
    # a picture cap just above this photo, so a slightly larger one is over it
    hub = await nodes.start(media_max_image_bytes=len(original) + 4096)

    errors = PageErrors()
    li_context = await new_phone(browser, hub, errors)
    wang_context = await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()
    await open_rm_chat(li)

    # a type the hub does not take is refused before uploading, with a clear message
    await li.get_by_label("发送图片").set_input_files(files=payload("anim.gif", "image/gif", b"GIF89a\x01\x00\x01\x00"))
    await expect(li.get_by_role("alert").filter(has_text="不支持此文件类型")).to_be_visible()
    # content that is not what it claims to be: the hub judges by content and answers 415
    errors.allow(r"status of 415")
    await li.get_by_label("发送图片").set_input_files(files=payload("fake.png", "image/png", b"MZ\x90\x00 not a picture at all"))
    await expect(li.get_by_role("alert").filter(has_text="不支持此文件类型")).to_be_visible()
    # over the hub's size cap: 413, said as such
    errors.allow(r"status of 413")
    await li.get_by_label("发送图片").set_input_files(files=payload("big.jpg", "image/jpeg", original + b"\0" * 8192))
    await expect(li.get_by_role("alert").filter(has_text="文件太大")).to_be_visible()
    await expect(li.get_by_role("log").locator(".media.image")).to_have_count(0)

    # the photo: uploaded, sent, shown to c.li as her own thumbnail
    await li.get_by_label("发送图片").set_input_files(files=payload("photo.jpg", "image/jpeg", original))
    mine = li.get_by_role("log").locator(".msg.mine").get_by_role("button", name=re.compile("^查看大图"))
    await expect(mine).to_have_count(1)
    await expect(li.get_by_role("alert").filter(has_text=re.compile("."))).to_have_count(0)
    await loaded(li, ".log .msg.mine .thumb-img")
    await check_screen(li, shots, "01-customer-chat-photo")

    # rm.wang: the thumbnail in the workbench's chat with c.li, loaded from a signed URL
    await open_customer_chat(wang)
    thumb = wang.get_by_role("log").get_by_role("button", name=re.compile("^查看大图"))
    await expect(thumb).to_have_count(1)
    await expect(thumb.locator("img")).to_have_attribute("alt", "图片")
    await expect(thumb.locator("img")).to_have_attribute("src", re.compile(r"/v1/media/[^/]+/thumb\?.*sig="))
    await loaded(wang, ".log .thumb-img")
    await check_screen(wang, shots, "02-rm-chat-photo")

    # the full image in an accessible dialog
    await thumb.click()
    dialog = wang.get_by_role("dialog", name="图片查看")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="关闭")).to_be_focused()
    full = dialog.locator("img")
    await expect(full).to_have_attribute("src", re.compile(r"/v1/media/[^/]+/full\?.*sig="))
    await loaded(wang, "dialog.media-viewer .full-img")
    sizes = await wang.evaluate(
        "() => [document.querySelector('.log .thumb-img').naturalWidth, document.querySelector('dialog.media-viewer .full-img').naturalWidth]"
    )
    assert sizes[0] < sizes[1] == 1600, f"the thumbnail is a smaller variant of the full image: {sizes}"
    await check_screen(wang, shots, "03-rm-full-image")

    # the bytes behind the full image, as the page fetches them: a JPEG, EXIF and GPS gone
    fetched = await full.evaluate(
        """async (img) => {
            const r = await fetch(img.src, { credentials: "same-origin" });
            const bytes = new Uint8Array(await r.arrayBuffer());
            let bin = "";
            for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            return { status: r.status, type: r.headers.get("content-type"), nosniff: r.headers.get("x-content-type-options"), b64: btoa(bin) };
        }"""
    )
    assert fetched["status"] == 200, fetched["status"]
    assert fetched["type"] == "image/jpeg" and fetched["nosniff"] == "nosniff", fetched
    served = base64.b64decode(fetched["b64"])
    assert b"Exif\x00\x00" not in served, "an EXIF segment is still in the served image"
    with Image.open(io.BytesIO(served)) as image:
        assert image.format == "JPEG"
        assert image.size == (1600, 1200)
        exif = image.getexif()
        assert not exif.get_ifd(GPS_IFD), f"GPS survived: {dict(exif.get_ifd(GPS_IFD))}"
        assert GPS_IFD not in exif and 0x010F not in exif and 0x0110 not in exif, dict(exif)
        assert "exif" not in image.info

    # Escape closes the dialog and gives focus back to the thumbnail
    await wang.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(thumb).to_be_focused()

    # no media URL, id or byte was put in web storage (only the language choice lives there)
    for page in (li, wang):
        stored = await page.evaluate("() => [Object.keys(localStorage), sessionStorage.length]")
        assert stored[1] == 0 and all(key.endswith("lang") for key in stored[0]), stored
    errors.assert_none()
    await li_context.close()
    await wang_context.close()


async def test_voice_note_recorded_with_the_fake_microphone_is_played_by_the_rm(browser: Browser, hub: RunningNode, shots: Path) -> None:
    errors = PageErrors()
    li_context = await new_phone(browser, hub, errors)
    await li_context.grant_permissions(["microphone"])
    wang_context = await new_desktop(browser, hub, errors)
    li, wang = await li_context.new_page(), await wang_context.new_page()
    await open_rm_chat(li)

    # record about two seconds from the fake microphone, then stop: uploaded and sent
    await li.get_by_role("button", name="录音", exact=True).click()
    stop = li.get_by_role("button", name="停止并发送")
    await expect(stop).to_be_visible()
    await expect(li.locator(".media-progress")).to_contain_text("正在录音")
    await li.wait_for_timeout(2200)
    await stop.click()
    await expect(li.get_by_role("button", name="录音", exact=True)).to_be_visible()
    own = li.get_by_role("log").locator(".msg.mine .media.voice")
    await expect(own).to_have_count(1)
    await expect(own.get_by_role("button", name=re.compile(r"^播放语音消息，0:0[1-4]$"))).to_be_visible()
    await expect(li.get_by_role("alert").filter(has_text=re.compile("."))).to_have_count(0)
    await check_screen(li, shots, "01-customer-chat-voice")

    # rm.wang sees it with its duration and waveform, and plays it
    await open_customer_chat(wang)
    note = wang.get_by_role("log").locator(".media.voice")
    await expect(note).to_have_count(1)
    await expect(note.locator(".voice-time")).to_have_text(re.compile(r"^0:0[1-4]$"))
    await expect(note.locator(".bars .bar")).to_have_count(28)
    await check_screen(wang, shots, "02-rm-chat-voice")
    await note.get_by_role("button", name=re.compile("^播放语音消息")).click()
    await expect(note.locator("audio")).to_have_attribute("src", re.compile(r"/v1/media/[^/]+/full\?.*sig="))
    await wang.wait_for_function(
        "() => { const a = document.querySelector('.log .media.voice audio'); return !!a && !a.paused && a.currentTime > 0.3; }",
        timeout=20_000,
    )
    await expect(note.get_by_role("button", name="暂停语音消息")).to_be_visible()
    await expect(note.locator(".bars .bar.played").first).to_be_visible()
    # a second click pauses it
    await note.get_by_role("button", name="暂停语音消息").click()
    await expect(note.get_by_role("button", name=re.compile("^播放语音消息"))).to_be_visible()
    assert await note.locator("audio").evaluate("(a) => a.paused")
    errors.assert_none()
    await li_context.close()
    await wang_context.close()


async def test_service_desk_agent_sends_a_photo_the_customer_sees_in_the_desk(browser: Browser, hub: RunningNode, shots: Path) -> None:
    """The 95588 desk: agent.zhao sends c.li a picture from the workbench's chat pane; c.li's
    service desk shows its thumbnail and opens the full image."""
    errors = PageErrors()
    zhao_context = await new_desktop(browser, hub, errors)
    li_context = await new_phone(browser, hub, errors)
    zhao, li = await zhao_context.new_page(), await li_context.new_page()
    await sign_in(zhao, "agent.zhao", "/staff/")
    await sign_in(li, "c.li")
    await li.get_by_role("tab", name=re.compile("功能")).click()
    await li.get_by_role("button", name=re.compile("在线客服")).click()
    await li.get_by_role("button", name="咨询客服").click()
    await expect(li.get_by_role("log").get_by_text(re.compile("assistant for General enquiries"))).to_be_visible()
    await li.get_by_label("输入消息").fill("人工")
    await li.get_by_role("button", name=re.compile("^(发送|Send)$")).click()
    await expect(li.get_by_role("status").filter(has_text="排在第 1 位")).to_be_visible()
    await zhao.get_by_role("radio", name="可接待").check()
    await zhao.locator(".card.session").get_by_role("button", name="接待 Li Lei").click()
    await expect(zhao.get_by_role("log").get_by_text("人工", exact=True)).to_have_count(1)

    await zhao.get_by_label("发送图片").set_input_files(files=payload("card.jpg", "image/jpeg", jpeg_with_gps(800, 600)))
    await expect(zhao.get_by_role("log").locator(".msg.mine").get_by_role("button", name=re.compile("^查看大图"))).to_have_count(1)
    thumb = li.get_by_role("log").get_by_role("button", name=re.compile("^查看大图"))
    await expect(thumb).to_have_count(1)
    await loaded(li, ".log .thumb-img")
    await thumb.click()
    dialog = li.get_by_role("dialog", name="图片查看")
    await expect(dialog).to_be_visible()
    await loaded(li, "dialog.media-viewer .full-img")
    await check_screen(li, shots, "01-customer-desk-full-image")
    await dialog.get_by_role("button", name="关闭").click()
    await expect(dialog).to_have_count(0)
    await expect(thumb).to_be_focused()
    errors.assert_none()
    await li_context.close()
    await zhao_context.close()
