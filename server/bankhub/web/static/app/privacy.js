// The Me tab's privacy switches: read receipts on/off and who sees my last-seen time
// (GET/PUT /v1/me/privacy). Each change is saved at once; a failure restores the switch.

import { h } from "./dom.js";
import { t } from "./i18n.js";
import { getPrivacy, setPrivacy } from "/static/sdk/bankhub.js";

const LAST_SEEN = /** @type {const} */ (["everyone", "contacts", "nobody"]);

/** The privacy section (filled once the settings load). @param {any} session HubSession */
export function privacySection(session) {
  const status = h("p", { class: "privacy-status", "aria-live": "polite" });
  const receipts = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: "privacy-receipts", role: "switch", "aria-describedby": "privacy-receipts-hint", disabled: true }));
  const lastSeen = /** @type {HTMLSelectElement} */ (
    h("select", { id: "privacy-last-seen", disabled: true }, ...LAST_SEEN.map((v) => h("option", { value: v, text: t(`last_seen_${v}`) })))
  );
  /** @type {{share_read_receipts: boolean, last_seen: string}} */
  let saved = { share_read_receipts: true, last_seen: "everyone" };
  const show = () => {
    receipts.checked = saved.share_read_receipts;
    lastSeen.value = saved.last_seen;
  };
  /** @param {Record<string, unknown>} change */
  const save = async (change) => {
    try {
      saved = await setPrivacy(session, change);
      status.textContent = t("privacy_saved");
    } catch {
      status.textContent = t("privacy_failed");
    }
    show();
  };
  receipts.addEventListener("change", () => save({ share_read_receipts: receipts.checked }));
  lastSeen.addEventListener("change", () => save({ last_seen: lastSeen.value }));
  getPrivacy(session)
    .then((/** @type {any} */ p) => {
      saved = p;
      show();
      receipts.disabled = false;
      lastSeen.disabled = false;
    })
    .catch(() => {
      status.textContent = t("load_failed");
    });
  return h(
    "section",
    { class: "block privacy", "aria-labelledby": "privacy-h" },
    h("h2", { id: "privacy-h", text: t("privacy_title") }),
    h("p", { class: "switch-row" }, receipts, h("label", { for: "privacy-receipts", text: t("privacy_receipts") })),
    h("p", { id: "privacy-receipts-hint", class: "hint", text: t("privacy_receipts_hint") }),
    h("p", {}, h("label", { for: "privacy-last-seen", text: t("privacy_last_seen") }), lastSeen),
    status,
  );
}
