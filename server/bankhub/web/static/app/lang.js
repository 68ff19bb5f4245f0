// The language switch shared by the customer app, the staff workbench and the console: zh-CN by
// default, English on request. The choice (not a secret) is kept in localStorage under one key,
// so a switch in one front end holds in the others; each brings its own dictionary.

const KEY = "bankhub.lang";

/**
 * The language functions of one front end over its dictionary.
 * @param {Record<string, Record<string, string>>} strings language tag -> key -> text; "zh-CN" is the fallback
 * @param {{ title?: string }} [options] `title`: the key of the document's title, set now and after each switch
 */
export function makeI18n(strings, options = {}) {
  const stored = localStorage.getItem(KEY) ?? "";
  let current = Object.hasOwn(strings, stored) ? stored : "zh-CN";
  /** @type {Set<() => void>} */
  const listeners = new Set();

  /** The current language tag ("zh-CN" or "en"). */
  function lang() {
    return current;
  }

  /**
   * The string `key` in the current language, `{name}` placeholders filled from `vars`.
   * @param {string} key @param {Record<string, unknown>} [vars]
   */
  function t(key, vars = {}) {
    const text = strings[current][key] ?? strings["zh-CN"][key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  }

  function apply() {
    document.documentElement.lang = current;
    if (options.title) document.title = t(options.title);
  }

  /** Switch between zh-CN and English; listeners re-render. */
  function toggleLang() {
    current = current === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem(KEY, current);
    apply();
    for (const fn of listeners) fn();
  }

  /** Call `fn` after every language switch. @param {() => void} fn */
  function onLangChange(fn) {
    listeners.add(fn);
  }

  apply();
  return { lang, t, toggleLang, onLangChange };
}
