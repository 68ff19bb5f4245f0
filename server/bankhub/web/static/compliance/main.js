// The compliance console's entry: restore the browser session (cookie) or show the sign-in form;
// then, for compliance officers, the sections as an ARIA tablist. Anyone else is told the console
// is not for them (the hub's policy decides every call anyway: this gate only spares them a screen
// of refusals). No token is ever seen or stored here: the session is an HttpOnly cookie.

import { startConsole } from "../console/shell.js";
import { onLangChange, t, toggleLang } from "./i18n.js";
import { ComplianceConsole } from "./views.js";

startConsole({
  root: /** @type {HTMLElement} */ (document.getElementById("compliance")),
  t,
  toggleLang,
  onLangChange,
  allowed: (user) => user?.role === "compliance",
  open: (root, session, signOut, langButton) => new ComplianceConsole(root, session, signOut, langButton),
});
