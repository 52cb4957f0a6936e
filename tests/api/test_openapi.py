"""The OpenAPI document tells a client author who may call each operation, what errors to
expect and its rate limit (SPEC §5), not only the schemas."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
    ]


def test_every_operation_names_its_credentials_errors_and_rate_limit(
    client: FlaskClient,
) -> None:
    spec = client.get("/openapi.json").get_json()
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}
    assert spec["components"]["securitySchemes"]["apiKeyAuth"]["name"] == "X-API-Key"
    expected = {"/v1/sync": "bearerAuth", "/v1/devices": "bearerAuth"}
    expected |= {"/v1/push": "apiKeyAuth", "/v1/admin": "apiKeyAuth"}
    for method, path, operation in _operations(spec):
        where = f"{method.upper()} {path}"
        if not path.startswith("/v1/"):
            assert operation["security"] == [], where  # probes are open
            continue
        [scheme] = [s for prefix, s in expected.items() if path.startswith(prefix)]
        assert operation["security"] == [{scheme: []}], where
        assert {"400", "401", "403", "429"} <= set(operation["responses"]), where
        assert "Retry-After" in operation["responses"]["429"]["headers"], where
        assert (
            "per user" in operation["x-rate-limit"] or "per API key" in operation["x-rate-limit"]
        ), where
        if "requestBody" in operation:
            assert {"413", "415"} <= set(operation["responses"]), where


def test_the_operations_that_queue_work_document_the_broker_outage(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert "503" in spec["paths"]["/v1/sync/push"]["post"]["responses"]
    assert "503" in spec["paths"]["/v1/push"]["post"]["responses"]
    member = spec["paths"]["/v1/admin/scopes/{scope}/members/{user}"]
    assert "503" in member["put"]["responses"] and "503" in member["delete"]["responses"]
    assert "410" in spec["paths"]["/v1/sync/pull"]["post"]["responses"]
