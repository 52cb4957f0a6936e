"""A minimal offline-sync client for tests: numbers mutations, stamps HLCs, pushes and pulls."""

from __future__ import annotations

import time
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

    def hlc(self) -> str:
        self._counter += 1
        return f"{int(time.time() * 1000):013d}-{self._counter % 0x10000:04x}-{self.client_id}"

    def put(self, key: str, value: dict[str, Any], collection: str = "notes", **extra: Any) -> dict:
        mutation = {
            "id": self.next_id,
            "scope": self.scope,
            "collection": collection,
            "key": key,
            "op": "put",
            "value": value,
            "hlc": self.hlc(),
            **extra,
        }
        self.next_id += 1
        return mutation

    def push(self, mutations: list[dict], wait: int | None = None) -> Any:
        headers = dict(self.headers)
        if wait is not None:
            headers["Prefer"] = f"wait={wait}"
        return self.http.post(
            "/v1/sync/push",
            json={"client_id": self.client_id, "mutations": mutations},
            headers=headers,
        )

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
