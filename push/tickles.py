"""Sync tickles (SPEC §4): when a batch changes a shared scope, the other members' devices get
one silent push per scope per debounce window, so they pull without polling.

Tickles are hints, not data: a lost one (a worker dying between the debounce mark and the
publish) costs a device one pull later, never a change.

iOS devices get at most one tickle per `ios_window_seconds` (15 minutes by default) whatever
the scopes: Apple throttles background pushes (its guidance: two or three an hour) and may
stop delivering them to an app that sends more. A foreground app hears of commits through the
live pull instead.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database
from redis import Redis

from push import pushes
from push.devices import DEVICES
from sync import membership

TICKLE_SENDER = "sync-tickles"


def _devices(db: Database, redis: Redis, users: list[str], ios_window_seconds: int) -> list[str]:
    """The users' devices to tickle now: every non-iOS one, and the iOS ones not tickled in the
    last `ios_window_seconds` (marked here, in one Redis round trip)."""
    found = list(db[DEVICES].find({"user": {"$in": users}}, {"platform": 1}))
    ios = [d["_id"] for d in found if d["platform"] == "ios"]
    marks = redis.pipeline(transaction=False)
    for device in ios:
        marks.set(f"offgrid:tickle:ios:{device}", 1, nx=True, ex=ios_window_seconds)
    fresh = {device for device, marked in zip(ios, marks.execute(), strict=True) if marked}
    return sorted(d["_id"] for d in found if d["platform"] != "ios" or d["_id"] in fresh)


def tickle_scopes(
    db: Database,
    redis: Redis,
    batch: dict[str, Any],
    window_seconds: int,
    ios_window_seconds: int = 900,
) -> list[str]:
    """Create the tickle pushes a just-applied batch calls for; return their push ids."""
    applied = {r["id"] for r in batch.get("results", []) if r["status"] == "applied"}
    scopes = sorted(
        {
            m["scope"]
            for m in batch["mutations"]
            if m["id"] in applied and not membership.is_personal(m["scope"])
        }
    )
    push_ids = []
    for scope in scopes:
        # One tickle per scope per window, across all workers.
        if not redis.set(f"offgrid:tickle:{scope}", batch["_id"], nx=True, ex=window_seconds):
            continue
        others = [
            m["user"] for m in membership.list_members(db, scope) if m["user"] != batch["user"]
        ]
        devices = _devices(db, redis, others, ios_window_seconds) if others else []
        if not devices:
            continue
        push_id, _, _ = pushes.create_push(
            db,
            TICKLE_SENDER,
            {
                "audience": {"devices": devices},
                "data": {"type": "sync", "scope": scope},
                "options": {
                    "silent": True,
                    "priority": "normal",
                    "ttl": 3600,
                    "collapse_key": f"sync:{scope}"[:64],
                },
            },
        )
        push_ids.append(push_id)
    return push_ids
