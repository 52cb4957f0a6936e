"""`api.greenlets.apart` under gevent (as gunicorn serves the API): the work runs in a greenlet
of its own, its result, exception and context variables come through, and a greenlet that
parks afterwards does not keep the deep stack of that work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from gevent import monkey; monkey.patch_all()
import contextvars, gevent, gevent.event
from api.greenlets import apart

who = contextvars.ContextVar("who")
who.set("caller")
me = gevent.getcurrent()
assert apart(lambda: (gevent.getcurrent() is not me, who.get())) == (True, "caller")
try:
    apart(lambda: {}["missing"])
except KeyError as exc:
    assert exc.args == ("missing",)
else:
    raise AssertionError("no KeyError")

def deep(n):
    return 0 if n == 0 else deep(n - 1) + 0

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

parked = gevent.event.Event()

def held(shallow):
    if shallow:
        apart(lambda: deep(300))
    else:
        deep(300)
    parked.wait()

def cost(shallow, n=2000):
    before = rss_kb()
    greenlets = [gevent.spawn(held, shallow) for _ in range(n)]
    gevent.sleep(0.5)
    return (rss_kb() - before) / n, greenlets

cost(True, 200)  # warm up
apart_kb, _ = cost(True)
deep_kb, _ = cost(False)
print(f"{apart_kb:.1f} {deep_kb:.1f}")
"""


def test_apart_runs_work_in_its_own_greenlet_and_a_parked_caller_stays_small() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    apart_kb, deep_kb = map(float, done.stdout.split())
    # A parked greenlet keeps the frame stack pages its work touched (~11 KB for these 300
    # frames, measured; a bare parked greenlet costs ~7.5 KB): unless the work ran apart.
    assert deep_kb - apart_kb > 6, (apart_kb, deep_kb)


TURNS = """
from gevent import monkey; monkey.patch_all()
import gevent, gevent.event
from api.greenlets import apart, waiting

running, most = 0, 0
def work():
    global running, most
    running += 1
    most = max(most, running)
    gevent.sleep(0.05)
    running -= 1

gevent.joinall([gevent.spawn(apart, work) for _ in range(20)])
print(most)

# A request waiting inside the app gives its turn back: two waiting, two more still run.
release = gevent.event.Event()
def waits():
    with waiting():
        release.wait()
waiters = [gevent.spawn(apart, waits) for _ in range(2)]
gevent.sleep(0.1)
ran = gevent.spawn(apart, lambda: apart(lambda: "nested ok"))  # nesting takes no second turn
print(ran.get(timeout=5))
release.set()
gevent.joinall(waiters, timeout=5)
"""


def test_at_most_the_set_number_of_requests_work_at_once_and_a_waiter_gives_its_turn() -> None:
    done = subprocess.run(
        [sys.executable, "-c", TURNS],
        cwd=ROOT,
        env={**os.environ, "WEB_ACTIVE_REQUESTS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "nested", "ok"]
