import assert from "node:assert/strict";
import { test } from "node:test";
import { pullRequestBody, pulledReplaces, readPullReply, scopeGroups, scopeOfResync } from "../../src/checkpoints.js";

test("checkpoints: a pull names every scope with its checkpoint, null for a first sync", () => {
  assert.deepEqual(pullRequestBody("client-123456", ["team:1", "user:a"], { "user:a": "cp1" }, 2), {
    client_id: "client-123456",
    scopes: { "team:1": null, "user:a": "cp1" },
    limit: 2,
  });
  const groups = scopeGroups(Array.from({ length: 70 }, (_, i) => `team:${i}`));
  assert.deepEqual(groups.map((g) => g.length), [32, 32, 6]);
});

test("checkpoints: a reply is caught up only when every scope is at has_more false", () => {
  const page = readPullReply(
    {
      last_mutation_id: 9,
      scopes: {
        "user:a": { changes: [{ collection: "todos", key: "t", value: { title: "x" }, deleted: false, version: 2 }], checkpoint: "c1", has_more: false },
        "team:1": { changes: [{ collection: "notes", key: "n", value: null, deleted: true, version: 5 }], checkpoint: "c2", has_more: true },
      },
    },
    ["user:a", "team:1"],
  );
  assert.equal(page.caughtUp, false);
  assert.deepEqual(page.behind, ["team:1"]);
  assert.deepEqual(page.checkpoints, { "user:a": "c1", "team:1": "c2" });
  assert.equal(page.records[1]?.deleted, true);
});

test("checkpoints: a pulled change never replaces a newer live record, but always a tombstone", () => {
  const rec = (version: number, deleted = false) => ({ scope: "s:1", collection: "c", key: "k", value: deleted ? null : {}, deleted, version });
  assert.equal(pulledReplaces(undefined, rec(1)), true);
  assert.equal(pulledReplaces(rec(3), rec(2)), false);
  assert.equal(pulledReplaces(rec(3), rec(3)), true);
  assert.equal(pulledReplaces(rec(7, true), rec(1)), true);
  assert.equal(scopeOfResync("the checkpoint of scope 'user:bob' is older than the tombstone horizon"), "user:bob");
});
