"""Offgrid's HTTP API: a thin Flask app that authenticates, validates, enqueues and reads."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request
from flask_compress import Compress
from flask_smorest import Api
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from api.auth import TokenVerifier
from api.bodies import register_body_checks
from api.commands import register_commands
from api.cors import register_cors
from api.errors import register_errorhandlers
from api.greenlets import shallow
from api.limits import register_limits
from api.metrics import register_metrics
from api.openapi import AuthErrorsLimitsPlugin
from api.resources import Resources, install, resources
from api.schemas import ErrorSchema
from config import Settings, load_settings
from config.logs import configure_logging, request_id
from sync.collections import load_collections
from sync.live import CommitHub
from sync.readcache import ReadCache
from sync.store import MongoHandle
from workers.factory import create_celery

COMPRESS_MIN_BYTES = 1024


class OffgridApi(Api):
    """flask-smorest, documenting our one error body for every error response."""

    ERROR_SCHEMA = ErrorSchema


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        API_TITLE="Offgrid",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        # SPEC §2: bodies above about 1 KiB go gzip-compressed when the request accepts gzip
        # (br or zstd only for a client that takes those and not gzip).
        COMPRESS_MIMETYPES=["application/json", "text/plain"],
        COMPRESS_MIN_SIZE=COMPRESS_MIN_BYTES,
        COMPRESS_ALGORITHM=["gzip", "br", "zstd"],
        COMPRESS_STREAMS=False,
    )
    api = register_extensions(app, settings)
    register_blueprints(app, api)
    register_errorhandlers(app)
    register_body_checks(app)
    register_security_headers(app)
    register_cors(app, settings)
    register_commands(app)
    register_metrics(app)
    register_request_ids(app)
    if settings.proxy_hops:
        # The client's address, scheme and host from the last `proxy_hops` X-Forwarded-*
        # entries (those our own proxies wrote), never from what a client sent itself.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.wsgi_app = shallow(app.wsgi_app)  # type: ignore[method-assign]
    return app


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def register_request_ids(app: Flask) -> None:
    settings = resources(app).settings
    configure_logging(settings.log_level, settings.log_format)

    @app.before_request
    def _adopt() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request_id.set(g.request_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/v1/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Content-Security-Policy", "default-src 'none'")
        return response


def register_extensions(app: Flask, settings: Settings) -> Api:
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    install(
        app,
        Resources(
            settings=settings,
            mongo=MongoHandle(settings.mongodb_url, settings.mongodb_database),
            celery=create_celery(settings, results=False),
            redis=redis,
            cache=ReadCache(redis, settings.mongodb_database, settings.cache_ttl_seconds),
            tokens=TokenVerifier(settings),
            collections=load_collections(settings.collections_module),
            # Registered first, so it runs after the other after_request hooks (metrics see the
            # uncompressed body); a held live pull's answer is compressed by it too (api.sync).
            compress=Compress(app),
            # One commit subscription per process (gunicorn forks before create_app).
            live=CommitHub(
                lambda: Redis.from_url(
                    settings.redis_url, socket_connect_timeout=2, socket_keepalive=True
                )
            ),
        ),
    )
    api = OffgridApi(app, spec_kwargs={"extra_plugins": [AuthErrorsLimitsPlugin(settings)]})
    register_limits(app, settings)
    return api


def register_blueprints(app: Flask, api: Api) -> None:
    from api import admin, devices, health, push, sync

    app.url_map.converters["scope"] = admin.ScopeConverter
    api.register_converter(admin.ScopeConverter, lambda _converter: admin.SCOPE_PATH_SCHEMA)
    api.register_blueprint(health.blp)
    api.register_blueprint(sync.blp)
    api.register_blueprint(admin.blp)
    api.register_blueprint(devices.blp)
    api.register_blueprint(push.blp)
