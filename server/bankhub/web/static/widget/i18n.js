// The widget's strings, zh and en (the frame follows the browser's language).
const STRINGS = {
  zh: {
    title: "在线客服",
    close: "关闭",
    waiting: "等待合作方页面的访客身份…",
    notEmbedded: "此页面需由合作方网站嵌入使用。",
    connecting: "正在连接…",
    ready: "您好！点击“开始咨询”与银行客服对话。",
    refused: "无法验证访客身份，请刷新合作方页面后重试。",
    start: "开始咨询",
    chatting: "已接入银行客服",
    textLabel: "输入消息",
    send: "发送",
    me: "我",
    bank: "银行",
    failed: "发送失败，请重试。",
    unsupported: "（此消息类型暂不支持显示）",
    recalled: "消息已撤回",
  },
  en: {
    title: "Service desk",
    close: "Close",
    waiting: "Waiting for the partner page to identify you…",
    notEmbedded: "This page works inside a partner's site.",
    connecting: "Connecting…",
    ready: "Hello! Press “Start chat” to talk to the bank's service desk.",
    refused: "We could not verify you; reload the partner's page and try again.",
    start: "Start chat",
    chatting: "Connected to the bank's service desk",
    textLabel: "Your message",
    send: "Send",
    me: "Me",
    bank: "Bank",
    failed: "Not sent; please try again.",
    unsupported: "(this kind of message cannot be shown here)",
    recalled: "message withdrawn",
  },
};

export const LANG = (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
export const T = STRINGS[LANG];
