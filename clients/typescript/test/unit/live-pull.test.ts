/**
 * The background loop's decisions, over a scripted transport (no network, no server logic:
 * empty pull pages, with or without `Preference-Applied`). The real server's long-poll is not
 * built yet (SPEC §2 live pull); these show the client uses it when the header comes back and
 * polls otherwise, never busy-loops, and never runs two pulls at once.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { createClient, type FetchLike } from "../../src/index.js";

function token(sub: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${part({ alg: "HS256" })}.${part({ sub, exp: 9_999_999_999 })}`;
  return `${body}.${createHmac("sha256", "k").update(body).digest("base64url")}`;
}

function transport(options: { holdMs: number; longPoll: boolean }) {
  const seen = { pulls: 0, preferWait: 0, inFlight: 0, maxInFlight: 0 };
  const fetch: FetchLike = async (url, init) => {
    const body = JSON.parse(init.body ?? "{}") as { scopes: Record<string, string | null> };
    seen.pulls += 1;
    const prefer = /wait=(\d+)/.exec(init.headers["Prefer"] ?? "");
    if (prefer) seen.preferWait += 1;
    seen.inFlight += 1;
    seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
    try {
      if (prefer && options.longPoll) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, options.holdMs);
          init.signal?.addEventListener("abort", () => {
            clearTimeout(t);
            reject(new DOMException("aborted", "AbortError"));
          });
        });
      }
      const scopes: Record<string, unknown> = {};
      for (const scope of Object.keys(body.scopes)) scopes[scope] = { changes: [], checkpoint: "cp", has_more: false };
      const headers = new Map<string, string>();
      if (prefer && options.longPoll) headers.set("preference-applied", `wait=${prefer[1]}`);
      return {
        status: 200,
        headers: { get: (name: string) => headers.get(name.toLowerCase()) ?? null },
        text: async () => JSON.stringify({ scopes, last_mutation_id: 0 }),
      };
    } finally {
      seen.inFlight -= 1;
    }
    void url;
  };
  return { fetch, seen };
}

test("live pull: with Preference-Applied the client long-polls back to back; one pull at a time even with sync() and tickles", async () => {
  const { fetch, seen } = transport({ holdMs: 300, longPoll: true });
  const client = createClient({ url: "http://scripted", getToken: () => token("ann"), fetch, pollIntervalMs: { min: 200, max: 2000 } });
  client.start();
  await new Promise((r) => setTimeout(r, 500));
  await Promise.all([client.sync(), client.handleTickle(), client.sync()]);
  await new Promise((r) => setTimeout(r, 1000));
  client.stop();
  assert.ok(seen.pulls >= 5 && seen.pulls <= 20, `pulls: ${seen.pulls}`);
  assert.ok(seen.preferWait >= 3, `long-polls: ${seen.preferWait}`);
  assert.equal(seen.maxInFlight, 1, "never two pulls at once");
});

test("live pull: without Preference-Applied the client polls, slowing down while nothing changes", async () => {
  const { fetch, seen } = transport({ holdMs: 0, longPoll: false });
  const client = createClient({ url: "http://scripted", getToken: () => token("ben"), fetch, pollIntervalMs: { min: 200, max: 2000 } });
  client.start();
  await new Promise((r) => setTimeout(r, 1700));
  client.stop();
  // 0, 200, 600, 1400 ms: four polls, the intervals doubling
  assert.ok(seen.pulls >= 3 && seen.pulls <= 5, `polls in 1.7 s: ${seen.pulls}`);
  const after = seen.pulls;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(seen.pulls, after, "stop() ends polling");
});
