"""Compressed responses (SPEC §2): a body above about 1 KiB goes gzip-compressed when the
request accepts gzip, and holds exactly what the plain one does; small bodies and requests
that do not ask stay plain."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("worker")


def _pull(sync_client: Any, encoding: str | None) -> Any:
    headers = dict(sync_client.headers)
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    return sync_client.http.post(
        "/v1/sync/pull",
        json={"client_id": sync_client.client_id, "scopes": {sync_client.scope: None}},
        headers=headers,
    )


def test_a_500_record_pull_page_is_gzipped_for_a_client_that_accepts_it(sync_client: Any) -> None:
    mutations = [
        sync_client.put(f"note-{n:03d}", {"title": f"Note {n}", "body": "lorem ipsum " * 8})
        for n in range(500)
    ]
    pushed = sync_client.push(mutations, wait=30)
    assert pushed.get_json()["status"] == "applied"

    plain = _pull(sync_client, None)
    zipped = _pull(sync_client, "gzip, deflate, br, zstd")  # what browsers send
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    raw = zipped.get_data()
    assert int(zipped.headers["Content-Length"]) == len(raw)
    assert len(raw) * 5 < len(plain.get_data())  # repetitive JSON: far smaller
    page, expected = json.loads(gzip.decompress(raw)), plain.get_json()
    for reply in (page, expected):  # a checkpoint carries the time it was issued
        del reply["scopes"][sync_client.scope]["checkpoint"]
    assert page == expected
    assert len(page["scopes"][sync_client.scope]["changes"]) == 500


def test_small_bodies_and_clients_that_do_not_ask_get_plain_json(sync_client: Any) -> None:
    small = _pull(sync_client, "gzip")  # an empty scope: a few hundred bytes
    assert len(small.get_data()) < 1024
    assert "Content-Encoding" not in small.headers
    assert small.get_json()["scopes"][sync_client.scope]["changes"] == []
    error = sync_client.http.post(
        "/v1/sync/pull", json={}, headers={**sync_client.headers, "Accept-Encoding": "gzip"}
    )
    assert error.status_code == 400 and "Content-Encoding" not in error.headers
    identity = sync_client.http.get("/openapi.json", headers={"Accept-Encoding": "identity"})
    assert len(identity.get_data()) > 1024 and "Content-Encoding" not in identity.headers
    asked = sync_client.http.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert json.loads(gzip.decompress(asked.get_data())) == identity.get_json()
