import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { createClient, isOffgridError, memoryStorage, type FetchLike, type Row } from "../../src/index.js";

// No server here: the network is down. What the app sees must not depend on it.
const offline: FetchLike = async () => {
  throw new TypeError("fetch failed");
};
function token(sub: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${part({ alg: "HS256" })}.${part({ sub, exp: 9_999_999_999 })}`;
  return `${body}.${createHmac("sha256", "k").update(body).digest("base64url")}`;
}
interface Todo {
  title: string;
  done?: boolean;
}

test("offline client: writes show at once, subscribers hear them, and the outbox numbers them 1, 2, 3 with rising clocks", async () => {
  const storage = memoryStorage();
  const client = createClient({ url: "http://offline.invalid", getToken: () => token("alice"), storage, fetch: offline });
  const todos = client.collection<Todo>("todos");
  const seen: Row<Todo>[][] = [];
  todos.subscribe((rows) => seen.push(rows));
  await todos.put("t1", { title: "milk" });
  await todos.put("t2", { title: "eggs" });
  await todos.patch("t1", { done: true });
  await todos.delete("t2");
  assert.equal(todos.scope, "user:alice");
  assert.deepEqual(todos.get("t1"), { title: "milk", done: true });
  assert.equal(todos.get("t2"), undefined);
  assert.deepEqual(todos.all().map((r) => [r.key, r.pending]), [["t1", true]]);
  assert.deepEqual(seen.at(-1)?.map((r) => r.value), [{ title: "milk", done: true }]);
  assert.equal(client.status.pending, 4);

  const { outbox, meta } = await storage.load();
  assert.deepEqual(outbox.map((m) => m.id), [1, 2, 3, 4]);
  const clocks = outbox.map((m) => m.hlc);
  assert.deepEqual([...clocks].sort(), clocks);
  assert.equal(new Set(clocks).size, 4);
  assert.ok(clocks.every((c) => c.endsWith(`-${meta?.clientId}`)));
  assert.equal(meta?.lastMutationId, 4);
  await assert.rejects(client.sync(), (e: unknown) => isOffgridError(e, "network"));
  assert.equal(client.status.online, false);
  assert.equal(client.status.pending, 4, "a failed sync keeps the outbox");
});

test("offline client: a restart on the same storage keeps the view, the outbox and the counter", async () => {
  const storage = memoryStorage();
  const first = createClient({ url: "http://offline.invalid", getToken: () => token("bob"), storage, fetch: offline });
  await first.collection<Todo>("todos").put("a", { title: "one" });
  await first.close();
  const second = createClient({ url: "http://offline.invalid", getToken: () => token("bob"), storage, fetch: offline });
  await second.ready();
  assert.equal(second.clientId, first.clientId);
  const todos = second.collection<Todo>("todos");
  assert.deepEqual(todos.get("a"), { title: "one" });
  await todos.put("b", { title: "two" });
  assert.deepEqual((await storage.load()).outbox.map((m) => m.id), [1, 2]);
});

test("offline client: a write the server would refuse is refused locally and never enters the outbox", async () => {
  const storage = memoryStorage();
  const client = createClient({ url: "http://offline.invalid", getToken: () => token("carol"), storage, fetch: offline });
  const notes = client.collection("notes");
  await assert.rejects(notes.put("bad key!", { a: 1 }), (e: unknown) => isOffgridError(e, "invalid_mutation"));
  await assert.rejects(notes.put("k", { $set: 1 }), (e: unknown) => isOffgridError(e, "invalid_mutation"));
  await assert.rejects(notes.put("k", { big: "x".repeat(70_000) }), (e: unknown) => isOffgridError(e, "invalid_mutation"));
  await notes.put("k", { fine: [1, { deep: true }] });
  assert.deepEqual((await storage.load()).outbox.map((m) => m.id), [1]);
});

test("offline client: start() while offline backs off instead of spinning, and stop() ends it", async () => {
  let calls = 0;
  const counting: FetchLike = async () => {
    calls += 1;
    throw new TypeError("fetch failed");
  };
  const client = createClient({
    url: "http://offline.invalid",
    getToken: () => token("dave"),
    fetch: counting,
    backoff: { baseMs: 100, maxMs: 400 },
  });
  await client.collection("notes").put("n", { a: 1 });
  client.start();
  await new Promise((r) => setTimeout(r, 1500));
  client.stop();
  const after = calls;
  // two loops (upload, pull), each at most ~1 try per 50–400 ms over 1.5 s
  assert.ok(after >= 2 && after <= 40, `requests while offline: ${after}`);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(calls, after, "nothing is sent after stop()");
  assert.equal(client.status.online, false);
});
