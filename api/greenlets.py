"""A request's deep work in a greenlet of its own, so a connection that waits stays small.

Under gunicorn's gevent workers (gunicorn.conf.py) each connection is a greenlet. A parked
greenlet keeps every page of its Python frame stack that its requests ever touched (CPython
gives each greenlet 16 KB chunks), and gevent copies its C stack to the heap. A live pull
waits for minutes; had its own greenlet run the request (Flask, the JWT check, marshmallow,
pymongo), it would keep that deep stack the whole time. So the app runs, and each look of a
held pull runs, in a short-lived greenlet (`apart`) whose stack is freed when it ends; the
connection's greenlet only parses, waits and writes.

Without gevent's patching (the Flask test client, a threaded server) `apart` is a plain call.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _gevent_serves() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def apart(fn: Callable[[], T]) -> T:
    """`fn()`, run in a fresh greenlet (with this one's context variables) and waited for."""
    if not _gevent_serves():
        return fn()
    import gevent

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller; gevent would print it
            outcome.append((False, exc))

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
