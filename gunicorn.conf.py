"""gunicorn settings (read from the working directory, so every gunicorn the project starts
uses them: Procfile, Dockerfile, tests, benchmarks).

- gevent workers: a live pull (`Prefer: wait=N`) waiting for a commit holds a greenlet, not a
  thread, so one process holds thousands of them beside the normal requests.
- On SIGTERM a worker first answers its held live pulls (no changes; parked ones too, within
  10 s), so a deploy never waits for them; then gunicorn's graceful shutdown finishes the
  other requests.
- Prometheus samples of exited worker processes are not served as if they were alive.
"""

import os
import signal
from typing import Any

worker_class = "gevent"
# gevent records each greenlet's spawning stack and parent tree by default (for debugging);
# with one greenlet per connection that is memory per held pull, so it is off (before gevent
# is imported: gunicorn loads the worker class after this file).
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "2000"))
# Longer than the longest live pull (60 s), so gunicorn never kills a worker holding one.
timeout = 90
graceful_timeout = 30
# Apps long-poll on one connection: keep it open between pulls (above common proxy idle times).
keepalive = 75


def post_worker_init(worker: Any) -> None:
    if not hasattr(worker.wsgi, "extensions"):
        return
    _give_back_freed_memory(every=10.0)
    from api.resources import resources

    hub = resources(worker.wsgi).live
    previous = signal.getsignal(signal.SIGTERM)

    def answer_held_pulls_then_exit(signum: int, frame: Any) -> None:
        import gevent

        from api.parking import parking

        hub.close()  # wakes every held pull: each answers with no changes

        def then_exit() -> None:
            parking.drain(timeout=10)  # parked pulls answer in greenlets of their own
            if callable(previous):
                previous(signum, frame)

        gevent.spawn(then_exit)

    signal.signal(signal.SIGTERM, answer_held_pulls_then_exit)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _give_back_freed_memory(every: float) -> None:
    """glibc keeps the heap memory a burst of requests freed (thousands of live pulls arriving
    at once after a deploy: their parsers, stacks and reads) unless asked to return it; ask it
    every `every` seconds (`malloc_trim`, a few ms). Nothing to do on other C libraries."""
    import ctypes

    import gevent

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return

    def give_back() -> None:
        while True:
            gevent.sleep(every)
            trim(0)

    gevent.spawn(give_back)
