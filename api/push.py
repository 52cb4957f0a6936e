"""Push API (SPEC §4): send a notification to an audience, read its status, cancel it."""

from __future__ import annotations

from typing import Any

from flask import g
from flask.views import MethodView

from api.bodies import Blueprint
from api.errors import APIError
from api.keys import require_api_key
from api.queueing import publish_or_503
from api.resources import db
from api.schemas import PushAcceptedSchema, PushNotificationRequestSchema, PushStatusSchema
from push import pushes
from workers import queues

blp = Blueprint("push", __name__, url_prefix="/v1/push", description="Push notifications")


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
