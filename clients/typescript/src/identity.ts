/**
 * Who is syncing: the install's `client_id` and the signed-in user (`sub` of the JWT), from
 * which the personal scope `user:<sub>` follows.
 * @module
 */

/** What the server accepts as a `client_id`: 8–128 of `[A-Za-z0-9_-]`. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9_-]{8,128}$/;

/** A new random `client_id` (32 hex digits), from `crypto.getRandomValues` when present. */
export function newClientId(random: () => number = Math.random): string {
  const bytes = new Uint8Array(16);
  const crypto = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } })
    .crypto;
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function decodeBase64Url(text: string): string {
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text.replace(/=+$/, "")) {
    const value = BASE64URL.indexOf(char === "+" ? "-" : char === "/" ? "_" : char);
    if (value < 0) throw new Error("not base64url");
    buffer = (buffer << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((buffer >> bits) & 0xff);
    }
  }
  // UTF-8 decode without TextDecoder (older Hermes builds lack it).
  return decodeURIComponent(bytes.map((b) => "%" + b.toString(16).padStart(2, "0")).join(""));
}

/**
 * The `sub` claim of a JWT, read without checking the signature (the server checks it; the
 * client only needs to know whose personal scope to use). `undefined` when unreadable.
 */
export function tokenSubject(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims: unknown = JSON.parse(decodeBase64Url(payload));
    if (claims && typeof claims === "object" && "sub" in claims) {
      const sub = (claims as { sub: unknown }).sub;
      return typeof sub === "string" && sub !== "" ? sub : undefined;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** The personal scope of `user`. */
export function personalScope(user: string): string {
  return `user:${user}`;
}
