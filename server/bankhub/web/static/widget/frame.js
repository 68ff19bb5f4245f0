// The service widget's framed chat (GET /widget/frame?partner=...; docs/widget.md).
//
// The visitor token arrives by postMessage from the partner page that frames us: accepted
// only from window.parent and only from one of the partner's registered origins (exact
// match of event.origin). It is exchanged for a bearer token kept in this module's memory:
// no cookie, no localStorage, no sessionStorage (blocked in many frames and WebViews).
import { Client, openVisitorSession } from "/static/sdk/bankhub.js";
import { LANG, T } from "./i18n.js";

const partner = document.body.dataset.partner || "";
const origins = (document.body.dataset.origins || "").split(" ").filter(Boolean);
const embedded = window.parent !== window;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = $("widget-status");
const log = $("widget-log");
const start = /** @type {HTMLButtonElement} */ ($("widget-start"));
const form = /** @type {HTMLFormElement} */ ($("widget-form"));
const text = /** @type {HTMLTextAreaElement} */ ($("widget-text"));

/** @type {import("/static/sdk/client.js").HubSession | null} */
let session = null;
/** @type {Client | null} */
let client = null;
/** @type {string | null} */
let conversationId = null;
let entering = false;
/** @type {Map<string, HTMLLIElement>} message id -> its item */
const shown = new Map();

document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
$("widget-title").textContent = T.title;
$("widget-close").setAttribute("aria-label", T.close);
start.textContent = T.start;
$("widget-text-label").textContent = T.textLabel;
$("widget-send").textContent = T.send;

function say(/** @type {string} */ line) {
  status.textContent = line;
}

function tell(/** @type {object} */ message) {
  // to the framing page only: each registered origin is tried as the exact target, so a
  // page of any other origin never receives it
  for (const o of origins) window.parent.postMessage(message, o);
}

window.addEventListener("message", (e) => {
  if (!embedded || e.source !== window.parent || !origins.includes(e.origin)) return;
  const d = e.data;
  if (!d || typeof d !== "object" || d.type !== "bankhub:visitor-token" || typeof d.token !== "string") return;
  if (session || entering) return;
  enter(d.token);
});

/** @param {any} m a Message frame */
function render(m) {
  if (shown.has(m.message_id)) return;
  const li = document.createElement("li");
  const mine = session && session.user && m.sender_id === session.user.id;
  li.className = mine ? "msg mine" : "msg bank";
  li.dataset.seq = String(m.seq);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = mine ? T.me : T.bank;
  const b = m.body || {};
  if (b.kind === "edit" || b.kind === "recall") {
    // an agent's recall or edit of an earlier message: applied to it, never shown itself
    const target = shown.get(b.message_id)?.querySelector("p");
    if (target) target.textContent = b.kind === "edit" && b.body?.kind === "text" ? b.body.text : T.recalled;
    return;
  }
  const body = document.createElement("p");
  body.textContent = b.kind === "text" || b.kind === "system" ? b.text : b.kind === "recalled" ? T.recalled : T.unsupported;
  li.append(who, body);
  // in seq order, whichever arrived first (history or the live push)
  const after = [...log.children].find((c) => Number(/** @type {HTMLElement} */ (c).dataset.seq) > m.seq);
  log.insertBefore(li, after || null);
  shown.set(m.message_id, li);
  li.scrollIntoView({ block: "end" });
}

async function enter(/** @type {string} */ token) {
  entering = true;
  say(T.connecting);
  try {
    // POST /v1/widget/sessions: no cookie, the bearer token stays in this module's memory
    session = (await openVisitorSession("", partner, token)).session;
  } catch {
    entering = false;
    say(T.refused);
    return;
  }
  // resume from empty cursors: the client syncs over the socket instead of listing
  // conversations and accounts over HTTP (a visitor may use the service desk only); the
  // inbox cursor is given, so no inbox position is asked for either
  client = Client.connect(session, { cursors: {}, inboxCursor: 0 });
  client.addEventListener("message", (/** @type {any} */ e) => {
    if (e.detail.message.conversation_id === conversationId) render(e.detail.message);
  });
  entering = false;
  say(T.ready);
  start.hidden = false;
}

async function attach(/** @type {string} */ cid) {
  conversationId = cid;
  if (!session) return;
  const page = /** @type {{messages: any[]}} */ (await session.request("GET", `/v1/conversations/${cid}/messages?limit=50`));
  for (const m of page.messages.slice().reverse()) render(m);
  for (const m of client ? client.messages(cid) : []) render(m);
}

start.addEventListener("click", async () => {
  if (!session) return;
  start.disabled = true;
  try {
    const view = /** @type {{conversation_id: string}} */ (await session.request("POST", "/v1/service/sessions", {}));
    start.hidden = true;
    form.hidden = false;
    say(T.chatting);
    await attach(view.conversation_id);
    text.focus();
  } catch {
    start.disabled = false;
    say(T.refused);
  }
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = text.value.trim();
  if (!value || !client || !conversationId) return;
  text.value = "";
  try {
    const m = await client.send(conversationId, value);
    if (m && m.message_id) render(m);
  } catch {
    say(T.failed);
    text.value = value;
  }
});

text.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});

$("widget-close").addEventListener("click", () => tell({ type: "bankhub:close" }));

if (embedded) {
  say(T.waiting);
  tell({ type: "bankhub:ready" });
} else {
  say(T.notEmbedded);
}
