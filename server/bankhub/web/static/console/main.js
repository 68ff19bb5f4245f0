// The head-office and branch console's entry: restore the browser session (cookie) or show the
// sign-in form; then, for head-office and branch administrators, the four sections as an ARIA
// tablist. Anyone else is told the console is not for them (the hub's policy decides every call
// anyway: this gate only spares them a screen of refusals).

import { onLangChange, t, toggleLang } from "./i18n.js";
import { startConsole } from "./shell.js";
import { Console } from "./views.js";

const ADMIN_ROLES = ["head_office_admin", "branch_admin"];

startConsole({
  root: /** @type {HTMLElement} */ (document.getElementById("console")),
  t,
  toggleLang,
  onLangChange,
  allowed: (user) => ADMIN_ROLES.includes(user?.role),
  open: (root, session, signOut, langButton) => new Console(root, session, signOut, langButton),
});
