// The customer app's entry: restore the browser session (cookie) or show the sign-in form,
// then connect the SDK client and show the four tabs.

import { Client } from "/static/sdk/bankhub.js";
import { h } from "./dom.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import { Shell } from "./shell.js";
import { renderSignIn, resumeSession } from "./signin.js";

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
/** @type {Shell | null} */
let shell = null;

function langButton() {
  return h("button", { type: "button", class: "link lang", lang: t("language") === "English" ? "en" : "zh-CN", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang });
}

function showSignIn() {
  shell = null;
  renderSignIn(root, start, { t, heading: "app_name", iconSize: "72", langButton });
}

/** @param {any} session */
function start(session) {
  const client = Client.connect(session);
  // The browser knows first when the network goes or comes back. Going offline, the socket is
  // dropped at once (a phone's socket would otherwise hang half-open until the keep-alive
  // notices), so sends queue as pending; back online, reconnect now instead of after the backoff.
  const network = () => client.reconnect();
  window.addEventListener("offline", network);
  window.addEventListener("online", network);
  shell = new Shell(root, session, client, async () => {
    window.removeEventListener("offline", network);
    window.removeEventListener("online", network);
    client.close();
    try {
      await session.signOut();
    } finally {
      showSignIn();
    }
  });
}

onLangChange(() => (shell ? shell.render() : showSignIn()));

async function boot() {
  if ("serviceWorker" in navigator) {
    // the app shell works offline; the API and the socket never go through the worker's cache
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => {});
  }
  await resumeSession(start, showSignIn);
}

boot();
