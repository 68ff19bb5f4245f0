// Strings of the customer app: zh-CN by default, English on request. The choice (not a secret)
// is kept in localStorage; nothing else the app holds is stored in the browser.

const STRINGS = {
  "zh-CN": {
    app_name: "融e联",
    tagline: "银行自己的即时通讯",
    username: "用户名",
    password: "密码",
    sign_in: "登录",
    signing_in: "正在登录…",
    sign_in_failed: "用户名或密码错误",
    sign_in_error: "暂时无法登录，请稍后重试",
    demo_hint: "演示账号：c.li / rm.wang，密码 bankhub-demo",
    language: "English",
    language_label: "Switch to English",
    tab_messages: "消息",
    tab_discover: "发现",
    tab_services: "功能",
    tab_me: "我",
    main_nav: "主导航",
    conversations: "会话",
    no_conversations: "还没有会话",
    my_rm: "我的客户经理",
    rm_chat_hint: "与客户经理聊天",
    unread: "{n} 条未读",
    back: "返回",
    message_log: "消息记录",
    compose_label: "输入消息",
    send: "发送",
    pending: "发送中…",
    delivered: "已送达",
    read: "已读",
    you: "我",
    state_connecting: "连接中…",
    state_open: "在线",
    state_offline: "离线：消息将在恢复连接后发送",
    state_closed: "已断开",
    coming: "即将推出",
    discover_intro: "官方账号和通知将显示在这里。",
    services_intro: "客服和动账提醒将显示在这里。",
    profile: "个人资料",
    role: "角色",
    sign_out: "退出登录",
    conversation: "会话",
    system: "系统消息",
    withdrawn: "此消息已不可用",
    load_failed: "加载失败，请重试",
  },
  en: {
    app_name: "Bank e-Link",
    tagline: "The bank's own messaging",
    username: "Username",
    password: "Password",
    sign_in: "Sign in",
    signing_in: "Signing in…",
    sign_in_failed: "Wrong username or password",
    sign_in_error: "Cannot sign in right now; please try again",
    demo_hint: "Demo: c.li / rm.wang, password bankhub-demo",
    language: "中文",
    language_label: "切换到中文",
    tab_messages: "Messages",
    tab_discover: "Discover",
    tab_services: "Services",
    tab_me: "Me",
    main_nav: "Main",
    conversations: "Conversations",
    no_conversations: "No conversations yet",
    my_rm: "My relationship manager",
    rm_chat_hint: "Chat with your RM",
    unread: "{n} unread",
    back: "Back",
    message_log: "Messages",
    compose_label: "Message",
    send: "Send",
    pending: "Sending…",
    delivered: "Delivered",
    read: "Read",
    you: "Me",
    state_connecting: "Connecting…",
    state_open: "Online",
    state_offline: "Offline: messages will be sent when the connection is back",
    state_closed: "Disconnected",
    coming: "Coming soon",
    discover_intro: "Official accounts and their notices will appear here.",
    services_intro: "The service desk and account alerts will appear here.",
    profile: "Profile",
    role: "Role",
    sign_out: "Sign out",
    conversation: "Conversation",
    system: "From the bank",
    withdrawn: "This message is no longer available",
    load_failed: "Could not load; please try again",
  },
};

const KEY = "bankhub.lang";
let current = STRINGS[localStorage.getItem(KEY) ?? ""] ? /** @type {string} */ (localStorage.getItem(KEY)) : "zh-CN";
const listeners = new Set();

/** The current language tag ("zh-CN" or "en"). */
export function lang() {
  return current;
}

/** The string `key` in the current language, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** Switch between zh-CN and English; listeners re-render. */
export function toggleLang() {
  current = current === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current;
  for (const fn of listeners) fn();
}

/** Call `fn` after every language switch. */
export function onLangChange(fn) {
  listeners.add(fn);
}

document.documentElement.lang = current;
