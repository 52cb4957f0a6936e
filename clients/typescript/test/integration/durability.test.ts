/**
 * Durability and visibility: a process killed mid-upload resumes from its SQLite file with
 * every mutation applied once; a client's own pending writes never vanish from its view while
 * others write and pulls come in pages of two.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { isDeepStrictEqual } from "node:util";
import { join } from "node:path";
import { test } from "node:test";
import { sqliteStorage, type JsonObject, type OffgridClient, type Row } from "../../src/index.js";
import { betterSqliteExecutor, openDatabase } from "../support/better-sqlite.js";
import { PACKAGE_ROOT } from "../support/stack.js";
import { addMember, clientFor, localState, newUser, serverState, stack } from "../support/env.js";

const CHILD = join(PACKAGE_ROOT, "build", "test", "support", "upload-child.js");

function runChild(args: object, killOnLine?: string): Promise<{ lines: string[]; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ["ignore", "pipe", "inherit"] });
    const lines: string[] = [];
    let killed = false;
    let buffer = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      let at: number;
      while ((at = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        lines.push(line);
        if (killOnLine !== undefined && line === killOnLine && !killed) {
          killed = child.kill("SIGKILL");
        }
      }
    });
    child.on("error", reject);
    child.on("exit", () => resolve({ lines, killed }));
  });
}

test("killed mid-upload: the app restarts from its SQLite file and finishes, every mutation applied once", async () => {
  const { url, jwtSecret } = stack();
  const user = newUser();
  const file = join(mkdtempSync(join(tmpdir(), "offgrid-kill-")), "app.db");
  const write = 2_500; // three batches of ≤ 1000
  const keys = 10;
  const first = await runChild({ file, url, secret: jwtSecret, user, write, keys }, "push 2");
  assert.ok(first.killed, `the first process was killed mid-upload: ${first.lines.join(" | ")}`);
  assert.ok(first.lines.includes(`written ${write}`));
  assert.ok(!first.lines.some((l) => l.startsWith("synced")));

  const db = openDatabase(file);
  const before = await sqliteStorage(betterSqliteExecutor(db)).load();
  db.close();
  assert.equal(before.meta?.lastMutationId, write, "every write was stored before the kill");
  assert.ok(before.outbox.length > 0, "some were still unconfirmed");

  const second = await runChild({ file, url, secret: jwtSecret, user, write: 0, keys });
  assert.ok(second.lines.includes("synced pending=0"), second.lines.join(" | "));

  const state = await serverState(user, [`user:${user}`]);
  for (let k = 0; k < keys; k++) {
    assert.deepEqual(state.get(`user:${user}/counters/c${k}`), { total: write / keys }, `counter c${k}`);
  }
  const dbAfter = openDatabase(file);
  const after = await sqliteStorage(betterSqliteExecutor(dbAfter)).load();
  dbAfter.close();
  assert.deepEqual(after.outbox, []);
});

test("own writes never vanish: with pages of 2 while others write, the view always holds this client's latest writes", async () => {
  const team = `team:${newUser("t")}`;
  const [alice, bob, carol] = [newUser("alice"), newUser("bob"), newUser("carol")];
  for (const u of [alice, bob, carol]) await addMember(team, u, "writer");
  const a = clientFor(alice, { pullLimit: 2, pollIntervalMs: { min: 20, max: 100 } });
  const others = [clientFor(bob, { pullLimit: 2 }), clientFor(carol, { pullLimit: 2 })];
  const aNotes = a.collection("notes", { scope: team });

  const expected = new Map<string, JsonObject>(); // what alice wrote last, per key
  const writingNow = new Map<string, JsonObject>();
  const violations: string[] = [];
  let checks = 0;
  const check = (rows: Row<JsonObject>[]) => {
    checks += 1;
    const byKey = new Map(rows.map((r) => [r.key, r.value]));
    for (const [key, value] of expected) {
      const seen = byKey.get(key);
      const ok = [value, writingNow.get(key)].some((v) => v !== undefined && isDeepStrictEqual(seen, v));
      if (!ok) {
        violations.push(`${key}: expected ${JSON.stringify(value)}, view had ${JSON.stringify(seen)}`);
      }
    }
  };
  aNotes.subscribe(check);

  // First, deterministically: alice is 20 changes behind when her write is applied, so the
  // first pages of her pull (2 records each) come from before it while the server has already
  // processed it. Her write must stay visible through every page.
  await a.sync();
  for (const [i, other] of others.entries()) {
    for (let k = 0; k < 10; k++) await other.collection("notes", { scope: team }).put(`early-${i}-${k}`, { k });
    await other.awaitSynced();
  }
  await aNotes.put("a-behind", { by: "alice", behind: true });
  expected.set("a-behind", { by: "alice", behind: true });
  await a.sync();
  assert.deepEqual(violations, [], "a write applied behind 20 unpulled changes stayed visible");

  a.start();

  let writing = true;
  const writer = async (client: OffgridClient, name: string) => {
    const notes = client.collection("notes", { scope: team });
    for (let i = 0; writing; i++) {
      await notes.put(`${name}-${i % 15}`, { by: name, i });
      if (i % 3 === 2) await client.sync();
    }
    await client.awaitSynced();
  };
  const background = others.map((c, i) => writer(c, `o${i}`));

  for (let i = 0; i < 60; i++) {
    const key = `a-${i % 12}`;
    // A write is visible once its promise resolves (stored locally); from then on, always.
    const next: JsonObject = i % 4 === 3 ? { ...(expected.get(key) ?? {}), i, patched: true } : { by: "alice", i };
    writingNow.set(key, next); // while the write is being stored the view may show either
    if (i % 4 === 3) await aNotes.patch(key, { i, patched: true });
    else await aNotes.put(key, next);
    expected.set(key, next);
    writingNow.delete(key);
    check(aNotes.all());
    if (i % 10 === 9) await a.sync();
    await new Promise((r) => setTimeout(r, 40));
  }
  writing = false;
  await Promise.all(background);
  await a.awaitSynced();
  a.stop();
  await a.sync();
  check(aNotes.all());

  assert.deepEqual(violations.slice(0, 5), [], `${violations.length} times a pending write had vanished`);
  assert.ok(checks > 60, `the view was checked at every change (${checks})`);
  assert.deepEqual(localState(a, [team]), await serverState(alice, [team]), "and it converges to the server");
  await Promise.all([a.close(), ...others.map((c) => c.close())]);
});
