"""A read-through cache in Redis for small, hot reads whose truth stays in MongoDB (scope
membership, API keys), invalidated explicitly by whoever changes them.

Entries are grouped by subject (a scope, a key id). Each subject has a generation, a random
token in Redis; an entry is stored with the generation read *before* its value was read from
MongoDB, and is a hit only while the subject's generation is still that one. A change writes
MongoDB, then gives the subject a new generation: a fill racing with the change carries the old
generation and is never served, and no entry has to be found and deleted. A generation that
expires or is evicted is replaced by a new one, which only invalidates more.

When Redis is away the cache reads MongoDB (it is never the only way to an answer), but a
change must be able to reach it: `invalidate` raises when Redis cannot be told, and callers
change nothing then, because entries already in Redis would be served again once it is back.
A TTL of 0 turns the cache off.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "og:cache"
# A generation outlives its entries by far; when it expires, its entries become misses.
GENERATION_TTL_FACTOR = 100
MILLISECOND = timedelta(milliseconds=1)


class CacheUnavailable(Exception):
    """Redis could not be told of a change; the change was not made."""


class ReadCache:
    def __init__(self, redis: Redis | None, namespace: str, ttl_seconds: int) -> None:
        self._redis = redis if ttl_seconds > 0 else None
        self._namespace = namespace  # the database's name: apps sharing a Redis stay apart
        self._ttl = ttl_seconds

    def _base(self, kind: str, subject: str) -> str:
        return f"{PREFIX}:{self._namespace}:{kind}:{subject}"

    def get(
        self, kind: str, subject: str, field: str, load: Callable[[], str | None]
    ) -> str | None:
        """The cached value of `field` of `subject`, else `load()` (stored unless None)."""
        if self._redis is None:
            return load()
        base = self._base(kind, subject)
        gen_key, entry_key = f"{base}:gen", f"{base}:entry:{field}"
        fresh = secrets.token_hex(8)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(gen_key, fresh, nx=True, ex=self._ttl * GENERATION_TTL_FACTOR)
            pipe.get(gen_key)
            pipe.get(entry_key)
            _, gen, entry = pipe.execute()
        except RedisError as exc:
            log.warning("cache read failed, reading MongoDB", extra={"error": str(exc)})
            return load()
        if gen is not None and entry is not None:
            stored_gen, _, value = entry.decode().partition(":")
            if stored_gen == gen.decode():
                return value
        value = load()
        if value is not None and gen is not None:
            try:
                self._redis.set(entry_key, f"{gen.decode()}:{value}", ex=self._ttl)
            except RedisError as exc:
                log.warning("cache fill failed", extra={"error": str(exc)})
        return value

    def first_in(self, kind: str, subject: str, what: str, period: timedelta) -> bool:
        """True at most once per `period` for `what` of `subject` (always when Redis is away
        or the cache is off): lets a caller skip a write it has made recently."""
        if self._redis is None:
            return True
        try:
            key = f"{self._base(kind, subject)}:{what}"
            return bool(self._redis.set(key, 1, nx=True, px=period // MILLISECOND))
        except RedisError:
            return True

    def invalidate(self, kind: str, subject: str) -> None:
        """Make every cached entry of `subject` a miss; raises CacheUnavailable."""
        if self._redis is None:
            return
        try:
            self._redis.set(
                f"{self._base(kind, subject)}:gen",
                secrets.token_hex(8),
                ex=self._ttl * GENERATION_TTL_FACTOR,
            )
        except RedisError as exc:
            raise CacheUnavailable(f"the cache in Redis could not be told: {exc}") from exc

    @contextmanager
    def changing(self, kind: str, subject: str) -> Iterator[None]:
        """Around a change to `subject` in MongoDB: invalidate before (raising, so nothing
        changes when Redis is away) and after (so no fill made during the change survives)."""
        self.invalidate(kind, subject)
        try:
            yield
        finally:
            try:
                self.invalidate(kind, subject)
            except CacheUnavailable:
                # Only a fill made during the change could survive, and only for the TTL.
                log.error("cache not invalidated after a change", extra={"subject": subject})


NO_CACHE = ReadCache(None, "", 0)
