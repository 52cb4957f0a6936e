/**
 * Checks a write against the limits the server enforces for a whole request (SPEC §3 G8), so
 * that a write the server would refuse never enters the outbox: a refused request applies
 * nothing, and a mutation that can never be sent would hold up every later one.
 * @module
 */

import type { JsonValue, MutationOp } from "./types.js";

/** Record keys: 1–128 of `[A-Za-z0-9_.:-]`. */
export const KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Collection names. */
export const COLLECTION_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** Scopes: `<kind>:<id>`. */
export const SCOPE_PATTERN =
  // eslint-disable-next-line no-control-regex
  /^(?:user:[^\s\x00-\x1f]{1,200}|[a-z][a-z0-9_-]{0,31}:[^\s\x00-\x1f|]{1,200})$/;
/** Largest record value, in bytes of JSON. */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Deepest nesting of a value. */
export const MAX_DEPTH = 16;

/** Why a write is refused, one message per problem; empty when it is fine. */
export function writeProblems(
  scope: string,
  collection: string,
  key: string,
  op: MutationOp,
  value: unknown,
): string[] {
  const problems: string[] = [];
  if (!SCOPE_PATTERN.test(scope)) problems.push(`scope ${JSON.stringify(scope)} is not <kind>:<id>`);
  if (!COLLECTION_PATTERN.test(collection)) problems.push(`collection ${JSON.stringify(collection)} is not a collection name`);
  if (!KEY_PATTERN.test(key)) problems.push(`key ${JSON.stringify(key)} must be 1-128 of [A-Za-z0-9_.:-]`);
  if (op === "delete") return problems;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    problems.push(`${op} needs an object value`);
    return problems;
  }
  const bytes = utf8Length(JSON.stringify(value));
  if (bytes > MAX_VALUE_BYTES) problems.push(`value is ${bytes} bytes, more than ${MAX_VALUE_BYTES}`);
  checkValue(value as JsonValue, 1, "", problems);
  return problems;
}

function checkValue(value: JsonValue, depth: number, path: string, problems: string[]): void {
  if (depth > MAX_DEPTH) {
    problems.push(`value is nested deeper than ${MAX_DEPTH} at ${path || "the top"}`);
    return;
  }
  if (typeof value === "string") {
    if (value.includes("\u0000")) problems.push(`NUL character in a string at ${path}`);
    return;
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) problems.push(`not a finite number at ${path}`);
    return;
  }
  if (value === null || typeof value === "boolean") return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      if (Array.isArray(item)) problems.push(`an array directly inside an array at ${path}[${i}]`);
      checkValue(item, depth + 1, `${path}[${i}]`, problems);
    });
    return;
  }
  for (const [name, item] of Object.entries(value)) {
    if (name.startsWith("$") || name.includes(".") || name.includes("\u0000")) {
      problems.push(`field name ${JSON.stringify(name)} may not start with $ or hold . or NUL`);
    }
    if (item === undefined) continue;
    checkValue(item, depth + 1, path ? `${path}.${name}` : name, problems);
  }
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
