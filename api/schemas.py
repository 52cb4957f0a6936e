"""Marshmallow schemas for the wire formats of SPEC §2. They also generate the OpenAPI doc."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sync.collections import NAME_PATTERN
from sync.hlc import CLIENT_ID_PATTERN
from sync.membership import SCOPE_PATTERN

CLIENT_ID = validate.Regexp(CLIENT_ID_PATTERN, error="must be 8-128 of [A-Za-z0-9_-]")
RECORD_KEY = validate.Regexp(r"^[A-Za-z0-9_.:-]{1,128}$", error="must be 1-128 of [A-Za-z0-9_.:-]")
COLLECTION = validate.Regexp(NAME_PATTERN, error="is not a collection name")
SCOPE = validate.Regexp(SCOPE_PATTERN, error="must look like <kind>:<id>, e.g. user:alice")
HLC = validate.Regexp(
    r"^[0-9]{13}-[0-9a-f]{4}-[A-Za-z0-9_-]{8,128}$",
    error="must be <13-digit unix ms>-<4 hex counter>-<client_id>",
)
MAX_SAFE_INTEGER = 2**53 - 1


class MutationSchema(Schema):
    id = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_SAFE_INTEGER))
    scope = fields.String(required=True, validate=SCOPE)
    collection = fields.String(required=True, validate=COLLECTION)
    key = fields.String(required=True, validate=RECORD_KEY)
    op = fields.String(required=True, validate=validate.OneOf(["put", "patch", "delete"]))
    value = fields.Dict(keys=fields.String(), allow_none=False)
    hlc = fields.String(required=True, validate=HLC)
    base_version = fields.Integer(strict=True, validate=validate.Range(0, MAX_SAFE_INTEGER))

    @validates_schema
    def _value_matches_op(self, data: dict[str, Any], **_: Any) -> None:
        if data["op"] == "delete" and "value" in data:
            raise ValidationError("must be absent for delete", "value")
        if data["op"] != "delete" and "value" not in data:
            raise ValidationError(f"is required for {data['op']}", "value")


class PushRequestSchema(Schema):
    client_id = fields.String(required=True, validate=CLIENT_ID)
    mutations = fields.List(
        fields.Nested(MutationSchema), required=True, validate=validate.Length(min=1)
    )


class MutationResultSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["applied", "duplicate", "rejected"])
    )
    reason = fields.String()
    errors = fields.Dict()
    version = fields.Integer()
    current = fields.Dict(allow_none=True)


class BatchAcceptedSchema(Schema):
    batch_id = fields.String(required=True)
    status = fields.String(required=True)


class BatchStatusSchema(Schema):
    batch_id = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["queued", "applying", "applied", "failed"])
    )
    last_mutation_id = fields.Integer(allow_none=True)
    results = fields.List(fields.Nested(MutationResultSchema), required=True)
    reason = fields.String(
        metadata={"description": "why a failed batch failed: `gap` (resend from the first "
                  "unacknowledged id) or `undeliverable` (a poison batch)"}
    )  # fmt: skip


class PullRequestSchema(Schema):
    client_id = fields.String(required=True, validate=CLIENT_ID)
    scopes = fields.Dict(
        keys=fields.String(validate=SCOPE),
        values=fields.String(allow_none=True, validate=validate.Length(max=200)),
        required=True,
        validate=validate.Length(min=1, max=32),
        metadata={"minProperties": 1, "maxProperties": 32},
    )
    collections = fields.List(fields.String(validate=COLLECTION), validate=validate.Length(min=1))
    limit = fields.Integer(strict=True, load_default=500, validate=validate.Range(1, 1000))


class ChangeSchema(Schema):
    collection = fields.String(required=True)
    key = fields.String(required=True)
    value = fields.Dict(allow_none=True)
    deleted = fields.Boolean(required=True)
    version = fields.Integer(required=True)


class ScopePageSchema(Schema):
    changes = fields.List(fields.Nested(ChangeSchema), required=True)
    checkpoint = fields.String(required=True)
    has_more = fields.Boolean(required=True)


class PullResponseSchema(Schema):
    scopes = fields.Dict(keys=fields.String(), values=fields.Nested(ScopePageSchema), required=True)
    last_mutation_id = fields.Integer(required=True)


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "per-field validation messages, when any"})


class ErrorSchema(Schema):
    """Every error response: `{"error": {"code", "message", "details"?}}`."""

    error = fields.Nested(ErrorBodySchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())
