// The head-office and branch console's entry: restore the browser session (cookie) or show the
// sign-in form; then, for head-office and branch administrators, the four sections as an ARIA
// tablist. Anyone else is told the console is not for them (the hub's policy decides every call
// anyway: this gate only spares them a screen of refusals).

import { HubSession } from "/static/sdk/bankhub.js";
import { h } from "../app/dom.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import { Console } from "./views.js";

const ADMIN_ROLES = ["head_office_admin", "branch_admin"];
const root = /** @type {HTMLElement} */ (document.getElementById("console"));
/** @type {any} */
let session = null;
/** @type {Console | null} */
let view = null;

function langButton() {
  return h("button", { type: "button", class: "link lang", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang });
}

function showSignIn() {
  session = null;
  view = null;
  const error = h("p", { id: "signin-error", class: "form-error", role: "alert" });
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary", text: t("sign_in") });
  const form = h(
    "form",
    { class: "signin", "aria-describedby": "signin-error", novalidate: true },
    h("label", { for: "username", text: t("username") }),
    username,
    h("label", { for: "password", text: t("password") }),
    password,
    error,
    submit,
    h("p", { class: "hint", text: t("demo_hint") }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!username.value.trim() || !password.value) {
      error.textContent = t("sign_in_failed");
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = t("signing_in");
    try {
      start(await HubSession.signIn("", username.value.trim(), password.value));
    } catch (exc) {
      const status = /** @type {any} */ (exc)?.status;
      error.textContent = status === 401 ? t("sign_in_failed") : t("sign_in_error");
      submit.disabled = false;
      submit.textContent = t("sign_in");
      password.value = "";
      password.focus();
    }
  });
  root.replaceChildren(
    h(
      "main",
      { class: "signin-page" },
      h("div", { class: "brand" }, h("img", { src: "/static/app/icon.svg", alt: "", width: "64", height: "64" }), h("h1", { text: t("title") }), h("p", { text: t("tagline") })),
      form,
      langButton(),
    ),
  );
  username.focus();
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
  if (!ADMIN_ROLES.includes(s.user?.role)) {
    showNotAllowed();
    return;
  }
  view = new Console(root, s, signOut, langButton);
}

onLangChange(() => {
  if (view) view.render();
  else if (session) showNotAllowed();
  else showSignIn();
});

async function boot() {
  let restored = null;
  try {
    restored = await HubSession.resume("");
  } catch {
    restored = null;
  }
  if (restored) start(restored);
  else showSignIn();
}

boot();
