// The Me tab: who is signed in, and sign out.

import { h } from "./dom.js";
import { t } from "./i18n.js";

/**
 * @param {HTMLElement} panel
 * @param {any} session HubSession
 * @param {() => void} signOut
 */
export function renderMe(panel, session, signOut) {
  const user = session.user;
  panel.replaceChildren(
    h(
      "div",
      { class: "me" },
      h("h2", { text: t("profile") }),
      h(
        "dl",
        { class: "profile" },
        h("dt", { text: t("username") }),
        h("dd", { text: user.username }),
        h("dt", { text: t("role") }),
        h("dd", { text: user.role }),
      ),
      h("p", { class: "display-name", text: user.display_name }),
      h("button", { type: "button", class: "danger", text: t("sign_out"), onclick: signOut }),
    ),
  );
}
