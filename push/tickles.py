"""Sync tickles (SPEC §4): when a batch changes a shared scope, the other members' devices get
one silent push per scope per debounce window, so they pull without polling.

Tickles are hints, not data: a lost one (a worker dying between the debounce mark and the
publish) costs a device one pull later, never a change.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database
from redis import Redis

from push import notifications
from sync import membership

TICKLE_SENDER = "sync-tickles"


def tickle_scopes(
    db: Database, redis: Redis, batch: dict[str, Any], window_seconds: int
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
        if not others:
            continue
        push_id, _, _ = notifications.create_push(
            db,
            TICKLE_SENDER,
            {
                "audience": {"users": others},
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
