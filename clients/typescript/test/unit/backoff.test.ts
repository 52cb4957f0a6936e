import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { backoffDelay, parseRetryAfter } from "../../src/backoff.js";

test("backoff: delays grow exponentially with jitter, never below half the ceiling nor above the max", () => {
  fc.assert(
    fc.property(fc.nat(60), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
      const policy = { baseMs: 500, maxMs: 30_000 };
      const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
      const wait = backoffDelay(attempt, () => r, policy);
      assert.ok(wait >= Math.floor(ceiling / 2) && wait <= ceiling, `${wait} for attempt ${attempt}`);
    }),
  );
  const draws = new Set(Array.from({ length: 50 }, () => backoffDelay(4, Math.random)));
  assert.ok(draws.size > 10, "clients that failed together do not retry together");
});

test("backoff: Retry-After is read as seconds or as an HTTP date", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("7", now), 7000);
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now), 30_000);
  assert.equal(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter(null, now), undefined);
  assert.equal(parseRetryAfter("soon", now), undefined);
});
