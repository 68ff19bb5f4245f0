// Tiny DOM helpers. Text is always set with textContent: nothing a user typed is ever parsed as HTML.

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, any>} [props] "class", "text", "on<event>" handlers, else attributes (true = present)
 * @param {...(Node|string|null|undefined|Array<Node|string|null|undefined>)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

/** Format a millisecond timestamp as a short local time (HH:MM, or date and time if not today). */
export function shortTime(ms, lang) {
  const d = new Date(ms);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = sameDay ? { hour: "2-digit", minute: "2-digit" } : { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString(lang, opts);
}
