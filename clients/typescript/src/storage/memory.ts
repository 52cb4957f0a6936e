/**
 * In-memory storage: for tests, servers and apps that do not need to survive a restart. Two
 * clients created one after the other on the same instance see each other's data, like a
 * restart with a persistent store.
 * @module
 */

import type { Checkpoints } from "../checkpoints.js";
import type { Mutation, ServerRecord } from "../types.js";
import { recordKey, type ClientMeta, type Storage, type StorageSnapshot, type StorageWrite } from "./types.js";

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Storage kept in memory. */
export function memoryStorage(): Storage {
  let meta: ClientMeta | null = null;
  const records = new Map<string, ServerRecord>();
  const outbox = new Map<number, Mutation>();
  let checkpoints: Checkpoints = {};

  return {
    async load(): Promise<StorageSnapshot> {
      return clone({
        meta,
        records: [...records.values()],
        outbox: [...outbox.values()].sort((a, b) => a.id - b.id),
        checkpoints,
      });
    },
    async write(write: StorageWrite): Promise<void> {
      const data = clone(write);
      for (const scope of data.dropScopes ?? []) {
        for (const [key, record] of records) if (record.scope === scope) records.delete(key);
        delete checkpoints[scope];
      }
      for (const record of data.upsert ?? []) {
        records.set(recordKey(record.scope, record.collection, record.key), record);
      }
      for (const id of data.remove ?? []) outbox.delete(id);
      for (const mutation of data.append ?? []) outbox.set(mutation.id, mutation);
      if (data.checkpoints) checkpoints = { ...checkpoints, ...data.checkpoints };
      if (data.meta) meta = data.meta;
    },
  };
}
