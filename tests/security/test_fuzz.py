"""Schemathesis fuzzes every operation of /openapi.json against the real app, bounded in time.

Requests carry a valid user token and the admin key, so they get past authentication to the
validation and the views. Each operation gets valid (positive) and invalid (negative) inputs
generated from its documented schema; every answer must be a non-5xx that the document
describes: a declared status (or an error status of SPEC §2 with the error body), content type
and body.

Schemathesis's own pytest loader (`schemathesis.pytest.from_fixture`) cannot run under pytest
9.2 (it sets `Node._nodeid`, which pytest 9.2 removed), so each operation's strategy is driven
with Hypothesis directly. The run is derandomized: the same inputs every time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.conftest import FUZZ_SUMMARY
from tests.security.matrix import MATRIX

FUZZ_USER = "fuzzer"
MAX_EXAMPLES = 25  # per operation and mode; the whole file stays well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The error statuses SPEC §2 names; each comes with the documented error body.
SPEC_ERRORS = {400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 503}
# Routes that are not API operations, so not in /openapi.json.
UNDOCUMENTED = {"/metrics", "/openapi.json", "/docs", "/static/{filename}"}
OPERATIONS = sorted({(r.method, r.path) for r in MATRIX if r.path not in UNDOCUMENTED})


class Summary:
    def __init__(self) -> None:
        self.examples: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = {}
        self.failed: list[str] = []
        self.no_negative: list[str] = []
        self.seconds = 0.0

    def lines(self) -> Iterator[str]:
        total = sum(self.examples.values())
        yield (
            f"{len(self.statuses)} operations, {total} generated requests "
            f"({MAX_EXAMPLES} max per operation and mode), {len(self.failed)} failed, "
            f"{self.seconds:.1f} s"
        )
        if self.no_negative:
            yield "  no invalid input can be generated for: " + ", ".join(sorted(self.no_negative))
        for label in sorted(self.statuses):
            codes = "; ".join(f"{c}: {n}" for c, n in sorted(self.statuses[label].items()))
            yield f"  {label}: {self.examples[label]} requests: {codes}"


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Iterator[Summary]:
    result = Summary()
    yield result
    if result.statuses:
        request.config.stash[FUZZ_SUMMARY] = list(result.lines())


@pytest.fixture(scope="module")
def api_schema(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture
def credentials(make_token: Any, admin: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(FUZZ_USER)}", **admin}


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    documented = {
        (op.method.upper(), op.path)
        for result in api_schema.get_all_operations()
        for op in [result.ok()]
    }
    assert documented == set(OPERATIONS)


def test_validation_errors_are_documented_as_the_400_they_are(client: FlaskClient) -> None:
    # flask-smorest documents 422 by default; this API answers 400 validation_error (SPEC §2).
    spec = client.get("/openapi.json").get_json()
    with_body = [op for ops in spec["paths"].values() for op in ops.values() if "requestBody" in op]
    assert len(with_body) == 5
    for operation in with_body:
        assert "400" in operation["responses"]
        assert "422" not in operation["responses"]


def _steer(case: Any) -> None:
    """Make valid bodies meet the rules the OpenAPI document cannot express.

    Scope membership, declared collections, contiguous ids, an HLC naming the client, `value`
    present unless deleting, exactly one audience: without this nearly every valid sync or push
    body stops at one of these, and the views and their response schemas are never reached.
    """
    body = case.body
    if case.path == "/v1/sync/pull" and isinstance(body, dict):
        body["scopes"] = {f"user:{FUZZ_USER}": None}
        if "collections" in body:
            body["collections"] = ["notes"]
    if case.path == "/v1/sync/push" and isinstance(body, dict):
        now_ms = int(time.time() * 1000)
        for number, mutation in enumerate(body.get("mutations") or [], start=1):
            if isinstance(mutation, dict):
                mutation.update(
                    id=number,
                    scope=f"user:{FUZZ_USER}",
                    collection="notes",
                    hlc=f"{now_ms:013d}-{number:04x}-{body.get('client_id')}",
                )
                if mutation.get("op") == "delete":
                    mutation.pop("value", None)
                else:
                    mutation.setdefault("value", {"n": number})
    if case.path == "/v1/push" and isinstance(body, dict):
        audience = body.get("audience")
        if isinstance(audience, dict):  # exactly one kind of audience
            body["audience"] = dict(list(audience.items())[:1]) or {"users": [FUZZ_USER]}
        if not body.get("notification") and not body.get("data"):
            body["notification"] = {"title": "fuzz", "body": "fuzz"}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented(
    method: str, path: str, api_schema: Any, credentials: dict[str, str], summary: Summary
) -> None:
    operation = api_schema[path][method]
    label = f"{method} {path}"
    statuses = summary.statuses.setdefault(label, Counter())
    declared = set(operation.definition.raw["responses"])

    def fuzz(mode: GenerationMode) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            if mode is GenerationMode.POSITIVE:
                _steer(case)
            response = case.call_and_validate(headers=credentials, checks=CHECKS)
            # Every operation documents a `default` error response, which makes schemathesis's
            # status check accept any status: require a declared one or an error of SPEC §2.
            assert str(response.status_code) in declared or response.status_code in SPEC_ERRORS, (
                f"{label} answered {response.status_code}, which it does not document"
            )
            summary.examples[label] += 1
            statuses[response.status_code] += 1

        run()

    started = time.monotonic()
    try:
        fuzz(GenerationMode.POSITIVE)
        try:
            fuzz(GenerationMode.NEGATIVE)
        except Unsatisfiable:  # every input the schema allows is valid: nothing to negate
            summary.no_negative.append(label)
    except BaseException:
        summary.failed.append(label)
        raise
    finally:
        summary.seconds += time.monotonic() - started
