/**
 * The SDK against the real stack (gunicorn + Celery + RabbitMQ + Redis + MongoDB-compatible
 * server): round trip, lost replies, gaps, conflicts, tokens, resync. Faults are injected in the
 * network (a request that never leaves, a reply lost after the server acted), never in the
 * server.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  createClient,
  isOffgridError,
  memoryStorage,
  type RejectionEvent,
  type WireBatchStatus,
} from "../../src/index.js";
import { addMember, clientFor, eventually, faultyFetch, mintToken, newUser, removeMember, serverState, stack } from "../support/env.js";

interface Todo {
  title: string;
  done?: boolean;
}

function batchStatuses(log: { path: string; body: string; status: number }[]): WireBatchStatus[] {
  return log
    .filter((e) => e.status === 200 && (e.path === "/v1/sync/push" || e.path.startsWith("/v1/sync/batches/")))
    .map((e) => JSON.parse(e.body) as WireBatchStatus)
    .filter((s) => s.status === "applied" || s.status === "failed");
}

test("round trip: writes on one install reach another install of the same user, and the outbox empties", async () => {
  const user = newUser();
  const phone = clientFor(user);
  const laptop = clientFor(user);
  const todos = phone.collection<Todo>("todos");
  await todos.put("t1", { title: "milk" });
  await todos.put("t2", { title: "eggs" });
  await todos.patch("t1", { done: true });
  await phone.awaitSynced();
  assert.equal(phone.status.pending, 0);
  assert.ok(phone.status.lastSyncedAt !== null);
  assert.equal(phone.status.online, true);

  await laptop.sync();
  const onLaptop = laptop.collection<Todo>("todos");
  assert.deepEqual(onLaptop.all().map((r) => [r.key, r.value, r.pending]), [
    ["t1", { title: "milk", done: true }, false],
    ["t2", { title: "eggs" }, false],
  ]);
  await onLaptop.delete("t2");
  await laptop.awaitSynced();
  await phone.sync();
  assert.equal(todos.get("t2"), undefined);
  assert.deepEqual(todos.all().map((r) => r.key), ["t1"]);
  assert.deepEqual(await serverState(user, [`user:${user}`]), new Map([[`user:${user}/todos/t1`, { title: "milk", done: true }]]));
  await Promise.all([phone.close(), laptop.close()]);
});

test("lost reply: the push reached the server but the reply was lost; the resend comes back duplicate and counts once", async () => {
  const user = newUser();
  let lose = true;
  const { fetch, faults } = faultyFetch({
    loseReply: (url, method) => {
      if (method === "POST" && url.endsWith("/v1/sync/push") && lose) {
        lose = false;
        return true;
      }
      return false;
    },
  });
  const client = clientFor(user, { fetch });
  const counters = client.collection("counters");
  await counters.put("visits", { delta: 5 });
  await counters.put("visits", { delta: 2 });
  await assert.rejects(client.sync(), (e: unknown) => isOffgridError(e, "network"));
  assert.equal(client.status.pending, 2, "the outbox keeps what it cannot confirm");
  await client.awaitSynced();

  assert.equal(faults.lostReplies, 1);
  const statuses = batchStatuses(faults.log);
  const resent = statuses.find((s) => s.results.some((r) => r.status === "duplicate"));
  assert.ok(resent, `a resent batch reports duplicates: ${JSON.stringify(statuses)}`);
  assert.deepEqual(resent.results.map((r) => r.status), ["duplicate", "duplicate"]);
  // Applied once: the custom resolver adds deltas, so a second application would show 14.
  assert.deepEqual(client.collection("counters").get("visits"), { total: 7 });
  assert.deepEqual((await serverState(user, [`user:${user}`])).get(`user:${user}/counters/visits`), { total: 7 });
  await client.close();
});

test("gap: a batch that starts past the server's ledger fails with gap, and the client resends from the first unacknowledged id", async () => {
  const user = newUser();
  const storage = memoryStorage();
  const first = clientFor(user, { storage, fetch: faultyFetch({ offline: true }).fetch });
  const notes = first.collection("notes");
  for (const key of ["a", "b", "c"]) await notes.put(key, { text: key });
  await first.close();
  // The install believes id 1 was processed (say it came back from an old backup): it will
  // send 2..3 first, which the server holds for the missing id, then fails with `gap`.
  const { meta } = await storage.load();
  await storage.write({ meta: { ...meta!, ackedThrough: 1 } });

  const { fetch, faults } = faultyFetch();
  const client = clientFor(user, { storage, fetch, pushWaitSeconds: 2 });
  await client.awaitSynced();
  const statuses = batchStatuses(faults.log);
  assert.ok(statuses.some((s) => s.status === "failed" && s.reason === "gap") || faults.log.some((e) => e.body.includes('"gap"')), "the server reported a gap");
  const pushes = faults.log.filter((e) => e.path === "/v1/sync/push").map((e) => e.status);
  assert.ok(pushes.length >= 2, `resent after the gap: ${pushes}`);
  const state = await serverState(user, [`user:${user}`]);
  assert.deepEqual([...state.keys()].sort(), ["a", "b", "c"].map((k) => `user:${user}/notes/${k}`));
  assert.equal(client.status.pending, 0);
  await client.close();
});

test("server_wins conflict: onRejection gets the server's record and the local record is corrected to it", async () => {
  const user = newUser();
  const a = clientFor(user);
  const b = clientFor(user);
  await a.collection("accounts").put("acc", { name: "Main", balance_cents: 100 });
  await a.awaitSynced();
  await b.sync();
  assert.deepEqual(b.collection("accounts").get("acc"), { name: "Main", balance_cents: 100 });

  await a.collection("accounts").patch("acc", { balance_cents: 200 });
  await a.awaitSynced();

  const rejections: RejectionEvent[] = [];
  b.onRejection((r) => rejections.push(r));
  const accounts = b.collection("accounts");
  await accounts.patch("acc", { balance_cents: 50 }); // made on version 1, the server is at 2
  assert.deepEqual(accounts.get("acc"), { name: "Main", balance_cents: 50 }, "optimistic until the server answers");
  await b.sync();
  assert.equal(rejections.length, 1);
  assert.equal(rejections[0]?.reason, "conflict");
  assert.equal(rejections[0]?.key, "acc");
  assert.equal(rejections[0]?.collection, "accounts");
  assert.deepEqual(rejections[0]?.current, { name: "Main", balance_cents: 200 });
  assert.deepEqual(accounts.get("acc"), { name: "Main", balance_cents: 200 });
  assert.equal(b.status.pending, 0, "a rejected mutation leaves the outbox");
  // Writing again on the corrected version succeeds.
  await accounts.patch("acc", { balance_cents: 250 });
  await b.awaitSynced();
  assert.deepEqual((await serverState(user, [`user:${user}`])).get(`user:${user}/accounts/acc`), { name: "Main", balance_cents: 250 });
  await Promise.all([a.close(), b.close()]);
});

test("tokens: a 401 calls getToken() once and carries on; a second 401 sets needsAuth and keeps the outbox", async () => {
  const { url, jwtSecret } = stack();
  const user = newUser();
  const tokens = [mintToken(jwtSecret, user, -60), mintToken(jwtSecret, user, 600)];
  let calls = 0;
  const renewing = createClient({
    url,
    getToken: () => tokens[Math.min(calls++, tokens.length - 1)]!,
    backoff: { baseMs: 50, maxMs: 500 },
  });
  await renewing.collection("notes").put("n1", { text: "hello" });
  await renewing.sync();
  assert.equal(calls, 2, "the expired token, then one fresh token");
  assert.equal(renewing.status.needsAuth, false);
  assert.equal(renewing.status.pending, 0);
  await renewing.close();

  let expiredCalls = 0;
  const storage = memoryStorage();
  const stale = createClient({
    url,
    storage,
    getToken: () => {
      expiredCalls += 1;
      return mintToken(jwtSecret, user, -60);
    },
  });
  const statuses: boolean[] = [];
  stale.onStatus((s) => statuses.push(s.needsAuth));
  await stale.collection("notes").put("n2", { text: "kept" });
  await assert.rejects(stale.sync(), (e: unknown) => isOffgridError(e, "needs_auth"));
  assert.equal(expiredCalls, 2, "getToken() once after the first 401, then no more");
  assert.equal(stale.status.needsAuth, true);
  assert.ok(statuses.includes(true));
  assert.equal(stale.status.pending, 1);
  assert.deepEqual((await storage.load()).outbox.map((m) => m.key), ["n2"]);
  assert.deepEqual(stale.collection("notes").get("n2"), { text: "kept" });
  await stale.close();
});

test("410 resync: pending writes are uploaded first, then the scope is dropped and pulled again from null", async () => {
  const { shortHorizonUrl, jwtSecret } = stack();
  const user = newUser();
  const scope = `user:${user}`;
  const { fetch, faults } = faultyFetch();
  const client = createClient({ url: shortHorizonUrl, getToken: () => mintToken(jwtSecret, user), fetch });
  const other = clientFor(user);
  const notes = client.collection("notes");
  await notes.put("keep", { v: 1 });
  await notes.put("gone", { v: 1 });
  await client.awaitSynced();

  await other.sync();
  await other.collection("notes").delete("gone");
  await other.collection("notes").put("new", { v: 2 });
  await other.awaitSynced();
  await new Promise((r) => setTimeout(r, 2_500)); // the checkpoint is now past the 2 s horizon
  await notes.put("mine", { v: 3 }); // pending when the 410 comes

  // A tickle pulls without uploading first, so the pull meets the 410 with "mine" pending.
  await client.handleTickle({ scope });
  const resync = faults.log.find((e) => e.status === 410);
  assert.ok(resync, "the server answered 410");
  assert.match(resync.body, /resync_required/);
  const after410 = faults.log.slice(faults.log.indexOf(resync) + 1);
  const firstPush = after410.findIndex((e) => e.path === "/v1/sync/push");
  const firstPull = after410.findIndex((e) => e.path === "/v1/sync/pull");
  assert.ok(firstPush >= 0 && firstPush < firstPull, "uploaded before pulling again");
  assert.deepEqual(notes.all().map((r) => [r.key, r.value]), [
    ["keep", { v: 1 }],
    ["mine", { v: 3 }],
    ["new", { v: 2 }],
  ]);
  assert.equal(client.status.pending, 0);
  assert.deepEqual(await serverState(user, [scope]), new Map(notes.all().map((r) => [`${scope}/notes/${r.key}`, r.value])));
  await Promise.all([client.close(), other.close()]);
});

test("reused client_id on fresh storage (say kept in the keychain across a reinstall): new writes move past the server's ledger instead of being dropped as duplicates", async () => {
  const user = newUser();
  const clientId = `reused${newUser("id").replace(/-/g, "")}`;
  const before = clientFor(user, { clientId });
  for (const key of ["a", "b", "c"]) await before.collection("notes").put(key, { v: key });
  await before.awaitSynced();
  await before.close();

  const reinstalled = clientFor(user, { clientId, storage: memoryStorage() });
  await reinstalled.collection("notes").put("d", { v: "d" });
  await reinstalled.collection("notes").put("e", { v: "e" });
  await reinstalled.awaitSynced();
  const state = await serverState(user, [`user:${user}`]);
  assert.deepEqual([...state.keys()].sort(), ["a", "b", "c", "d", "e"].map((k) => `user:${user}/notes/${k}`));
  await reinstalled.collection("notes").put("f", { v: "f" });
  await reinstalled.awaitSynced();
  assert.equal((await serverState(user, [`user:${user}`])).size, 6);
  await reinstalled.close();
});

test("losing membership of a shared scope: its local data goes and the other scopes keep syncing", async () => {
  const team = `team:${newUser("t")}`;
  const [alice, bob] = [newUser("alice"), newUser("bob")];
  await addMember(team, alice);
  await addMember(team, bob);
  const a = clientFor(alice);
  const phone = clientFor(alice);
  const b = clientFor(bob);
  await b.collection("notes", { scope: team }).put("shared", { v: 1 });
  await b.awaitSynced();
  const teamNotes = a.collection("notes", { scope: team });
  await a.sync();
  assert.deepEqual(teamNotes.get("shared"), { v: 1 });

  await removeMember(team, alice);
  await phone.collection("notes").put("mine", { v: 2 });
  await phone.awaitSynced();
  await a.sync();
  assert.deepEqual(teamNotes.all(), [], "the team's data is gone");
  assert.deepEqual(a.collection("notes").get("mine"), { v: 2 }, "the personal scope still syncs");
  await Promise.all([a.close(), phone.close(), b.close()]);
});

test("live pull: a started client sees another install's write at once, though its polling interval is a minute", async () => {
  const user = newUser();
  const watcher = clientFor(user, { pollIntervalMs: { min: 60_000, max: 60_000 }, longPollSeconds: 20 });
  const writer = clientFor(user);
  const notes = watcher.collection("notes");
  await watcher.sync();
  watcher.start();
  await new Promise((r) => setTimeout(r, 300)); // its first live pull is now held
  for (let i = 0; i < 3; i++) {
    await writer.collection("notes").put(`n${i}`, { i });
    await writer.awaitSynced();
    await eventually(() => notes.get(`n${i}`) !== undefined, 5_000, `n${i} through the live pull`);
  }
  // Its own writes are confirmed and leave the outbox without waiting out a held pull.
  await notes.put("mine", { v: 1 });
  await eventually(() => watcher.status.pending === 0, 5_000, "own write confirmed");
  watcher.stop();
  await Promise.all([watcher.close(), writer.close()]);
});
