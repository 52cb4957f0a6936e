// Service worker: the app shell (HTML, JS, CSS, the SDK's modules) from cache, so the page
// opens and reloads offline. Sync requests (/v1, /token) always go to the network.
const CACHE = "offgrid-todo-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const files = await (await fetch("/precache.json")).json();
      await cache.addAll(files);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/v1/") || url.pathname === "/token") return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const cached = await cache.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      const reply = await fetch(event.request);
      if (reply.ok) cache.put(event.request, reply.clone());
      return reply;
    })(),
  );
});
