// The reason prompt: a modal dialog asked BEFORE any read of message text. It offers the hub's
// reason codes (policy.PRIVILEGED_READ_REASONS) and a case reference; nothing is read until the
// officer picks a reason and confirms. Escape or Cancel resolves null and nothing is read.
// Focus moves into the dialog, Tab cycles inside it, and on close returns to what opened it.

import { h } from "../app/dom.js";
import { t } from "./i18n.js";

/** The reason codes the hub accepts (bankhub.policy.PRIVILEGED_READ_REASONS). */
export const REASONS = ["complaint_investigation", "fraud_investigation", "regulatory_request", "legal_hold", "internal_audit"];

let serial = 0;

/**
 * Ask for a reason code and a case reference.
 * @param {string} purpose what is about to be read (shown in the dialog)
 * @returns {Promise<{reason: string, case_ref: string} | null>} null when cancelled
 */
export function askReason(purpose) {
  serial += 1;
  const id = `reason-${serial}`;
  const opener = /** @type {HTMLElement | null} */ (document.activeElement);
  return new Promise((resolve) => {
    const error = h("p", { id: `${id}-error`, class: "form-error", role: "alert" });
    const radios = REASONS.map((code) =>
      h(
        "label",
        { class: "check" },
        h("input", { type: "radio", name: `${id}-code`, value: code, "aria-describedby": `${id}-error` }),
        t(`reason_${code}`),
      ),
    );
    const caseRef = /** @type {HTMLInputElement} */ (h("input", { id: `${id}-case`, maxlength: "128", autocomplete: "off" }));
    const confirm = h("button", { type: "submit", class: "primary", text: t("reason_confirm") });
    const cancel = h("button", { type: "button", class: "secondary", text: t("cancel") });
    const form = h(
      "form",
      { class: "form", method: "dialog", novalidate: true },
      h("h2", { id: `${id}-title`, text: t("reason_title") }),
      h("p", { id: `${id}-purpose`, text: purpose }),
      h("p", { class: "hint", text: t("reason_hint") }),
      h("fieldset", {}, h("legend", { text: t("reason_code") }), radios),
      h("div", { class: "field" }, h("label", { for: `${id}-case`, text: t("case_ref") }), caseRef),
      error,
      h("div", { class: "actions" }, confirm, cancel),
    );
    const dialog = /** @type {HTMLDialogElement} */ (
      h("dialog", { class: "reason-dialog", "aria-modal": "true", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-purpose` }, form)
    );
    let settled = false;
    /** @param {{reason: string, case_ref: string} | null} value */
    const finish = (value) => {
      if (settled) return;
      settled = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(value);
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = /** @type {HTMLInputElement | null} */ (form.querySelector(`input[name="${id}-code"]:checked`));
      if (!chosen) {
        error.textContent = t("reason_required");
        /** @type {HTMLElement} */ (form.querySelector(`input[name="${id}-code"]`)).focus();
        return;
      }
      finish({ reason: chosen.value, case_ref: caseRef.value.trim() });
    });
    cancel.addEventListener("click", () => finish(null));
    // Escape: the browser fires "cancel" on a modal dialog
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(null);
    });
    // closed any other way (a browser that closes without "cancel", dialog.close() elsewhere):
    // nothing was chosen, so nothing is read
    dialog.addEventListener("close", () => finish(null));
    // keep Tab inside the dialog (the page behind is inert while it is open)
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const focusable = /** @type {HTMLElement[]} */ (
        [...dialog.querySelectorAll("input, button, select, textarea")].filter((el) => !(/** @type {any} */ (el).disabled))
      );
      if (!focusable.length) return;
      // a radio group is one Tab stop: the checked radio, else the first
      const first = /** @type {HTMLElement} */ (dialog.querySelector('input[type="radio"]:checked') || focusable[0]);
      const last = focusable[focusable.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    /** @type {HTMLElement} */ (form.querySelector(`input[name="${id}-code"]`)).focus();
  });
}
