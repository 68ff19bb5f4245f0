// bankhub JavaScript SDK: the entry module. Served by the hub at /static/sdk/bankhub.js.
//
//   import { HubSession, Client, HubError } from "/static/sdk/bankhub.js";
//   const session = await HubSession.signIn("", "c.li", "bankhub-demo");
//   const client = Client.connect(session);
//   client.addEventListener("message", (e) => show(e.detail.message));
//   await client.send(conversationId, "你好");
//
// ES modules, no dependencies; types are JSDoc, checked with `tsc --noEmit`.

export { HubSession, Client, HubError } from "./client.js";
export {
  CursorTracker,
  DEFAULT_LIMITS,
  FrameIds,
  InboxCursor,
  MessageInbox,
  MessageStore,
  NoticeInbox,
  Pacer,
  PendingSends,
  PROTOCOL_VERSION,
  ReconnectPolicy,
  RETRYABLE_ERRORS,
  RevisionFilter,
  SUBPROTOCOL,
  classifyClose,
  classifyHandshakeStatus,
  deriveEndpoints,
  keepAliveInterval,
  sendRetryDelay,
  syncPlan,
  validateId,
  validateText,
} from "./state.js";

export const VERSION = "0.1.0";
