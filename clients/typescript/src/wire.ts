/**
 * HTTP for the sync protocol: one request with a bearer token over the `fetch` passed in,
 * and the mapping of replies to {@link OffgridError}s. No retries here; the client decides.
 * @module
 */

import { parseRetryAfter } from "./backoff.js";
import { OffgridError } from "./errors.js";
import { scopeOfResync } from "./checkpoints.js";

/** The part of `fetch` the client uses (the platform's `fetch` satisfies it). */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<{
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}>;

/** A reply, its body parsed as JSON when it is JSON. */
export interface HttpReply {
  status: number;
  headers: { get(name: string): string | null };
  body: unknown;
}

/** One request. */
export interface HttpRequest {
  method: "GET" | "POST";
  path: string;
  token: string;
  body?: unknown;
  /** `Prefer: wait=N`. */
  waitSeconds?: number;
  signal?: AbortSignal;
}

/** Send `req` to `baseUrl`. Network failures (and a lost reply) become `network` errors. */
export async function httpRequest(fetchFn: FetchLike, baseUrl: string, req: HttpRequest): Promise<HttpReply> {
  const headers: Record<string, string> = {
    Authorization: `Bearer ${req.token}`,
    Accept: "application/json",
  };
  if (req.body !== undefined) headers["Content-Type"] = "application/json";
  if (req.waitSeconds) headers["Prefer"] = `wait=${req.waitSeconds}`;
  const url = baseUrl.replace(/\/+$/, "") + req.path;
  let response: Awaited<ReturnType<FetchLike>>;
  let text: string;
  try {
    const init: Parameters<FetchLike>[1] = { method: req.method, headers };
    if (req.body !== undefined) init.body = JSON.stringify(req.body);
    if (req.signal) init.signal = req.signal;
    response = await fetchFn(url, init);
    text = await response.text();
  } catch (error) {
    if (req.signal?.aborted) throw new OffgridError("aborted", "the request was cancelled", { cause: error });
    throw new OffgridError("network", `no reply from ${url}: ${String((error as Error)?.message ?? error)}`, {
      cause: error,
    });
  }
  let body: unknown = undefined;
  if (text !== "") {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  return { status: response.status, headers: response.headers, body };
}

/** The error a non-2xx reply stands for. */
export function replyError(reply: HttpReply, nowMs: number): OffgridError {
  const error = (reply.body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)
    ?.error;
  const serverCode = typeof error?.code === "string" ? error.code : undefined;
  const message = typeof error?.message === "string" ? error.message : `HTTP ${reply.status}`;
  const init = { status: reply.status, serverCode, details: error?.details };
  const retryAfterMs = parseRetryAfter(reply.headers.get("Retry-After"), nowMs);
  switch (reply.status) {
    case 401:
      return new OffgridError("needs_auth", message, init);
    case 410: {
      const scope = scopeOfResync(message);
      return new OffgridError("resync_required", message, scope === undefined ? init : { ...init, scope });
    }
    case 429:
      return new OffgridError("rate_limited", message, retryAfterMs === undefined ? init : { ...init, retryAfterMs });
    case 503:
      return new OffgridError("unavailable", message, retryAfterMs === undefined ? init : { ...init, retryAfterMs });
    default:
      return reply.status >= 500
        ? new OffgridError("server", message, init)
        : new OffgridError("request_refused", message, init);
  }
}
