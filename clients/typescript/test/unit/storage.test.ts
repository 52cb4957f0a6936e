import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { memoryStorage, sqliteStorage, type Storage, type SqliteExecutor } from "../../src/index.js";
import { betterSqliteExecutor, openDatabase } from "../support/better-sqlite.js";

const meta = { clientId: "client-abcdef12", lastMutationId: 2, hlc: { ms: 5, counter: 1 }, ackedThrough: 1, user: "alice" };
const m = (id: number) => ({ id, scope: "user:alice", collection: "todos", key: `t${id}`, op: "put" as const, value: { title: `t${id}` }, hlc: "x", base_version: 0 });

async function contract(storage: Storage): Promise<void> {
  assert.deepEqual(await storage.load(), { meta: null, records: [], outbox: [], checkpoints: {} });
  await storage.write({ append: [m(2), m(1)], meta });
  await storage.write({
    upsert: [
      { scope: "user:alice", collection: "todos", key: "a", value: { title: "A" }, deleted: false, version: 3 },
      { scope: "team:1", collection: "notes", key: "b", value: null, deleted: true, version: 4 },
    ],
    checkpoints: { "user:alice": "cp-a", "team:1": "cp-t" },
    remove: [1],
  });
  let loaded = await storage.load();
  assert.deepEqual(loaded.meta, meta);
  assert.deepEqual(loaded.outbox.map((x) => x.id), [2]);
  assert.equal(loaded.records.length, 2);
  assert.deepEqual(loaded.checkpoints, { "user:alice": "cp-a", "team:1": "cp-t" });
  // Renumbering (removals before appends): ids 2 → 3 and a new 2 in one transaction.
  await storage.write({ remove: [2], append: [m(3), { ...m(2), key: "moved" }] });
  assert.deepEqual((await storage.load()).outbox.map((x) => [x.id, x.key]), [[2, "moved"], [3, "t3"]]);
  await storage.write({ remove: [2, 3], append: [m(2)] });
  await storage.write({ dropScopes: ["team:1"] });
  loaded = await storage.load();
  assert.deepEqual(loaded.records.map((r) => r.key), ["a"]);
  assert.deepEqual(loaded.checkpoints, { "user:alice": "cp-a" });
}

test("storage: memoryStorage keeps records, outbox, checkpoints and meta", async () => {
  await contract(memoryStorage());
});

test("storage: sqliteStorage on better-sqlite3 keeps them across reopening the file", async () => {
  const file = join(mkdtempSync(join(tmpdir(), "offgrid-sqlite-")), "app.db");
  const db = openDatabase(file);
  await contract(sqliteStorage(betterSqliteExecutor(db)));
  db.close();
  const again = openDatabase(file);
  const loaded = await sqliteStorage(betterSqliteExecutor(again)).load();
  assert.deepEqual(loaded.outbox.map((x) => x.id), [2]);
  assert.equal(loaded.meta?.lastMutationId, 2);
  again.close();
});

test("storage: a failed SQLite write leaves nothing behind (outbox entry and counter together or not at all)", async () => {
  const db = openDatabase(":memory:");
  const inner = betterSqliteExecutor(db);
  let failMeta = false;
  const executor: SqliteExecutor = {
    execute(sql, params) {
      if (failMeta && sql.includes("_meta")) throw new Error("disk full");
      return inner.execute(sql, params);
    },
  };
  const storage = sqliteStorage(executor);
  await storage.load();
  failMeta = true;
  await assert.rejects(storage.write({ append: [m(1)], meta }), /disk full/);
  failMeta = false;
  const loaded = await storage.load();
  assert.deepEqual(loaded.outbox, []);
  assert.equal(loaded.meta, null);
  db.close();
});
