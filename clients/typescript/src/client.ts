/**
 * The Offgrid client: `createClient(...)` and the behaviour of SPEC §8 — local writes into an
 * outbox, an optimistic view, exactly-once upload, pulls that keep every used scope caught up,
 * and the background loop of `start()`. The decisions are made by the pure modules (outbox,
 * rebase, checkpoints, backoff, hlc); this module does the I/O and keeps the state in memory,
 * writing it through to the storage adapter one transaction at a time.
 * @module
 */

import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from "./backoff.js";
import {
  pullRequestBody,
  pulledReplaces,
  readPullReply,
  scopeGroups,
  scopeOfResync,
  type Checkpoints,
} from "./checkpoints.js";
import { Collection, type CollectionHost, type CollectionOptions, type Row } from "./collection.js";
import { isOffgridError, isTransient, OffgridError } from "./errors.js";
import { formatHlc, HLC_ZERO, tickHlc } from "./hlc.js";
import { CLIENT_ID_PATTERN, newClientId, personalScope, tokenSubject } from "./identity.js";
import { nextBatch, pruneOutbox, readBatchOutcome } from "./outbox.js";
import { rebaseCollection, rebaseRecord, type ViewRecord } from "./rebase.js";
import { createSleeper, type Sleeper } from "./sleeper.js";
import { INITIAL_STATUS, type SyncStatus } from "./status.js";
import { memoryStorage } from "./storage/memory.js";
import { recordKey, type ClientMeta, type Storage, type StorageWrite } from "./storage/types.js";
import type {
  JsonObject,
  Mutation,
  MutationOp,
  ServerRecord,
  WireBatchStatus,
  WirePullReply,
} from "./types.js";
import { writeProblems } from "./validate.js";
import { httpRequest, replyError, type FetchLike, type HttpReply, type HttpRequest } from "./wire.js";

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The Offgrid server's base URL, e.g. `https://sync.example.com`. */
  url: string;
  /** The user's current JWT. Called at start-up and once after a `401`. */
  getToken: () => string | Promise<string>;
  /** Where the install's data lives; default {@link memoryStorage}. */
  storage?: Storage;
  /** The install's `client_id` for new storage; by default a random one is chosen and stored. */
  clientId?: string;
  /** The `fetch` to use; default the platform's. */
  fetch?: FetchLike;
  /** Records per scope per pull page (1–1000, default 500). */
  pullLimit?: number;
  /** `Prefer: wait=N` on the background pull (long-poll), default 25 s. */
  longPollSeconds?: number;
  /** `Prefer: wait=N` on pushes, default 10 s. */
  pushWaitSeconds?: number;
  /** Polling interval when the server has no long-poll, from `min` up to `max` while idle. */
  pollIntervalMs?: { min: number; max: number };
  /** Retry delays after failures. */
  backoff?: BackoffPolicy;
  /** Wall clock (ms), for HLCs and `Retry-After` dates. */
  now?: () => number;
  /** Randomness for jitter. */
  random?: () => number;
}

/** A mutation the server rejected, as `onRejection` listeners get it. */
export interface RejectionEvent {
  /** The scope of the rejected write. */
  scope: string;
  /** Its collection. */
  collection: string;
  /** Its record key. */
  key: string;
  /** `conflict`, `validation`, `clock_skew`, `forbidden`, or a custom resolver's reason. */
  reason: string;
  /** Per-field validation messages (`validation`). */
  errors?: unknown;
  /** The server's record (`conflict`): `null` when it does not exist. */
  current?: JsonObject | null;
  /** The rejected mutation's id. */
  mutationId: number;
  /** The rejected mutation's op. */
  op: MutationOp;
}

/** Options of {@link OffgridClient.awaitSynced}. */
export interface AwaitSyncedOptions {
  /** Give up (rejecting with `aborted`) when this signal aborts. */
  signal?: AbortSignal;
}

/** What a pull round found. */
interface PullRound {
  changed: number;
  caughtUp: boolean;
  longPoll: boolean;
}

/** The client. Create one per install with {@link createClient}. */
export interface OffgridClient {
  /** A handle on collection `name` in `options.scope` (default `user:<sub>`). */
  collection<T = JsonObject>(name: string, options?: CollectionOptions): Collection<T>;
  /** Upload the whole outbox, then pull every used scope to `has_more: false`. */
  sync(): Promise<void>;
  /** Keep syncing in the background: uploads as writes happen, live pull (or polling). */
  start(): void;
  /** Stop the background work started by {@link start}. */
  stop(): void;
  /** The current status. */
  readonly status: SyncStatus;
  /** Call `listener` on every status change; returns the unsubscribe. */
  onStatus(listener: (status: SyncStatus) => void): () => void;
  /** Resolve once the outbox is empty and every used scope is caught up (retrying as needed). */
  awaitSynced(options?: AwaitSyncedOptions): Promise<void>;
  /** Call `listener` for each mutation the server rejects; returns the unsubscribe. */
  onRejection(listener: (rejection: RejectionEvent) => void): () => void;
  /** From the app's silent-push handler: pull now. */
  handleTickle(data?: unknown): Promise<void>;
  /** Resolves once storage is loaded (every other method waits for it by itself). */
  ready(): Promise<void>;
  /** The install's `client_id` (after {@link ready}). */
  readonly clientId: string;
  /** Stop and release the storage. */
  close(): Promise<void>;
}

const SCOPE_SEP = "\u0000";

/** Create a client. Nothing is sent until `sync()`, `start()`, `awaitSynced()` or a tickle. */
export function createClient(options: ClientOptions): OffgridClient {
  return new SyncEngine(options);
}

class SyncEngine implements OffgridClient, CollectionHost {
  readonly #storage: Storage;
  readonly #fetch: FetchLike;
  readonly #url: string;
  readonly #getToken: () => string | Promise<string>;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #backoff: BackoffPolicy;
  readonly #pullLimit: number;
  readonly #longPollSeconds: number;
  readonly #pushWaitSeconds: number;
  readonly #poll: { min: number; max: number };
  readonly #requestedClientId: string | undefined;

  #ready: Promise<void> | undefined;
  #meta: ClientMeta = { clientId: "", lastMutationId: 0, hlc: HLC_ZERO, ackedThrough: 0 };
  readonly #records = new Map<string, ServerRecord>();
  readonly #byCollection = new Map<string, Map<string, ServerRecord>>();
  #outbox: Mutation[] = [];
  #checkpoints: Checkpoints = {};
  readonly #usedScopes = new Set<string>();
  readonly #explicitScopes = new Set<string>();
  #caughtUp = false;

  #persistChain: Promise<unknown> = Promise.resolve();
  #token: string | null = null;
  #tokenRefresh: Promise<string> | null = null;
  #uploadFlight: Promise<void> | null = null;
  #pullFlight: Promise<PullRound> | null = null;
  #heldPull: AbortController | null = null;

  #started = false;
  #stopController: AbortController | null = null;
  readonly #uploadSleeper: Sleeper = createSleeper();
  readonly #pullSleeper: Sleeper = createSleeper();

  #status: SyncStatus = { ...INITIAL_STATUS };
  readonly #statusListeners = new Set<(status: SyncStatus) => void>();
  readonly #rejectionListeners = new Set<(rejection: RejectionEvent) => void>();
  readonly #subscribers = new Map<string, Set<(rows: Row<JsonObject>[]) => void>>();
  readonly #viewCache = new Map<string, { rows: Row<JsonObject>[]; byKey: Map<string, ViewRecord> }>();

  constructor(options: ClientOptions) {
    if (!options.url) throw new OffgridError("request_refused", "createClient needs a url");
    this.#url = options.url;
    this.#getToken = options.getToken;
    this.#storage = options.storage ?? memoryStorage();
    const platformFetch = (globalThis as { fetch?: FetchLike }).fetch;
    const fetchFn = options.fetch ?? (platformFetch ? platformFetch.bind(globalThis) : undefined);
    if (!fetchFn) throw new OffgridError("request_refused", "no fetch: pass options.fetch");
    this.#fetch = fetchFn;
    this.#now = options.now ?? (() => Date.now());
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#pullLimit = Math.min(Math.max(Math.floor(options.pullLimit ?? 500), 1), 1000);
    this.#longPollSeconds = Math.min(Math.max(Math.floor(options.longPollSeconds ?? 25), 1), 60);
    this.#pushWaitSeconds = Math.min(Math.max(Math.floor(options.pushWaitSeconds ?? 10), 0), 30);
    this.#poll = options.pollIntervalMs ?? { min: 1_000, max: 30_000 };
    this.#requestedClientId = options.clientId;
    if (options.clientId !== undefined && !CLIENT_ID_PATTERN.test(options.clientId)) {
      throw new OffgridError("request_refused", "clientId must be 8-128 of [A-Za-z0-9_-]");
    }
    void this.ready().catch(() => undefined);
  }

  // -- start-up --------------------------------------------------------------------------

  ready(): Promise<void> {
    return (this.#ready ??= this.#load());
  }

  async #load(): Promise<void> {
    let snapshot;
    try {
      snapshot = await this.#storage.load();
    } catch (error) {
      throw new OffgridError("storage", `could not load storage: ${String(error)}`, { cause: error });
    }
    if (snapshot.meta) {
      if (this.#requestedClientId && snapshot.meta.clientId !== this.#requestedClientId) {
        throw new OffgridError(
          "storage",
          `this storage belongs to client ${snapshot.meta.clientId}, not ${this.#requestedClientId}`,
        );
      }
      this.#meta = snapshot.meta;
    } else {
      this.#meta = {
        clientId: this.#requestedClientId ?? newClientId(this.#random),
        lastMutationId: 0,
        hlc: HLC_ZERO,
        ackedThrough: 0,
      };
      if (this.#requestedClientId) this.#meta.checkLedger = true;
      await this.#storage.write({ meta: this.#meta });
    }
    for (const record of snapshot.records) this.#setRecord(record);
    this.#outbox = snapshot.outbox.sort((a, b) => a.id - b.id);
    this.#checkpoints = snapshot.checkpoints;
    for (const scope of Object.keys(this.#checkpoints)) this.#usedScopes.add(scope);
    for (const mutation of this.#outbox) this.#usedScopes.add(mutation.scope);
    for (const scope of this.#explicitScopes) this.#usedScopes.add(scope);
    if (this.#meta.user === undefined) {
      try {
        await this.#freshToken();
      } catch {
        // offline or signed out: the personal scope waits for the first token
      }
    }
    if (this.#meta.user !== undefined) this.#usedScopes.add(personalScope(this.#meta.user));
    this.#setStatus({ pending: this.#outbox.length });
    this.#viewCache.clear();
    this.#notifyAll();
  }

  get clientId(): string {
    return this.#meta.clientId;
  }

  // -- collections and the optimistic view ------------------------------------------------

  collection<T = JsonObject>(name: string, options: CollectionOptions = {}): Collection<T> {
    if (options.scope !== undefined) {
      this.#explicitScopes.add(options.scope);
      if (!this.#usedScopes.has(options.scope)) {
        this.#usedScopes.add(options.scope);
        this.#caughtUp = false;
      }
    }
    return new Collection<T>(this, name, options);
  }

  resolveScope(explicit: string | undefined): string | undefined {
    if (explicit !== undefined) return explicit;
    return this.#meta.user === undefined ? undefined : personalScope(this.#meta.user);
  }

  viewOf(scope: string | undefined, collection: string, key: string): JsonObject | undefined {
    const resolved = this.resolveScope(scope);
    if (resolved === undefined) return undefined;
    return this.#view(resolved, collection).byKey.get(key)?.value ?? undefined;
  }

  rowsOf(scope: string | undefined, collection: string): Row<JsonObject>[] {
    const resolved = this.resolveScope(scope);
    return resolved === undefined ? [] : this.#view(resolved, collection).rows;
  }

  subscribeTo(
    scope: string | undefined,
    collection: string,
    listener: (rows: Row<JsonObject>[]) => void,
  ): () => void {
    // Keyed by the unresolved scope too, so a default-scope subscriber hears about the user.
    const id = `${scope ?? ""}${SCOPE_SEP}${collection}`;
    let set = this.#subscribers.get(id);
    if (!set) this.#subscribers.set(id, (set = new Set()));
    set.add(listener);
    listener(this.rowsOf(scope, collection));
    return () => {
      set?.delete(listener);
    };
  }

  #view(scope: string, collection: string): { rows: Row<JsonObject>[]; byKey: Map<string, ViewRecord> } {
    const id = scope + SCOPE_SEP + collection;
    let cached = this.#viewCache.get(id);
    if (!cached) {
      const server = this.#byCollection.get(id)?.values() ?? [];
      const byKey = rebaseCollection(server, this.#outbox, scope, collection);
      const rows = [...byKey.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, row]) => ({ key, value: row.value as JsonObject, pending: row.pending, version: row.version }));
      cached = { rows, byKey };
      this.#viewCache.set(id, cached);
    }
    return cached;
  }

  #touched(ids: Set<string>): void {
    for (const id of ids) this.#viewCache.delete(id);
    for (const [subscriberId, listeners] of this.#subscribers) {
      const [scope = "", collection = ""] = subscriberId.split(SCOPE_SEP);
      const resolved = this.resolveScope(scope === "" ? undefined : scope);
      if (resolved === undefined || !ids.has(resolved + SCOPE_SEP + collection)) continue;
      const rows = this.rowsOf(scope === "" ? undefined : scope, collection);
      for (const listener of [...listeners]) this.#safeCall(() => listener(rows));
    }
  }

  #notifyAll(): void {
    const ids = new Set<string>();
    for (const subscriberId of this.#subscribers.keys()) {
      const [scope = "", collection = ""] = subscriberId.split(SCOPE_SEP);
      const resolved = this.resolveScope(scope === "" ? undefined : scope);
      if (resolved !== undefined) ids.add(resolved + SCOPE_SEP + collection);
    }
    this.#touched(ids);
  }

  #setRecord(record: ServerRecord): void {
    this.#records.set(recordKey(record.scope, record.collection, record.key), record);
    const id = record.scope + SCOPE_SEP + record.collection;
    let map = this.#byCollection.get(id);
    if (!map) this.#byCollection.set(id, (map = new Map()));
    map.set(record.key, record);
  }

  #dropScopeRecords(scope: string): void {
    for (const [key, record] of this.#records) if (record.scope === scope) this.#records.delete(key);
    for (const id of [...this.#byCollection.keys()]) {
      if (id.startsWith(scope + SCOPE_SEP)) this.#byCollection.delete(id);
    }
  }

  // -- local writes ------------------------------------------------------------------------

  /** Run `work` after every earlier state change; state changes never interleave. */
  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#persistChain.then(work, work);
    this.#persistChain = next.catch(() => undefined);
    return next;
  }

  async #persist(write: StorageWrite): Promise<void> {
    try {
      await this.#storage.write(write);
    } catch (error) {
      throw new OffgridError("storage", `could not write storage: ${String(error)}`, { cause: error });
    }
  }

  async write(
    explicitScope: string | undefined,
    collection: string,
    key: string,
    op: MutationOp,
    value?: JsonObject,
  ): Promise<void> {
    await this.ready();
    const scope = this.resolveScope(explicitScope);
    if (scope === undefined) {
      throw new OffgridError("needs_auth", "no signed-in user yet: the personal scope is unknown");
    }
    const problems = writeProblems(scope, collection, key, op, value);
    if (problems.length > 0) {
      throw new OffgridError("invalid_mutation", problems.join("; "), { details: problems });
    }
    await this.#serial(async () => {
      const id = this.#meta.lastMutationId + 1;
      const hlc = tickHlc(this.#meta.hlc, this.#now());
      const held = this.#records.get(recordKey(scope, collection, key));
      const mutation: Mutation = {
        id,
        scope,
        collection,
        key,
        op,
        hlc: formatHlc(hlc, this.#meta.clientId),
        base_version: held?.version ?? 0,
      };
      if (op !== "delete") mutation.value = JSON.parse(JSON.stringify(value ?? {})) as JsonObject;
      const meta: ClientMeta = { ...this.#meta, lastMutationId: id, hlc };
      await this.#persist({ append: [mutation], meta });
      this.#meta = meta;
      this.#outbox.push(mutation);
      if (!this.#usedScopes.has(scope)) {
        this.#usedScopes.add(scope);
        this.#caughtUp = false;
      }
      this.#setStatus({ pending: this.#outbox.length });
      this.#touched(new Set([scope + SCOPE_SEP + collection]));
    });
    if (this.#started) this.#uploadSleeper.wake();
  }

  // -- HTTP with the token --------------------------------------------------------------

  async #freshToken(): Promise<string> {
    this.#tokenRefresh ??= (async () => {
      let token: string;
      try {
        token = await this.#getToken();
      } catch (error) {
        if (isOffgridError(error)) throw error;
        throw new OffgridError("network", `getToken() failed: ${String(error)}`, { cause: error });
      }
      this.#token = token;
      const user = tokenSubject(token);
      if (user !== undefined && user !== this.#meta.user) {
        await this.#serial(async () => {
          const meta = { ...this.#meta, user };
          await this.#persist({ meta });
          this.#meta = meta;
        });
        this.#usedScopes.add(personalScope(user));
        this.#caughtUp = false;
        this.#viewCache.clear();
        this.#notifyAll();
      }
      return token;
    })().finally(() => {
      this.#tokenRefresh = null;
    });
    return this.#tokenRefresh;
  }

  async #request(req: Omit<HttpRequest, "token">): Promise<HttpReply> {
    if (this.#status.needsAuth) {
      throw new OffgridError("needs_auth", "the server refused the token; sign in again");
    }
    const sentWith = this.#token ?? (await this.#freshToken());
    let reply = await this.#send({ ...req, token: sentWith });
    if (reply.status === 401) {
      // Another request may have refreshed the token meanwhile: use that one first.
      const token = this.#token !== sentWith && this.#token ? this.#token : await this.#freshToken();
      reply = await this.#send({ ...req, token });
      if (reply.status === 401) {
        const error = replyError(reply, this.#now());
        this.#setStatus({ needsAuth: true, error });
        throw error;
      }
    }
    if (reply.status < 200 || reply.status >= 300) throw replyError(reply, this.#now());
    return reply;
  }

  async #send(req: HttpRequest): Promise<HttpReply> {
    try {
      const reply = await httpRequest(this.#fetch, this.#url, req);
      if (!this.#status.online) this.#setStatus({ online: true });
      return reply;
    } catch (error) {
      if (isOffgridError(error, "network")) this.#setStatus({ online: false, error });
      throw error;
    }
  }

  // -- upload ----------------------------------------------------------------------------

  /** Push the outbox until every entry is processed by the server. One flight at a time. */
  #upload(): Promise<void> {
    if (!this.#uploadFlight) {
      // Started on a later tick, so that this assignment happens first; the loop itself clears
      // it in the same tick as it finds nothing left to send (see #uploadLoop).
      this.#uploadFlight = Promise.resolve().then(() => this.#withInstallLock(() => this.#uploadLoop()));
    }
    return this.#uploadFlight;
  }

  async #withInstallLock(work: () => Promise<void>): Promise<void> {
    // Several tabs of one web app share an IndexedDB install: one uploader at a time.
    const locks = (globalThis as { navigator?: { locks?: { request(name: string, fn: () => Promise<void>): Promise<void> } } })
      .navigator?.locks;
    if (locks) return locks.request(`offgrid-upload-${this.#meta.clientId}`, work);
    return work();
  }

  async #uploadLoop(): Promise<void> {
    let failedBatches = 0;
    try {
      if (this.#meta.checkLedger) await this.#moveIdsPastLedger();
      for (;;) {
        const batch = nextBatch(this.#outbox, this.#meta.ackedThrough);
        if (batch.length === 0) {
          this.#uploadFlight = null;
          this.#setStatus({ uploading: false });
          return;
        }
        this.#setStatus({ uploading: true });
        const status = await this.#pushBatch(batch);
        const outcome = readBatchOutcome(batch, status);
        if (outcome.applied) {
          failedBatches = 0;
          await this.#settle(outcome);
          continue;
        }
        // `gap` (or a batch the server gave up on): resend from the first unacknowledged id.
        failedBatches += 1;
        await this.#serial(async () => {
          const first = this.#outbox[0];
          const meta = { ...this.#meta, ackedThrough: Math.min(this.#meta.ackedThrough, first ? first.id - 1 : 0) };
          await this.#persist({ meta });
          this.#meta = meta;
        });
        if (outcome.failureReason !== "gap" && failedBatches >= 3) {
          throw new OffgridError("server", `batch failed: ${outcome.failureReason ?? "unknown"}`);
        }
      }
    } catch (error) {
      this.#uploadFlight = null;
      this.#setStatus({ uploading: false });
      throw error;
    }
  }

  /**
   * A reused `client_id` on fresh storage would number its writes from 1 again, and the server
   * would take them for duplicates and drop them. Before the first push, pull to `has_more:
   * false` (whose `last_mutation_id` is the ledger) and renumber the never-sent outbox past it.
   */
  async #moveIdsPastLedger(): Promise<void> {
    if (this.#usedScopes.size === 0) return; // nothing written anywhere yet: check next time
    await this.#pull(0); // its caught-up reply renumbers the outbox (see #pullChain)
  }

  async #pushBatch(batch: Mutation[]): Promise<WireBatchStatus> {
    const body = { client_id: this.#meta.clientId, mutations: batch };
    const reply = await this.#request({
      method: "POST",
      path: "/v1/sync/push",
      body,
      waitSeconds: this.#pushWaitSeconds,
    });
    let status = reply.body as WireBatchStatus;
    const batchId = status.batch_id;
    let attempt = 0;
    while (status.status === "queued" || status.status === "applying") {
      await delay(Math.min(50 * 2 ** attempt, 1_000));
      attempt += 1;
      try {
        const next = await this.#request({ method: "GET", path: `/v1/sync/batches/${encodeURIComponent(batchId)}` });
        status = next.body as WireBatchStatus;
      } catch (error) {
        if (isOffgridError(error, "request_refused") && error.status === 404) {
          // The batch record is gone: sending the same mutations again is always safe.
          return { batch_id: batchId, status: "failed", reason: "not_found", results: [] };
        }
        throw error;
      }
    }
    return status;
  }

  async #settle(outcome: ReturnType<typeof readBatchOutcome>): Promise<void> {
    const events: RejectionEvent[] = [];
    await this.#serial(async () => {
      const leaving = new Set<number>();
      const upsert: ServerRecord[] = [];
      /** Store the record a result describes; false when it may not be trusted to stay right. */
      const consider = (mutation: Mutation, value: JsonObject | null | undefined, version: number | undefined): boolean => {
        if (value === undefined || version === undefined) return false;
        // Never into a scope not pulled yet: its first pull (null checkpoint) brings live records
        // only, so a record the server deletes meanwhile would never be corrected.
        if (this.#checkpoints[mutation.scope] == null) return false;
        const held = this.#records.get(recordKey(mutation.scope, mutation.collection, mutation.key));
        if (held && !held.deleted && held.version > version) return true; // a newer pull got here first
        upsert.push({
          scope: mutation.scope,
          collection: mutation.collection,
          key: mutation.key,
          value,
          deleted: value === null,
          version,
        });
        return true;
      };
      for (const { mutation, result } of outcome.rejected) {
        leaving.add(mutation.id);
        consider(mutation, result.current, result.version);
        const event: RejectionEvent = {
          scope: mutation.scope,
          collection: mutation.collection,
          key: mutation.key,
          reason: result.reason ?? "rejected",
          mutationId: mutation.id,
          op: mutation.op,
        };
        if (result.errors !== undefined) event.errors = result.errors;
        if (result.current !== undefined) event.current = result.current;
        events.push(event);
      }
      for (const { mutation, value, version } of outcome.settled) {
        // Settled only when the record is stored; else it waits for the pull like the others.
        if (consider(mutation, value, version)) leaving.add(mutation.id);
      }
      // A record the server described in full already holds every earlier write of this
      // install to it (applied in id order): those entries leave too, or re-applying them on
      // top would briefly show an older state than the server's.
      for (const record of upsert) {
        const written = [...outcome.rejected.map((r) => r.mutation), ...outcome.settled.map((x) => x.mutation)]
          .filter((m) => leaving.has(m.id))
          .filter((m) => m.scope === record.scope && m.collection === record.collection && m.key === record.key)
          .reduce((max, m) => Math.max(max, m.id), 0);
        for (const m of this.#outbox) {
          if (m.id < written && m.scope === record.scope && m.collection === record.collection && m.key === record.key) {
            leaving.add(m.id);
          }
        }
      }
      const acked = Math.max(this.#meta.ackedThrough, outcome.ackedThrough ?? 0);
      const meta = { ...this.#meta, ackedThrough: acked };
      await this.#persist({ upsert, remove: [...leaving], meta });
      this.#meta = meta;
      const touched = new Set<string>();
      for (const record of upsert) this.#setRecord(record);
      this.#outbox = this.#outbox.filter((m) => {
        if (!leaving.has(m.id)) return true;
        touched.add(m.scope + SCOPE_SEP + m.collection);
        return false;
      });
      for (const record of upsert) touched.add(record.scope + SCOPE_SEP + record.collection);
      this.#setStatus({ pending: this.#outbox.length, error: null });
      this.#touched(touched);
    });
    for (const event of events) {
      for (const listener of [...this.#rejectionListeners]) this.#safeCall(() => listener(event));
    }
  }

  // -- pull ------------------------------------------------------------------------------

  /**
   * Pull every used scope to `has_more: false`. Only one pull runs at a time: a caller that
   * finds one running waits for it (cutting a held long-poll short) and then pulls itself.
   */
  async #pull(waitSeconds = 0): Promise<PullRound> {
    while (this.#pullFlight) {
      if (waitSeconds === 0) this.#heldPull?.abort();
      try {
        await this.#pullFlight;
      } catch {
        // the other caller handles its own failure
      }
    }
    const flight = this.#pullRounds(waitSeconds);
    this.#pullFlight = flight;
    try {
      return await flight;
    } finally {
      if (this.#pullFlight === flight) this.#pullFlight = null;
    }
  }

  async #pullRounds(waitSeconds: number): Promise<PullRound> {
    this.#setStatus({ downloading: true });
    try {
      const round: PullRound = { changed: 0, caughtUp: true, longPoll: false };
      const pulled = new Set(this.#usedScopes);
      const groups = scopeGroups(pulled);
      for (const scopes of groups) {
        // A long-poll only makes sense when one request covers every scope.
        const result = await this.#pullChain(scopes, groups.length === 1 ? waitSeconds : 0);
        round.changed += result.changed;
        round.caughtUp &&= result.caughtUp;
        round.longPoll ||= result.longPoll;
      }
      if (round.caughtUp) {
        // Caught up, unless a scope came into use while we pulled the others.
        this.#caughtUp = [...this.#usedScopes].every((scope) => pulled.has(scope));
        this.#setStatus({ lastSyncedAt: this.#now(), error: null });
      }
      return round;
    } finally {
      this.#setStatus({ downloading: false });
    }
  }

  /**
   * Pull `scopes` page after page, always naming all of them, until one reply has every
   * scope at `has_more: false`; only that reply's `last_mutation_id` prunes the outbox.
   */
  async #pullChain(scopes: string[], waitSeconds: number): Promise<PullRound> {
    const round: PullRound = { changed: 0, caughtUp: false, longPoll: false };
    let resyncs = 0;
    for (let page = 0; page < 10_000; page++) {
      const wait = page === 0 ? waitSeconds : 0;
      let reply: HttpReply;
      const controller = new AbortController();
      const stop = this.#stopController?.signal;
      const onStop = () => controller.abort();
      stop?.addEventListener("abort", onStop);
      if (wait) this.#heldPull = controller;
      try {
        reply = await this.#request({
          method: "POST",
          path: "/v1/sync/pull",
          body: pullRequestBody(this.#meta.clientId, scopes, this.#checkpoints, this.#pullLimit),
          waitSeconds: wait,
          signal: controller.signal,
        });
      } catch (error) {
        if (isOffgridError(error, "resync_required") && resyncs < scopes.length + 1) {
          resyncs += 1;
          await this.#resync(error.scope !== undefined && scopes.includes(error.scope) ? [error.scope] : scopes);
          page = -1;
          continue;
        }
        const lost = isOffgridError(error, "request_refused") && error.status === 403 ? scopeOfResync(error.message) : undefined;
        if (lost !== undefined && scopes.includes(lost)) {
          // Membership lost: that scope's data is no longer ours to show, and one lost scope
          // must not stop the others from syncing.
          await this.#forgetScope(lost);
          scopes = scopes.filter((scope) => scope !== lost);
          if (scopes.length === 0) return { ...round, caughtUp: true };
          page = -1;
          continue;
        }
        throw error;
      } finally {
        stop?.removeEventListener("abort", onStop);
        if (this.#heldPull === controller) this.#heldPull = null;
      }
      if (wait && /\bwait=/.test(reply.headers.get("Preference-Applied") ?? "")) round.longPoll = true;
      const result = readPullReply(reply.body as WirePullReply, scopes);
      round.changed += result.records.length;
      await this.#serial(async () => {
        const upsert = result.records.filter((r) =>
          pulledReplaces(this.#records.get(recordKey(r.scope, r.collection, r.key)), r),
        );
        let remove: number[] = [];
        let append: Mutation[] = [];
        let kept = this.#outbox;
        let meta: ClientMeta = this.#meta;
        if (result.caughtUp && meta.checkLedger) {
          // First full pull of fresh storage under an explicit client_id: this reply's
          // last_mutation_id is the server's ledger for that id; move the (never sent) outbox
          // past it, in this same transaction, before anything could prune or send it.
          const first = kept[0]?.id ?? meta.lastMutationId + 1;
          const shift = Math.max(0, result.lastMutationId - (first - 1));
          const { checkLedger: _checked, ...rest } = meta;
          meta = { ...rest, lastMutationId: Math.max(meta.lastMutationId + shift, result.lastMutationId) };
          if (shift > 0) {
            remove = kept.map((m) => m.id);
            append = kept.map((m) => ({ ...m, id: m.id + shift }));
            kept = append;
          }
        } else if (result.caughtUp) {
          const pruned = pruneOutbox(kept, result.lastMutationId, new Set(scopes));
          remove = pruned.removed.map((m) => m.id);
          kept = pruned.kept;
        }
        const acked = Math.max(meta.ackedThrough, result.lastMutationId);
        if (acked !== meta.ackedThrough) meta = { ...meta, ackedThrough: acked };
        const write: StorageWrite = { upsert, checkpoints: result.checkpoints, remove, append };
        if (meta !== this.#meta) write.meta = meta;
        await this.#persist(write);
        this.#meta = meta;
        const touched = new Set<string>();
        for (const record of upsert) {
          this.#setRecord(record);
          touched.add(record.scope + SCOPE_SEP + record.collection);
        }
        for (const id of remove) {
          const m = this.#outbox.find((x) => x.id === id);
          if (m) touched.add(m.scope + SCOPE_SEP + m.collection);
        }
        this.#outbox = kept;
        this.#checkpoints = { ...this.#checkpoints, ...result.checkpoints };
        this.#setStatus({ pending: this.#outbox.length });
        this.#touched(touched);
      });
      if (result.caughtUp) {
        round.caughtUp = true;
        return round;
      }
    }
    return round;
  }

  /** The user may no longer read `scope`: stop pulling it and drop its local data. */
  async #forgetScope(scope: string): Promise<void> {
    this.#usedScopes.delete(scope);
    this.#explicitScopes.delete(scope);
    await this.#serial(async () => {
      await this.#persist({ dropScopes: [scope] });
      const touched = new Set<string>();
      for (const id of this.#byCollection.keys()) if (id.startsWith(scope + SCOPE_SEP)) touched.add(id);
      this.#dropScopeRecords(scope);
      delete this.#checkpoints[scope];
      this.#touched(touched);
    });
  }

  /** `410`: upload what is pending, then forget `scopes` locally and pull them from `null`. */
  async #resync(scopes: string[]): Promise<void> {
    await this.#upload();
    await this.#serial(async () => {
      await this.#persist({ dropScopes: scopes });
      const touched = new Set<string>();
      for (const scope of scopes) {
        for (const id of this.#byCollection.keys()) if (id.startsWith(scope + SCOPE_SEP)) touched.add(id);
        this.#dropScopeRecords(scope);
        delete this.#checkpoints[scope];
      }
      this.#touched(touched);
    });
  }

  // -- public sync surface ---------------------------------------------------------------

  /** The app asks again after `needsAuth`: clear it and let sleeping background loops retry. */
  #retryAuth(): void {
    if (!this.#status.needsAuth) return;
    this.#setStatus({ needsAuth: false });
    this.#uploadSleeper.wake();
    this.#pullSleeper.wake();
  }

  async sync(): Promise<void> {
    await this.ready();
    this.#retryAuth();
    try {
      await this.#upload();
      await this.#pull(0);
    } catch (error) {
      if (!isOffgridError(error, "needs_auth")) this.#setStatus({ error: asOffgridError(error) });
      throw asOffgridError(error);
    }
  }

  async awaitSynced(options: AwaitSyncedOptions = {}): Promise<void> {
    await this.ready();
    this.#retryAuth();
    let attempt = 0;
    for (;;) {
      if (options.signal?.aborted) throw new OffgridError("aborted", "awaitSynced was cancelled");
      try {
        await this.#upload();
        await this.#pull(0);
        if (this.#outbox.length === 0 && this.#caughtUp && this.#uploadFlight === null) return;
        attempt = 0;
      } catch (error) {
        const typed = asOffgridError(error);
        if (!isTransient(typed) && typed.code !== "aborted") throw typed;
        this.#setStatus({ error: typed });
        await delay(typed.retryAfterMs ?? backoffDelay(attempt++, this.#random, this.#backoff), options.signal);
      }
    }
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#status.needsAuth) this.#setStatus({ needsAuth: false });
    const controller = new AbortController();
    this.#stopController = controller;
    void this.#runUploader(controller.signal);
    void this.#runPuller(controller.signal);
  }

  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    this.#stopController?.abort();
    this.#stopController = null;
    this.#uploadSleeper.wake();
    this.#pullSleeper.wake();
  }

  async #runUploader(stopped: AbortSignal): Promise<void> {
    await this.ready().catch(() => undefined);
    let failures = 0;
    while (!stopped.aborted) {
      try {
        await this.#upload();
        failures = 0;
        // Let the pull see our writes and prune the outbox: wake it, or cut its long-poll short.
        this.#heldPull?.abort();
        this.#pullSleeper.wake();
        if (this.#outbox.length > 0 && nextBatch(this.#outbox, this.#meta.ackedThrough).length > 0) continue;
        await this.#uploadSleeper.sleep(Infinity);
      } catch (error) {
        if (stopped.aborted) return;
        const typed = asOffgridError(error);
        this.#setStatus({ error: typed });
        if (typed.code === "needs_auth" || !isTransient(typed)) {
          await this.#uploadSleeper.sleep(typed.code === "needs_auth" ? Infinity : this.#backoff.maxMs);
        } else {
          await this.#uploadSleeper.sleep(typed.retryAfterMs ?? backoffDelay(failures++, this.#random, this.#backoff));
        }
      }
    }
  }

  async #runPuller(stopped: AbortSignal): Promise<void> {
    await this.ready().catch(() => undefined);
    let failures = 0;
    let idle = 0;
    while (!stopped.aborted) {
      const began = this.#now();
      try {
        // Writes the server has processed but no pull has shown yet: a live pull would wait for
        // the next commit (the ledger moving is not one), so ask plainly to learn the ledger.
        const plain = this.#awaitingPrune();
        const round = await this.#pull(plain ? 0 : this.#longPollSeconds);
        failures = 0;
        if (round.changed > 0) idle = 0;
        if (plain) {
          if (this.#awaitingPrune()) await this.#pullSleeper.sleep(this.#poll.min);
          continue;
        }
        // With live pull the server held the request: ask again at once, unless it came back
        // early with nothing (then pause, so a misbehaving server cannot cause a busy loop).
        if (round.longPoll && (round.changed > 0 || this.#now() - began >= this.#poll.min)) continue;
        const wait = round.longPoll ? this.#poll.min : Math.min(this.#poll.max, this.#poll.min * 2 ** idle++);
        await this.#pullSleeper.sleep(wait);
      } catch (error) {
        if (stopped.aborted) return;
        const typed = asOffgridError(error);
        if (typed.code === "aborted") continue; // a sync() cut our long-poll short
        this.#setStatus({ error: typed });
        if (typed.code === "needs_auth") await this.#pullSleeper.sleep(Infinity);
        else if (!isTransient(typed)) await this.#pullSleeper.sleep(this.#backoff.maxMs);
        else await this.#pullSleeper.sleep(typed.retryAfterMs ?? backoffDelay(failures++, this.#random, this.#backoff));
      }
    }
  }

  /** True while the outbox holds writes the server processed but no pull has shown yet. */
  #awaitingPrune(): boolean {
    const first = this.#outbox[0];
    return first !== undefined && first.id <= this.#meta.ackedThrough;
  }

  async handleTickle(_data?: unknown): Promise<void> {
    await this.ready();
    if (this.#started) {
      // Something changed (or the network came back): both loops try now, backoff or not.
      this.#pullSleeper.wake();
      this.#uploadSleeper.wake();
      return;
    }
    await this.#pull(0);
  }

  // -- status and events -----------------------------------------------------------------

  get status(): SyncStatus {
    return this.#status;
  }

  onStatus(listener: (status: SyncStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => {
      this.#statusListeners.delete(listener);
    };
  }

  onRejection(listener: (rejection: RejectionEvent) => void): () => void {
    this.#rejectionListeners.add(listener);
    return () => {
      this.#rejectionListeners.delete(listener);
    };
  }

  #setStatus(change: Partial<SyncStatus>): void {
    let differs = false;
    for (const [name, value] of Object.entries(change)) {
      if (this.#status[name as keyof SyncStatus] !== value) differs = true;
    }
    if (!differs) return;
    this.#status = { ...this.#status, ...change };
    for (const listener of [...this.#statusListeners]) this.#safeCall(() => listener(this.#status));
  }

  #safeCall(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      // An app listener's bug must not break sync; report it where the app can see it.
      setTimeout(() => {
        throw error;
      }, 0);
    }
  }

  async close(): Promise<void> {
    this.stop();
    await this.#persistChain;
    await this.#storage.close?.();
  }
}

function asOffgridError(error: unknown): OffgridError {
  if (error instanceof OffgridError) return error;
  return new OffgridError("server", String((error as Error)?.message ?? error), { cause: error });
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new OffgridError("aborted", "cancelled"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
