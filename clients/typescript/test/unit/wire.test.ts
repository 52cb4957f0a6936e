import assert from "node:assert/strict";
import { test } from "node:test";
import { isTransient } from "../../src/errors.js";
import { replyError, type HttpReply } from "../../src/wire.js";

function reply(status: number, body: unknown, headers: Record<string, string> = {}): HttpReply {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { status, body, headers: { get: (name) => lower.get(name.toLowerCase()) ?? null } };
}

test("wire: 429 and 503 carry Retry-After and are retried; 410 names its scope; 401 and other 4xx are not transient", () => {
  const now = Date.now();
  const limited = replyError(reply(429, { error: { code: "rate_limited", message: "slow down" } }, { "Retry-After": "3" }), now);
  assert.deepEqual([limited.code, limited.retryAfterMs, isTransient(limited)], ["rate_limited", 3000, true]);
  const busy = replyError(reply(503, { error: { code: "unavailable", message: "broker" } }, { "Retry-After": "1" }), now);
  assert.deepEqual([busy.code, busy.retryAfterMs, isTransient(busy)], ["unavailable", 1000, true]);
  const gone = replyError(
    reply(410, { error: { code: "resync_required", message: "the checkpoint of scope 'team:7' is older than the tombstone horizon" } }),
    now,
  );
  assert.deepEqual([gone.code, gone.scope], ["resync_required", "team:7"]);
  const auth = replyError(reply(401, { error: { code: "unauthorized", message: "expired" } }), now);
  assert.deepEqual([auth.code, isTransient(auth)], ["needs_auth", false]);
  const refused = replyError(reply(403, { error: { code: "forbidden", message: "not a writer" } }), now);
  assert.deepEqual([refused.code, refused.serverCode, isTransient(refused)], ["request_refused", "forbidden", false]);
  assert.equal(replyError(reply(502, "bad gateway"), now).code, "server");
});
