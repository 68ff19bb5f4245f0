// Recall and edit (hub feature "edit"): the pure state that applies change messages to the
// messages they target. No I/O, no DOM.
//
// A recall or edit is a message of its own in the conversation's seq stream, body
// {"kind":"edit","message_id":X,"body":{...X's current body}} or {"kind":"recall","message_id":X}.
// It arrives like any message (live, sync, history) and is applied to X; it is never shown
// itself. X as history and sync return it already carries its current body ({"kind":"recalled"}
// once withdrawn) and `edited_ts`. A recall is final; of two versions of an edited message
// the later edit wins, in whatever order they arrive.

/**
 * @typedef {import("./state.js").Message} Message
 */

/** Body kinds of change messages. */
export const CHANGE_KINDS = Object.freeze(["edit", "recall"]);

/** @param {any} m @returns {boolean} true for an edit or recall message (apply it, do not show it) */
export function isChange(m) {
  const kind = m?.body?.kind;
  return (kind === "edit" || kind === "recall") && typeof m.body.message_id === "string";
}

/** @param {any} m @returns {boolean} the message was withdrawn by its sender */
export function isRecalled(m) {
  return m?.body?.kind === "recalled";
}

/**
 * Whether `candidate` shows a later state of one message than `held`.
 * @param {any} candidate @param {any} held
 */
export function isNewer(candidate, held) {
  if (isRecalled(held)) return false; // final
  if (isRecalled(candidate)) return true;
  return (candidate.edited_ts ?? 0) > (held.edited_ts ?? 0);
}

/**
 * `target` with change message `change` applied; null when it changes nothing (a stale
 * change, a change of another message or conversation).
 * @param {Message} target @param {Message} change
 * @returns {Message | null}
 */
export function applyChange(target, change) {
  if (!isChange(change)) return null;
  const body = /** @type {any} */ (change.body);
  if (body.message_id !== target.message_id || change.conversation_id !== target.conversation_id) return null;
  /** @type {any} */
  let updated;
  if (body.kind === "recall" || body.body?.kind === "recalled") {
    updated = { ...target, body: { kind: "recalled" } };
  } else if (body.body?.kind === "text" && typeof body.body.text === "string") {
    updated = { ...target, body: { kind: "text", text: body.body.text }, edited_ts: change.ts };
  } else {
    return null;
  }
  return isNewer(updated, target) ? updated : null;
}

/**
 * The messages to show: `messages` (one conversation, any order, each once) with every
 * change message among them applied to its target and left out, in seq order.
 * @param {Iterable<Message>} messages
 * @returns {Message[]}
 */
export function visibleMessages(messages) {
  const sorted = [...messages].sort((a, b) => a.seq - b.seq);
  /** @type {Map<string, Message>} */
  const byId = new Map();
  /** @type {Message[]} */
  const changes = [];
  for (const m of sorted) {
    if (isChange(m)) changes.push(m);
    else byId.set(m.message_id, m);
  }
  for (const c of changes) {
    const target = byId.get(/** @type {any} */ (c.body).message_id);
    const updated = target && applyChange(target, c);
    if (updated) byId.set(updated.message_id, updated);
  }
  return [...byId.values()].sort((a, b) => a.seq - b.seq);
}

/**
 * Changes whose target is not held yet (e.g. older than the history page), bounded: the
 * oldest waiting change is dropped past `max`.
 */
export class WaitingChanges {
  /** @param {number} [max] */
  constructor(max = 1000) {
    this.max = max;
    /** @type {Map<string, Message>} target message id -> its latest change */
    this._by = new Map();
  }

  get size() {
    return this._by.size;
  }

  /** @param {Message} change */
  wait(change) {
    const id = /** @type {any} */ (change.body).message_id;
    const held = this._by.get(id);
    if (held && held.seq >= change.seq) return;
    this._by.delete(id);
    this._by.set(id, change);
    while (this._by.size > this.max) this._by.delete(/** @type {string} */ (this._by.keys().next().value));
  }

  /** The change waiting for message `messageId` (removed), if any. @param {string} messageId */
  take(messageId) {
    const c = this._by.get(messageId);
    if (c) this._by.delete(messageId);
    return c;
  }
}
