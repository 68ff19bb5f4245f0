// The app's service worker (scope /app/): keeps the app shell so the app opens offline.
// Network first, so a new release is used at once; the cache answers only when the network
// does not. The API (/v1/...) and the WebSocket never pass through it: no message, token or
// personal data is ever cached.

const CACHE = "bankhub-app-shell-v1";
const SHELL = [
  "/app/",
  "/app/manifest.webmanifest",
  "/static/app/base.css",
  "/static/app/app.css",
  "/static/app/main.js",
  "/static/app/shell.js",
  "/static/app/messages.js",
  "/static/app/media.js",
  "/static/app/signin.js",
  "/static/app/me.js",
  "/static/app/discover.js",
  "/static/app/services.js",
  "/static/app/inbox.js",
  "/static/app/i18n.js",
  "/static/app/lang.js",
  "/static/app/dom.js",
  "/static/app/liveness.js",
  "/static/app/revise.js",
  "/static/app/privacy.js",
  "/static/app/contacts.js",
  "/static/app/icon.svg",
  "/static/app/icons/messages.svg",
  "/static/app/icons/discover.svg",
  "/static/app/icons/services.svg",
  "/static/app/icons/me.svg",
  "/static/sdk/bankhub.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => Promise.all(SHELL.map((url) => cache.add(url).catch(() => undefined))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!(url.pathname.startsWith("/app/") || url.pathname.startsWith("/static/"))) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() => caches.match(request).then((hit) => hit ?? Response.error())),
  );
});
