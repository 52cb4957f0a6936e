/**
 * Hybrid logical clock stamps: `<13-digit unix ms>-<4 hex counter>-<client_id>` (SPEC §2).
 * Fixed width, so string order is clock order. Pure functions over {@link HlcState}.
 * @module
 */

/** The clock's persisted state: the last stamp's milliseconds and counter. */
export interface HlcState {
  ms: number;
  counter: number;
}

/** The state of a clock that never ticked. */
export const HLC_ZERO: HlcState = { ms: 0, counter: 0 };

const MAX_COUNTER = 0xffff;
const MAX_MS = 9_999_999_999_999;

/**
 * The next clock state after `state` at wall time `nowMs`: `max(now, last)`; the counter goes
 * up when the milliseconds did not move, else back to 0. Always strictly after `state`.
 */
export function tickHlc(state: HlcState, nowMs: number): HlcState {
  const now = Math.max(0, Math.floor(nowMs));
  if (now > state.ms) return { ms: Math.min(now, MAX_MS), counter: 0 };
  if (state.counter < MAX_COUNTER) return { ms: state.ms, counter: state.counter + 1 };
  // 65,536 stamps in one millisecond: borrow the next millisecond rather than wrap.
  return { ms: state.ms + 1, counter: 0 };
}

/** The wire form of a clock state for `clientId`. */
export function formatHlc(state: HlcState, clientId: string): string {
  const ms = String(state.ms).padStart(13, "0");
  const counter = state.counter.toString(16).padStart(4, "0");
  return `${ms}-${counter}-${clientId}`;
}

/** Parse a wire stamp; `undefined` when it is not one. */
export function parseHlc(stamp: string): (HlcState & { clientId: string }) | undefined {
  const match = /^([0-9]{13})-([0-9a-f]{4})-([A-Za-z0-9_-]{8,128})$/.exec(stamp);
  if (!match) return undefined;
  return { ms: Number(match[1]), counter: parseInt(match[2] ?? "0", 16), clientId: match[3] ?? "" };
}

/** Compare two clock states: negative, zero or positive like `Array.prototype.sort` wants. */
export function compareHlc(a: HlcState, b: HlcState): number {
  return a.ms !== b.ms ? a.ms - b.ms : a.counter - b.counter;
}
