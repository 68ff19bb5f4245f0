// The Me tab: who is signed in (a customer also sees their profile card: branch, segment,
// account class), my RM and their availability, the devices signed in to my account (paged;
// this one marked; any other can be signed out at once: DELETE /v1/sessions/{id}), and
// signing out.

import { h, shortTime } from "./dom.js";
import { lang, t } from "./i18n.js";
import { privacySection } from "./privacy.js";

const PAGE = 20;

/** @param {any} e */
function reason(e) {
  return e?.detail || e?.code || String(e);
}

/** A short name for a browser's user agent ("Chrome on Android"); the raw string is the title. @param {string | null} ua */
function deviceName(ua) {
  if (!ua) return t("unknown_device");
  const browser = /Edg\//.test(ua) ? "Edge" : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Firefox\//.test(ua) ? "Firefox" : /Safari\//.test(ua) ? "Safari" : null;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows" : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : null;
  return browser && os ? `${browser} · ${os}` : ua.slice(0, 60);
}

/**
 * @param {HTMLElement} panel
 * @param {any} session HubSession
 * @param {() => void} signOut
 */
export function renderMe(panel, session, signOut) {
  const user = session.user;
  const profile = h(
    "dl",
    { class: "profile" },
    h("dt", { text: t("username") }),
    h("dd", { text: user.username }),
    h("dt", { text: t("role") }),
    h("dd", { text: user.role }),
  );
  const rm = h("section", { class: "block", "aria-labelledby": "rm-h", hidden: true });
  const devices = h("ul", { class: "device-list", "aria-labelledby": "devices-h" });
  const more = h("div", {});
  const note = h("p", { class: "visually-hidden", role: "status" });
  panel.replaceChildren(
    h(
      "div",
      { class: "me" },
      h("h2", { text: t("profile") }),
      h("p", { class: "display-name", text: user.display_name }),
      profile,
      rm,
      h("section", { class: "block", "aria-labelledby": "devices-h" }, h("h2", { id: "devices-h", text: t("devices") }), note, devices, more),
      privacySection(session),
      h("button", { type: "button", class: "danger", text: t("sign_out"), onclick: signOut }),
    ),
  );

  if (user.role === "customer") {
    session
      .request("GET", `/v1/customers/${encodeURIComponent(user.username)}/card`)
      .then((/** @type {any} */ r) => {
        const c = r.customer;
        profile.append(
          h("dt", { text: t("branch") }),
          h("dd", { text: c.org_name ? `${c.org_name} (${c.branch})` : c.branch }),
          h("dt", { text: t("segment") }),
          h("dd", { text: c.segment ?? "" }),
          h("dt", { text: t("account_class") }),
          h("dd", { text: c.account_class ?? "" }),
        );
      })
      .catch(() => {});
  }
  if (user.role === "customer" && user.rm_id) {
    session
      .request("GET", "/v1/me/rm")
      .then((/** @type {any} */ r) => {
        const status = r.availability?.status ?? "online";
        rm.hidden = false;
        rm.replaceChildren(
          h("h2", { id: "rm-h", text: t("my_rm") }),
          h(
            "dl",
            { class: "profile" },
            h("dt", { text: t("my_rm") }),
            h("dd", { class: "rm-name", text: r.rm.display_name }),
            h("dt", { text: t("my_rm_status") }),
            h("dd", { class: `rm-status ${status}`, text: t(`rm_${status}`) }),
          ),
          r.availability?.message ? h("p", { class: "hint", text: r.availability.message }) : "",
        );
      })
      .catch(() => {});
  }

  /** @param {string | null} cursor */
  const loadDevices = async (cursor) => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) q.set("cursor", cursor);
    let page;
    try {
      page = await session.request("GET", `/v1/sessions?${q}`);
    } catch {
      note.className = "form-error";
      note.textContent = t("load_failed");
      return;
    }
    if (!cursor) devices.replaceChildren();
    for (const s of page.sessions) devices.append(device(s));
    more.replaceChildren(page.next_cursor ? h("button", { type: "button", class: "link more", text: t("more"), onclick: () => loadDevices(page.next_cursor) }) : "");
  };

  /** @param {any} s a session of GET /v1/sessions */
  const device = (s) => {
    const name = deviceName(s.user_agent);
    const row = h(
      "li",
      { class: s.current ? "device current" : "device", "data-session": s.id },
      h(
        "span",
        { class: "conv-main" },
        h("span", { class: "conv-name", title: s.user_agent ?? "", text: name }),
        h("span", { class: "conv-hint", text: [t("signed_in_at", { time: shortTime(Date.parse(s.created_at), lang()) }), s.ip].filter(Boolean).join(" · ") }),
      ),
      s.current
        ? h("span", { class: "tag", text: t("this_device") })
        : h("button", {
            type: "button",
            class: "chip",
            "aria-label": `${t("revoke")}：${name}`,
            text: t("revoke"),
            onclick: async () => {
              try {
                await session.request("DELETE", `/v1/sessions/${encodeURIComponent(s.id)}`);
                row.remove();
                note.className = "visually-hidden";
                note.textContent = t("revoked");
              } catch (e) {
                note.className = "form-error";
                note.textContent = t("action_failed", { detail: reason(e) });
              }
            },
          }),
    );
    return row;
  };
  loadDevices(null);
}
