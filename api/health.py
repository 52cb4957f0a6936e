"""Liveness and readiness (SPEC §6)."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask.views import MethodView

from api.bodies import Blueprint
from api.resources import resources
from api.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz", methods=["GET"])
class Healthz(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> Any:
        """The process is alive (no dependency is checked)."""
        return {"status": "ok"}


def _check(name: str, probe: Any) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready"; the type names the cause
        current_app.logger.warning("readiness check %s failed: %r", name, exc)
        return f"unavailable ({type(exc).__name__})"
    return "ok"


@blp.route("/readyz", methods=["GET"])
class Readyz(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A dependency is unreachable")
    def get(self) -> Any:
        """MongoDB, RabbitMQ and Redis are all reachable."""
        found = resources()

        def broker() -> None:
            with found.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)

        checks = {
            "mongodb": _check("mongodb", lambda: found.mongo.client.admin.command("ping")),
            "rabbitmq": _check("rabbitmq", broker),
            "redis": _check("redis", found.redis.ping),
        }
        ready = all(v == "ok" for v in checks.values())
        response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
        response.status_code = 200 if ready else 503
        if not ready:
            response.headers["Retry-After"] = "5"
        return response
