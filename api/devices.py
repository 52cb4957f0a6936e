"""Device registry endpoints (SPEC §4): register, unregister, topics."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from flask import g
from flask.views import MethodView

from api.auth import require_user
from api.bodies import Blueprint
from api.errors import APIError
from api.resources import db
from api.schemas import DeviceIdSchema, DeviceSchema, TopicsSchema
from push import devices

blp = Blueprint("devices", __name__, url_prefix="/v1/devices", description="Device registry")


SEEN_EVERY_SECONDS = 3600
_SEEN_REMEMBERED = 100_000
_seen_at: OrderedDict[tuple[str, str], float] = OrderedDict()
_seen_lock = threading.Lock()


def note_seen(user: str, client_id: str) -> None:
    """A sync request from this install: refresh its devices' `last_seen`, at most once an hour
    per install and process (remembered here, so most requests cost nothing)."""
    now = time.monotonic()
    key = (user, client_id)
    with _seen_lock:
        last = _seen_at.get(key)
        if last is not None and now - last < SEEN_EVERY_SECONDS:
            return
        _seen_at[key] = now
        _seen_at.move_to_end(key)
        while len(_seen_at) > _SEEN_REMEMBERED:
            _seen_at.popitem(last=False)
    devices.seen(db(), user, client_id)


@blp.route("", methods=["POST"])
class Devices(MethodView):
    @require_user
    @blp.arguments(DeviceSchema, error_status_code=400)
    @blp.response(200, DeviceIdSchema, description="The token was known: its device is updated")
    @blp.alt_response(201, schema=DeviceIdSchema, description="A new device")
    def post(self, body: dict[str, Any]) -> Any:
        """Register this app install's push token (upsert by token)."""
        did, created = devices.register(db(), user=g.user, **body)
        return {"device_id": did}, 201 if created else 200


@blp.route("/<string:device_id>", methods=["DELETE"])
class Device(MethodView):
    @require_user
    @blp.response(204)
    def delete(self, device_id: str) -> Any:
        """Unregister one of your devices."""
        known = devices.DEVICE_ID_PATTERN.match(device_id)
        if not known or not devices.unregister(db(), device_id, g.user):
            raise APIError(404, "not_found", "no such device")
        return None


@blp.route("/<string:device_id>/topics/<string:topic>", methods=["PUT", "DELETE"])
class DeviceTopic(MethodView):
    def _set(self, device_id: str, topic: str, subscribed: bool) -> dict[str, Any]:
        if not devices.TOPIC_PATTERN.match(topic):
            raise APIError(400, "invalid_topic", f"a topic is 1-128 of {devices.TOPIC_CHARS}")
        try:
            topics = (
                devices.set_topic(db(), device_id, g.user, topic, subscribed)
                if devices.DEVICE_ID_PATTERN.match(device_id)
                else None
            )
        except devices.TooManyTopics as exc:
            raise APIError(400, "too_many_topics", str(exc)) from None
        if topics is None:
            raise APIError(404, "not_found", "no such device")
        return {"device_id": device_id, "topics": topics}

    @require_user
    @blp.response(200, TopicsSchema)
    def put(self, device_id: str, topic: str) -> Any:
        """Subscribe a device to a topic."""
        return self._set(device_id, topic, True)

    @require_user
    @blp.response(200, TopicsSchema)
    def delete(self, device_id: str, topic: str) -> Any:
        """Unsubscribe a device from a topic."""
        return self._set(device_id, topic, False)
