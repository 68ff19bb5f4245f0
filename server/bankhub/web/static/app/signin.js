// The sign-in screen. The password goes to POST /v1/web/sessions (through the SDK); the session
// comes back as an HttpOnly cookie, so nothing here ever sees or stores a token.

import { h } from "./dom.js";
import { t, toggleLang } from "./i18n.js";

/**
 * Render the sign-in form into `root`.
 * @param {HTMLElement} root
 * @param {(username: string, password: string) => Promise<void>} signIn rejects with an error that has `status`
 */
export function renderSignIn(root, signIn) {
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
      await signIn(username.value.trim(), password.value);
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
      h("div", { class: "brand" }, h("img", { src: "/static/app/icon.svg", alt: "", width: "72", height: "72" }), h("h1", { text: t("app_name") }), h("p", { text: t("tagline") })),
      form,
      h("button", { type: "button", class: "link lang", lang: t("language") === "English" ? "en" : "zh-CN", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang }),
    ),
  );
  username.focus();
}
