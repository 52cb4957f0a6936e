"""A minimal offline-sync client for tests: numbers mutations, stamps HLCs, pushes and pulls."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask.testing import FlaskClient


class SyncTestClient:
    def __init__(self, http: FlaskClient, token: str, client_id: str, user: str) -> None:
        self.http = http
        self.client_id = client_id
        self.user = user
        self.scope = f"user:{user}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.next_id = 1
        self._counter = 0
        self._last_ms = 0

    def hlc(self) -> str:
        """A hybrid logical clock reading: never goes backwards for this client."""
        now = int(time.time() * 1000)
        if now > self._last_ms:
            self._last_ms, self._counter = now, 0
        else:
            self._counter += 1
        return f"{self._last_ms:013d}-{self._counter:04x}-{self.client_id}"

    def mutation(
        self,
        op: str,
        key: str,
        value: dict[str, Any] | None = None,
        collection: str = "notes",
        **extra: Any,
    ) -> dict[str, Any]:
        """The next mutation of this client (ids 1, 2, 3, ... and increasing HLCs)."""
        mutation: dict[str, Any] = {
            "id": self.next_id,
            "scope": self.scope,
            "collection": collection,
            "key": key,
            "op": op,
            "hlc": self.hlc(),
            **extra,
        }
        if value is not None:
            mutation["value"] = value
        self.next_id += 1
        return mutation

    def put(self, key: str, value: dict[str, Any], collection: str = "notes", **extra: Any) -> dict:
        return self.mutation("put", key, value, collection, **extra)

    def patch(
        self, key: str, value: dict[str, Any], collection: str = "notes", **extra: Any
    ) -> dict:
        return self.mutation("patch", key, value, collection, **extra)

    def delete(self, key: str, collection: str = "notes", **extra: Any) -> dict:
        return self.mutation("delete", key, None, collection, **extra)

    def pull_all(self, scope: str | None = None, checkpoint: str | None = None) -> tuple[dict, str]:
        """Pull a scope to `has_more: false`: ({(collection, key): change}, checkpoint)."""
        scope = scope or self.scope
        records: dict[tuple[str, str], dict[str, Any]] = {}
        while True:
            reply = self.pull({scope: checkpoint})
            assert reply.status_code == 200, reply.get_data(as_text=True)
            page = reply.get_json()["scopes"][scope]
            for change in page["changes"]:
                records[(change["collection"], change["key"])] = change
            checkpoint = page["checkpoint"]
            if not page["has_more"]:
                return records, checkpoint

    def push(self, mutations: list[dict], wait: int | None = None) -> Any:
        headers = dict(self.headers)
        if wait is not None:
            headers["Prefer"] = f"wait={wait}"
        return self.http.post(
            "/v1/sync/push",
            json={"client_id": self.client_id, "mutations": mutations},
            headers=headers,
        )

    def store_unpublished(self, db: Any, mutations: list[dict], created_at: Any = None) -> str:
        """A batch stored as the API stores it, whose queue message never reached a worker."""
        from sync import batches

        batch_id = uuid.uuid4().hex
        batches.submit_batch(
            db,
            batch_id=batch_id,
            user=self.user,
            client_id=self.client_id,
            mutations=mutations,
            now=created_at,
        )
        return batch_id

    def status(self, batch_id: str) -> Any:
        return self.http.get(f"/v1/sync/batches/{batch_id}", headers=self.headers)

    def wait_final(self, batch_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.status(batch_id).get_json()
            if body["status"] in ("applied", "failed"):
                return body
            time.sleep(0.05)
        raise AssertionError(f"batch {batch_id} not final after {timeout}s: {body}")

    def pull(self, scopes: dict[str, str | None] | None = None, **extra: Any) -> Any:
        return self.http.post(
            "/v1/sync/pull",
            json={"client_id": self.client_id, "scopes": scopes or {self.scope: None}, **extra},
            headers=self.headers,
        )
