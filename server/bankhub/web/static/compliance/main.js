// The compliance console's entry: restore the browser session (cookie) or show the sign-in form;
// then, for compliance officers, the sections as an ARIA tablist. Anyone else is told the console
// is not for them (the hub's policy decides every call anyway: this gate only spares them a screen
// of refusals). No token is ever seen or stored here: the session is an HttpOnly cookie.

import { h } from "../app/dom.js";
import { renderSignIn, resumeSession } from "../app/signin.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import { ComplianceConsole } from "./views.js";

const root = /** @type {HTMLElement} */ (document.getElementById("compliance"));
/** @type {any} */
let session = null;
/** @type {ComplianceConsole | null} */
let view = null;

function langButton() {
  return h("button", { type: "button", class: "link lang", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang });
}

function showSignIn() {
  view?.stop();
  session = null;
  view = null;
  renderSignIn(root, start, { t, heading: "title", iconSize: "64", langButton });
}

async function signOut() {
  try {
    await session?.signOut();
  } finally {
    showSignIn();
  }
}

function showNotAllowed() {
  view = null;
  root.replaceChildren(
    h(
      "main",
      { class: "signin-page" },
      h("h1", { text: t("not_allowed_title") }),
      h("p", { role: "alert", text: t("not_allowed") }),
      h("p", {}, h("a", { href: "/app/", text: t("open_app") }), " · ", h("a", { href: "/staff/", text: t("open_staff") })),
      h("button", { type: "button", class: "primary", text: t("sign_out"), onclick: signOut }),
      langButton(),
    ),
  );
}

/** @param {any} s HubSession */
function start(s) {
  session = s;
  if (s.user?.role !== "compliance") {
    showNotAllowed();
    return;
  }
  view = new ComplianceConsole(root, s, signOut, langButton);
}

onLangChange(() => {
  if (view) view.render();
  else if (session) showNotAllowed();
  else showSignIn();
});

resumeSession(start, showSignIn);
