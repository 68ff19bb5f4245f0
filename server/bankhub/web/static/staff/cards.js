// The workbench's service-card composer: an RM (or an agent) sends a customer a card — an
// offer, a bill reminder or an appointment — with a title, up to three label/value lines, one
// action link and an optional account-class gate. The hub checks the link (a `bankhub://`
// deep link or https:// on an allow-listed domain), signs the card and delivers it; its
// refusal is shown as it came.

import { h } from "../app/dom.js";

const TEMPLATES = ["offer", "bill_reminder", "appointment"];
const CLASSES = ["I", "II", "III"];
const FIELD_ROWS = 3;

/** @param {any} e */
function reason(e) {
  return e?.message || e?.detail || e?.code || String(e);
}

/**
 * A collapsible "send a service card" form for conversation `cid`.
 * @param {{client: any, cid: string, t: (key: string, vars?: Record<string, any>) => string}} o
 * @returns {HTMLElement}
 */
export function cardComposer(o) {
  const { client, cid, t } = o;
  const id = (/** @type {string} */ name) => `card-${name}-${cid}`;
  const template = /** @type {HTMLSelectElement} */ (
    h("select", { id: id("template") }, TEMPLATES.map((v) => h("option", { value: v, text: t(`card_${v}`) })))
  );
  const title = /** @type {HTMLInputElement} */ (h("input", { id: id("title"), required: true, maxlength: "120" }));
  const rows = Array.from({ length: FIELD_ROWS }, (_, i) => ({
    label: /** @type {HTMLInputElement} */ (h("input", { id: id(`label${i}`), maxlength: "40" })),
    value: /** @type {HTMLInputElement} */ (h("input", { id: id(`value${i}`), maxlength: "200" })),
  }));
  const actionLabel = /** @type {HTMLInputElement} */ (h("input", { id: id("action-label"), maxlength: "40" }));
  const actionUrl = /** @type {HTMLInputElement} */ (h("input", { id: id("action-url"), type: "url", maxlength: "2048", placeholder: "bankhub://… / https://…" }));
  const classes = CLASSES.map((c) => /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: id(`class${c}`), value: c })));
  const status = h("p", { class: "card-status", role: "status" });
  const submit = h("button", { type: "submit", class: "primary", text: t("card_send") });

  const form = h(
    "form",
    { class: "card-composer" },
    h("label", { for: template.id, text: t("card_template") }),
    template,
    h("label", { for: title.id, text: t("card_title") }),
    title,
    h(
      "fieldset",
      {},
      h("legend", { text: t("card_fields") }),
      rows.flatMap((r, i) => [
        h("label", { for: r.label.id, class: "visually-hidden", text: t("card_field_label", { n: i + 1 }) }),
        r.label,
        h("label", { for: r.value.id, class: "visually-hidden", text: t("card_field_value", { n: i + 1 }) }),
        r.value,
      ]),
    ),
    h("label", { for: actionLabel.id, text: t("card_action_label") }),
    actionLabel,
    h("label", { for: actionUrl.id, text: t("card_action_url") }),
    actionUrl,
    h("fieldset", { class: "card-gate-choice" }, h("legend", { text: t("card_gate") }), classes.map((c) => h("span", {}, c, h("label", { for: c.id, text: t("class_n", { c: c.value }) })))),
    submit,
    status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    /** @type {Record<string, any>} */
    const body = { kind: "card", template: template.value, title: title.value.trim() };
    const fields = rows.filter((r) => r.label.value.trim() && r.value.value.trim()).map((r) => ({ label: r.label.value.trim(), value: r.value.value.trim() }));
    if (fields.length) body.fields = fields;
    if (actionLabel.value.trim() && actionUrl.value.trim()) body.actions = [{ label: actionLabel.value.trim(), url: actionUrl.value.trim() }];
    const gate = classes.filter((c) => c.checked).map((c) => c.value);
    if (gate.length) body.classes = gate;
    if (!body.title) {
      status.textContent = t("card_needs_title");
      title.focus();
      return;
    }
    submit.setAttribute("disabled", "");
    status.textContent = t("card_sending");
    try {
      await client.sendBody(cid, body, { text: `[${t(`card_${body.template}`)}] ${body.title}` });
      status.textContent = t("card_sent");
      form.reset();
    } catch (err) {
      status.textContent = t("card_refused", { reason: reason(err) });
    } finally {
      submit.removeAttribute("disabled");
    }
  });
  return h("details", { class: "card-compose" }, h("summary", { text: t("card_compose") }), form);
}
