import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { applyMutation, rebaseCollection, rebaseRecord } from "../../src/rebase.js";
import { pruneOutbox } from "../../src/outbox.js";
import type { JsonObject, Mutation, ServerRecord } from "../../src/types.js";

const SCOPE = "user:alice";
const field = fc.constantFrom("title", "done", "due", "n");
const fieldValue = fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.boolean());
const object = fc.dictionary(field, fieldValue, { maxKeys: 4 }) as fc.Arbitrary<JsonObject>;
const patch = fc.dictionary(field, fc.option(fieldValue, { nil: null }), { minKeys: 1, maxKeys: 3 }) as fc.Arbitrary<JsonObject>;
const key = fc.constantFrom("a", "b", "c");

const op = fc.oneof(
  fc.record({ op: fc.constant("put" as const), key, value: object }),
  fc.record({ op: fc.constant("patch" as const), key, value: patch }),
  fc.record({ op: fc.constant("delete" as const), key }),
);

function mutations(ops: { op: Mutation["op"]; key: string; value?: JsonObject }[], firstId = 1): Mutation[] {
  return ops.map((o, i) => {
    const m: Mutation = { id: firstId + i, scope: SCOPE, collection: "todos", key: o.key, op: o.op, hlc: "", base_version: 0 };
    if (o.value !== undefined) m.value = o.value;
    return m;
  });
}

/** The server's state after applying `pending` in order (a single writer: lww = plain order). */
function serverAfter(records: Map<string, ServerRecord>, pending: Mutation[]): Map<string, ServerRecord> {
  const next = new Map(records);
  for (const m of pending) {
    const held = next.get(m.key);
    const value = applyMutation(held && !held.deleted ? held.value : null, m);
    next.set(m.key, { scope: SCOPE, collection: "todos", key: m.key, value, deleted: value === null, version: (held?.version ?? 0) + 1 });
  }
  return next;
}

function view(records: Map<string, ServerRecord>, outbox: Mutation[]): Record<string, JsonObject | null> {
  const out: Record<string, JsonObject | null> = {};
  for (const [k, row] of rebaseCollection(records.values(), outbox, SCOPE, "todos")) out[k] = row.value;
  return out;
}

const initial = fc.dictionary(key, object, { maxKeys: 3 }).map((d) => {
  const map = new Map<string, ServerRecord>();
  for (const [k, value] of Object.entries(d)) map.set(k, { scope: SCOPE, collection: "todos", key: k, value, deleted: false, version: 1 });
  return map;
});

test("rebase: own writes never vanish — pruning acknowledged entries whose effect is pulled leaves the view unchanged", () => {
  fc.assert(
    fc.property(initial, fc.array(op, { maxLength: 12 }), fc.nat(), (server, ops, cut) => {
      const outbox = mutations(ops);
      const acked = outbox.length === 0 ? 0 : cut % (outbox.length + 1);
      // The server applied ids ≤ acked and a pull brought their effect (G4b); those entries go.
      const pulled = serverAfter(server, outbox.slice(0, acked));
      const { kept } = pruneOutbox(outbox, acked, new Set([SCOPE]));
      assert.deepEqual(view(pulled, kept), view(server, outbox));
    }),
    { numRuns: 500 },
  );
});

test("rebase: re-applying pending writes on a pulled state that already holds them changes nothing", () => {
  fc.assert(
    fc.property(initial, fc.array(op, { maxLength: 12 }), (server, ops) => {
      const outbox = mutations(ops);
      assert.deepEqual(view(serverAfter(server, outbox), outbox), view(server, outbox));
    }),
    { numRuns: 500 },
  );
});

test("rebase: with an empty outbox the view is exactly the pulled state (deleted records hidden)", () => {
  fc.assert(
    fc.property(initial, (server) => {
      const expected: Record<string, JsonObject | null> = {};
      for (const [k, r] of server) if (!r.deleted) expected[k] = r.value;
      assert.deepEqual(view(server, []), expected);
    }),
  );
});

test("rebase: patch sets fields, null removes one, a patch revives a deleted record with its fields", () => {
  const base: ServerRecord = { scope: SCOPE, collection: "todos", key: "a", value: { title: "x", done: false }, deleted: false, version: 3 };
  const [p, d, revive] = mutations([
    { op: "patch", key: "a", value: { done: true, title: null } },
    { op: "delete", key: "a" },
    { op: "patch", key: "a", value: { title: "back" } },
  ]);
  assert.deepEqual(rebaseRecord(base, [p!]).value, { done: true });
  assert.equal(rebaseRecord(base, [p!, d!]).value, null);
  assert.deepEqual(rebaseRecord(base, [p!, d!, revive!]), { value: { title: "back" }, version: 3, pending: true });
});
