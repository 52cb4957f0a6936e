/**
 * How long to wait before trying again: exponential backoff with full jitter, and the
 * server's `Retry-After` when it sent one. Pure functions; randomness is passed in.
 * @module
 */

/** Tuning of {@link backoffDelay}. */
export interface BackoffPolicy {
  /** The first retry's ceiling, in ms. */
  baseMs: number;
  /** The longest wait, in ms. */
  maxMs: number;
}

/** Defaults: 0.5 s doubling up to 30 s. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/**
 * The wait before retry number `attempt` (0 for the first retry): a uniform draw in
 * `[ceiling/2, ceiling]` with `ceiling = min(maxMs, baseMs · 2^attempt)`, so clients that
 * failed together do not come back together, and none retries in a busy loop.
 */
export function backoffDelay(
  attempt: number,
  random: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * A `Retry-After` header as ms from `nowMs`: delta-seconds or an HTTP date. `undefined` when
 * absent or unreadable; never negative; capped at one hour.
 */
export function parseRetryAfter(header: string | null | undefined, nowMs: number): number | undefined {
  if (header == null) return undefined;
  const text = header.trim();
  if (text === "") return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = date - nowMs;
  }
  return Math.min(Math.max(0, Math.round(ms)), 3_600_000);
}
