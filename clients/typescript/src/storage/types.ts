/**
 * The storage contract every adapter implements. The client keeps its working set in memory
 * and writes through: each call to {@link Storage.write} is one storage transaction, so a local
 * write and its outbox entry, or a pull page and its checkpoint, land together or not at all.
 * @module
 */

import type { Checkpoints } from "../checkpoints.js";
import type { HlcState } from "../hlc.js";
import type { Mutation, ServerRecord } from "../types.js";

/** The install's persisted identity and counters. */
export interface ClientMeta {
  /** The install's `client_id`, chosen once. */
  clientId: string;
  /** The last mutation id handed out (the next write gets this + 1). */
  lastMutationId: number;
  /** The clock's last stamp. */
  hlc: HlcState;
  /** Every id up to here is processed by the server (no need to send it again). */
  ackedThrough: number;
  /** The signed-in user last seen (`sub`), for the personal scope while offline. */
  user?: string;
  /**
   * Set when new storage was given an explicit `clientId`: that id may have sent mutations
   * before (say it was kept in the keychain across a reinstall), so the server's ledger is
   * read before the first push and unsent ids are moved past it.
   */
  checkLedger?: boolean;
}

/** Everything a client needs at start-up. */
export interface StorageSnapshot {
  meta: ClientMeta | null;
  records: ServerRecord[];
  outbox: Mutation[];
  checkpoints: Checkpoints;
}

/** One transaction. Steps apply in this order: drop scopes, upserts, outbox removals, outbox appends, checkpoints, meta. */
export interface StorageWrite {
  /** Forget these scopes' records and checkpoints (a `410` resync). */
  dropScopes?: string[];
  /** Server records to store (insert or replace by scope, collection, key). */
  upsert?: ServerRecord[];
  /** Append to the outbox. */
  append?: Mutation[];
  /** Remove these outbox ids. */
  remove?: number[];
  /** Set these scopes' checkpoints. */
  checkpoints?: Checkpoints;
  /** Replace the meta. */
  meta?: ClientMeta;
}

/** A place the client persists to. Adapters: memory, IndexedDB, SQLite. */
export interface Storage {
  /** Read everything stored (once, at start-up). */
  load(): Promise<StorageSnapshot>;
  /** Apply `write` as one transaction: all of it, or none of it on failure. */
  write(write: StorageWrite): Promise<void>;
  /** Release what the adapter holds (the app's database handle stays the app's). */
  close?(): Promise<void>;
}

/** The key of a record inside a storage adapter. */
export function recordKey(scope: string, collection: string, key: string): string {
  return `${scope}\u0000${collection}\u0000${key}`;
}
