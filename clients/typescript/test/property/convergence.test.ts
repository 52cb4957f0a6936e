/**
 * Convergence, property-based (fast-check) against the real stack: 3–5 installs (two users,
 * some with two installs), each with its own storage, do random put/patch/delete on a shared
 * scope and their personal scopes across all four example collections (lww with a schema,
 * schemaless lww, server_wins, custom counters), while randomly offline and with replies
 * randomly lost after the server acted, some of them syncing in the background (`start()`)
 * meanwhile. At the end every install `awaitSynced()`s and holds
 * exactly the server's state of its scopes, as a fresh install pulls it.
 *
 * Runs: OFFGRID_PROPERTY_RUNS, else 100 when CI=true, else 15. A failure prints its seed and
 * path; OFFGRID_PROPERTY_SEED and OFFGRID_PROPERTY_PATH replay it.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { JsonObject, OffgridClient } from "../../src/index.js";
import { addMember, clientFor, faultyFetch, localState, newUser, serverState, type Faults } from "../support/env.js";

const RUNS = Number(process.env["OFFGRID_PROPERTY_RUNS"] ?? (process.env["CI"] === "true" ? 100 : 15));

type Collection = "todos" | "notes" | "accounts" | "counters";
type Command =
  | { kind: "write"; client: number; shared: boolean; collection: Collection; key: string; op: "put" | "patch" | "delete"; value: JsonObject }
  | { kind: "sync"; client: number }
  | { kind: "offline"; client: number }
  | { kind: "loseReply"; client: number }
  | { kind: "background"; client: number };

const key = fc.constantFrom("k1", "k2", "k3");
const word = fc.string({ minLength: 1, maxLength: 6 }).filter((s) => !s.includes("\u0000"));

function valueFor(collection: Collection, op: "put" | "patch" | "delete"): fc.Arbitrary<JsonObject> {
  switch (collection) {
    case "todos":
      return op === "put"
        ? fc.record({ title: word, done: fc.boolean() })
        : fc.oneof(fc.record({ done: fc.boolean() }), fc.record({ title: word }), fc.constant({ done: null } as JsonObject));
    case "notes":
      return fc.dictionary(fc.constantFrom("a", "b", "c"), fc.option(fc.oneof(fc.integer({ min: -9, max: 9 }), word), { nil: null }), { minKeys: 1, maxKeys: 3 }) as fc.Arbitrary<JsonObject>;
    case "accounts":
      return op === "put"
        ? fc.record({ name: word, balance_cents: fc.integer({ min: 0, max: 1000 }) })
        : fc.record({ balance_cents: fc.integer({ min: 0, max: 1000 }) });
    case "counters":
      return fc.record({ delta: fc.integer({ min: 0, max: 5 }) });
  }
}

function commandFor(clients: number): fc.Arbitrary<Command> {
  const client = fc.nat(clients - 1);
  const write = fc
    .record({
      client,
      shared: fc.boolean(),
      collection: fc.constantFrom<Collection>("todos", "notes", "accounts", "counters"),
      key,
      op: fc.constantFrom<"put" | "patch" | "delete">("put", "put", "patch", "delete"),
    })
    .chain((w) => {
      const op = w.collection === "counters" && w.op === "patch" ? "put" : w.op; // counters take puts of deltas
      return valueFor(w.collection, op).map((value): Command => ({ kind: "write", ...w, op, value }));
    });
  return fc.oneof(
    { weight: 6, arbitrary: write },
    { weight: 2, arbitrary: client.map((c): Command => ({ kind: "sync", client: c })) },
    { weight: 1, arbitrary: client.map((c): Command => ({ kind: "offline", client: c })) },
    { weight: 1, arbitrary: client.map((c): Command => ({ kind: "loseReply", client: c })) },
    { weight: 1, arbitrary: client.map((c): Command => ({ kind: "background", client: c })) },
  );
}

const scenario = fc
  .integer({ min: 3, max: 5 })
  .chain((clients) => fc.record({ clients: fc.constant(clients), commands: fc.array(commandFor(clients), { minLength: 4, maxLength: 24 }) }));

test(`convergence: ${RUNS} random runs of offline installs with lost replies all end on the server's state`, async () => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(scenario, async ({ clients: count, commands }) => {
      runs += 1;
      const users = [newUser("p0"), newUser("p1")];
      const team = `team:${newUser("conv")}`;
      for (const user of users) await addMember(team, user, "writer");
      const installs: { client: OffgridClient; faults: Faults; user: string; loseNext: boolean; started: boolean }[] = [];
      for (let i = 0; i < count; i++) {
        const user = users[i % 2]!;
        const entry = { client: undefined as unknown as OffgridClient, faults: undefined as unknown as Faults, user, loseNext: false, started: false };
        const { fetch, faults } = faultyFetch({
          loseReply: () => {
            if (!entry.loseNext) return false;
            entry.loseNext = false;
            return true;
          },
        });
        entry.faults = faults;
        entry.client = clientFor(user, { fetch, pushWaitSeconds: 5, pollIntervalMs: { min: 50, max: 400 } });
        entry.client.collection("notes", { scope: team });
        installs.push(entry);
      }
      try {
        for (const command of commands) {
          const install = installs[command.client]!;
          switch (command.kind) {
            case "write": {
              const scope = command.shared ? team : `user:${install.user}`;
              const collection = install.client.collection(command.collection, { scope });
              if (command.op === "put") await collection.put(command.key, command.value);
              else if (command.op === "patch") await collection.patch(command.key, command.value);
              else await collection.delete(command.key);
              break;
            }
            case "sync":
              await install.client.sync().catch(() => undefined); // offline or a lost reply: fine
              break;
            case "offline":
              install.faults.offline = !install.faults.offline;
              break;
            case "loseReply":
              install.loseNext = true;
              break;
            case "background": // start()/stop(): background uploads and pulls race the commands
              install.started = !install.started;
              if (install.started) install.client.start();
              else install.client.stop();
              break;
          }
        }
        for (const install of installs) install.client.stop();
        for (const install of installs) {
          install.faults.offline = false;
          install.loseNext = false;
        }
        for (const install of installs) await install.client.awaitSynced({ signal: AbortSignal.timeout(60_000) });
        for (const install of installs) await install.client.sync();
        const truth = new Map<string, Map<string, JsonObject>>();
        for (const user of users) truth.set(user, await serverState(user, [team, `user:${user}`]));
        for (const [i, install] of installs.entries()) {
          assert.equal(install.client.status.pending, 0, `install ${i} has an empty outbox`);
          assert.deepEqual(localState(install.client, [team, `user:${install.user}`]), truth.get(install.user), `install ${i} (${install.user})`);
        }
      } finally {
        await Promise.all(installs.map((i) => i.client.close()));
      }
    }),
    {
      numRuns: RUNS,
      endOnFailure: true,
      // Replay a failure: OFFGRID_PROPERTY_SEED=<seed> OFFGRID_PROPERTY_PATH=<path> (from its report).
      ...(process.env["OFFGRID_PROPERTY_SEED"] ? { seed: Number(process.env["OFFGRID_PROPERTY_SEED"]) } : {}),
      ...(process.env["OFFGRID_PROPERTY_PATH"] ? { path: process.env["OFFGRID_PROPERTY_PATH"] } : {}),
    },
  );
  assert.equal(runs >= RUNS, true);
});
