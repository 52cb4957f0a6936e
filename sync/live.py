"""Live pull (SPEC §2 "Live pull"): a pull with nothing new waits until a scope it reads commits.

The worker that raises a scope's watermark announces it once per commit on one Redis pub/sub
channel (`announce`). Each serving process keeps one subscription (`CommitHub`, one listener
thread, or greenlet under gevent) and a map from scope to the pulls waiting on it; a commit
wakes exactly those, and they pull again. Nothing polls the database while pulls wait.

No wake-up is missed: a live pull registers (`CommitHub.watch`) and makes sure the hub is
subscribed *before* it reads anything, so a commit is either seen by that read or announced
after it, to a subscription that already exists, and sets the pull's event even while the pull
is still reading. A lost connection wakes every waiting pull to look again, and the hub
subscribes anew. The pulls one commit wakes in a scope share their page reads (`pages`). A
push waiting for its batch (`Prefer: wait`) waits on the same hub: the worker announces each
batch it made final (`announce_final`, under `batch_key`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError

from sync.scopelog import SharedReads

CHANNEL = "offgrid:commits"
log = logging.getLogger(__name__)


def announce(redis: Redis, scope: str, seq: int) -> None:
    """Tell every serving process that `scope` committed up to `seq` (best effort: a pull
    that misses it ends at its timeout and pulls again)."""
    try:
        redis.publish(CHANNEL, json.dumps({"scope": scope, "seq": seq, "at": time.time()}))
    except RedisError as exc:
        log.warning("could not announce the commit of %s: %r", scope, exc)


def batch_key(batch_id: str) -> str:
    """What a push waiting for its batch (`Prefer: wait`) registers under: never a scope
    (scopes hold no whitespace)."""
    return f"batch {batch_id}"


def announce_final(redis: Redis, batch_id: str) -> None:
    """Tell every serving process that the batch is final (best effort: a push waiting for it
    also looks now and then)."""
    try:
        redis.publish(CHANNEL, json.dumps({"batch": batch_id, "at": time.time()}))
    except RedisError as exc:
        log.warning("could not announce the end of batch %s: %r", batch_id, exc)


@dataclass(eq=False)
class Waiter:
    """One waiting request (a live pull, a push waiting for its batch): what it waits on, and
    the event that wakes it."""

    keys: frozenset[str]  # scopes, or a batch_key
    event: threading.Event = field(default_factory=threading.Event)
    committed_at: float | None = None  # when the commit that woke it was announced
    on_wake: Callable[[], None] | None = None  # also called when the event is set by the hub

    def wake(self) -> None:
        self.event.set()
        if self.on_wake is not None:
            self.on_wake()


class CommitHub:
    """One subscription per process; wakes the pulls waiting on a scope when it commits."""

    def __init__(self, redis_factory: Callable[[], Redis]) -> None:
        self._redis_factory = redis_factory
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._subscribed = threading.Event()
        self._listener: threading.Thread | None = None
        self._closing = False
        self.pages = SharedReads()  # the page reads of the pulls one commit wakes, shared

    # -- waiting --------------------------------------------------------------------------

    def register(self, keys: Iterable[str]) -> Waiter:
        """Wake the waiter on a commit in any of `keys` (scopes, or a `batch_key`)."""
        waiter = Waiter(frozenset(keys))
        with self._lock:
            if self._closing:
                waiter.event.set()
            for scope in waiter.keys:
                self._waiters.setdefault(scope, set()).add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        with self._lock:
            for scope in waiter.keys:
                waiting = self._waiters.get(scope)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[scope]

    @contextlib.contextmanager
    def watch(self, keys: Iterable[str]) -> Iterator[Waiter]:
        """Registered for `keys` for the duration: look (read) only after this and
        `subscribed()`, and an announcement from then on sets the waiter's event."""
        waiter = self.register(keys)
        try:
            yield waiter
        finally:
            self.unregister(waiter)

    def subscribed(self, timeout: float) -> bool:
        """Start the listener if needed; True once its subscription is confirmed."""
        with self._lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(
                    target=self._listen, name="offgrid-commit-hub", daemon=True
                )
                self._listener.start()
        return self._subscribed.wait(timeout)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len({w for waiters in self._waiters.values() for w in waiters})

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Wake every waiting pull and take no more (the process is shutting down)."""
        self._closing = True
        self._wake_all()

    # -- the subscription -----------------------------------------------------------------

    def _wake(self, scope: str, committed_at: float | None) -> None:
        with self._lock:
            waiters = list(self._waiters.get(scope, ()))
        for waiter in waiters:
            waiter.committed_at = committed_at
            waiter.wake()

    def _wake_all(self) -> None:
        with self._lock:
            waiters = {w for waiting in self._waiters.values() for w in waiting}
        for waiter in waiters:
            waiter.wake()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._closing:
            pubsub = None
            try:
                pubsub = self._redis_factory().pubsub()
                pubsub.subscribe(CHANNEL)
                for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self._subscribed.set()
                        backoff = 0.1
                        # Commits made while it was not subscribed were not announced to
                        # it: every waiting pull looks again (a pull kept as data has no
                        # greenlet waiting for the subscription).
                        self._wake_all()
                    elif message["type"] == "message":
                        self._dispatch(message["data"])
                    if self._closing:
                        break
            except (RedisError, OSError) as exc:
                log.warning("commit subscription lost: %r", exc)
            finally:
                self._subscribed.clear()
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        pubsub.close()
            # Commits may have been missed meanwhile: every waiting pull looks again.
            self._wake_all()
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, data: bytes | str) -> None:
        try:
            note = json.loads(data)
            key = batch_key(str(note["batch"])) if "batch" in note else str(note["scope"])
            at = note.get("at")
        except (ValueError, KeyError, TypeError):
            return
        self._wake(key, float(at) if isinstance(at, int | float) else None)
