"""A voice note as Chromium's MediaRecorder really writes it (``audio/webm;codecs=opus``, a
live WebM: unknown-size Segment and Clusters, no Duration in its header), recorded from
Chromium's fake microphone, uploaded to a real hub and read back: the hub's container reader
(bankhub.media.voice) takes it, and its duration comes from the blocks."""

from __future__ import annotations

from playwright.async_api import Browser

from bankhub.runner import RunningNode

from ..conftest import login, open_direct

RECORD_AND_UPLOAD = """async ([ms, token, conversationId]) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const recorder = new MediaRecorder(stream, {mimeType: 'audio/webm;codecs=opus'});
  const parts = [];
  recorder.ondataavailable = (e) => parts.push(e.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start(250);  // in slices, as a chat app records: several clusters
  await new Promise((resolve) => setTimeout(resolve, ms));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  const blob = new Blob(parts, {type: recorder.mimeType});
  const headers = {'authorization': 'Bearer ' + token, 'content-type': recorder.mimeType};
  const up = await fetch('/v1/conversations/' + conversationId + '/media', {method: 'POST', headers, body: blob});
  const media = await up.json();
  let played = null;
  if (up.status === 201) {
    const info = await (await fetch('/v1/media/' + media.media_id, {headers: {'authorization': 'Bearer ' + token}})).json();
    const got = await fetch(info.urls.full, {headers: {'authorization': 'Bearer ' + token}});
    const bytes = new Uint8Array(await got.arrayBuffer());
    played = {status: got.status, type: got.headers.get('content-type'), same: bytes.length === blob.size};
  }
  return {mime: recorder.mimeType, size: blob.size, status: up.status, media, played};
}"""


async def test_a_chromium_recording_uploads_as_a_voice_note_with_its_duration(browser: Browser, hub: RunningNode) -> None:
    token = await login(hub, "c.li")
    conversation_id = await open_direct(hub, token, "rm.wang")
    page = await browser.new_page()
    try:
        await page.goto(f"{hub.http_url}/healthz")  # any page of the hub: a secure context (loopback), same origin
        result = await page.evaluate(RECORD_AND_UPLOAD, [1500, token, conversation_id])
    finally:
        await page.close()
    assert result["mime"] == "audio/webm;codecs=opus"
    assert result["status"] == 201, result
    media = result["media"]
    assert media["kind"] == "voice" and media["content_type"] == "audio/webm" and media["state"] == "ready"
    assert 1200 <= media["duration_ms"] <= 1900, media  # 1.5 s recorded, timers allowing
    assert 1 <= len(media["waveform"]) <= 64 and all(0 <= v <= 100 for v in media["waveform"])
    assert result["played"] == {"status": 200, "type": "audio/webm", "same": True}
