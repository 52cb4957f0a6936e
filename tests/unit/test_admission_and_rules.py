"""Pure rules, no services: a pushed batch's admission (sync.admission, SPEC G6/G8) and the
user-id and scope rules every part of the API shares (sync.membership)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync import membership
from sync.admission import BatchRefused, admit_batch
from sync.collections import CollectionRegistry, CollectionSpec
from sync.limits import MAX_VALUE_BYTES

CLIENT = "client-0001"
COLLECTIONS = CollectionRegistry([CollectionSpec("notes"), CollectionSpec("todos")])


def _mutation(n: int, scope: str = "user:alice", **fields: Any) -> dict[str, Any]:
    return {
        "id": n, "scope": scope, "collection": "notes", "key": f"k{n}", "op": "put",
        "value": {"n": n}, "hlc": f"1700000000000-{n:04x}-{CLIENT}", **fields,
    }  # fmt: skip


def _admit(mutations: list[dict[str, Any]], can_write: Any = lambda _scope: True) -> None:
    admit_batch(
        client_id=CLIENT,
        mutations=mutations,
        collections=COLLECTIONS,
        max_mutations=500,
        can_write=can_write,
    )


def test_a_good_batch_is_admitted_and_membership_is_asked_once_per_scope() -> None:
    asked: list[str] = []
    batch = [_mutation(n, "team:a" if n % 2 else "user:alice") for n in range(7, 507)]
    _admit(batch, lambda scope: asked.append(scope) or True)
    assert sorted(asked) == ["team:a", "user:alice"]


@pytest.mark.parametrize(
    ("batch", "kind", "code"),
    [
        ([_mutation(1), _mutation(3)], "invalid", "ids_not_contiguous"),
        ([_mutation(1, hlc="1700000000000-0001-someone-else")], "invalid", "invalid_hlc"),
        ([_mutation(1, collection="secrets")], "invalid", "unknown_collection"),
        ([_mutation(1, value={"x": "y" * MAX_VALUE_BYTES})], "too_large", "value_too_large"),
        ([_mutation(n) for n in range(1, 502)], "too_large", "too_many_mutations"),
    ],
)
def test_a_batch_with_one_bad_mutation_is_refused_whole(
    batch: list[dict[str, Any]], kind: str, code: str
) -> None:
    with pytest.raises(BatchRefused) as refused:
        _admit([*batch])
    assert (refused.value.kind, refused.value.code) == (kind, code)


def test_an_unknown_collection_is_refused_with_the_known_ones_named() -> None:
    with pytest.raises(BatchRefused) as refused:
        _admit([_mutation(1), _mutation(2, collection="secrets")])
    assert "mutations[1]" in refused.value.message
    assert refused.value.details == {"known": ["notes", "todos"]}


def test_a_scope_the_user_may_not_write_refuses_the_batch() -> None:
    with pytest.raises(BatchRefused) as refused:
        _admit([_mutation(1), _mutation(2, "team:b")], lambda scope: scope != "team:b")
    assert (refused.value.kind, refused.value.message) == (
        "forbidden",
        "mutations[1]: you may not write scope 'team:b'",
    )


SUBS = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cn", "Co", "Cf")),
    min_size=1,
    max_size=200,
).filter(lambda s: not any(c.isspace() for c in s))
SHARED_IDS = st.text(alphabet=string.ascii_letters + string.digits + ":-_./@", min_size=1)


@given(SUBS)
def test_every_jwt_sub_is_a_user_id_with_a_personal_scope(sub: str) -> None:
    assert membership.is_user_id(sub)
    assert membership.is_scope(membership.personal_scope(sub))


@given(st.sampled_from(["team", "org", "doc_1"]), SHARED_IDS.filter(lambda s: len(s) <= 200))
def test_a_shared_scope_is_what_a_membership_id_splits_back_to(kind: str, scope_id: str) -> None:
    scope = f"{kind}:{scope_id}"
    assert membership.is_scope(scope)
    assert membership.member_id(scope, "auth0|x").split("|", 1)[0] == scope
    assert not membership.is_scope(f"{scope}|x")  # a shared id with `|` would split wrong


@pytest.mark.parametrize(
    "value", ["", "user:", "alice", "Team:x", "team:", "team:a b", "team:a\x00", "x" * 40 + ":a"]
)
def test_what_is_not_a_scope(value: str) -> None:
    assert not membership.is_scope(value)


@pytest.mark.parametrize("value", ["", "a b", "a\tb", "a\x00", "x" * 201, "a\u200bb"])
def test_what_is_not_a_user_id(value: str) -> None:
    assert not membership.is_user_id(value)
