// The sign-in screen and session restore shared by the customer app, the staff workbench and the
// console. The password goes to POST /v1/web/sessions (through the SDK); the session comes back
// as an HttpOnly cookie, so nothing here ever sees or stores a token.

import { HubSession } from "/static/sdk/bankhub.js";
import { h } from "./dom.js";

/**
 * What differs between the front ends' sign-in screens.
 * @typedef {object} SignInFace
 * @property {(key: string) => string} t the front end's strings: username, password, sign_in, signing_in,
 *   sign_in_failed (401), sign_in_error (anything else), demo_hint, tagline and `heading`
 * @property {string} heading the key of the page heading
 * @property {string} iconSize the brand icon's width and height
 * @property {() => HTMLElement} langButton the front end's language switch
 */

/**
 * Render the sign-in form into `root`; a good password passes the new session to `start`.
 * @param {HTMLElement} root
 * @param {(session: any) => void} start called with the signed-in HubSession
 * @param {SignInFace} face
 */
export function renderSignIn(root, start, { t, heading, iconSize, langButton }) {
  const error = h("p", { id: "signin-error", class: "form-error", role: "alert" });
  const username = /** @type {HTMLInputElement} */ (h("input", { id: "username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" }));
  const password = /** @type {HTMLInputElement} */ (h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", class: "primary", text: t("sign_in") }));
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
      h("div", { class: "brand" }, h("img", { src: "/static/app/icon.svg", alt: "", width: iconSize, height: iconSize }), h("h1", { text: t(heading) }), h("p", { text: t("tagline") })),
      form,
      langButton(),
    ),
  );
  username.focus();
}

/**
 * Restore the browser's session (its cookie) and pass it to `start`, or else `showSignIn()`.
 * @param {(session: any) => void} start
 * @param {() => void} showSignIn
 */
export async function resumeSession(start, showSignIn) {
  let session = null;
  try {
    session = await HubSession.resume("");
  } catch {
    session = null; // offline or the hub is away: sign in again when it is back
  }
  if (session) start(session);
  else showSignIn();
}
