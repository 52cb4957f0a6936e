"""Conflict resolution: how one mutation changes one record, per collection strategy.

Pure functions over `RecordState`; no I/O. The `lww` rules make the final state a function of
the *set* of mutations applied, whatever their order (G5), and applying a mutation twice the
same as applying it once (G1):

- The record has a *base*: the latest put or delete, by HLC. Every field written before the
  base is gone (a put replaces the whole record; a delete removes it).
- A field's value is the latest write to it, by HLC, among the base put and later patches.
  A patch value `null` removes the field (kept as a removal with its clock, so an older patch
  arriving later cannot bring it back).
- The record is deleted when its base is a delete and no later patch or put revived it.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_REMOVED = object()


@dataclass
class Rejection:
    reason: str
    errors: Any = None


@dataclass
class RecordState:
    """What the server knows of one record."""

    value: dict[str, Any] = field(default_factory=dict)
    deleted: bool = True  # a record that does not exist reads as deleted
    version: int = 0
    exists: bool = False
    # lww bookkeeping: the base's clock and kind, and each field's clock (also for removals)
    base_hlc: str = ""
    base_kind: str = "delete"
    clocks: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any] | None:
        """The record as clients see it (None when it does not exist or is deleted)."""
        return None if self.deleted else copy.deepcopy(self.value)


def _lww(state: RecordState, mutation: dict[str, Any]) -> RecordState | None:
    """Apply `mutation` with last-writer-wins per field. None when it changes nothing."""
    op, hlc = mutation["op"], mutation["hlc"]
    fields = {
        name: (state.value.get(name, _REMOVED), clock) for name, clock in state.clocks.items()
    }

    if op in ("put", "delete"):
        if hlc <= state.base_hlc:
            return None  # older than (or the same as) the current base: no effect
        survivors = {name: entry for name, entry in fields.items() if entry[1] > hlc}
        if op == "put":
            for name, value in mutation["value"].items():
                if name not in survivors:
                    survivors[name] = (value, hlc)
        base_hlc, base_kind, fields = hlc, op, survivors
    else:  # patch
        if hlc < state.base_hlc:
            return None  # the record was replaced or deleted after this patch was made
        changed = False
        for name, value in mutation["value"].items():
            current = fields.get(name)
            if current is None or hlc > current[1]:
                fields[name] = (_REMOVED if value is None else value, hlc)
                changed = True
        if not changed:
            return None
        base_hlc, base_kind = state.base_hlc, state.base_kind

    value = {name: v for name, (v, _) in fields.items() if v is not _REMOVED}
    deleted = base_kind == "delete" and not value
    return RecordState(
        value=value,
        deleted=deleted,
        version=state.version + 1,
        exists=True,
        base_hlc=base_hlc,
        base_kind=base_kind,
        clocks={name: clock for name, (_, clock) in fields.items()},
    )


def _replace(
    state: RecordState, mutation: dict[str, Any], new_value: dict[str, Any] | None
) -> RecordState:
    return RecordState(
        value=new_value or {},
        deleted=new_value is None,
        version=state.version + 1,
        exists=True,
        base_hlc=max(state.base_hlc, mutation["hlc"]),
        base_kind="delete" if new_value is None else "put",
        clocks={},
    )


def _apply_op(current: dict[str, Any] | None, mutation: dict[str, Any]) -> dict[str, Any] | None:
    """The plain meaning of an op on a whole value (None = deleted)."""
    if mutation["op"] == "put":
        return copy.deepcopy(mutation["value"])
    if mutation["op"] == "delete":
        return None
    merged = dict(current or {})
    for name, value in mutation["value"].items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def asked(state: RecordState, mutation: dict[str, Any]) -> dict[str, Any] | None:
    """The record as the mutation asks it to be (None = deleted), before any conflict rule."""
    return _apply_op(state.snapshot(), mutation)


def _server_wins(state: RecordState, mutation: dict[str, Any]) -> RecordState | Rejection | None:
    if mutation.get("base_version") is None:
        return Rejection("validation", {"base_version": ["is required for this collection"]})
    if mutation["base_version"] != state.version:
        return Rejection("conflict")
    if mutation["op"] == "delete" and state.deleted:
        return None  # already gone: nothing to change
    return _replace(state, mutation, _apply_op(state.snapshot(), mutation))


Resolver = Callable[[dict[str, Any] | None, dict[str, Any]], Any]


def load_resolver(dotted: str) -> Resolver:
    module_name, _, attr = dotted.rpartition(".")
    resolver = getattr(importlib.import_module(module_name), attr)
    if not callable(resolver):
        raise TypeError(f"{dotted} is not callable")
    return resolver


def _custom(
    state: RecordState, mutation: dict[str, Any], resolver: Resolver
) -> RecordState | Rejection | None:
    outcome = resolver(state.snapshot(), copy.deepcopy(mutation))
    if isinstance(outcome, Rejection):
        return outcome
    if outcome is not None and not isinstance(outcome, dict):
        raise TypeError("a custom resolver returns a dict, None (delete) or a Rejection")
    if outcome == state.snapshot() and state.exists:
        return None
    return _replace(state, mutation, outcome)


def resolve(
    strategy: str,
    state: RecordState,
    mutation: dict[str, Any],
    resolver: Resolver | None = None,
) -> RecordState | Rejection | None:
    """The record after `mutation`: a new state, a rejection, or None for no change."""
    if strategy == "lww":
        return _lww(state, mutation)
    if strategy == "server_wins":
        return _server_wins(state, mutation)
    if strategy == "custom" and resolver is not None:
        return _custom(state, mutation, resolver)
    raise ValueError(f"unknown strategy {strategy!r}")
