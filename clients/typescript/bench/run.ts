/**
 * SDK benchmarks against the real stack (the test stack of test/support/stack.ts: its own
 * gunicorn ×2 and Celery worker on the `offgrid_sdk` namespace). Not tests: each prints a table.
 *
 *   npm run bench                       10k records / 10k mutations
 *   BENCH_RECORDS=100000 npm run bench  the large initial sync too
 *
 * S1 initial sync: `client.sync()` into sqliteStorage (better-sqlite3, WAL) of a scope holding
 *    N records, against a raw loop of pull requests (limit 1000) writing the same rows into the
 *    same kind of SQLite table with one prepared statement per page transaction. Target ≥ 0.8.
 * S2 upload: N offline writes into sqliteStorage, then `awaitSynced()`, against raw pushes of
 *    the same mutations (batches of 1000, `Prefer: wait=30`, then polling) from a fresh client.
 */

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, sqliteStorage, type JsonObject, type WireBatchStatus, type WirePullReply } from "../src/index.js";
import { betterSqliteExecutor, openDatabase } from "../test/support/better-sqlite.js";
import { mintToken, newUser } from "../test/support/env.js";
import { startStack, type StackInfo } from "../test/support/stack.js";

const RECORDS = (process.env["BENCH_RECORDS"] ?? "10000").split(",").map(Number);
const MUTATIONS = Number(process.env["BENCH_MUTATIONS"] ?? "10000");

function note(i: number): JsonObject {
  return { title: `note ${i}`, body: "x".repeat(80), n: i, tags: ["a", "b"] };
}

async function rawPush(info: StackInfo, token: string, clientId: string, mutations: unknown[]): Promise<void> {
  const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Prefer: "wait=30" };
  const reply = await fetch(`${info.url}/v1/sync/push`, { method: "POST", headers, body: JSON.stringify({ client_id: clientId, mutations }) });
  let status = (await reply.json()) as WireBatchStatus;
  while (status.status !== "applied") {
    if (status.status === "failed") throw new Error(`batch failed: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 100));
    const next = await fetch(`${info.url}/v1/sync/batches/${status.batch_id}`, { headers: { Authorization: `Bearer ${token}` } });
    status = (await next.json()) as WireBatchStatus;
  }
}

function mutationsFor(scope: string, clientId: string, count: number, prefix: string): unknown[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    scope,
    collection: "notes",
    key: `${prefix}${i}`,
    op: "put",
    value: note(i),
    hlc: `${now}-${(i % 65536).toString(16).padStart(4, "0")}-${clientId}`,
    base_version: 0,
  }));
}

async function seed(info: StackInfo, user: string, count: number): Promise<void> {
  const token = mintToken(info.jwtSecret, user, 3600);
  const clientId = `seed${newUser("c").replace(/-/g, "")}`;
  const all = mutationsFor(`user:${user}`, clientId, count, "n");
  for (let i = 0; i < all.length; i += 1000) await rawPush(info, token, clientId, all.slice(i, i + 1000));
}

async function initialSync(info: StackInfo, count: number): Promise<{ sdk: number; raw: number }> {
  const user = newUser("bench");
  const t0 = Date.now();
  await seed(info, user, count);
  console.error(`  seeded ${count} records in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const dir = mkdtempSync(join(tmpdir(), "offgrid-bench-"));

  // Raw: pull pages of 1000 and write each page's rows in one transaction.
  const rawDb = openDatabase(join(dir, "raw.db"));
  rawDb.exec("CREATE TABLE records (scope TEXT, collection TEXT, key TEXT, value TEXT, deleted INTEGER, version INTEGER, PRIMARY KEY (scope, collection, key))");
  const insert = rawDb.prepare("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)");
  const writePage = rawDb.transaction((scope: string, page: WirePullReply["scopes"][string]) => {
    for (const c of page.changes) insert.run(scope, c.collection, c.key, c.value == null ? null : JSON.stringify(c.value), c.deleted ? 1 : 0, c.version);
  });
  const token = mintToken(info.jwtSecret, user, 3600);
  const scope = `user:${user}`;
  let checkpoint: string | null = null;
  let rawRows = 0;
  const rawStart = performance.now();
  for (;;) {
    const reply = await fetch(`${info.url}/v1/sync/pull`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: "benchrawpuller", scopes: { [scope]: checkpoint }, limit: 1000 }),
    });
    const body = (await reply.json()) as WirePullReply;
    const page = body.scopes[scope]!;
    writePage(scope, page);
    rawRows += page.changes.length;
    checkpoint = page.checkpoint;
    if (!page.has_more) break;
  }
  const rawSeconds = (performance.now() - rawStart) / 1000;
  rawDb.close();

  // SDK: sync() into sqliteStorage.
  const db = openDatabase(join(dir, "sdk.db"));
  const client = createClient({ url: info.url, getToken: () => token, storage: sqliteStorage(betterSqliteExecutor(db)), pullLimit: 1000 });
  await client.ready();
  const sdkStart = performance.now();
  await client.sync();
  const sdkSeconds = (performance.now() - sdkStart) / 1000;
  const rows = client.collection("notes").all().length;
  await client.close();
  db.close();
  if (rows !== count || rawRows < count) throw new Error(`expected ${count} rows, SDK ${rows}, raw ${rawRows}`);
  return { sdk: count / sdkSeconds, raw: rawRows / rawSeconds };
}

async function upload(info: StackInfo, count: number): Promise<{ sdk: number; raw: number; rawWithPull: number; localWrites: number }> {
  const dir = mkdtempSync(join(tmpdir(), "offgrid-bench-"));
  const user = newUser("up");
  const token = mintToken(info.jwtSecret, user, 3600);
  const db = openDatabase(join(dir, "sdk.db"));
  const client = createClient({ url: info.url, getToken: () => token, storage: sqliteStorage(betterSqliteExecutor(db)), pushWaitSeconds: 30 });
  const notes = client.collection("notes");
  await client.ready();
  const writeStart = performance.now();
  for (let i = 0; i < count; i++) await notes.put(`u${i}`, note(i));
  const localWrites = count / ((performance.now() - writeStart) / 1000);
  const sdkStart = performance.now();
  await client.awaitSynced();
  const sdk = count / ((performance.now() - sdkStart) / 1000);
  await client.close();
  db.close();

  const rawUser = newUser("upraw");
  const rawToken = mintToken(info.jwtSecret, rawUser, 3600);
  const clientId = `raw${newUser("c").replace(/-/g, "")}`;
  const all = mutationsFor(`user:${rawUser}`, clientId, count, "u");
  const rawStart = performance.now();
  for (let i = 0; i < all.length; i += 1000) await rawPush(info, rawToken, clientId, all.slice(i, i + 1000));
  const raw = count / ((performance.now() - rawStart) / 1000);
  // What awaitSynced() also does: pull the scope to has_more: false (pages of 500), which is
  // how a client learns its writes are visible (G4b) and gets their server versions.
  let checkpoint: string | null = null;
  const scope = `user:${rawUser}`;
  for (;;) {
    const reply: Response = await fetch(`${info.url}/v1/sync/pull`, {
      method: "POST",
      headers: { Authorization: `Bearer ${rawToken}`, "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: clientId, scopes: { [scope]: checkpoint }, limit: 500 }),
    });
    const page: WirePullReply["scopes"][string] = ((await reply.json()) as WirePullReply).scopes[scope]!;
    checkpoint = page.checkpoint;
    if (!page.has_more) break;
  }
  const rawWithPull = count / ((performance.now() - rawStart) / 1000);
  return { sdk, raw, rawWithPull, localWrites };
}

const stack = await startStack();
try {
  const date = new Date().toISOString().slice(0, 10);
  console.log(`\n${date}, stack: gunicorn ×2 (4 threads), 1 Celery worker (-c 2), services of ./dev\n`);
  console.log("| bench | N | SDK /s | raw /s | ratio |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const n of RECORDS) {
    const r = await initialSync(stack.info, n);
    console.log(`| S1 initial sync into sqliteStorage (records/s) | ${n} | ${r.sdk.toFixed(0)} | ${r.raw.toFixed(0)} | ${(r.sdk / r.raw).toFixed(2)} |`);
  }
  const u = await upload(stack.info, MUTATIONS);
  console.log(`| S2 upload until awaitSynced (mutations/s) vs raw pushes | ${MUTATIONS} | ${u.sdk.toFixed(0)} | ${u.raw.toFixed(0)} | ${(u.sdk / u.raw).toFixed(2)} |`);
  console.log(`| S2 upload until awaitSynced (mutations/s) vs raw pushes + pull back | ${MUTATIONS} | ${u.sdk.toFixed(0)} | ${u.rawWithPull.toFixed(0)} | ${(u.sdk / u.rawWithPull).toFixed(2)} |`);
  console.log(`\nlocal writes into sqliteStorage before the upload: ${u.localWrites.toFixed(0)}/s (each its own transaction)`);
} finally {
  await stack.stop();
}
