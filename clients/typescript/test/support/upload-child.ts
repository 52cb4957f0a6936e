/**
 * A small app process for the "killed mid-upload" test: it writes `write` counter increments
 * into SQLite storage (better-sqlite3) and syncs, printing `push <n>` as each push leaves so the
 * parent can SIGKILL it mid-upload; run again with `write: 0` it resumes from the file.
 */

import { createClient, sqliteStorage, type FetchLike } from "../../src/index.js";
import { betterSqliteExecutor, openDatabase } from "./better-sqlite.js";
import { mintToken } from "./env.js";

interface ChildArgs {
  file: string;
  url: string;
  secret: string;
  user: string;
  write: number;
  keys: number;
}

const args = JSON.parse(process.argv[2] ?? "{}") as ChildArgs;
const db = openDatabase(args.file);
let pushes = 0;
const fetchWithTrace: FetchLike = (url, init) => {
  const reply = fetch(url, init as RequestInit);
  if (url.endsWith("/v1/sync/push")) {
    pushes += 1;
    process.stdout.write(`push ${pushes}\n`);
  }
  return reply;
};
const client = createClient({
  url: args.url,
  getToken: () => mintToken(args.secret, args.user),
  storage: sqliteStorage(betterSqliteExecutor(db)),
  fetch: fetchWithTrace,
  pushWaitSeconds: 10,
  backoff: { baseMs: 50, maxMs: 1_000 },
});
const counters = client.collection("counters");
for (let i = 0; i < args.write; i++) await counters.put(`c${i % args.keys}`, { delta: 1 });
process.stdout.write(`written ${args.write}\n`);
await client.awaitSynced();
process.stdout.write(`synced pending=${client.status.pending}\n`);
await client.close();
db.close();
