/**
 * SQLite storage over a one-method executor, `execute(sql, params)`, which op-sqlite,
 * expo-sqlite and better-sqlite3 each satisfy with a line or two (README shows them).
 * Each write is one `BEGIN IMMEDIATE … COMMIT` transaction; the adapter serializes its own
 * calls so that an asynchronous executor never interleaves two transactions.
 * @module
 */

import type { Checkpoints } from "../checkpoints.js";
import type { JsonObject, Mutation, ServerRecord } from "../types.js";
import type { ClientMeta, Storage, StorageSnapshot, StorageWrite } from "./types.js";

/** A row as the executor returns it: column name to value. */
export type SqliteRow = Record<string, unknown>;

/** What {@link SqliteExecutor.execute} resolves to: the rows of a query (empty for others). */
export interface SqliteResult {
  rows: SqliteRow[];
}

/**
 * The one thing the SQLite adapter needs: run one statement with positional `?` parameters.
 * May answer synchronously or with a promise.
 */
export interface SqliteExecutor {
  execute(sql: string, params?: unknown[]): SqliteResult | Promise<SqliteResult>;
}

/** Options of {@link sqliteStorage}. */
export interface SqliteStorageOptions {
  /** Table name prefix, so several installs can share one database file. Default `offgrid_`. */
  prefix?: string;
}

const ROWS_PER_INSERT = 100; // 6 parameters a row: well under SQLite's 999-parameter limit

/** Storage in a SQLite database reached through `executor`. */
export function sqliteStorage(executor: SqliteExecutor, options: SqliteStorageOptions = {}): Storage {
  const prefix = options.prefix ?? "offgrid_";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(prefix)) throw new Error("prefix must be an SQL identifier");
  const t = {
    meta: `${prefix}meta`,
    records: `${prefix}records`,
    outbox: `${prefix}outbox`,
    checkpoints: `${prefix}checkpoints`,
  };
  let queue: Promise<unknown> = Promise.resolve();
  let ready: Promise<void> | undefined;

  const run = async (sql: string, params: unknown[] = []): Promise<SqliteRow[]> => {
    const result = await executor.execute(sql, params);
    return rowsOf(result);
  };

  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };

  const migrate = (): Promise<void> =>
    (ready ??= (async () => {
      await run(`CREATE TABLE IF NOT EXISTS ${t.meta} (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL)`);
      await run(
        `CREATE TABLE IF NOT EXISTS ${t.records} (scope TEXT NOT NULL, collection TEXT NOT NULL, ` +
          `key TEXT NOT NULL, value TEXT, deleted INTEGER NOT NULL, version INTEGER NOT NULL, ` +
          `PRIMARY KEY (scope, collection, key))`,
      );
      await run(`CREATE TABLE IF NOT EXISTS ${t.outbox} (id INTEGER PRIMARY KEY NOT NULL, body TEXT NOT NULL)`);
      await run(
        `CREATE TABLE IF NOT EXISTS ${t.checkpoints} (scope TEXT PRIMARY KEY NOT NULL, checkpoint TEXT)`,
      );
    })());

  return {
    load: () =>
      serialized(async () => {
        await migrate();
        const metaRows = await run(`SELECT v FROM ${t.meta} WHERE k = 'client'`);
        const records = (await run(
          `SELECT scope, collection, key, value, deleted, version FROM ${t.records}`,
        )).map(
          (row): ServerRecord => ({
            scope: String(row["scope"]),
            collection: String(row["collection"]),
            key: String(row["key"]),
            value: row["value"] == null ? null : (JSON.parse(String(row["value"])) as JsonObject),
            deleted: Number(row["deleted"]) !== 0,
            version: Number(row["version"]),
          }),
        );
        const outbox = (await run(`SELECT body FROM ${t.outbox} ORDER BY id`)).map(
          (row) => JSON.parse(String(row["body"])) as Mutation,
        );
        const checkpoints: Checkpoints = {};
        for (const row of await run(`SELECT scope, checkpoint FROM ${t.checkpoints}`)) {
          checkpoints[String(row["scope"])] = row["checkpoint"] == null ? null : String(row["checkpoint"]);
        }
        const first = metaRows[0];
        const snapshot: StorageSnapshot = {
          meta: first ? (JSON.parse(String(first["v"])) as ClientMeta) : null,
          records,
          outbox,
          checkpoints,
        };
        return snapshot;
      }),

    write: (write: StorageWrite) =>
      serialized(async () => {
        await migrate();
        await run("BEGIN IMMEDIATE");
        try {
          for (const scope of write.dropScopes ?? []) {
            await run(`DELETE FROM ${t.records} WHERE scope = ?`, [scope]);
            await run(`DELETE FROM ${t.checkpoints} WHERE scope = ?`, [scope]);
          }
          const upsert = write.upsert ?? [];
          for (let i = 0; i < upsert.length; i += ROWS_PER_INSERT) {
            const chunk = upsert.slice(i, i + ROWS_PER_INSERT);
            const params: unknown[] = [];
            for (const r of chunk) {
              params.push(r.scope, r.collection, r.key, r.value == null ? null : JSON.stringify(r.value), r.deleted ? 1 : 0, r.version);
            }
            await run(
              `INSERT OR REPLACE INTO ${t.records} (scope, collection, key, value, deleted, version) VALUES ` +
                chunk.map(() => "(?, ?, ?, ?, ?, ?)").join(", "),
              params,
            );
          }
          const remove = write.remove ?? [];
          for (let i = 0; i < remove.length; i += 500) {
            const chunk = remove.slice(i, i + 500);
            await run(`DELETE FROM ${t.outbox} WHERE id IN (${chunk.map(() => "?").join(", ")})`, chunk);
          }
          for (const mutation of write.append ?? []) {
            await run(`INSERT OR REPLACE INTO ${t.outbox} (id, body) VALUES (?, ?)`, [mutation.id, JSON.stringify(mutation)]);
          }
          for (const [scope, checkpoint] of Object.entries(write.checkpoints ?? {})) {
            await run(`INSERT OR REPLACE INTO ${t.checkpoints} (scope, checkpoint) VALUES (?, ?)`, [scope, checkpoint]);
          }
          if (write.meta) {
            await run(`INSERT OR REPLACE INTO ${t.meta} (k, v) VALUES ('client', ?)`, [JSON.stringify(write.meta)]);
          }
          await run("COMMIT");
        } catch (error) {
          try {
            await run("ROLLBACK");
          } catch {
            // the failed statement may already have ended the transaction
          }
          throw error;
        }
      }),
  };
}

function rowsOf(result: unknown): SqliteRow[] {
  if (!result || typeof result !== "object") return [];
  const rows = (result as { rows?: unknown }).rows;
  if (Array.isArray(rows)) return rows as SqliteRow[];
  // op-sqlite before v7 and the legacy expo-sqlite API: { rows: { _array: [...] } }
  const legacy = (rows as { _array?: unknown } | undefined)?._array;
  return Array.isArray(legacy) ? (legacy as SqliteRow[]) : [];
}
