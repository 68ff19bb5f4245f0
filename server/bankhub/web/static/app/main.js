// The customer app's entry: restore the browser session (cookie) or show the sign-in form,
// then connect the SDK client and show the four tabs.

import { Client, HubSession } from "/static/sdk/bankhub.js";
import { onLangChange } from "./i18n.js";
import { Shell } from "./shell.js";
import { renderSignIn } from "./signin.js";

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
/** @type {Shell | null} */
let shell = null;

function showSignIn() {
  shell = null;
  renderSignIn(root, async (username, password) => {
    start(await HubSession.signIn("", username, password));
  });
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
  let session = null;
  try {
    session = await HubSession.resume("");
  } catch {
    session = null; // offline or the hub is away: sign in again when it is back
  }
  if (session) start(session);
  else showSignIn();
}

boot();
