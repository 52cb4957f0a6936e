"""Request-level checks on a pushed batch, made before anything is stored (SPEC G6, G8).

A batch that fails any check is refused whole: nothing of it is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sync.collections import CollectionRegistry
from sync.hlc import belongs_to
from sync.limits import LimitExceeded, check_value


class BatchRefused(Exception):
    """The whole batch is refused. `kind` is `invalid`, `forbidden` or `too_large`."""

    def __init__(self, kind: str, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.details = details


def admit_batch(
    *,
    client_id: str,
    mutations: Sequence[dict[str, Any]],
    collections: CollectionRegistry,
    max_mutations: int,
    can_write: Callable[[str], bool],
) -> None:
    """Raise `BatchRefused` unless every mutation of the batch may be queued."""
    if len(mutations) > max_mutations:
        raise BatchRefused(
            "too_large", "too_many_mutations", f"a batch holds at most {max_mutations} mutations"
        )
    first = mutations[0]["id"]
    writable: dict[str, bool] = {}
    for index, mutation in enumerate(mutations):
        where = f"mutations[{index}]"
        if mutation["id"] != first + index:
            raise BatchRefused(
                "invalid", "ids_not_contiguous", f"{where}: ids must increase by 1 within a batch"
            )
        if not belongs_to(mutation["hlc"], client_id):
            raise BatchRefused(
                "invalid", "invalid_hlc", f"{where}: hlc must end with the client_id"
            )
        if collections.get(mutation["collection"]) is None:
            raise BatchRefused(
                "invalid",
                "unknown_collection",
                f"{where}: unknown collection {mutation['collection']!r}",
                {"known": collections.names},
            )
        scope = mutation["scope"]
        if scope not in writable:
            writable[scope] = can_write(scope)
        if not writable[scope]:
            raise BatchRefused(
                "forbidden", "forbidden", f"{where}: you may not write scope {scope!r}"
            )
        if "value" in mutation:
            try:
                check_value(mutation["value"])
            except LimitExceeded as exc:
                kind = "too_large" if exc.code == "value_too_large" else "invalid"
                raise BatchRefused(kind, exc.code, f"{where}: {exc}") from None
