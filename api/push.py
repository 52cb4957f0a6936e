"""Push API (SPEC §4): send a notification to an audience, read its status, cancel it."""

from __future__ import annotations

from typing import Any

from flask import g
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.bodies import Blueprint
from api.errors import APIError
from api.keys import require_api_key
from api.queueing import publish_or_503
from api.resources import db
from push import devices, pushes
from sync.limits import LimitExceeded, check_value
from workers import queues

blp = Blueprint("push", __name__, url_prefix="/v1/push", description="Push notifications")
MAX_DATA_BYTES = 4096
TOPIC = validate.Regexp(devices.TOPIC_PATTERN)
ID = validate.Regexp(r"^[^\s\x00-\x1f$]{1,200}$")  # user ids are JWT subs: `auth0|…` too


class AudienceSchema(Schema):
    users = fields.List(fields.String(validate=ID), validate=validate.Length(1, 1000))
    topic = fields.String(validate=TOPIC)
    devices = fields.List(
        fields.String(validate=validate.Regexp(devices.DEVICE_ID_PATTERN)),
        validate=validate.Length(1, 1000),
    )
    scope = fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_-]{0,31}:[^\s|]{1,200}$"))

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


@blp.route("", methods=["POST"])
class Pushes(MethodView):
    @require_api_key("push:send")
    @blp.arguments(PushNotificationRequestSchema, error_status_code=400)
    @blp.response(202, PushAcceptedSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Queue a push; the same idempotency key returns the same push."""
        push_id, created, state = pushes.create_push(db(), g.api_key_id, body)
        if created and state == pushes.QUEUED:  # scheduled ones are released by beat
            publish_or_503(
                queues.publish_fan_out,
                push_id,
                undo=lambda: pushes.forget_push(db(), push_id),
            )
        return {"push_id": push_id}


def _sender() -> str | None:
    """Whose pushes the caller may see: its own key's, or every key's for an `admin` key."""
    return None if "admin" in g.api_key_scopes else g.api_key_id


@blp.route("/<string:push_id>", methods=["GET", "DELETE"])
class PushStatus(MethodView):
    @require_api_key("push:send", "admin")
    @blp.response(200, PushStatusSchema)
    def get(self, push_id: str) -> Any:
        """Status and counts: targeted, sent, failed, invalid, pending (of a push this key sent;
        an `admin` key sees every push)."""
        found = pushes.status(db(), push_id, _sender()) if len(push_id) <= 64 else None
        if found is None:
            raise APIError(404, "not_found", "no such push")
        return found

    @require_api_key("push:send", "admin")
    @blp.response(200, PushStatusSchema)
    def delete(self, push_id: str) -> Any:
        """Cancel a push not done yet (one this key sent; an `admin` key may cancel any);
        devices not yet sent to get nothing."""
        outcome = pushes.cancel(db(), push_id, _sender()) if len(push_id) <= 64 else None
        if outcome is None:
            raise APIError(404, "not_found", "no such push")
        state, cancelled = outcome
        if not cancelled:
            raise APIError(409, "conflict", f"the push is already {state}")
        return pushes.status(db(), push_id)
