/**
 * The optimistic view: the pulled server state with the pending outbox re-applied on top, in
 * id order. Pure functions; the client recomputes a record's view whenever either side moves.
 * @module
 */

import type { JsonObject, Mutation, ServerRecord } from "./types.js";

/** One record as the app sees it. */
export interface ViewRecord {
  /** The value, or `null` when the record is deleted (or never existed). */
  value: JsonObject | null;
  /** The last server version pulled (0 if none). */
  version: number;
  /** True while one of this install's writes to it is still in the outbox. */
  pending: boolean;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * The plain meaning of `mutation` on `current` (`null` = deleted): `put` replaces, `patch`
 * sets top-level fields (a `null` removes one; a patch on a deleted record revives it with
 * just those fields, as the server's `lww` does), `delete` deletes.
 */
export function applyMutation(current: JsonObject | null, mutation: Mutation): JsonObject | null {
  switch (mutation.op) {
    case "put":
      return clone(mutation.value ?? {});
    case "delete":
      return null;
    case "patch": {
      const merged: JsonObject = current ? { ...current } : {};
      for (const [name, value] of Object.entries(mutation.value ?? {})) {
        if (value === null) delete merged[name];
        else merged[name] = clone(value);
      }
      return merged;
    }
  }
}

/** The view of one record: its server state, then each pending mutation of it in id order. */
export function rebaseRecord(
  server: ServerRecord | undefined,
  pending: readonly Mutation[],
): ViewRecord {
  let value: JsonObject | null = server && !server.deleted ? server.value : null;
  for (const mutation of pending) value = applyMutation(value, mutation);
  return { value, version: server?.version ?? 0, pending: pending.length > 0 };
}

/**
 * The view of one collection of one scope: every live record, by key, from its server
 * records and the pending outbox (which may hold other scopes' and collections' entries).
 */
export function rebaseCollection(
  server: Iterable<ServerRecord>,
  outbox: readonly Mutation[],
  scope: string,
  collection: string,
): Map<string, ViewRecord> {
  const pendingByKey = new Map<string, Mutation[]>();
  for (const mutation of outbox) {
    if (mutation.scope !== scope || mutation.collection !== collection) continue;
    const list = pendingByKey.get(mutation.key);
    if (list) list.push(mutation);
    else pendingByKey.set(mutation.key, [mutation]);
  }
  const view = new Map<string, ViewRecord>();
  const seen = new Set<string>();
  for (const record of server) {
    seen.add(record.key);
    const row = rebaseRecord(record, pendingByKey.get(record.key) ?? []);
    if (row.value !== null) view.set(record.key, row);
  }
  for (const [key, pending] of pendingByKey) {
    if (seen.has(key)) continue;
    const row = rebaseRecord(undefined, pending);
    if (row.value !== null) view.set(key, row);
  }
  return view;
}
