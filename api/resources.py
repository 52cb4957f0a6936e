"""What the API's views use, built once per process by `create_app`, reached through typed
accessors instead of string-keyed lookups: `resources().settings`, `db()`, and so on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from celery import Celery
    from flask_compress import Compress
    from pymongo.database import Database
    from redis import Redis

    from api.auth import TokenVerifier
    from config import Settings
    from sync.collections import CollectionRegistry
    from sync.live import CommitHub
    from sync.readcache import ReadCache
    from sync.store import MongoHandle

_KEY = "offgrid"


@dataclass(frozen=True)
class Resources:
    settings: Settings
    mongo: MongoHandle
    celery: Celery  # publishes only (no result backend)
    redis: Redis
    cache: ReadCache  # membership and API keys, invalidated by every change to them
    tokens: TokenVerifier
    collections: CollectionRegistry
    live: CommitHub  # one commit subscription per process (gunicorn forks before create_app)
    compress: Compress  # response compression (SPEC §2), also applied to held pulls' answers


def install(app: Flask, resources: Resources) -> None:
    app.extensions[_KEY] = resources


def resources(app: Flask | None = None) -> Resources:
    """The resources of `app`, or of the app serving the current request."""
    found = (app or current_app).extensions.get(_KEY)
    if not isinstance(found, Resources):
        raise RuntimeError("the app has no Offgrid resources: build it with api.create_app")
    return found


def db() -> Database:
    return resources().mongo.db


def cache() -> ReadCache:
    return resources().cache
