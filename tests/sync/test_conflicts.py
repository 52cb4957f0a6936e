"""Conflict resolution rules, and G5 (order independence) as a property of `resolve`."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.conflicts import RecordState, Rejection, resolve

CLIENTS = ("client-aa", "client-bb", "client-cc")


def hlc(ms: int, client: str, counter: int = 0) -> str:
    return f"{1764068000000 + ms:013d}-{counter:04x}-{client}"


def apply_all(mutations: list[dict[str, Any]], strategy: str = "lww") -> RecordState:
    state = RecordState()
    for mutation in mutations:
        outcome = resolve(strategy, state, mutation)
        if isinstance(outcome, RecordState):
            state = outcome
    return state


def put(ms: int, value: dict[str, Any], client: str = "client-aa") -> dict[str, Any]:
    return {"op": "put", "value": value, "hlc": hlc(ms, client)}


def patch(ms: int, value: dict[str, Any], client: str = "client-aa") -> dict[str, Any]:
    return {"op": "patch", "value": value, "hlc": hlc(ms, client)}


def delete(ms: int, client: str = "client-aa") -> dict[str, Any]:
    return {"op": "delete", "hlc": hlc(ms, client)}


def test_patch_sets_fields_and_null_removes_one() -> None:
    state = apply_all([put(1, {"a": 1, "b": 2}), patch(2, {"b": None, "c": 3})])
    assert state.snapshot() == {"a": 1, "c": 3}


def test_concurrent_patches_of_different_fields_both_survive() -> None:
    state = apply_all(
        [put(1, {"a": 0, "b": 0}), patch(3, {"a": 1}, "client-bb"), patch(2, {"b": 2})]
    )
    assert state.snapshot() == {"a": 1, "b": 2}


def test_older_write_to_a_field_loses() -> None:
    state = apply_all([patch(5, {"a": "new"}), patch(4, {"a": "old"}, "client-bb")])
    assert state.snapshot() == {"a": "new"}


def test_delete_wins_over_older_fields_and_later_patch_revives() -> None:
    deleted = apply_all([put(1, {"a": 1}), delete(3), patch(2, {"b": 2}, "client-bb")])
    assert deleted.deleted is True
    assert deleted.snapshot() is None
    revived = apply_all([put(1, {"a": 1}), delete(3), patch(4, {"b": 2}, "client-bb")])
    assert revived.snapshot() == {"b": 2}


def test_a_put_replaces_fields_older_than_it() -> None:
    state = apply_all([patch(1, {"x": 1}), put(2, {"y": 2}), patch(3, {"z": 3})])
    assert state.snapshot() == {"y": 2, "z": 3}


def test_replaying_a_mutation_changes_nothing() -> None:
    mutation = patch(2, {"a": 1})
    state = apply_all([put(1, {"b": 1}), mutation])
    assert resolve("lww", state, mutation) is None


def test_server_wins_rejects_a_stale_base_version() -> None:
    state = RecordState()
    first = resolve("server_wins", state, {**put(1, {"n": 1}), "base_version": 0})
    assert isinstance(first, RecordState)
    assert first.version == 1
    stale = resolve("server_wins", first, {**put(2, {"n": 2}), "base_version": 0})
    assert stale == Rejection("conflict")
    missing = resolve("server_wins", first, put(3, {"n": 3}))
    assert isinstance(missing, Rejection)
    assert missing.reason == "validation"


fields = st.sampled_from(["a", "b", "c"])
values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3))


@st.composite
def mutation_sets(draw: Any) -> list[dict[str, Any]]:
    """Mutations from several clients with distinct HLCs (as real clients produce)."""
    count = draw(st.integers(1, 7))
    times = draw(st.lists(st.integers(0, 20), min_size=count, max_size=count))
    result = []
    for index, ms in enumerate(times):
        client = draw(st.sampled_from(CLIENTS))
        op = draw(st.sampled_from(["put", "patch", "delete"]))
        mutation: dict[str, Any] = {"op": op, "hlc": hlc(ms, client, index)}
        if op == "put":
            mutation["value"] = draw(
                st.dictionaries(fields, values.filter(lambda v: v is not None))
            )
        elif op == "patch":
            mutation["value"] = draw(st.dictionaries(fields, values, min_size=1))
        result.append(mutation)
    return result


def _observable(state: RecordState) -> tuple[Any, bool]:
    return state.snapshot(), state.deleted


@settings(max_examples=300, deadline=None)
@given(mutation_sets(), st.randoms(use_true_random=False))
def test_g5_lww_state_does_not_depend_on_order_or_duplicates(
    mutations: list[dict[str, Any]], rnd: Any
) -> None:
    reference = _observable(apply_all(sorted(mutations, key=lambda m: m["hlc"])))
    shuffled = mutations + rnd.sample(mutations, k=len(mutations) // 2)  # some delivered twice
    rnd.shuffle(shuffled)
    assert _observable(apply_all(shuffled)) == reference


def test_g5_every_order_of_a_small_set_agrees() -> None:
    mutations = [
        put(1, {"a": 1, "b": 1}),
        patch(2, {"b": None, "c": 2}, "client-bb"),
        delete(3, "client-cc"),
        patch(4, {"a": 4}),
        put(0, {"z": 0}, "client-bb"),
    ]
    outcomes = {repr(_observable(apply_all(list(p)))) for p in itertools.permutations(mutations)}
    assert outcomes == {repr(({"a": 4}, False))}
