/**
 * The client's sync status, as the app shows it (an offline badge, a spinner, a sign-in
 * prompt).
 * @module
 */

import type { OffgridError } from "./errors.js";

/** What the client is doing and how far it got. */
export interface SyncStatus {
  /** The last request got an answer from the server. */
  online: boolean;
  /** A batch is being pushed. */
  uploading: boolean;
  /** A pull is running. */
  downloading: boolean;
  /** Mutations in the outbox (written here, not yet seen back in pulled state). */
  pending: number;
  /** When every used scope last reached `has_more: false` (ms since the epoch), or null. */
  lastSyncedAt: number | null;
  /** The last failure, cleared by the next success. */
  error: OffgridError | null;
  /** The server refused the token twice: the app must sign the user in again. */
  needsAuth: boolean;
}

/** The status of a client that has done nothing yet. */
export const INITIAL_STATUS: SyncStatus = {
  online: false,
  uploading: false,
  downloading: false,
  pending: 0,
  lastSyncedAt: null,
  error: null,
  needsAuth: false,
};
