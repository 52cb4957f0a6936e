/**
 * A collection handle: local, synchronous reads of the optimistic view, and writes that land
 * in local storage and the outbox in one transaction before they resolve.
 * @module
 */

import type { JsonObject, MutationOp } from "./types.js";

/** One record of a collection as the app sees it. */
export interface Row<T> {
  /** The record's key. */
  key: string;
  /** The record's value: the pulled state with this install's pending writes on top. */
  value: T;
  /** True while one of this install's writes to it is not yet visible in pulled state. */
  pending: boolean;
  /** The last server version pulled (0 for a record only written here so far). */
  version: number;
}

/** The fields of a patch: each top-level field a new value, or `null` to remove it. */
export type Patch<T> = { [K in keyof T]?: T[K] | null };

/** Options of {@link OffgridClient.collection}. */
export interface CollectionOptions {
  /** The scope to read and write; default `user:<sub>` of the signed-in user. */
  scope?: string;
}

/** What a collection handle needs from its client. */
export interface CollectionHost {
  /** The scope this handle addresses, once known. */
  resolveScope(explicit: string | undefined): string | undefined;
  /** Queue one write (local view, outbox, storage: one transaction). */
  write(scope: string | undefined, collection: string, key: string, op: MutationOp, value?: JsonObject): Promise<void>;
  /** The view of one record. */
  viewOf(scope: string | undefined, collection: string, key: string): JsonObject | undefined;
  /** The view of one collection, sorted by key; the same array until something changes. */
  rowsOf(scope: string | undefined, collection: string): Row<JsonObject>[];
  /** Call `listener` with the rows now and after each change; returns the unsubscribe. */
  subscribeTo(
    scope: string | undefined,
    collection: string,
    listener: (rows: Row<JsonObject>[]) => void,
  ): () => void;
}

/** Records of one collection in one scope. Get one with `client.collection(name)`. */
export class Collection<T = JsonObject> {
  /** The collection's name, as configured on the server. */
  readonly name: string;
  readonly #host: CollectionHost;
  readonly #scope: string | undefined;

  /** @internal Use `client.collection(name, options)`. */
  constructor(host: CollectionHost, name: string, options: CollectionOptions = {}) {
    this.#host = host;
    this.name = name;
    this.#scope = options.scope;
  }

  /** The scope this handle reads and writes (`undefined` until the user is known). */
  get scope(): string | undefined {
    return this.#host.resolveScope(this.#scope);
  }

  /** Set the record `key` to `value` (replacing it). Resolves once stored locally. */
  put(key: string, value: T): Promise<void> {
    return this.#host.write(this.#scope, this.name, key, "put", value as unknown as JsonObject);
  }

  /** Set some top-level fields of `key` (`null` removes a field). Resolves once stored locally. */
  patch(key: string, fields: Patch<T>): Promise<void> {
    return this.#host.write(this.#scope, this.name, key, "patch", fields as unknown as JsonObject);
  }

  /** Delete the record `key`. Resolves once stored locally. */
  delete(key: string): Promise<void> {
    return this.#host.write(this.#scope, this.name, key, "delete");
  }

  /** The record `key` as the app sees it now, or `undefined` when it does not exist. */
  get(key: string): T | undefined {
    return this.#host.viewOf(this.#scope, this.name, key) as T | undefined;
  }

  /** Every live record, sorted by key. The same array is returned until something changes. */
  all(): Row<T>[] {
    return this.#host.rowsOf(this.#scope, this.name) as unknown as Row<T>[];
  }

  /** Call `listener` with {@link all} now and after every local or pulled change. */
  subscribe(listener: (rows: Row<T>[]) => void): () => void {
    return this.#host.subscribeTo(this.#scope, this.name, listener as unknown as (rows: Row<JsonObject>[]) => void);
  }
}
