/**
 * `@offgrid/client`: offline writes, optimistic reads and exactly-once sync with an Offgrid
 * server (sync protocol v1). Start with {@link createClient}.
 * @module
 */

export { createClient } from "./client.js";
export type { ClientOptions, OffgridClient, RejectionEvent, AwaitSyncedOptions } from "./client.js";
export { Collection } from "./collection.js";
export type { Row, Patch, CollectionOptions } from "./collection.js";
export type { SyncStatus } from "./status.js";
export { OffgridError, isOffgridError, isTransient } from "./errors.js";
export type { OffgridErrorCode, OffgridErrorInit } from "./errors.js";
export { memoryStorage } from "./storage/memory.js";
export { indexedDbStorage } from "./storage/indexeddb.js";
export { sqliteStorage } from "./storage/sqlite.js";
export type { SqliteExecutor, SqliteResult, SqliteRow, SqliteStorageOptions } from "./storage/sqlite.js";
export type { Storage, StorageSnapshot, StorageWrite, ClientMeta } from "./storage/types.js";
export type { FetchLike } from "./wire.js";
export type { BackoffPolicy } from "./backoff.js";
export type { HlcState } from "./hlc.js";
export type { Checkpoints } from "./checkpoints.js";
export type {
  JsonObject,
  JsonValue,
  Mutation,
  MutationOp,
  ServerRecord,
  WireBatchStatus,
  WireChange,
  WireMutationResult,
  WirePullReply,
  WireScopePage,
} from "./types.js";
