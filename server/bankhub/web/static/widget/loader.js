// bankhub service widget loader: included by a partner's page (docs/widget.md).
//
//   <script src="https://hub.bank.example/widget/loader.js" data-partner="<partner id>"
//           data-token-url="/my-backend/bankhub-token"></script>
//
// It adds a launcher button and, on first use, an iframe of the hub's /widget/frame. The
// visitor token (minted by the partner's backend) reaches the frame only by postMessage with
// the hub's exact origin as the target; messages are accepted only from that iframe, from
// the hub's exact origin. Nothing is put in a cookie, localStorage or sessionStorage.
//
// The token comes from, in this order: BankhubWidget.setTokenProvider(fn) (fn returns a
// promise of the token), data-token-url (GET, same-origin credentials, JSON {"token": ...}
// or the token as text), data-visitor-token (a token printed into the page; it works once).
(() => {
  "use strict";
  const script = /** @type {HTMLScriptElement | null} */ (document.currentScript);
  if (!script || !script.src) return;
  const partner = script.dataset.partner || "";
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(partner)) {
    console.warn("bankhub widget: data-partner must be the partner id");
    return;
  }
  const hubOrigin = new URL(script.src).origin;
  const zh = (document.documentElement.lang || navigator.language || "zh").toLowerCase().startsWith("zh");
  const label = script.dataset.label || (zh ? "在线客服" : "Chat with us");
  let staticToken = script.dataset.visitorToken || null;
  const tokenUrl = script.dataset.tokenUrl || null;
  /** @type {(() => Promise<string>) | null} */
  let provider = null;

  const launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "bankhub-widget-launcher";
  launcher.textContent = label;
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "bankhub-widget-frame");
  Object.assign(launcher.style, {
    position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483000", padding: "10px 16px",
    borderRadius: "20px", border: "0", background: "#c7000b", color: "#fff", font: "15px sans-serif", cursor: "pointer",
  });

  /** @type {HTMLIFrameElement | null} */
  let frame = null;
  let delivered = false;

  async function token() {
    if (provider) return await provider();
    if (tokenUrl) {
      const r = await fetch(tokenUrl, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
      const text = await r.text();
      try {
        const parsed = JSON.parse(text);
        if (parsed && typeof parsed.token === "string") return parsed.token;
      } catch {
        /* the token as plain text */
      }
      return text.trim();
    }
    if (staticToken) {
      const t = staticToken;
      staticToken = null; // a token opens one session
      return t;
    }
    throw new Error("no visitor token: set data-token-url or BankhubWidget.setTokenProvider");
  }

  async function deliver() {
    if (!frame || !frame.contentWindow || delivered) return;
    delivered = true;
    try {
      const t = await token();
      // the exact target origin: a frame navigated elsewhere never receives it
      frame.contentWindow.postMessage({ type: "bankhub:visitor-token", token: t }, hubOrigin);
    } catch (e) {
      delivered = false;
      console.warn("bankhub widget:", e instanceof Error ? e.message : e);
    }
  }

  function onMessage(/** @type {MessageEvent} */ e) {
    if (!frame || e.origin !== hubOrigin || e.source !== frame.contentWindow) return;
    const data = e.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "bankhub:ready") deliver();
    else if (data.type === "bankhub:close") close();
  }

  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "bankhub-widget-frame";
      frame.title = label;
      frame.src = `${hubOrigin}/widget/frame?partner=${encodeURIComponent(partner)}`;
      frame.setAttribute("referrerpolicy", "no-referrer");
      Object.assign(frame.style, {
        position: "fixed", right: "16px", bottom: "68px", width: "min(360px, calc(100vw - 32px))",
        height: "min(520px, calc(100vh - 96px))", border: "1px solid #ddd", borderRadius: "12px",
        zIndex: "2147483000", background: "#fff", boxShadow: "0 4px 24px rgba(0,0,0,.2)",
      });
      window.addEventListener("message", onMessage);
      document.body.appendChild(frame);
    }
    frame.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
  }

  function close() {
    if (frame) frame.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", () => (frame && !frame.hidden ? close() : open()));
  const mount = () => document.body.appendChild(launcher);
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  /** @type {any} */ (window).BankhubWidget = {
    open,
    close,
    /** @param {() => Promise<string>} fn */
    setTokenProvider(fn) {
      provider = fn;
    },
  };
})();
