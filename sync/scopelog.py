"""A scope's server order: record sequence numbers and the committed watermark (G3, G4b).

Every record carries `seq`, its position in its scope's server order; a change gives it a new,
higher seq. The scope's head `sync_scopes {_id: scope, committed_seq, fence}` says how far that
order is complete. Readers only look at records with `seq <= committed_seq`.

A writer holds the scope's lock (`sync.leases`), so seqs are handed out by one writer at a time,
and commits in this order:
1. the records, each with a seq above the watermark (invisible to readers);
2. the head, raising `committed_seq` over all of them at once.
A change therefore never appears behind a checkpoint already handed out: a reader that saw
watermark W has seen every record with seq <= W, and later changes get seqs above W.
A crash between 1 and 2 leaves records above the watermark; the next writer in the scope
re-stamps them above its own commit before it writes anything (`_recover`), so they become
visible whole.

**Fencing.** A Redis lock can expire under a holder that stalls (a frozen VM, a long GC pause)
and then wakes up still believing it holds it. So the database, not the lock, decides who may
write, with single-document conditional updates only (no transactions; SPEC §7):
- taking the scope, a writer increments the head's `fence` and gets the new value, its token
  (`sync.leases.take_fence`);
- before writing records it records its *intent* on the head (its token, the ids it will
  write and its highest seq), on condition that `fence` still equals its token;
- each record write is conditional on the record's own `fence` not being above the token, and
  stamps the token on it; the head write (the commit) is conditional on `fence` == token;
- the next writer, finding an intent of an older token on the head, first raises the `fence`
  of each record named there (creating an empty placeholder for ids not written yet), then
  re-stamps what that writer wrote, and hands out seqs above the intent's highest.
So a writer that lost the scope is refused (`sync.leases.LeaseLost`) at its next write:
whatever it wrote before the takeover is re-stamped by the new writer and becomes visible once,
it cannot overwrite a newer writer's record, write a seq below a watermark already handed out,
or move the watermark.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from sync.conflicts import RecordState
from sync.leases import LeaseLost, take_fence

SCOPES = "sync_scopes"
RECORDS = "sync_records"
RECENT_WRITERS = 16


def record_id(scope: str, collection: str, key: str) -> str:
    # Collection names and keys cannot contain "|", so the id splits unambiguously from the right.
    return f"{scope}|{collection}|{key}"


def state_from_doc(doc: dict[str, Any] | None) -> RecordState:
    if doc is None or "seq" not in doc:  # absent, or a fencing placeholder (never written)
        return RecordState()
    lww = doc.get("lww") or {}
    return RecordState(
        value=doc.get("value") or {},
        deleted=bool(doc.get("deleted")),
        version=int(doc.get("version", 0)),
        exists=True,
        base_hlc=lww.get("base_hlc", ""),
        base_kind=lww.get("base_kind", "delete"),
        clocks={item["f"]: item["h"] for item in lww.get("clocks", [])},
    )


def doc_from_state(
    scope: str, collection: str, key: str, state: RecordState, writers: list[str]
) -> dict[str, Any]:
    return {
        "_id": record_id(scope, collection, key),
        "scope": scope,
        "collection": collection,
        "key": key,
        "value": state.value,
        "deleted": state.deleted,
        "version": state.version,
        # Field clocks as a list of small documents: FerretDB rejects nested arrays, and field
        # names may hold characters that are awkward as keys.
        "lww": {
            "base_hlc": state.base_hlc,
            "base_kind": state.base_kind,
            "clocks": [{"f": name, "h": clock} for name, clock in sorted(state.clocks.items())],
        },
        "writers": writers[-RECENT_WRITERS:],
    }


class ScopeWriter:
    """Stages record changes in one scope and commits them. Only the scope lock holder uses it;
    the database refuses its writes once a newer writer has taken the scope (fencing)."""

    def __init__(self, db: Database, scope: str) -> None:
        self.db = db
        self.scope = scope
        head = take_fence(db[SCOPES], scope, on_insert={"committed_seq": 0})
        assert head is not None  # upserted
        self.token = int(head["fence"])
        self.committed_seq = int(head["committed_seq"])
        intent = head.get("intent")
        highest = self.committed_seq
        if intent is not None and int(intent["token"]) < self.token:
            self._fence_out(intent)
            highest = max(highest, int(intent["highest_seq"]))
        self.next_seq = highest + 1  # never a seq a writer that lost the scope may have written
        self._loaded: dict[str, dict[str, Any] | None] = {}
        self._staged: dict[str, dict[str, Any]] = {}
        self._recover()

    def _fence_out(self, intent: dict[str, Any]) -> None:
        """Raise the fence of every record an older writer meant to write, so that any write it
        still makes is refused (a placeholder for ids it has not written yet)."""
        self.db[RECORDS].bulk_write(
            [
                UpdateOne({"_id": rid}, {"$max": {"fence": self.token}}, upsert=True)
                for rid in intent["rids"]
            ],
            ordered=False,
        )

    def _recover(self) -> None:
        """Re-stamp records a crashed writer left above the watermark, in their old order."""
        orphans = (
            self.db[RECORDS]
            .find({"scope": self.scope, "seq": {"$gt": self.committed_seq}})
            .sort("seq", ASCENDING)
        )
        for doc in orphans:
            self._loaded[doc["_id"]] = doc
            self.stage(doc)

    def prefetch(self, rids: list[str]) -> None:
        """Load many records in one query (index lookups)."""
        wanted = [rid for rid in set(rids) if rid not in self._loaded and rid not in self._staged]
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            found = {d["_id"]: d for d in self.db[RECORDS].find({"_id": {"$in": chunk}})}
            for rid in chunk:
                self._loaded[rid] = _written(found.get(rid))

    def record(self, rid: str) -> dict[str, Any] | None:
        """The record's document as this writer will leave it (staged, else stored)."""
        if rid in self._staged:
            return self._staged[rid]
        if rid not in self._loaded:
            self._loaded[rid] = _written(self.db[RECORDS].find_one({"_id": rid}))
        return self._loaded[rid]

    def stage(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Give `doc` the next seq; it becomes visible when `commit` raises the watermark."""
        staged = {**doc, "seq": self.next_seq, "changed_at": datetime.now(UTC)}
        self.next_seq += 1
        self._staged[doc["_id"]] = staged
        return staged

    def commit(self, crash_point: Callable[[str], None] | None = None) -> bool:
        """Write the staged records, then raise the watermark over them; False if nothing was
        staged. Raises `LeaseLost` when a newer writer has taken the scope: nothing of this
        writer's becomes visible but through that writer's re-stamping."""
        if not self._staged:
            return False
        hook = crash_point or (lambda _step: None)
        staged = sorted(self._staged.values(), key=lambda d: d["seq"])
        intent = {"token": self.token, "rids": [d["_id"] for d in staged],
                  "highest_seq": staged[-1]["seq"]}  # fmt: skip
        self._fenced(self.db[SCOPES].update_one(
            {"_id": self.scope, "fence": self.token}, {"$set": {"intent": intent}}
        ))  # fmt: skip
        hook("before_record_write")
        try:
            # Insert, or replace a record no newer writer has touched; a newer one's fence (or
            # placeholder) makes the filter miss and the upsert collide on `_id`.
            self.db[RECORDS].bulk_write(
                [
                    ReplaceOne(
                        {"_id": d["_id"], "fence": {"$not": {"$gt": self.token}}},
                        {**d, "fence": self.token},
                        upsert=True,
                    )
                    for d in staged
                ],
                ordered=True,
            )
        except BulkWriteError as exc:
            if all(e["code"] == 11000 for e in exc.details["writeErrors"]):
                raise LeaseLost(f"scope:{self.scope} (record fenced by a newer writer)") from None
            raise
        hook("after_record_write")
        highest = self.next_seq - 1
        self._fenced(self.db[SCOPES].update_one(
            {"_id": self.scope, "fence": self.token},
            {"$set": {"committed_seq": highest}, "$unset": {"intent": ""}},
        ))  # fmt: skip
        self.committed_seq = highest
        hook("after_head_write")
        self._loaded.update(self._staged)
        self._staged.clear()
        return True

    def _fenced(self, result: Any) -> None:
        if result.matched_count == 0:
            raise LeaseLost(f"scope:{self.scope} (taken by a newer writer)")


def _written(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored record, or None for an absent id or a fencing placeholder."""
    return doc if doc is not None and "seq" in doc else None


def committed_seq(db: Database, scope: str) -> int:
    head = db[SCOPES].find_one({"_id": scope}, {"committed_seq": 1})
    return int(head["committed_seq"]) if head else 0


@dataclass(frozen=True)
class Page:
    """One page of a scope: `records` in server order, `position` where the next page starts,
    and `watermark`, the committed seq the page was read against."""

    records: list[dict[str, Any]]
    position: int
    has_more: bool
    watermark: int


def read_page(
    db: Database,
    scope: str,
    after_seq: int,
    limit: int,
    collections: list[str] | None,
    live_only: bool,
    shared: SharedReads | None = None,
) -> Page:
    """Records of `scope` changed after `after_seq`, in server order, up to the watermark.

    Served by the (scope, seq) index on MongoDB: cost grows with the page, not the scope.
    With `shared`, readers of the same range at the same watermark share one read.
    """
    watermark = committed_seq(db, scope)
    if after_seq >= watermark:
        return Page([], after_seq, False, watermark)
    key = (scope, after_seq, watermark, limit, tuple(collections or ()), live_only)
    read = functools.partial(_records, db, *key)
    docs = read() if shared is None else shared.get(key, read)
    if len(docs) > limit:
        return Page(docs[:limit], docs[limit - 1]["seq"], True, watermark)
    return Page(docs, watermark, False, watermark)


def _records(
    db: Database,
    scope: str,
    after_seq: int,
    watermark: int,
    limit: int,
    collections: tuple[str, ...],
    live_only: bool,
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"scope": scope, "seq": {"$gt": after_seq, "$lte": watermark}}
    if collections:
        query["collection"] = {"$in": list(collections)}
    if live_only:
        query["deleted"] = False
    return list(
        db[RECORDS]
        .find(query, {"collection": 1, "key": 1, "value": 1, "deleted": 1, "version": 1, "seq": 1})
        .sort("seq", ASCENDING)
        .limit(limit + 1)
    )


class SharedReads:
    """One read for many readers of the same page (the live pulls one commit wakes).

    A page is keyed by its range *and the watermark it was read against*, so sharing is safe:
    nothing can enter a range at or below a watermark without the watermark moving (a change
    always gets a seq above it), and a record can only leave it, re-stamped above by a newer
    writer; so the shared read holds everything a fresh read would, and the reader is served
    as if it had read a moment earlier (the ledger it read first acknowledges nothing the
    page lacks). The first reader of a key reads; readers arriving meanwhile wait for it;
    a result is kept `keep_seconds` for stragglers, then forgotten. Records are shared:
    readers must not change them.
    """

    def __init__(self, keep_seconds: float = 1.0) -> None:
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._reads: dict[tuple[Any, ...], _SharedRead] = {}

    def get(self, key: tuple[Any, ...], read: Callable[[], list[dict[str, Any]]]) -> Any:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, r in self._reads.items() if r.expires < now]:
                del self._reads[stale]
            shared = self._reads.get(key)
            first = shared is None
            if first:
                shared = self._reads[key] = _SharedRead()
        assert shared is not None
        if not first:
            shared.done.wait()
            if shared.docs is not None:
                return shared.docs
            return read()  # the first reader failed: read on our own
        try:
            shared.docs = read()
            return shared.docs
        finally:
            shared.expires = time.monotonic() + self._keep
            if shared.docs is None:
                with self._lock:
                    self._reads.pop(key, None)
            shared.done.set()


@dataclass(eq=False)
class _SharedRead:
    done: threading.Event = field(default_factory=threading.Event)
    docs: list[dict[str, Any]] | None = None
    expires: float = float("inf")  # in flight


def writers_in_flight(db: Database, scope: str, watermark: int) -> list[str]:
    """Writer refs (`client:id`) of the records a commit in progress (or a crashed writer) has
    written above `watermark`: their changes are not visible to a reader of that watermark."""
    docs = db[RECORDS].find({"scope": scope, "seq": {"$gt": watermark}}, {"writers": 1})
    return [ref for doc in docs for ref in doc.get("writers", [])]


def ensure_indexes(db: Database) -> None:
    # Pull and crash recovery walk a scope in server order: (scope, seq) serves filter and sort.
    db[RECORDS].create_index([("scope", ASCENDING), ("seq", ASCENDING)], name="scope_seq")
