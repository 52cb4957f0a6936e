/**
 * Pull bookkeeping: building pull requests, reading pull pages into records and checkpoints,
 * and deciding when a chain of pulls has caught up, so that the outbox may be pruned.
 * Pure functions over plain data.
 * @module
 */

import type { ServerRecord, WirePullReply } from "./types.js";

/** A scope's position: the opaque checkpoint of its last page, `null` before the first. */
export type Checkpoints = Record<string, string | null>;

/** The most scopes one pull may name (SPEC §2 / the server's schema). */
export const MAX_SCOPES_PER_PULL = 32;

/** The body of `POST /v1/sync/pull` for `scopes` at their checkpoints. */
export function pullRequestBody(
  clientId: string,
  scopes: readonly string[],
  checkpoints: Readonly<Checkpoints>,
  limit: number,
): { client_id: string; scopes: Checkpoints; limit: number } {
  const body: Checkpoints = {};
  for (const scope of scopes) body[scope] = checkpoints[scope] ?? null;
  return { client_id: clientId, scopes: body, limit };
}

/** What one pull page says. */
export interface PullPage {
  /** Every change of the page, as server records. */
  records: ServerRecord[];
  /** Each scope's new checkpoint. */
  checkpoints: Checkpoints;
  /** True when every requested scope is at `has_more: false`. */
  caughtUp: boolean;
  /** The scopes that still have more. */
  behind: string[];
  /** The reply's `last_mutation_id`. */
  lastMutationId: number;
}

/** Read a pull reply for the requested `scopes`. */
export function readPullReply(reply: WirePullReply, scopes: readonly string[]): PullPage {
  const records: ServerRecord[] = [];
  const checkpoints: Checkpoints = {};
  const behind: string[] = [];
  for (const scope of scopes) {
    const page = reply.scopes[scope];
    if (!page) continue; // membership lost meanwhile: the server leaves the scope out
    checkpoints[scope] = page.checkpoint;
    if (page.has_more) behind.push(scope);
    for (const change of page.changes) {
      records.push({
        scope,
        collection: change.collection,
        key: change.key,
        value: change.deleted ? null : change.value,
        deleted: change.deleted,
        version: change.version,
      });
    }
  }
  return {
    records,
    checkpoints,
    caughtUp: behind.length === 0,
    behind,
    lastMutationId: reply.last_mutation_id,
  };
}

/**
 * Whether a pulled change replaces the record held: always, unless the held one is alive with
 * a higher version (written from a batch result while this page was in flight). A tombstone is
 * always replaced: after a purge a key can start again at version 1.
 */
export function pulledReplaces(held: ServerRecord | undefined, pulled: ServerRecord): boolean {
  return !held || held.deleted || pulled.version >= held.version;
}

/** The scopes to pull, in groups the server accepts in one request. */
export function scopeGroups(scopes: Iterable<string>): string[][] {
  const sorted = [...new Set(scopes)].sort();
  const groups: string[][] = [];
  for (let i = 0; i < sorted.length; i += MAX_SCOPES_PER_PULL) {
    groups.push(sorted.slice(i, i + MAX_SCOPES_PER_PULL));
  }
  return groups;
}

/** The scope named in a `410 resync_required` message, when there is one. */
export function scopeOfResync(message: string): string | undefined {
  const match = /scope '([^']+)'/.exec(message) ?? /scope "([^"]+)"/.exec(message);
  return match?.[1];
}
