"""Who may read and write a scope (G6).

Every user owns their personal scope `user:<sub>`. Shared scopes (`<kind>:<id>`) have members
with role `reader` (pull) or `writer` (pull and push), managed through the admin API. Checks
read the membership on every request and again when a batch is applied, so losing membership
takes effect at once.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

MEMBERS = "sync_members"
ROLES = ("reader", "writer")
# A personal scope's id is the JWT `sub`, which may hold `|` (Auth0's `auth0|…`); shared
# scope ids may not, so a membership id `<scope>|<user>` splits at its first `|`.
SCOPE_PATTERN = re.compile(
    r"^(?:user:[^\s\x00-\x1f]{1,200}|[a-z][a-z0-9_-]{0,31}:[^\s\x00-\x1f|]{1,200})$"
)


def personal_scope(user: str) -> str:
    return f"user:{user}"


def is_personal(scope: str) -> bool:
    return scope.startswith("user:")


def member_id(scope: str, user: str) -> str:
    return f"{scope}|{user}"


def role_of(db: Database, user: str, scope: str) -> str | None:
    if scope == personal_scope(user):
        return "owner"
    if is_personal(scope):
        return None
    doc = db[MEMBERS].find_one({"_id": member_id(scope, user)}, {"role": 1})
    return None if doc is None else doc["role"]


def can_read(db: Database, user: str, scope: str) -> bool:
    return role_of(db, user, scope) is not None


def can_write(db: Database, user: str, scope: str) -> bool:
    return role_of(db, user, scope) in ("owner", "writer")


def set_member(db: Database, scope: str, user: str, role: str) -> bool:
    """Add or change a member; True when the member is new."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    result = db[MEMBERS].replace_one(
        {"_id": member_id(scope, user)},
        {"_id": member_id(scope, user), "scope": scope, "user": user, "role": role},
        upsert=True,
    )
    return result.upserted_id is not None


def remove_member(db: Database, scope: str, user: str) -> bool:
    return db[MEMBERS].delete_one({"_id": member_id(scope, user)}).deleted_count == 1


def list_members(db: Database, scope: str) -> list[dict[str, Any]]:
    docs = db[MEMBERS].find({"scope": scope}, {"user": 1, "role": 1}).sort("user", ASCENDING)
    return [{"user": d["user"], "role": d["role"]} for d in docs]
