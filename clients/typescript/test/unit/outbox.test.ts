import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { nextBatch, pruneOutbox, readBatchOutcome } from "../../src/outbox.js";
import type { Mutation } from "../../src/types.js";

function entry(id: number, scope = "user:a", value: Record<string, string> = { title: "t" }): Mutation {
  return { id, scope, collection: "todos", key: `k${id % 7}`, op: "put", value, hlc: "", base_version: 0 };
}

test("outbox: a batch is the contiguous run after the acknowledged id, within count and byte limits", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 320 }), fc.integer({ min: 1, max: 50 }), (n, acked, max) => {
      const outbox = Array.from({ length: n }, (_, i) => entry(i + 1));
      const batch = nextBatch(outbox, acked, max);
      const expected = Math.max(0, Math.min(max, n - acked));
      assert.equal(batch.length, expected);
      batch.forEach((m, i) => assert.equal(m.id, acked + 1 + i));
    }),
  );
  const big = Array.from({ length: 40 }, (_, i) => entry(i + 1, "user:a", { title: "x".repeat(60_000) }));
  const batch = nextBatch(big, 0);
  assert.ok(batch.length >= 1 && JSON.stringify(batch).length < 1_000_000, "stays under the 1 MiB body limit");
  assert.equal(nextBatch(big, 0, 1000, 10).length, 1, "always at least one entry");
});

test("outbox: pruning removes only ids ≤ last_mutation_id of the scopes that were pulled", () => {
  const outbox = [entry(1, "user:a"), entry(2, "team:x"), entry(3, "user:a"), entry(4, "user:a")];
  const { kept, removed } = pruneOutbox(outbox, 3, new Set(["user:a"]));
  assert.deepEqual(removed.map((m) => m.id), [1, 3]);
  assert.deepEqual(kept.map((m) => m.id), [2, 4]);
});

test("outbox: a final status settles rejected mutations and applied ones the server described", () => {
  const batch = [entry(5), entry(6), entry(7), entry(8)];
  const outcome = readBatchOutcome(batch, {
    batch_id: "b",
    status: "applied",
    last_mutation_id: 8,
    results: [
      { id: 5, status: "applied", version: 2 },
      { id: 6, status: "duplicate" },
      { id: 7, status: "rejected", reason: "conflict", version: 4, current: { title: "server" } },
      { id: 8, status: "applied", version: 9, current: { title: "merged" } },
    ],
  });
  assert.equal(outcome.applied, true);
  assert.equal(outcome.ackedThrough, 8);
  assert.deepEqual(outcome.rejected.map((r) => r.mutation.id), [7]);
  assert.deepEqual(outcome.settled, [{ mutation: batch[3], value: { title: "merged" }, version: 9 }]);
  // What the server sends for a gap: the batch failed, each new id "rejected" with reason gap.
  const failed = readBatchOutcome(batch, {
    batch_id: "b",
    status: "failed",
    last_mutation_id: 4,
    results: batch.map((m) => ({ id: m.id, status: "rejected" as const, reason: "gap" })),
  });
  assert.deepEqual([failed.applied, failed.failureReason, failed.rejected, failed.settled], [false, "gap", [], []]);
});
