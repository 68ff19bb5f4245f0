// Data-loss prevention notices (docs/compliance.md): the hub masks a card number, ID, account
// number, CVV or one-time code in what I send (the SDK's `dlp` event says what it masked, and
// the message shown is the masked one others see), or refuses the send (`sensitive_data`).
// One notice area per chat, above the composer: a masked send is a polite status, a refusal
// an alert; both can be dismissed with a button (keyboard reachable). Shared by the customer
// app and the staff workbench; `t` is the page's own i18n lookup.

import { h } from "./dom.js";

const KINDS = ["card", "resident_id", "bank_account", "cvv", "otp"];
// how the hub's `sensitive_data` message names each kind (bankhub.policy, stable): the refusal is
// shown in the page's language, built from the kinds, never the server's English text
const NAMED = { card: "a card number", resident_id: "a resident ID number", bank_account: "a bank account number", cvv: "(CVV)", otp: "a one-time code" };

/**
 * The text of a `sensitive_data` refusal in the page's language: the kinds it names.
 * @param {(key: string, vars?: Record<string, unknown>) => string} t @param {any} error
 */
export function refusalText(t, error) {
  const message = String(error?.message ?? "");
  const kinds = KINDS.filter((k) => message.includes(NAMED[/** @type {keyof typeof NAMED} */ (k)]));
  if (!kinds.length) return `${t("dlp_refused")} ${t("dlp_never")}`;
  const names = kinds.map((k) => t(`dlp_name_${k}`)).join(t("dlp_name_sep"));
  return `${t("dlp_refused_found", { kinds: names })} ${t("dlp_never")}`;
}

export class DlpNotice {
  /** @param {{client: EventTarget, t: (key: string, vars?: Record<string, unknown>) => string}} o */
  constructor(o) {
    this.client = o.client;
    this.t = o.t;
    /** @type {string | null} the conversation whose chat shows the notice */
    this.cid = null;
    this.text = h("p", { class: "dlp-text" });
    this.close = h("button", { type: "button", class: "link dlp-dismiss", text: o.t("dlp_dismiss"), onclick: () => this.clear() });
    // role status (polite) by default; a refusal switches it to alert
    this.el = h("div", { class: "dlp-notice", role: "status", "aria-live": "polite", hidden: true }, this.text, this.close);
    this.onDlp = (/** @type {any} */ e) => {
      const d = e.detail ?? {};
      if (d.conversationId === this.cid && Array.isArray(d.dlp)) this.masked(d.dlp);
    };
    o.client.addEventListener("dlp", this.onDlp);
  }

  /** The notice area for the chat of `cid` (shown until dismissed or another chat opens). @param {string} cid */
  attach(cid) {
    if (this.cid !== cid) this.clear();
    this.cid = cid;
    return this.el;
  }

  detach() {
    this.client.removeEventListener("dlp", this.onDlp);
  }

  /** @param {{kind: string, masked: string}[]} found */
  masked(found) {
    const parts = found.map((f) => `${this.t(KINDS.includes(f.kind) ? `dlp_kind_${f.kind}` : "dlp_kind_other")}${this.t("dlp_masked")}${f.masked}`);
    this.show("status", `${parts.join("; ")} — ${this.t("dlp_never")}`, false);
  }

  /**
   * A send or edit failed: true when it was a data-loss prevention refusal (shown here).
   * @param {any} error
   */
  refused(error) {
    if (error?.code !== "sensitive_data") return false;
    this.show("alert", refusalText(this.t, error), true);
    return true;
  }

  /** @param {"status" | "alert"} role @param {string} text @param {boolean} refusal */
  show(role, text, refusal) {
    this.el.setAttribute("role", role);
    this.el.setAttribute("aria-live", role === "alert" ? "assertive" : "polite");
    this.el.classList.toggle("dlp-refused", refusal);
    this.text.textContent = text;
    this.el.hidden = false;
  }

  clear() {
    this.el.hidden = true;
    this.text.textContent = "";
  }
}
