// A small offline-capable todo list on @offgrid/client: IndexedDB storage, optimistic UI,
// background sync while the page is open. Loads the SDK's compiled ESM directly (no bundler).
//   /?user=alice                 your personal list (scope user:alice)
//   /?user=alice&list=team:home  a shared list (the user must be a member of the scope)
import { createClient, indexedDbStorage } from "/sdk/index.js";

const params = new URLSearchParams(location.search);
const user = params.get("user") ?? "demo";
const list = params.get("list") ?? undefined;

// A real app gets its JWT from its auth provider; this demo's server mints one at /token.
// The last token is kept so the app starts offline too.
async function getToken() {
  try {
    const reply = await fetch(`/token?user=${encodeURIComponent(user)}`);
    if (!reply.ok) throw new Error(`token: ${reply.status}`);
    const token = await reply.text();
    localStorage.setItem(`token:${user}`, token);
    return token;
  } catch (error) {
    const cached = localStorage.getItem(`token:${user}`);
    if (cached) return cached;
    throw error;
  }
}

const client = createClient({
  url: location.origin,
  getToken,
  storage: indexedDbStorage(`offgrid-todos-${user}`),
  backoff: { baseMs: 250, maxMs: 3000 },
  pollIntervalMs: { min: 300, max: 2000 },
});
const todos = client.collection("todos", list ? { scope: list } : {});

const $ = (id) => document.getElementById(id);
$("who").textContent = `${user}${list ? ` · ${list}` : ""}`;

function render(rows) {
  const ul = $("list");
  ul.replaceChildren(
    ...rows.map(({ key, value, pending }) => {
      const li = document.createElement("li");
      li.dataset.key = key;
      li.dataset.testid = "todo";
      li.className = value.done ? "done" : "";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = Boolean(value.done);
      box.addEventListener("change", () => todos.patch(key, { done: box.checked }));
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = value.title;
      const mark = document.createElement("span");
      mark.className = "pending";
      mark.textContent = pending ? "unsent" : "";
      const remove = document.createElement("button");
      remove.textContent = "✕";
      remove.title = "Delete";
      remove.addEventListener("click", () => todos.delete(key));
      li.append(box, title, mark, remove);
      return li;
    }),
  );
}
todos.subscribe(render);

client.onStatus((s) => {
  const el = $("status");
  const parts = [s.online ? "online" : "offline"];
  if (s.pending) parts.push(`${s.pending} unsent`);
  else if (s.lastSyncedAt) parts.push("synced");
  if (s.needsAuth) parts.push("sign in again");
  el.textContent = parts.join(" · ");
  el.className = !s.online ? "offline" : s.pending ? "" : "synced";
});

$("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("title");
  const title = input.value.trim();
  if (!title) return;
  input.value = "";
  const key = `t-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  await todos.put(key, { title, done: false });
});

// Back online, or the tab came to the front: try now instead of waiting out a backoff.
window.addEventListener("online", () => client.handleTickle());
document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && client.handleTickle());

client.start();
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => undefined);
window.offgrid = { client, todos }; // for the browser test and the curious
