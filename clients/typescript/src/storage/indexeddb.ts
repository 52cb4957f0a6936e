/**
 * IndexedDB storage for browsers: one database per install, each write one `readwrite`
 * transaction over every store it touches, so a local write and its outbox entry commit
 * together and survive a reload.
 * @module
 */

import type { Checkpoints } from "../checkpoints.js";
import type { Mutation, ServerRecord } from "../types.js";
import { recordKey, type ClientMeta, type Storage, type StorageSnapshot, type StorageWrite } from "./types.js";

const STORES = ["meta", "records", "outbox", "checkpoints"] as const;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/**
 * Storage in the IndexedDB database `name` (created on first use). Uses the global
 * `indexedDB` unless `factory` is given.
 */
export function indexedDbStorage(name: string, factory?: IDBFactory): Storage {
  let opened: Promise<IDBDatabase> | undefined;
  const open = (): Promise<IDBDatabase> =>
    (opened ??= new Promise<IDBDatabase>((resolve, reject) => {
      const idb = factory ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
      if (!idb) {
        reject(new Error("IndexedDB is not available here"));
        return;
      }
      const req = idb.open(name, 1);
      req.onupgradeneeded = () => {
        const db = req.result;
        db.createObjectStore("meta");
        const records = db.createObjectStore("records");
        records.createIndex("scope", "scope");
        db.createObjectStore("outbox");
        db.createObjectStore("checkpoints");
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error(`IndexedDB ${name} is blocked by another connection`));
    }));

  return {
    async load(): Promise<StorageSnapshot> {
      const db = await open();
      const tx = db.transaction([...STORES], "readonly");
      const [meta, records, outbox, scopes, checkpoints] = await Promise.all([
        request(tx.objectStore("meta").get("client")) as Promise<ClientMeta | undefined>,
        request(tx.objectStore("records").getAll()) as Promise<ServerRecord[]>,
        request(tx.objectStore("outbox").getAll()) as Promise<Mutation[]>,
        request(tx.objectStore("checkpoints").getAllKeys()) as Promise<IDBValidKey[]>,
        request(tx.objectStore("checkpoints").getAll()) as Promise<(string | null)[]>,
      ]);
      const byScope: Checkpoints = {};
      scopes.forEach((scope, i) => {
        byScope[String(scope)] = checkpoints[i] ?? null;
      });
      return {
        meta: meta ?? null,
        records,
        outbox: outbox.sort((a, b) => a.id - b.id),
        checkpoints: byScope,
      };
    },

    async write(write: StorageWrite): Promise<void> {
      const db = await open();
      const tx = db.transaction([...STORES], "readwrite");
      const finished = done(tx);
      const records = tx.objectStore("records");
      const checkpoints = tx.objectStore("checkpoints");
      const outbox = tx.objectStore("outbox");
      try {
        for (const scope of write.dropScopes ?? []) {
          const keys = await request(records.index("scope").getAllKeys(IDBKeyRange.only(scope)));
          for (const key of keys) records.delete(key);
          checkpoints.delete(scope);
        }
        for (const record of write.upsert ?? []) {
          records.put(record, recordKey(record.scope, record.collection, record.key));
        }
        for (const id of write.remove ?? []) outbox.delete(id);
        for (const mutation of write.append ?? []) outbox.put(mutation, mutation.id);
        for (const [scope, checkpoint] of Object.entries(write.checkpoints ?? {})) {
          checkpoints.put(checkpoint, scope);
        }
        if (write.meta) tx.objectStore("meta").put(write.meta, "client");
      } catch (error) {
        tx.abort();
        await finished.catch(() => undefined);
        throw error;
      }
      await finished;
    },

    async close(): Promise<void> {
      if (opened) (await opened).close();
      opened = undefined;
    },
  };
}
