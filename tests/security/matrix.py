# ruff: noqa: E501 -- the table is easier to check with one row per line
"""The authorization matrix: for every endpoint and kind of caller, the status the API answers.

It is the one table of who may do what. tests/security/test_authz_matrix.py replays every cell
against the real app and checks that every route has a row; docs/security.md shows the table
as `render()` prints it, and a test checks the two are equal, so the documented rules and the
tested ones cannot drift apart. After changing a row, paste the output of
`.venv/bin/python -m tests.security.matrix` into docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kinds of caller, in column order.
CALLERS: dict[str, str] = {
    "anonymous": "no credentials",
    "stranger": "another user: a valid JWT, not a member of the scope, not the owner",
    "reader": "a user with role `reader` in the shared scope",
    "writer": "a user with role `writer` in the shared scope, who also submitted the batch, "
    "owns the device and whose personal scope is pulled",
    "push_key": "an API key with the `push:send` scope only",
    "admin_key": "an API key with the `admin` scope only",
    "bootstrap": "`ADMIN_API_KEY`, the bootstrap key with every scope",
}


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str  # as in /openapi.json
    resource: str  # what the request touches
    expect: tuple[int, ...]  # one status per caller, in CALLERS order


# fmt: off
MATRIX: tuple[Row, ...] = (
    #   id                   method    path                                           resource                                   anon stranger reader writer push_key admin_key bootstrap
    Row("healthz",           "GET",    "/healthz",                                    "liveness probe",                          (200, 200, 200, 200, 200, 200, 200)),
    Row("readyz",            "GET",    "/readyz",                                     "readiness probe",                         (200, 200, 200, 200, 200, 200, 200)),
    Row("metrics",           "GET",    "/metrics",                                    "Prometheus metrics",                      (200, 200, 200, 200, 200, 200, 200)),
    Row("openapi",           "GET",    "/openapi.json",                               "OpenAPI document",                        (200, 200, 200, 200, 200, 200, 200)),
    Row("docs",              "GET",    "/docs",                                       "Swagger UI",                              (200, 200, 200, 200, 200, 200, 200)),
    Row("static",            "GET",    "/static/{filename}",                          "Flask's static route (no files)",         (404, 404, 404, 404, 404, 404, 404)),
    Row("sync-push-shared",  "POST",   "/v1/sync/push",                               "a batch writing the shared scope",        (401, 403, 403, 202, 401, 401, 401)),
    Row("sync-push-personal", "POST",  "/v1/sync/push",                               "a batch writing `user:<writer>`",         (401, 403, 403, 202, 401, 401, 401)),
    Row("batch-status",      "GET",    "/v1/sync/batches/{batch_id}",                 "the writer's batch",                      (401, 404, 404, 200, 401, 401, 401)),
    Row("sync-pull-shared",  "POST",   "/v1/sync/pull",                               "the shared scope",                        (401, 403, 200, 200, 401, 401, 401)),
    Row("sync-pull-personal", "POST",  "/v1/sync/pull",                               "`user:<writer>`",                         (401, 403, 403, 200, 401, 401, 401)),
    Row("member-put",        "PUT",    "/v1/admin/scopes/{scope}/members/{user}",     "add a member to the shared scope",        (401, 401, 401, 401, 403, 201, 201)),
    Row("member-delete",     "DELETE", "/v1/admin/scopes/{scope}/members/{user}",     "remove a member of the shared scope",     (401, 401, 401, 401, 403, 204, 204)),
    Row("members-get",       "GET",    "/v1/admin/scopes/{scope}/members",            "members of the shared scope",             (401, 401, 401, 401, 403, 200, 200)),
    Row("device-register",   "POST",   "/v1/devices",                                 "register the caller's own new token",     (401, 201, 201, 201, 401, 401, 401)),
    Row("device-delete",     "DELETE", "/v1/devices/{device_id}",                     "the writer's device",                     (401, 404, 404, 204, 401, 401, 401)),
    Row("topic-put",         "PUT",    "/v1/devices/{device_id}/topics/{topic}",      "the writer's device",                     (401, 404, 404, 200, 401, 401, 401)),
    Row("topic-delete",      "DELETE", "/v1/devices/{device_id}/topics/{topic}",      "the writer's device",                     (401, 404, 404, 200, 401, 401, 401)),
    Row("push-send",         "POST",   "/v1/push",                                    "send a notification",                     (401, 401, 401, 401, 202, 403, 202)),
    Row("push-status",       "GET",    "/v1/push/{push_id}",                          "a scheduled push the push_key sent",      (401, 401, 401, 401, 200, 200, 200)),
    Row("push-status-other", "GET",    "/v1/push/{push_id}",                          "a scheduled push another key sent",       (401, 401, 401, 401, 404, 200, 200)),
    Row("push-cancel",       "DELETE", "/v1/push/{push_id}",                          "a scheduled push the push_key sent",      (401, 401, 401, 401, 200, 200, 200)),
    Row("push-cancel-other", "DELETE", "/v1/push/{push_id}",                          "a scheduled push another key sent",       (401, 401, 401, 401, 404, 200, 200)),
)
# fmt: on

MARK_START = "<!-- authz-matrix:start (generated by python -m tests.security.matrix) -->"
MARK_END = "<!-- authz-matrix:end -->"


def render() -> str:
    """The callers and the matrix in Markdown, between the markers docs/security.md keeps it in."""
    head = ["endpoint", "resource", *CALLERS]
    lines = [
        MARK_START,
        *(f"- **{name}**: {meaning}" for name, meaning in CALLERS.items()),
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * 2 + " ---: |" * len(CALLERS),
    ]
    for row in MATRIX:
        cells = [f"`{row.method} {row.path}`", row.resource, *(str(s) for s in row.expect)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(MARK_END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
