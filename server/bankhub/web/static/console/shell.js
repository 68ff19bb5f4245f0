// What the head-office console and the compliance console share: the entry (restore the browser
// session from its cookie or show the sign-in form; a user the console is not for is told so —
// the hub's policy decides every call anyway, this gate only spares them a screen of refusals)
// and the layout (a header, the sections as an ARIA tablist, one tabpanel). Each console brings
// its own strings, its sections and what a section shows.

import { h } from "../app/dom.js";
import { renderSignIn, resumeSession } from "../app/signin.js";

/**
 * @typedef {object} ConsoleEntry
 * @property {HTMLElement} root
 * @property {(key: string, values?: Record<string, any>) => string} t
 * @property {() => void} toggleLang
 * @property {(fn: () => void) => void} onLangChange
 * @property {(user: any) => boolean} allowed whom the console is for
 * @property {(root: HTMLElement, session: any, signOut: () => Promise<void>, langButton: () => HTMLElement) => any} open
 */

/** Sign in (or resume), then open the console for a user it is for. @param {ConsoleEntry} entry */
export function startConsole({ root, t, toggleLang, onLangChange, allowed, open }) {
  /** @type {any} */
  let session = null;
  /** @type {any} */
  let view = null;

  const langButton = () =>
    h("button", { type: "button", class: "link lang", "aria-label": t("language_label"), text: t("language"), onclick: toggleLang });

  const showSignIn = () => {
    view?.stop?.(); // no re-read of a view left behind
    session = null;
    view = null;
    renderSignIn(root, start, { t, heading: "title", iconSize: "64", langButton });
  };

  const signOut = async () => {
    try {
      await session?.signOut();
    } finally {
      showSignIn();
    }
  };

  const showNotAllowed = () => {
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
  };

  /** @param {any} s HubSession */
  function start(s) {
    session = s;
    if (!allowed(s.user)) {
      showNotAllowed();
      return;
    }
    view = open(root, s, signOut, langButton);
  }

  onLangChange(() => {
    if (view) view.render();
    else if (session) showNotAllowed();
    else showSignIn();
  });

  resumeSession(start, showSignIn);
}

/** The layout both consoles draw: a header (title, who is signed in, language, sign out), the
 * sections as a vertical ARIA tablist (arrow keys, Home and End move between them) and one
 * tabpanel. A console extends it and implements `show()` for the selected section. */
export class TabbedConsole {
  /**
   * @param {HTMLElement} root
   * @param {any} session HubSession (cookie mode)
   * @param {() => Promise<void>} signOut
   * @param {() => HTMLElement} langButton
   * @param {string[]} sections
   * @param {(key: string, values?: Record<string, any>) => string} t
   */
  constructor(root, session, signOut, langButton, sections, t) {
    this.root = root;
    this.session = session;
    this.signOut = signOut;
    this.langButton = langButton;
    this.sections = sections;
    this.t = t;
    this.section = sections[0];
    /** @type {HTMLElement} */
    this.panel = h("section");
    /** @type {HTMLElement} */
    this.tablist = h("div");
  }

  /** Draw the layout, then the selected section. @param {string} who "signed in as" line */
  layout(who) {
    const t = this.t;
    this.panel = h("section", { id: "panel", role: "tabpanel", tabindex: "-1", class: "panel" });
    const tabs = this.sections.map((name) =>
      h("button", {
        type: "button",
        role: "tab",
        id: `tab-${name}`,
        "aria-controls": "panel",
        "aria-selected": String(name === this.section),
        tabindex: name === this.section ? "0" : "-1",
        class: "section-tab",
        text: t(`tab_${name}`),
        onclick: () => this.select(name),
        onkeydown: (/** @type {KeyboardEvent} */ e) => this.arrow(e, name),
      }),
    );
    this.tablist = h("div", { role: "tablist", "aria-label": t("sections"), "aria-orientation": "vertical" }, tabs);
    this.root.replaceChildren(
      h(
        "div",
        { class: "console" },
        h(
          "header",
          { class: "console-top" },
          h("h1", { text: t("title") }),
          h("p", { class: "who", text: who }),
          this.langButton(),
          h("button", { type: "button", class: "link", text: t("sign_out"), onclick: () => this.signOut() }),
        ),
        h("nav", { class: "console-nav", "aria-label": t("sections") }, this.tablist),
        h("main", { class: "console-main" }, this.panel),
      ),
    );
    this.show();
  }

  /** @param {string} name */
  select(name) {
    this.section = name;
    for (const tab of this.tablist.querySelectorAll('[role="tab"]')) {
      const on = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", String(on));
      tab.setAttribute("tabindex", on ? "0" : "-1");
    }
    this.show();
  }

  /** @param {KeyboardEvent} event @param {string} name */
  arrow(event, name) {
    const all = this.sections;
    const i = all.indexOf(name);
    let next = null;
    if (event.key === "ArrowDown" || event.key === "ArrowRight") next = all[(i + 1) % all.length];
    else if (event.key === "ArrowUp" || event.key === "ArrowLeft") next = all[(i - 1 + all.length) % all.length];
    else if (event.key === "Home") next = all[0];
    else if (event.key === "End") next = all[all.length - 1];
    if (!next) return;
    event.preventDefault();
    this.select(next);
    /** @type {HTMLElement} */ (this.tablist.querySelector(`#tab-${next}`)).focus();
  }

  /** Show the selected section in the tabpanel (each console's own). */
  show() {}
}
