"""Each scope's change log: the server order that pulls and checkpoints walk (G3, G4, G4b).

Storage, all addressed by `_id` only (the one lookup FerretDB's SQLite backend serves from an
index; a range or sort on any other field scans the whole collection):

- `sync_scopes` `{_id: scope, next_seq, committed_seq, bucket}`: the scope's head.
- `sync_log` `{_id: "<scope>|<bucket>", entries: [...]}`: log entries in seq order, a bucket
  holding up to BUCKET_ENTRIES entries or about BUCKET_BYTES of values. An entry is
  `{s: seq, c: collection, k: key, v: value, d: deleted, n: version, p: [bucket, seq] of the
  entry it supersedes, x: seq of the entry that superseded it}`.
- `sync_records`: one document per record with its current state, seq and bucket.

Writers hold the scope's lock (see `sync.leases`) and commit in this order:
1. log buckets (new entries, and `x` marks on the entries they supersede),
2. records,
3. the head, whose `committed_seq` makes the new entries visible.
Readers see only entries with `s <= committed_seq` and treat `x` marks above it as absent, so a
change that is still being written is never behind a checkpoint already handed out, and a
crash between the steps leaves nothing visible that is not whole. The next writer repairs such
a crash before it writes (`_recover`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from sync.conflicts import RecordState

SCOPES = "sync_scopes"
LOG = "sync_log"
RECORDS = "sync_records"
BUCKET_ENTRIES = 256
BUCKET_BYTES = 2 * 1024 * 1024
_FROM_STORED = object()


def record_id(scope: str, collection: str, key: str) -> str:
    # Collection names and keys cannot contain "|", so the id splits unambiguously from the right.
    return f"{scope}|{collection}|{key}"


def bucket_id(scope: str, bucket: int) -> str:
    return f"{scope}|{bucket:010d}"


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str)) if value is not None else 4


def state_from_doc(doc: dict[str, Any] | None) -> RecordState:
    if doc is None:
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


@dataclass
class StagedRecord:
    doc: dict[str, Any]
    entry: dict[str, Any]


@dataclass
class ScopeWriter:
    """Stages record changes in one scope and commits them in log order. Hold the scope lock."""

    db: Database
    scope: str
    head: dict[str, Any] = field(init=False)
    _buckets: dict[int, dict[str, Any]] = field(init=False, default_factory=dict)
    _dirty_buckets: set[int] = field(init=False, default_factory=set)
    _records: dict[str, dict[str, Any] | None] = field(init=False, default_factory=dict)
    _staged: dict[str, StagedRecord] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.head = self.db[SCOPES].find_one({"_id": self.scope}) or {
            "_id": self.scope,
            "next_seq": 1,
            "committed_seq": 0,
            "bucket": 0,
        }
        self._recover()

    # -- reading -------------------------------------------------------------------------

    def _bucket(self, number: int) -> dict[str, Any]:
        if number not in self._buckets:
            doc = self.db[LOG].find_one({"_id": bucket_id(self.scope, number)})
            self._buckets[number] = doc or {
                "_id": bucket_id(self.scope, number),
                "scope": self.scope,
                "bucket": number,
                "entries": [],
                "bytes": 0,
            }
        return self._buckets[number]

    def record(self, rid: str) -> dict[str, Any] | None:
        """The record's current document, including changes staged in this writer."""
        if rid in self._staged:
            return self._staged[rid].doc
        if rid not in self._records:
            self._records[rid] = self.db[RECORDS].find_one({"_id": rid})
        return self._records[rid]

    # -- crash repair ----------------------------------------------------------------------

    def _recover(self) -> None:
        """Undo the uncommitted tail a crashed writer left, re-logging records it did write."""
        committed = self.head["committed_seq"]
        self.head["next_seq"] = committed + 1
        orphans: list[dict[str, Any]] = []
        number = self.head["bucket"]
        while (doc := self.db[LOG].find_one({"_id": bucket_id(self.scope, number)})) is not None:
            self._buckets[number] = doc
            if any(e["s"] > committed for e in doc["entries"]):
                orphans += [e for e in doc["entries"] if e["s"] > committed]
                doc["entries"] = [e for e in doc["entries"] if e["s"] <= committed]
                doc["bytes"] = sum(_size(e.get("v")) for e in doc["entries"])
                self._dirty_buckets.add(number)
            number += 1
        for orphan in orphans:
            prev = orphan.get("p")
            if prev is not None:  # un-mark the entry it claimed to supersede
                for entry in self._bucket(prev[0])["entries"]:
                    if entry["s"] == prev[1] and entry.get("x", 0) > committed:
                        entry.pop("x", None)
                        self._dirty_buckets.add(prev[0])
            doc = self.record(record_id(self.scope, orphan["c"], orphan["k"]))
            if doc is not None and doc.get("seq") == orphan["s"]:
                # The crashed writer wrote this record: log its state again, visibly this time.
                self.stage(doc, prev=prev)

    # -- writing ---------------------------------------------------------------------------

    def stage(self, doc: dict[str, Any], prev: Any = _FROM_STORED) -> dict[str, Any]:
        """Give the record `doc` a new seq and log entry; return the doc as it will be stored."""
        rid = doc["_id"]
        if rid in self._staged:
            # Staged twice in one commit: the later state replaces the earlier entry outright.
            earlier = self._staged[rid].entry
            self._remove_staged_entry(earlier)
            prev = earlier.get("p")
        elif prev is _FROM_STORED:
            stored = self.record(rid)
            prev = [stored["bucket"], stored["seq"]] if stored and "seq" in stored else None
        seq = self.head["next_seq"]
        self.head["next_seq"] = seq + 1
        bucket_no = self._bucket_for(doc.get("value"))
        entry = {
            "s": seq,
            "c": doc["collection"],
            "k": doc["key"],
            "v": None if doc["deleted"] else doc["value"],
            "d": doc["deleted"],
            "n": doc["version"],
        }
        if prev is not None:
            entry["p"] = prev
            self._mark_superseded(prev, seq)
        bucket = self._bucket(bucket_no)
        bucket["entries"].append(entry)
        bucket["bytes"] += _size(entry["v"])
        self._dirty_buckets.add(bucket_no)
        stored_doc = {**doc, "seq": seq, "bucket": bucket_no}
        self._staged[rid] = StagedRecord(stored_doc, entry)
        return stored_doc

    def _remove_staged_entry(self, entry: dict[str, Any]) -> None:
        for number in self._dirty_buckets:
            entries = self._buckets[number]["entries"]
            if any(e is entry for e in entries):
                self._buckets[number]["entries"] = [e for e in entries if e is not entry]
                return

    def _mark_superseded(self, pointer: list[int], by_seq: int) -> None:
        number, seq = pointer
        for entry in self._bucket(number)["entries"]:
            if entry["s"] == seq:
                entry["x"] = by_seq
                self._dirty_buckets.add(number)
                return

    def _bucket_for(self, value: Any) -> int:
        number = self.head["bucket"]
        bucket = self._bucket(number)
        if bucket["entries"] and (
            len(bucket["entries"]) >= BUCKET_ENTRIES
            or bucket["bytes"] + _size(value) > BUCKET_BYTES
        ):
            number += 1
            self.head["bucket"] = number
        return number

    @property
    def has_changes(self) -> bool:
        return bool(self._staged) or bool(self._dirty_buckets)

    def commit(self, crash_point: Any = None) -> None:
        """Write log, then records, then the head that makes them visible."""
        if not self.has_changes:
            return
        hook = crash_point or (lambda _name: None)
        for number in sorted(self._dirty_buckets):
            bucket = self._buckets[number]
            self.db[LOG].replace_one({"_id": bucket["_id"]}, bucket, upsert=True)
        hook("after_log_write")
        for staged in self._staged.values():
            self.db[RECORDS].replace_one({"_id": staged.doc["_id"]}, staged.doc, upsert=True)
            self._records[staged.doc["_id"]] = staged.doc
        hook("after_record_write")
        self.head["committed_seq"] = self.head["next_seq"] - 1
        self.db[SCOPES].replace_one({"_id": self.scope}, self.head, upsert=True)
        hook("after_head_write")
        self._staged.clear()
        self._dirty_buckets.clear()


def read_head(db: Database, scope: str) -> dict[str, Any]:
    return db[SCOPES].find_one({"_id": scope}) or {"committed_seq": 0, "bucket": 0}


def read_page(
    db: Database,
    scope: str,
    after_seq: int,
    start_bucket: int,
    limit: int,
    collections: set[str] | None,
    live_only: bool,
) -> tuple[list[dict[str, Any]], int, int, bool]:
    """Entries after `after_seq` up to the committed head, skipping superseded ones.

    Returns (entries, last_seq, last_bucket, has_more). Cost grows with the page (plus the
    superseded entries it steps over), not with the size of the scope.
    """
    head = read_head(db, scope)
    committed = head["committed_seq"]
    position, position_bucket = after_seq, start_bucket
    found: list[dict[str, Any]] = []
    number = start_bucket
    while number <= head["bucket"] and position < committed:
        doc = db[LOG].find_one({"_id": bucket_id(scope, number)})
        entries = doc["entries"] if doc else []
        for entry in entries:
            if entry["s"] <= position or entry["s"] > committed:
                continue
            if len(found) >= limit:
                return found, position, position_bucket, True
            position, position_bucket = entry["s"], number
            if entry.get("x", committed + 1) <= committed:
                continue  # a later entry of this record is visible: skip this stale one
            if collections is not None and entry["c"] not in collections:
                continue
            if live_only and entry["d"]:
                continue
            found.append(entry)
        number += 1
    if position < committed:
        position = committed  # everything up to the head was examined
        position_bucket = head["bucket"]
    return found, position, position_bucket, False
