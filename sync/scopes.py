"""Who may read and write a scope.

Every user owns the personal scope `user:<sub>`. Shared scopes and their members arrive with
the sync engine; until then a shared scope is readable and writable by no one.
"""

from __future__ import annotations

import re

SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[^\s\x00-\x1f|]{1,200}$")


def personal_scope(user: str) -> str:
    return f"user:{user}"


def can_read(user: str, scope: str) -> bool:
    return scope == personal_scope(user)


def can_write(user: str, scope: str) -> bool:
    return scope == personal_scope(user)
