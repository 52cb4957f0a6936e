/**
 * The outbox: local mutations not yet known to be visible in pulled state. Pure functions
 * deciding what to send next, what a final batch status settles, and what a pull lets go.
 * @module
 */

import type { JsonObject, Mutation, WireBatchStatus, WireMutationResult } from "./types.js";

/** The most mutations in one push (SPEC §2). */
export const MAX_BATCH_MUTATIONS = 1000;
/** Stay well under the 1 MiB body limit. */
export const MAX_BATCH_BYTES = 900_000;

/**
 * The next batch to push: the outbox entries after `ackedThrough`, in id order, contiguous,
 * at most `maxMutations` and about `maxBytes` of JSON (always at least one entry).
 */
export function nextBatch(
  outbox: readonly Mutation[],
  ackedThrough: number,
  maxMutations: number = MAX_BATCH_MUTATIONS,
  maxBytes: number = MAX_BATCH_BYTES,
): Mutation[] {
  const batch: Mutation[] = [];
  let bytes = 64;
  for (const mutation of outbox) {
    if (mutation.id <= ackedThrough) continue;
    const previous = batch[batch.length - 1];
    if (previous && mutation.id !== previous.id + 1) break; // never send across a hole
    const size = JSON.stringify(mutation).length + 1;
    if (batch.length >= maxMutations || (batch.length > 0 && bytes + size > maxBytes)) break;
    batch.push(mutation);
    bytes += size;
  }
  return batch;
}

/** A rejected mutation with the server's word on it. */
export interface Rejected {
  mutation: Mutation;
  result: WireMutationResult;
}

/** A mutation whose resulting record the server told us in full (`current` + `version`). */
export interface Settled {
  mutation: Mutation;
  value: JsonObject | null;
  version: number;
}

/** What a final batch status means for the outbox. */
export interface BatchOutcome {
  /** The batch was applied: every id up to here is processed by the server. */
  applied: boolean;
  /** Why a failed batch failed (`gap`, `undeliverable`, …). */
  failureReason?: string;
  /** Processed through this id (the batch's last id when applied). */
  ackedThrough?: number;
  /** Rejected mutations: consumed by the server, they leave the outbox now. */
  rejected: Rejected[];
  /**
   * Applied mutations whose outcome the server stated (`current`): the record is known,
   * so they can leave the outbox now without the view ever losing them.
   */
  settled: Settled[];
}

/** Interpret the final status of `batch`. */
export function readBatchOutcome(batch: readonly Mutation[], status: WireBatchStatus): BatchOutcome {
  if (status.status !== "applied") {
    // A failed batch applied nothing new: its per-mutation `rejected` results (reason `gap`)
    // are not rejections of the writes, which must be sent again.
    const reason = status.reason ?? status.results.find((r) => r.status === "rejected")?.reason ?? status.status;
    return { applied: false, failureReason: reason, rejected: [], settled: [] };
  }
  const byId = new Map(batch.map((m) => [m.id, m]));
  const rejected: Rejected[] = [];
  const settled: Settled[] = [];
  for (const result of status.results) {
    const mutation = byId.get(result.id);
    if (!mutation) continue;
    if (result.status === "rejected") rejected.push({ mutation, result });
    else if (
      result.status === "applied" &&
      result.current !== undefined &&
      typeof result.version === "number"
    ) {
      settled.push({ mutation, value: result.current, version: result.version });
    }
  }
  const last = batch[batch.length - 1];
  const ackedThrough =
    typeof status.last_mutation_id === "number"
      ? Math.max(status.last_mutation_id, last?.id ?? 0)
      : last?.id ?? 0;
  return { applied: true, ackedThrough, rejected, settled };
}

/**
 * The outbox after a pull chain that ended with every scope in `scopes` at `has_more: false`
 * and reported `lastMutationId`: entries up to it whose scope was pulled are visible in the
 * pulled state (G4b), so they go; everything else stays.
 */
export function pruneOutbox(
  outbox: readonly Mutation[],
  lastMutationId: number,
  scopes: ReadonlySet<string>,
): { kept: Mutation[]; removed: Mutation[] } {
  const kept: Mutation[] = [];
  const removed: Mutation[] = [];
  for (const mutation of outbox) {
    if (mutation.id <= lastMutationId && scopes.has(mutation.scope)) removed.push(mutation);
    else kept.push(mutation);
  }
  return { kept, removed };
}
