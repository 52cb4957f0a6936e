"""Marshmallow schemas for every wire format (SPEC §2 sync and admin, §4 devices and push).
They also generate the OpenAPI doc. Each rule comes from the domain module that owns it."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from push.devices import DEVICE_ID_PATTERN, MAX_TOPICS, PLATFORMS, TOPIC_CHARS, TOPIC_PATTERN
from sync.collections import NAME_PATTERN
from sync.hlc import CLIENT_ID_PATTERN, HLC_PATTERN
from sync.limits import LimitExceeded, check_value
from sync.membership import ROLES, is_scope, is_user_id

CLIENT_ID = validate.Regexp(CLIENT_ID_PATTERN, error="must be 8-128 of [A-Za-z0-9_-]")
RECORD_KEY = validate.Regexp(r"^[A-Za-z0-9_.:-]{1,128}$", error="must be 1-128 of [A-Za-z0-9_.:-]")
COLLECTION = validate.Regexp(NAME_PATTERN, error="is not a collection name")
HLC = validate.Regexp(HLC_PATTERN, error="must be <13-digit unix ms>-<4 hex counter>-<client_id>")
TOPIC = validate.Regexp(TOPIC_PATTERN, error=f"must be 1-128 of {TOPIC_CHARS}")
DEVICE_ID = validate.Regexp(DEVICE_ID_PATTERN, error="is not a device id")


USER_ID_RULE = "must be 1-200 printable characters without whitespace"


def valid_scope(value: str) -> None:
    if not is_scope(value):
        raise ValidationError("must look like <kind>:<id>, e.g. user:alice")


def valid_user_id(value: str) -> None:
    if not is_user_id(value):
        raise ValidationError(USER_ID_RULE)


MAX_SAFE_INTEGER = 2**53 - 1


class MutationSchema(Schema):
    id = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_SAFE_INTEGER))
    scope = fields.String(required=True, validate=valid_scope)
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
        keys=fields.String(validate=valid_scope),
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


# -- admin (SPEC §2) ----------------------------------------------------------------


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class MemberSchema(Schema):
    user = fields.String(required=True)
    role = fields.String(required=True)


class MembersSchema(Schema):
    scope = fields.String(required=True)
    members = fields.List(fields.Nested(MemberSchema), required=True)


# -- devices (SPEC §4) --------------------------------------------------------------


class DeviceSchema(Schema):
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    # Any printable token is accepted: providers judge their own tokens, and one they call
    # invalid is pruned at its first send. A Web Push token is the PushSubscription as JSON.
    token = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=4096), validate.Regexp(r"^[^\x00-\x1f]+$")],
    )
    client_id = fields.String(validate=CLIENT_ID)
    locale = fields.String(validate=validate.Regexp(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"))
    timezone = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_+\-/]{1,64}$"))
    topics = fields.List(
        fields.String(validate=TOPIC),
        validate=validate.Length(max=MAX_TOPICS),
    )


class DeviceIdSchema(Schema):
    device_id = fields.String(required=True)


class TopicsSchema(Schema):
    device_id = fields.String(required=True)
    topics = fields.List(fields.String(), required=True)


# -- push (SPEC §4) -----------------------------------------------------------------


MAX_DATA_BYTES = 4096


class AudienceSchema(Schema):
    users = fields.List(fields.String(validate=valid_user_id), validate=validate.Length(1, 1000))
    topic = fields.String(validate=TOPIC)
    devices = fields.List(
        fields.String(validate=DEVICE_ID),
        validate=validate.Length(1, 1000),
    )
    scope = fields.String(validate=valid_scope)

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        if len(data) != 1:
            raise ValidationError("name exactly one of users, topic, devices, scope")


class NotificationSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(1, 256))
    body = fields.String(required=True, validate=validate.Length(0, 4096))
    sound = fields.String(validate=validate.Length(1, 128))
    badge = fields.Integer(strict=True, validate=validate.Range(0, 1_000_000))
    image = fields.Url(schemes={"https"})
    category = fields.String(validate=validate.Length(1, 128))


class OptionsSchema(Schema):
    priority = fields.String(validate=validate.OneOf(["high", "normal"]), load_default="high")
    ttl = fields.Integer(strict=True, validate=validate.Range(0, 28 * 86400), load_default=86400)
    collapse_key = fields.String(validate=validate.Length(1, 64))
    silent = fields.Boolean(load_default=False)
    send_at = fields.AwareDateTime(default_timezone=None)


class PushNotificationRequestSchema(Schema):
    audience = fields.Nested(AudienceSchema, required=True)
    notification = fields.Nested(NotificationSchema)
    data = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$")),
        # Any JSON value: APNs and Web Push carry it as is, FCM gets it as a JSON string.
        values=fields.Raw(required=True),
        validate=validate.Length(max=64),
    )
    options = fields.Nested(OptionsSchema)
    idempotency_key = fields.String(validate=validate.Length(1, 128))

    @validates_schema
    def _something_to_send(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("notification") and not data.get("data"):
            raise ValidationError("send a notification, data, or both", "notification")
        if data.get("data"):
            # APNs and FCM take at most 4 KB a message: refuse now, not per device later.
            try:
                check_value(data["data"], max_bytes=MAX_DATA_BYTES)
            except LimitExceeded as exc:
                raise ValidationError(str(exc), "data") from None


class PushAcceptedSchema(Schema):
    push_id = fields.String(required=True)


class CountsSchema(Schema):
    targeted = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    invalid = fields.Integer(required=True)
    pending = fields.Integer(required=True)


class PushStatusSchema(Schema):
    push_id = fields.String(required=True)
    status = fields.String(required=True)
    counts = fields.Nested(CountsSchema, required=True)
    created_at = fields.DateTime(required=True)
    send_at = fields.DateTime(allow_none=True)
