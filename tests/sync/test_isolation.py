"""G6: no request reads or writes a scope its user is not a member of; the admin API."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("worker")


def _member(http: Any, admin: dict[str, str], scope: str, user: str, role: str) -> Any:
    return http.put(f"/v1/admin/scopes/{scope}/members/{user}", json={"role": role}, headers=admin)


def test_readers_pull_writers_push_and_removal_takes_effect_at_once(
    new_client: Any, admin: dict[str, str]
) -> None:
    owner, reader = new_client(), new_client()
    scope = f"team:{owner.user}"
    assert _member(owner.http, admin, scope, owner.user, "writer").status_code == 201
    assert _member(owner.http, admin, scope, reader.user, "reader").status_code == 201
    assert _member(owner.http, admin, scope, reader.user, "reader").status_code == 200

    owner.scope = reader.scope = scope
    assert owner.push([owner.put("k", {"v": 1})], wait=20).status_code == 200
    records, _ = reader.pull_all(scope)
    assert records[("notes", "k")]["value"] == {"v": 1}

    refused = reader.push([reader.put("k", {"v": "reader"})])
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"

    listed = owner.http.get(f"/v1/admin/scopes/{scope}/members", headers=admin).get_json()
    assert sorted(m["role"] for m in listed["members"]) == ["reader", "writer"]

    assert (
        owner.http.delete(
            f"/v1/admin/scopes/{scope}/members/{reader.user}", headers=admin
        ).status_code
        == 204
    )
    assert reader.pull({scope: None}).status_code == 403
    records, _ = owner.pull_all(scope)
    assert records[("notes", "k")]["value"] == {"v": 1}  # the reader's attempt changed nothing


def test_losing_writer_role_between_push_and_apply_rejects_the_mutation(
    new_client: Any, admin: dict[str, str]
) -> None:
    writer = new_client()
    scope = f"team:{writer.user}"
    _member(writer.http, admin, scope, writer.user, "writer")
    writer.scope = scope
    writer.next_id = 2  # id 1 has not arrived: the batch waits in the queue...
    waiting = writer.push([writer.put("k", {"v": 1})]).get_json()["batch_id"]
    _member(writer.http, admin, scope, writer.user, "reader")  # ...while the role is lowered
    writer.next_id = 1
    writer.scope = f"user:{writer.user}"
    first = writer.put("own", {"v": 0})  # id 1, in the personal scope
    assert writer.push([first], wait=20).status_code == 200
    final = writer.wait_final(waiting)
    assert final["results"] == [{"id": 2, "status": "rejected", "reason": "forbidden"}]


def test_strangers_and_readers_cannot_touch_a_scope(new_client: Any, admin: dict[str, str]) -> None:
    owner, stranger = new_client(), new_client()
    scope = f"team:{owner.user}"
    _member(owner.http, admin, scope, owner.user, "writer")
    mutation = stranger.put("k", {"v": 1})
    mutation["scope"] = scope
    assert stranger.push([mutation]).status_code == 403
    assert stranger.pull({scope: None}).status_code == 403
    assert stranger.pull({owner.scope: None}).status_code == 403


@pytest.mark.parametrize("wait", [None, "wait=2"], ids=["pull", "live-pull"])
def test_a_client_id_bound_to_another_user_is_refused_to_a_pull(
    new_client: Any, wait: str | None
) -> None:
    """A client id is bound to the user who first pushed with it: another user's pull naming it
    (even of their own scope) is refused, and learns nothing of its ledger."""
    owner, other = new_client(), new_client()
    assert owner.push([owner.put("k", {"v": 1})], wait=20).status_code == 200
    other.client_id = owner.client_id
    headers = {**other.headers, **({"Prefer": wait} if wait else {})}
    reply = other.http.post(
        "/v1/sync/pull",
        json={"client_id": owner.client_id, "scopes": {other.scope: None}},
        headers=headers,
    )
    assert reply.status_code == 403
    assert reply.get_json()["error"] == {
        "code": "forbidden",
        "message": "client_id belongs to another user",
    }
    assert owner.pull({owner.scope: None}).get_json()["last_mutation_id"] == 1


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "wrong-key-wrong-key-wrong-key"}], ids=["no-key", "bad-key"]
)
def test_admin_api_needs_the_admin_key(client: Any, headers: dict[str, str]) -> None:
    reply = client.put(
        "/v1/admin/scopes/team:1/members/bob", json={"role": "reader"}, headers=headers
    )
    assert reply.status_code == 401
    assert client.get("/v1/admin/scopes/team:1/members", headers=headers).status_code == 401


def test_admin_api_validates_its_input(client: Any, admin: dict[str, str]) -> None:
    personal = client.put(
        "/v1/admin/scopes/user:bob/members/eve", json={"role": "reader"}, headers=admin
    )
    assert personal.status_code == 400
    bad_role = client.put(
        "/v1/admin/scopes/team:1/members/eve", json={"role": "owner"}, headers=admin
    )
    assert bad_role.status_code == 400
    assert "role" in bad_role.get_json()["error"]["details"]
    injected = client.put(
        "/v1/admin/scopes/team:1/members/eve", json={"role": {"$gt": ""}}, headers=admin
    )
    assert injected.status_code == 400
    missing = client.delete("/v1/admin/scopes/team:1/members/nobody", headers=admin)
    assert missing.status_code == 404
