/**
 * What integration tests share: the stack's address and secrets (from `OFFGRID_SDK_STACK`),
 * HS256 tokens minted with node:crypto, the admin API, fault-injecting `fetch` wrappers (a
 * network, not a server: the real server always answers), and the server's state as a fresh
 * client pulls it.
 */

import { createHmac, randomUUID } from "node:crypto";
import { createClient, memoryStorage, type ClientOptions, type FetchLike, type JsonObject, type OffgridClient } from "../../src/index.js";
import type { StackInfo } from "./stack.js";

/** The running stack (started by test/run.mjs). */
export function stack(): StackInfo {
  const raw = process.env["OFFGRID_SDK_STACK"];
  if (!raw) throw new Error("OFFGRID_SDK_STACK is not set: run the tests with `npm test`");
  return JSON.parse(raw) as StackInfo;
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 JWT for `sub`, expiring in `expiresIn` seconds (negative: already expired). */
export function mintToken(secret: string, sub: string, expiresIn = 600): string {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + expiresIn }));
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

/** A fresh user name. */
export function newUser(prefix = "u"): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

/** Make `user` a member of `scope` with `role`. */
export async function addMember(scope: string, user: string, role: "reader" | "writer" = "writer"): Promise<void> {
  const { url, adminKey } = stack();
  const reply = await fetch(`${url}/v1/admin/scopes/${encodeURIComponent(scope)}/members/${encodeURIComponent(user)}`, {
    method: "PUT",
    headers: { "X-API-Key": adminKey, "Content-Type": "application/json" },
    body: JSON.stringify({ role }),
  });
  if (!reply.ok) throw new Error(`admin PUT member: ${reply.status} ${await reply.text()}`);
}

/** A client of `user` on the test stack, with memory storage unless given. */
export function clientFor(user: string, options: Partial<ClientOptions> = {}): OffgridClient {
  const { url, jwtSecret } = stack();
  return createClient({
    url,
    getToken: () => mintToken(jwtSecret, user),
    storage: memoryStorage(),
    pushWaitSeconds: 5,
    backoff: { baseMs: 50, maxMs: 1_000 },
    ...options,
  });
}

/** A fault plan for {@link faultyFetch}. */
export interface Faults {
  /** While true every request fails before reaching the server (offline). */
  offline: boolean;
  /** Decide per request whether its reply is lost after the server got it. */
  loseReply: (url: string, method: string) => boolean;
  /** Counts of what happened. */
  lostReplies: number;
  blocked: number;
  /** Every reply the server sent: method, path, status and body text. */
  log: { method: string; path: string; status: number; body: string; lost: boolean }[];
}

/**
 * A `fetch` standing for an unreliable network: offline requests never leave, and a lost reply
 * reaches the server (which acts on it) but the client only sees an error.
 */
export function faultyFetch(faults: Partial<Faults> = {}): { fetch: FetchLike; faults: Faults } {
  const plan: Faults = { offline: false, loseReply: () => false, lostReplies: 0, blocked: 0, log: [], ...faults };
  const wrapped: FetchLike = async (url, init) => {
    if (plan.offline) {
      plan.blocked += 1;
      throw new TypeError("fetch failed (offline)");
    }
    const response = await fetch(url, init as RequestInit);
    const body = await response.text();
    const lost = plan.loseReply(url, init.method);
    plan.log.push({ method: init.method, path: new URL(url).pathname, status: response.status, body, lost });
    if (lost) {
      plan.lostReplies += 1;
      throw new TypeError("fetch failed (reply lost)");
    }
    return { status: response.status, headers: response.headers, text: async () => body };
  };
  return { fetch: wrapped, faults: plan };
}

/** Every live record of `scopes` as a fresh client pulls it: `scope/collection/key` → value. */
export async function serverState(user: string, scopes: string[]): Promise<Map<string, JsonObject>> {
  const fresh = clientFor(user);
  for (const scope of scopes) fresh.collection("notes", { scope });
  await fresh.sync();
  const state = new Map<string, JsonObject>();
  for (const scope of scopes) {
    for (const collection of ["todos", "notes", "accounts", "counters"]) {
      for (const row of fresh.collection(collection, { scope }).all()) state.set(`${scope}/${collection}/${row.key}`, row.value);
    }
  }
  await fresh.close();
  return state;
}

/** The same map for what `client` shows locally. */
export function localState(client: OffgridClient, scopes: string[]): Map<string, JsonObject> {
  const state = new Map<string, JsonObject>();
  for (const scope of scopes) {
    for (const collection of ["todos", "notes", "accounts", "counters"]) {
      for (const row of client.collection(collection, { scope }).all()) state.set(`${scope}/${collection}/${row.key}`, row.value);
    }
  }
  return state;
}

/** Wait until `check()` is true (polling), or fail after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 20_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Remove `user` from `scope`. */
export async function removeMember(scope: string, user: string): Promise<void> {
  const { url, adminKey } = stack();
  const reply = await fetch(`${url}/v1/admin/scopes/${encodeURIComponent(scope)}/members/${encodeURIComponent(user)}`, {
    method: "DELETE",
    headers: { "X-API-Key": adminKey },
  });
  if (!reply.ok) throw new Error(`admin DELETE member: ${reply.status} ${await reply.text()}`);
}
