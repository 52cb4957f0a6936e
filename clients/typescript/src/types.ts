/**
 * The data the SDK moves around: JSON values, records, mutations and the wire replies of
 * the Offgrid sync protocol v1 (SPEC §2), as plain types.
 * @module
 */

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;

/** A JSON object: what a record's value is. */
export interface JsonObject {
  [field: string]: JsonValue;
}

/** The three kinds of write. */
export type MutationOp = "put" | "patch" | "delete";

/** One mutation as it travels in `POST /v1/sync/push` and sits in the outbox. */
export interface Mutation {
  /** 1, 2, 3 … for the life of the install, without gaps. */
  id: number;
  scope: string;
  collection: string;
  key: string;
  op: MutationOp;
  /** The record (`put`) or the fields to set (`patch`, `null` removes); absent for `delete`. */
  value?: JsonObject;
  /** `<13-digit ms>-<4 hex>-<client_id>`. */
  hlc: string;
  /** The server version of the record this write was made on (0 for a new record). */
  base_version: number;
}

/** The server's state of one record, as pulled (or as a reply's `current` told). */
export interface ServerRecord {
  scope: string;
  collection: string;
  key: string;
  /** The record's value; `null` when deleted. */
  value: JsonObject | null;
  deleted: boolean;
  version: number;
}

/** One change in a pull page. */
export interface WireChange {
  collection: string;
  key: string;
  value: JsonObject | null;
  deleted: boolean;
  version: number;
}

/** One scope's page in a pull reply. */
export interface WireScopePage {
  changes: WireChange[];
  checkpoint: string;
  has_more: boolean;
}

/** `POST /v1/sync/pull` reply. */
export interface WirePullReply {
  scopes: Record<string, WireScopePage>;
  last_mutation_id: number;
}

/** One mutation's result in a batch status. */
export interface WireMutationResult {
  id: number;
  status: "applied" | "duplicate" | "rejected";
  reason?: string;
  errors?: unknown;
  version?: number;
  current?: JsonObject | null;
}

/** `GET /v1/sync/batches/<id>` reply (and `POST push` with `Prefer: wait` when done in time). */
export interface WireBatchStatus {
  batch_id: string;
  status: "queued" | "applying" | "applied" | "failed";
  last_mutation_id?: number | null;
  results: WireMutationResult[];
  reason?: string;
}
