"""A request's deep work in a greenlet of its own, so a connection that waits stays small.

Under gunicorn's gevent workers (gunicorn.conf.py) each connection is a greenlet. A parked
greenlet keeps every page of its Python frame stack that its requests ever touched (CPython
gives each greenlet 16 KB chunks), and gevent copies its C stack to the heap. A live pull
waits for minutes; had its own greenlet run the request (Flask, the JWT check, marshmallow,
pymongo), it would keep that deep stack the whole time. So the app runs, and each look of a
held pull runs, in a short-lived greenlet (`apart`) whose stack is freed when it ends; the
connection's greenlet only parses, waits and writes.

At most `WEB_ACTIVE_REQUESTS` (64) pieces of deep work run at once in a process; the others
wait their turn, small, before they start. Thousands of live pulls arriving together (clients
reconnecting after a deploy) then do not all hold their parsers, stacks and reads at the same
time: that peak, freed, would stay behind as fragmented heap around the pulls still held
(B6: 28-31 KB per held pull at 5,000 without the bound, 8 KB with it). A request that waits
inside the app (a push with `Prefer: wait`) gives its turn back while it waits (`waiting`).

Without gevent's patching (the Flask test client, a threaded server) `apart` is a plain call.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()  # per greenlet under gevent: `turn` is set in work run `apart`


def gevent_serves() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


ACTIVE = int(os.environ.get("WEB_ACTIVE_REQUESTS", "64"))
_turns: Any = None  # a gevent Semaphore of ACTIVE, made on first use (after the patching)


def _turn() -> Any:
    global _turns
    if _turns is None:
        import gevent.lock

        _turns = gevent.lock.Semaphore(ACTIVE)
    return _turns


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Give this request's turn back while it waits (inside `apart`), and take one again."""
    if not gevent_serves() or getattr(_local, "turn", None) is not True:
        yield
        return
    _turn().release()
    try:
        yield
    finally:
        _turn().acquire()


def apart(fn: Callable[[], T]) -> T:
    """`fn()`, run in a fresh greenlet (with this one's context variables) once it has a turn,
    and waited for."""
    if not gevent_serves() or getattr(_local, "turn", None) is True:
        return fn()  # already apart, with a turn: taking a second could deadlock
    import gevent

    outcome: list[Any] = []

    def run() -> None:
        _local.turn = True
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller; gevent would print it
            outcome.append((False, exc))

    with _turn():
        gevent.spawn(contextvars.copy_context().run, run).join()
    if not outcome:  # killed before it ran (the process is going down)
        raise RuntimeError("the request's greenlet did not run")
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def shallow(wsgi_app: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The WSGI app, each call run `apart` (the response is iterated by the caller)."""

    def call(environ: Any, start_response: Any) -> Any:
        return apart(lambda: wsgi_app(environ, start_response))

    return call
