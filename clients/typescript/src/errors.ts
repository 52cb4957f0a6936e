/**
 * Errors the SDK reports: typed values with a stable `code`, never bare strings.
 * @module
 */

/** Every kind of failure the client can report. */
export type OffgridErrorCode =
  /** The request never got an answer (offline, DNS, reset, lost reply). */
  | "network"
  /** The server refused the token twice, even after `getToken()` gave a fresh one. */
  | "needs_auth"
  /** `429`: the server asked to wait `retryAfterMs`. */
  | "rate_limited"
  /** `503`: the server could not take work now; wait `retryAfterMs`. */
  | "unavailable"
  /** `410 resync_required`: a checkpoint is older than the tombstone horizon. */
  | "resync_required"
  /** Any other 4xx: the request itself was refused (nothing was applied). */
  | "request_refused"
  /** A 5xx other than 503, or a reply the client cannot read. */
  | "server"
  /** A write the server would refuse, caught before it entered the outbox. */
  | "invalid_mutation"
  /** The local storage failed. */
  | "storage"
  /** The operation was cancelled by `stop()`. */
  | "aborted";

/** Fields an {@link OffgridError} may carry besides its code and message. */
export interface OffgridErrorInit {
  /** HTTP status, when the error came from a reply. */
  status?: number;
  /** The server's `error.code`, when the reply carried one. */
  serverCode?: string;
  /** How long the server asked the client to wait (`Retry-After`), in ms. */
  retryAfterMs?: number;
  /** The scope the error is about (`resync_required`). */
  scope?: string;
  /** The server's `error.details`, or validation details for `invalid_mutation`. */
  details?: unknown;
  /** The underlying error. */
  cause?: unknown;
}

/** An error from the Offgrid client. Switch on `code`; the message is for people. */
export class OffgridError extends Error {
  /** What went wrong, as a stable machine-readable code. */
  readonly code: OffgridErrorCode;
  /** HTTP status, when the error came from a reply. */
  readonly status: number | undefined;
  /** The server's `error.code`, when the reply carried one. */
  readonly serverCode: string | undefined;
  /** How long the server asked the client to wait, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The scope the error is about, when there is one. */
  readonly scope: string | undefined;
  /** Extra details (server `error.details`, validation messages). */
  readonly details: unknown;

  /** Build an error of kind `code`. */
  constructor(code: OffgridErrorCode, message: string, init: OffgridErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "OffgridError";
    this.code = code;
    this.status = init.status;
    this.serverCode = init.serverCode;
    this.retryAfterMs = init.retryAfterMs;
    this.scope = init.scope;
    this.details = init.details;
  }
}

/** True when `error` is an {@link OffgridError} (optionally of one of `codes`). */
export function isOffgridError(
  error: unknown,
  ...codes: OffgridErrorCode[]
): error is OffgridError {
  return error instanceof OffgridError && (codes.length === 0 || codes.includes(error.code));
}

/** Failures worth retrying later without the app doing anything. */
export function isTransient(error: unknown): boolean {
  return isOffgridError(error, "network", "rate_limited", "unavailable", "server");
}
