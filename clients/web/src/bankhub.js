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
  GROUP_EVENTS,
  createGroup,
  createOrgGroup,
  getGroup,
  groupEventText,
  inviteMembers,
  isGroupEvent,
  leaveGroup,
  listMembers,
  removeMember,
  renameGroup,
  setMemberRole,
} from "./groups.js";
export {
  INVITE_LINK_PREFIX,
  acceptRequest,
  blockUser,
  createInvite,
  declineRequest,
  incomingRequests,
  inviteCodeOf,
  listBlocked,
  listContacts,
  outgoingRequests,
  redeemInvite,
  removeContact,
  requestContact,
  revokeInvites,
  unblockUser,
  withdrawRequest,
} from "./contacts.js";
export { qrMatrix, qrSvgPath } from "./qr.js";
export {
  IMAGE_TYPES,
  MAX_WAVEFORM,
  MediaClient,
  MediaUrlCache,
  RECORDER_TYPES,
  URL_MARGIN_MS,
  VOICE_TYPES,
  baseType,
  checkMediaFile,
  chooseRecorderType,
  formatDuration,
  imageBody,
  mediaKindOf,
  scaleWaveform,
  voiceBody,
} from "./media.js";
export {
  PresenceBook,
  ReadPositions,
  TYPING_INTERVAL_MS,
  TypingBoard,
  TypingSender,
  fetchPresence,
  fetchReadPositions,
  getPrivacy,
  setPrivacy,
} from "./liveness.js";
export {
  CARD_CONTEXT,
  KEY_REFRESH_MS,
  NOTICE_CONTEXT,
  SigningKeys,
  MAX_LINK_CHARS,
  canonicalJson,
  cardActionsAllowed,
  cardLinkAllowed,
  cardLinkHost,
  cardPayload,
  fromBase64Url,
  noticePayload,
  verifyCard,
  verifyNotice,
} from "./cards.js";
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

export { VISITOR_TOKEN_PREFIX, openVisitorSession, tokenPartnerId } from "./widget.js";

export { CHANGE_KINDS, WaitingChanges, applyChange, isChange, isNewer, isRecalled, visibleMessages } from "./revise.js";

export const VERSION = "0.1.0";
