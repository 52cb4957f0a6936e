"""The device registry (SPEC §4): which app installs can receive pushes, for whom, on what topics.

A device is identified by its provider token: registering a known token updates that device
(upsert by token), and a token registered by another user moves to that user — the phone
changed hands or accounts, and the old owner must stop receiving its pushes. The device id is
derived from the platform and token, so the upsert is a single write by `_id`, which every
MongoDB-compatible server serves without a secondary index (and FerretDB 1.24 needs no
atomic read-modify-write for it).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

DEVICES = "push_devices"
PLATFORMS = ("ios", "android", "web")
MAX_TOPICS = 64


TOPIC_CHARS = "[A-Za-z0-9_.~%-]"
TOPIC_PATTERN = re.compile(f"^{TOPIC_CHARS}{{1,128}}$")
DEVICE_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")  # what device_id() makes


def device_id(platform: str, token: str) -> str:
    return hashlib.sha256(f"{platform}\x00{token}".encode()).hexdigest()[:32]


def register(
    db: Database,
    *,
    user: str,
    platform: str,
    token: str,
    client_id: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    topics: list[str] | None = None,
    now: datetime | None = None,
) -> tuple[str, bool]:
    """Create or update the device of this token for `user`; return (device_id, created)."""
    now = now or datetime.now(UTC)
    did = device_id(platform, token)
    existing = db[DEVICES].find_one({"_id": did}, {"created_at": 1, "topics": 1, "user": 1})
    kept_topics = existing.get("topics", []) if existing and existing.get("user") == user else []
    doc = {
        "_id": did,
        "user": user,
        "platform": platform,
        "token": token,
        "client_id": client_id,
        "locale": locale,
        "timezone": timezone,
        # A token that moved to another user does not keep the old owner's subscriptions.
        "topics": sorted(set(topics if topics is not None else kept_topics)),
        "created_at": existing["created_at"] if existing else now,
        "registered_at": now,
        "last_seen": now,
    }
    db[DEVICES].replace_one({"_id": did}, doc, upsert=True)
    return did, existing is None


def owned(db: Database, did: str, user: str) -> dict[str, Any] | None:
    doc = db[DEVICES].find_one({"_id": did})
    return doc if doc is not None and doc["user"] == user else None


def unregister(db: Database, did: str, user: str) -> bool:
    if owned(db, did, user) is None:
        return False
    return db[DEVICES].delete_one({"_id": did, "user": user}).deleted_count == 1


class TooManyTopics(ValueError):
    pass


def set_topic(db: Database, did: str, user: str, topic: str, subscribed: bool) -> list[str] | None:
    """Subscribe or unsubscribe; None when the device is not the user's."""
    doc = owned(db, did, user)
    if doc is None:
        return None
    topics = set(doc.get("topics", []))
    if subscribed:
        topics.add(topic)
    else:
        topics.discard(topic)
    if len(topics) > MAX_TOPICS:
        raise TooManyTopics(f"a device follows at most {MAX_TOPICS} topics")
    ordered = sorted(topics)
    db[DEVICES].update_one({"_id": did}, {"$set": {"topics": ordered}})
    return ordered


def seen(db: Database, user: str, client_id: str, now: datetime | None = None) -> int:
    """A push or pull from this app install: its devices are alive (`last_seen` moves, so the
    unseen-device prune keeps them). Returns how many devices that was."""
    now = now or datetime.now(UTC)
    query = {"user": user, "client_id": client_id}
    return db[DEVICES].update_many(query, {"$set": {"last_seen": now}}).modified_count


def prune_unseen(db: Database, cutoff: datetime) -> int:
    """Delete devices whose app has not registered (been seen) since `cutoff`."""
    return db[DEVICES].delete_many({"last_seen": {"$lt": cutoff}}).deleted_count
