/**
 * The few lines an app writes to put `sqliteStorage` on better-sqlite3 (Node, Electron):
 * run each statement through a cached prepared statement.
 */

import Database from "better-sqlite3";
import type { SqliteExecutor } from "../../src/index.js";

/** An executor over a better-sqlite3 database. */
export function betterSqliteExecutor(db: Database.Database): SqliteExecutor {
  const statements = new Map<string, Database.Statement>();
  return {
    execute(sql, params = []) {
      let statement = statements.get(sql);
      if (!statement) {
        statement = db.prepare(sql);
        if (statements.size > 500) statements.clear();
        statements.set(sql, statement);
      }
      if (statement.reader) return { rows: statement.all(...params) as Record<string, unknown>[] };
      statement.run(...params);
      return { rows: [] };
    },
  };
}

/** Open (or create) a database file in WAL mode, as an app would. */
export function openDatabase(path: string): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  return db;
}
