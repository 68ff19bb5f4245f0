// Pictures and voice notes in a chat: the composer's photo and record buttons, and the
// rendering of `image` and `voice` messages. Shared by the customer app and the staff
// workbench (each passes its own `t`).
//
// * A picture is shown as its thumbnail (an <img> with alt text, loaded from the hub's
//   short-lived signed URL); activating it opens the full image in a modal <dialog>
//   (Escape or the close button closes it, focus returns to the thumbnail).
// * A voice note is a play button, its duration and waveform bars; it plays through an
//   <audio> element from the signed URL. One note plays at a time.
// * A URL that expired while the page was open is asked for again once (the SDK's
//   MediaClient caches the URLs until shortly before they expire).
// * Recording uses getUserMedia + MediaRecorder in the first type the browser supports
//   (Opus in WebM or Ogg, AAC in MP4 on Safari); a click starts, a second click stops and
//   sends, Escape discards. Nothing is kept in web storage.
//
// The content node of each message is kept across re-renders of the chat (a playing note
// keeps playing while new messages arrive).

import { IMAGE_TYPES, MediaClient, checkMediaFile, chooseRecorderType, formatDuration, scaleWaveform } from "/static/sdk/bankhub.js";
import { h } from "./dom.js";

/** Waveform bars drawn per voice note. */
const BARS = 28;
/** A recording stops (and is sent) after this long; the hub caps the duration too. */
export const MAX_RECORD_MS = 60_000;
/** A shorter recording is discarded (a mis-click). */
const MIN_RECORD_MS = 500;
/** Rendered message nodes kept for re-renders, per view. */
const MAX_NODES = 500;
/** A quarantined media is looked at again this often, this many times. */
const CHECK_EVERY_MS = 4000;
const CHECK_TIMES = 15;

let ids = 0;

/** @param {any} body */
export function isMediaBody(body) {
  return body?.kind === "image" || body?.kind === "voice";
}

/** @param {any} e */
function isHubError(e) {
  return e && typeof e === "object" && typeof e.status === "number" && typeof e.code === "string";
}

export class MediaView {
  /**
   * @param {{client: any, t: (key: string, vars?: Record<string, unknown>) => string}} o
   */
  constructor(o) {
    this.media = new MediaClient(o.client);
    this.client = o.client;
    this.t = o.t;
    /** @type {Map<string, {key: string, node: HTMLElement}>} message id -> its rendered content */
    this.nodes = new Map();
    /** @type {HTMLAudioElement | null} the note playing now */
    this.playing = null;
    /** @type {{recorder: MediaRecorder, stream: MediaStream, chunks: Blob[], started: number, timer: ReturnType<typeof setInterval>, discard: boolean, cid: string} | null} */
    this.recording = null;
  }

  /** The text a pending send of this kind shows. @param {{kind?: string, text: string}} p */
  pendingText(p) {
    if (p.kind === "image") return p.text ? `${this.t("media_sending_photo")} ${p.text}` : this.t("media_sending_photo");
    if (p.kind === "voice") return this.t("media_sending_voice");
    return p.text;
  }

  /**
   * The content of an image or voice message, the same node as last time if its body did not change.
   * @param {any} m a message with an `image` or `voice` body
   * @returns {HTMLElement}
   */
  render(m) {
    const key = JSON.stringify(m.body);
    const held = this.nodes.get(m.message_id);
    if (held && held.key === key) return held.node;
    const node = m.body.kind === "image" ? this.image(m.body) : this.voice(m.body);
    this.nodes.delete(m.message_id);
    this.nodes.set(m.message_id, { key, node });
    while (this.nodes.size > MAX_NODES) {
      const oldest = this.nodes.keys().next().value;
      if (oldest === undefined) break;
      this.nodes.delete(oldest);
    }
    return node;
  }

  /**
   * Look a media up and hand its URLs to `apply`; a quarantined one is looked at again later,
   * a rejected or missing one says so in `status`.
   * @param {string} mediaId @param {HTMLElement} status @param {(info: any) => void} apply
   * @param {{refresh?: boolean, tries?: number}} [o]
   */
  async load(mediaId, status, apply, o = {}) {
    const t = this.t;
    try {
      const info = await this.media.mediaInfo(mediaId, { refresh: o.refresh });
      if (info.state === "quarantined" || (info.state !== "rejected" && !info.urls)) {
        status.textContent = t("media_checking");
        const tries = (o.tries ?? 0) + 1;
        if (tries < CHECK_TIMES) setTimeout(() => this.load(mediaId, status, apply, { refresh: true, tries }), CHECK_EVERY_MS);
        return;
      }
      if (info.state === "rejected") {
        status.textContent = t("media_rejected");
        return;
      }
      status.textContent = "";
      apply(info);
    } catch {
      status.textContent = t("media_unavailable");
    }
  }

  /** @param {any} body */
  image(body) {
    const t = this.t;
    const alt = typeof body.caption === "string" && body.caption ? body.caption : t("media_image");
    const img = /** @type {HTMLImageElement} */ (h("img", { class: "thumb-img", alt, decoding: "async" }));
    if (Number.isInteger(body.width) && Number.isInteger(body.height) && body.width > 0 && body.height > 0) {
      img.width = body.width;
      img.height = body.height;
    }
    const status = h("span", { class: "media-status" });
    let retried = false;
    img.addEventListener("error", () => {
      if (retried || !img.getAttribute("src")) {
        status.textContent = t("media_unavailable");
        return;
      }
      retried = true; // the signed URL may have expired while the page was open: once more
      this.load(body.media_id, status, (info) => (img.src = info.urls.thumb ?? info.urls.full), { refresh: true });
    });
    const open = h(
      "button",
      { type: "button", class: "thumb", "aria-label": t("media_open", { alt }), "aria-haspopup": "dialog", "data-media-id": body.media_id },
      img,
      status,
    );
    open.addEventListener("click", () => this.openImage(body.media_id, alt, open));
    this.load(body.media_id, status, (info) => (img.src = info.urls.thumb ?? info.urls.full));
    return h("figure", { class: "media image" }, open, typeof body.caption === "string" && body.caption ? h("figcaption", { class: "text", text: body.caption }) : null);
  }

  /**
   * The full image in a modal dialog; Escape, the close button or a click outside closes it.
   * @param {string} mediaId @param {string} alt @param {HTMLElement} opener
   */
  openImage(mediaId, alt, opener) {
    const t = this.t;
    const img = /** @type {HTMLImageElement} */ (h("img", { class: "full-img", alt }));
    const status = h("p", { class: "media-status", "aria-live": "polite" });
    const close = h("button", { type: "button", class: "viewer-close", text: t("media_close") });
    const dialog = /** @type {HTMLDialogElement} */ (h("dialog", { class: "media-viewer", "aria-label": t("media_viewer") }, close, status, img));
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) dialog.close(); // the backdrop
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener.isConnected) opener.focus();
    });
    let retried = false;
    img.addEventListener("error", () => {
      if (retried) {
        status.textContent = t("media_unavailable");
        return;
      }
      retried = true;
      this.load(mediaId, status, (info) => (img.src = info.urls.full), { refresh: true });
    });
    document.body.append(dialog);
    dialog.showModal();
    close.focus();
    this.load(mediaId, status, (info) => (img.src = info.urls.full));
  }

  /** @param {any} body */
  voice(body) {
    const t = this.t;
    let durationMs = typeof body.duration_ms === "number" ? body.duration_ms : 0;
    const audio = /** @type {HTMLAudioElement} */ (h("audio", { preload: "none", "data-media-id": body.media_id }));
    const time = h("span", { class: "voice-time", text: formatDuration(durationMs) });
    const bars = h("span", { class: "bars", "aria-hidden": "true" });
    const status = h("span", { class: "media-status" });
    const play = h("button", { type: "button", class: "play", "data-media-id": body.media_id }, h("span", { class: "play-icon", "aria-hidden": "true" }));
    const group = h("div", { class: "media voice", role: "group" }, play, bars, time, status, audio);
    const label = () => {
      play.setAttribute("aria-label", audio.paused ? t("media_play", { time: formatDuration(durationMs) }) : t("media_pause"));
      group.setAttribute("aria-label", t("media_voice", { time: formatDuration(durationMs) }));
    };
    /** @param {unknown} waveform */
    const draw = (waveform) => {
      bars.replaceChildren(
        ...scaleWaveform(Array.isArray(waveform) ? waveform : [], BARS).map((level) => {
          const bar = h("span", { class: "bar" });
          bar.style.setProperty("--level", String(level)); // CSSOM, not a style attribute: the CSP allows it
          return bar;
        }),
      );
    };
    draw(body.waveform);
    label();
    if (!durationMs || !Array.isArray(body.waveform)) {
      // my own just-sent note carries only the media id: the hub knows the rest
      this.media
        .mediaInfo(body.media_id)
        .then((info) => {
          if (typeof info.duration_ms === "number") durationMs = info.duration_ms;
          if (Array.isArray(info.waveform)) draw(info.waveform);
          time.textContent = formatDuration(durationMs);
          label();
        })
        .catch(() => {});
    }
    const progress = () => {
      const total = durationMs > 0 ? durationMs / 1000 : Number.isFinite(audio.duration) ? audio.duration : 0;
      const ratio = total > 0 ? Math.min(1, audio.currentTime / total) : 0;
      const played = Math.round(ratio * BARS);
      [...bars.children].forEach((bar, i) => bar.classList.toggle("played", i < played));
    };
    audio.addEventListener("timeupdate", progress);
    audio.addEventListener("playing", () => {
      play.classList.add("playing");
      label();
    });
    for (const name of ["pause", "ended"]) {
      audio.addEventListener(name, () => {
        play.classList.remove("playing");
        if (name === "ended") [...bars.children].forEach((bar) => bar.classList.remove("played"));
        if (this.playing === audio) this.playing = null;
        label();
      });
    }
    let retried = false;
    audio.addEventListener("error", () => {
      if (retried || !audio.getAttribute("src")) {
        status.textContent = t("media_unavailable");
        return;
      }
      retried = true; // an expired URL: ask again once
      this.load(body.media_id, status, (info) => {
        audio.src = info.urls.full;
        audio.play().catch(() => {});
      }, { refresh: true });
    });
    play.addEventListener("click", () => {
      if (!audio.paused) {
        audio.pause();
        return;
      }
      if (this.playing && this.playing !== audio) this.playing.pause();
      this.playing = audio;
      const start = () => audio.play().catch((/** @type {any} */ e) => {
        if (e?.name !== "AbortError") status.textContent = t("media_unavailable");
      });
      if (audio.getAttribute("src")) start();
      else {
        this.load(body.media_id, status, (info) => {
          audio.src = info.urls.full;
          start();
        });
      }
    });
    return group;
  }

  // --- sending -----------------------------------------------------------------------------

  /**
   * The composer's photo and record controls for conversation `cid`, and the line their
   * progress and errors are shown in.
   * @param {string} cid
   * @returns {{tools: HTMLElement, notes: HTMLElement}}
   */
  composer(cid) {
    const t = this.t;
    ids += 1;
    const alert = h("p", { class: "form-error media-error", role: "alert" });
    // a polite live region, not role=status: the page's one status is the connection state
    const progress = h("p", { class: "media-progress", "aria-live": "polite" });
    const notes = h("div", { class: "media-notes" }, progress, alert);
    const say = (/** @type {string} */ text) => {
      progress.textContent = text;
    };
    const fail = (/** @type {string} */ text) => {
      progress.textContent = "";
      alert.textContent = text;
    };
    /** @param {any} e @param {"image" | "voice"} kind */
    const failure = (e, kind) => {
      if (isHubError(e) && e.status === 413) return fail(t("media_too_large"));
      if (isHubError(e) && e.code === "too_long") return fail(t("media_too_long"));
      if (isHubError(e) && e.status === 415) return fail(t(kind === "voice" ? "media_voice_wrong_type" : "media_wrong_type"));
      return fail(t("media_failed"));
    };

    const input = /** @type {HTMLInputElement} */ (
      h("input", { type: "file", id: `media-photo-${ids}`, class: "visually-hidden media-file", accept: IMAGE_TYPES.join(","), "aria-label": t("media_photo_label") })
    );
    const photo = h("label", { for: input.id, class: "tool photo", text: t("media_photo") });
    input.addEventListener("change", async () => {
      const file = input.files?.[0];
      input.value = "";
      if (!file) return;
      alert.textContent = "";
      try {
        checkMediaFile(file, { kind: "image" });
        say(t("media_uploading"));
        const m = await this.media.uploadMedia(cid, file);
        say("");
        await this.media.sendImage(cid, m.media_id);
      } catch (e) {
        failure(e, "image");
      }
    });

    const record = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: "tool record", text: t("media_record") }));
    const idle = () => {
      record.textContent = t("media_record");
      record.classList.remove("recording");
    };
    record.addEventListener("click", async () => {
      if (this.recording) {
        this.stopRecording(false);
        return;
      }
      alert.textContent = "";
      const started = await this.startRecording(cid, {
        tick: (ms) => say(t("media_recording", { time: formatDuration(ms) })),
        done: async (blob, ms) => {
          idle();
          say("");
          if (!blob) return;
          if (ms < MIN_RECORD_MS) return fail(t("media_too_short"));
          try {
            say(t("media_uploading"));
            const m = await this.media.uploadMedia(cid, blob);
            say("");
            await this.media.sendVoice(cid, m.media_id);
          } catch (e) {
            failure(e, "voice");
          }
        },
        refused: (key) => {
          idle();
          fail(t(key));
        },
      });
      if (started) {
        record.textContent = t("media_stop");
        record.classList.add("recording");
      }
    });
    record.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
      if (e.key === "Escape" && this.recording) {
        e.preventDefault();
        this.stopRecording(true);
      }
    });
    return { tools: h("div", { class: "media-tools" }, input, photo, record), notes };
  }

  /**
   * Start recording from the microphone; false (and `refused` called) when it cannot.
   * @param {string} cid
   * @param {{tick: (ms: number) => void, done: (blob: Blob | null, ms: number) => void, refused: (key: string) => void}} on
   * @returns {Promise<boolean>}
   */
  async startRecording(cid, on) {
    const Recorder = /** @type {any} */ (globalThis).MediaRecorder;
    if (!Recorder || !navigator.mediaDevices?.getUserMedia) {
      on.refused("media_no_recorder");
      return false;
    }
    /** @type {MediaStream} */
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      on.refused("media_mic_denied");
      return false;
    }
    const type = chooseRecorderType(typeof Recorder.isTypeSupported === "function" ? (/** @type {string} */ x) => Recorder.isTypeSupported(x) : null);
    /** @type {MediaRecorder} */
    let recorder;
    try {
      recorder = type ? new Recorder(stream, { mimeType: type }) : new Recorder(stream);
    } catch {
      for (const track of stream.getTracks()) track.stop();
      on.refused("media_no_recorder");
      return false;
    }
    /** @type {Blob[]} */
    const chunks = [];
    const started = Date.now();
    const state = {
      recorder,
      stream,
      chunks,
      started,
      cid,
      discard: false,
      timer: setInterval(() => {
        const ms = Date.now() - started;
        on.tick(ms);
        if (ms >= MAX_RECORD_MS) this.stopRecording(false);
      }, 250),
    };
    this.recording = state;
    recorder.addEventListener("dataavailable", (/** @type {BlobEvent} */ e) => {
      if (e.data && e.data.size > 0) chunks.push(e.data);
    });
    recorder.addEventListener("stop", () => {
      const ms = Date.now() - started;
      const blob = state.discard || !chunks.length ? null : new Blob(chunks, { type: recorder.mimeType || type || "audio/webm" });
      on.done(blob, ms);
    });
    recorder.start(250);
    on.tick(0);
    return true;
  }

  /** Stop the recording (sent unless `discard`); the microphone is released. @param {boolean} discard */
  stopRecording(discard) {
    const r = this.recording;
    if (!r) return;
    this.recording = null;
    r.discard = discard;
    clearInterval(r.timer);
    try {
      if (r.recorder.state !== "inactive") r.recorder.stop();
    } finally {
      for (const track of r.stream.getTracks()) track.stop();
    }
  }

  /** Release the microphone and stop playback (the chat was closed). */
  destroy() {
    this.stopRecording(true);
    this.playing?.pause();
  }
}
