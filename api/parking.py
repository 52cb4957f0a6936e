"""Held live pulls kept as data, not as waiting greenlets (under gunicorn's gevent workers).

A live pull with nothing new at its first look (api.sync `LivePull`) would otherwise keep its
connection's greenlet waiting for up to a minute, and with it gunicorn's parser, request,
environ and socket objects and the greenlet's saved stack: ~38 KB per held pull. Parked, it
keeps a duplicate of the connection's socket, its `LivePull` (body, last look, the request's
plain environ, its waiter) and a timer, and the connection's greenlet ends: gunicorn closes its
own socket object (`StopIteration`, its "close this connection"), and the duplicate keeps the
connection open. A commit that wakes the pull (`Waiter.on_wake`), its timer, or the process
shutting down starts a short-lived greenlet that looks, and answers on the socket with
`Connection: close` (the client, or the proxy in front, opens a new connection for its next
pull).

Only plain HTTP/1.x connections are parked, and only when the pull's first look was trusted
(the hub was subscribed); anything else waits in its greenlet as before.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from flask import Response

from api.greenlets import gevent_serves

if TYPE_CHECKING:
    from api.sync import LivePull

log = logging.getLogger(__name__)
MAX_PARKED = 100_000  # one socket each: size the process's open-file limit above it
# LIVE_PARKING=0 keeps every held pull waiting in its greenlet (for comparison, or a server
# in front that cannot take `Connection: close`).
ENABLED = os.environ.get("LIVE_PARKING", "1") != "0"
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class _Parked:
    """One parked pull: its socket, its live pull, the headers its response already has."""

    __slots__ = ("answered", "headers", "kicked", "live", "running", "sock", "timer")

    def __init__(self, sock: socket.socket, live: LivePull, headers: list[tuple[str, str]]):
        self.sock = sock
        self.live = live
        self.headers = headers
        self.timer: Any = None
        self.running = False  # a greenlet is looking or answering for it
        self.kicked = False  # woken again while it ran
        self.answered = False


class Parking:
    """The parked pulls of this process."""

    def __init__(self) -> None:
        self._parked: set[_Parked] = set()

    def park(self, environ: dict[str, Any], live: LivePull, headers: list[tuple[str, str]]) -> bool:
        """Take over the request's connection and hold the pull as data; False when it must
        wait in its greenlet instead (not under gevent, TLS or HTTP/2 on the socket, an
        untrusted first look, too many parked)."""
        raw = environ.get("gunicorn.socket")
        if (
            not ENABLED
            or not gevent_serves()
            or not isinstance(raw, socket.socket)
            or isinstance(raw, ssl.SSLSocket)
            or environ.get("SERVER_PROTOCOL") not in ("HTTP/1.0", "HTTP/1.1")
            or not live.trusted
            or len(self._parked) >= MAX_PARKED
        ):
            return False

        parked = _Parked(raw.dup(), live, headers)
        self._parked.add(parked)
        live.held()
        live.waiter.on_wake = lambda: self._kick(parked)
        self._arm(parked)
        if live.waiter.event.is_set() or live.due() is not None:
            self._kick(parked)  # woken between its look and now
        return True

    def _arm(self, parked: _Parked) -> None:
        """Kick it when its time is up (a little after: `due` must say so by then)."""
        import gevent

        if parked.timer is not None:
            parked.timer.stop()
            parked.timer.close()
        parked.timer = gevent.get_hub().loop.timer(max(0.0, parked.live.remaining()) + 0.01)
        parked.timer.start(self._kick, parked)

    def _kick(self, parked: _Parked) -> None:
        if parked.answered:
            return
        if parked.running:
            parked.kicked = True
            return
        import gevent

        parked.running = True
        gevent.spawn(self._drive, parked)

    def _drive(self, parked: _Parked) -> None:
        """Look or answer, as often as it was kicked meanwhile (one greenlet at a time)."""
        try:
            self._steps(parked)
        except Exception:  # never leave a parked pull behind unanswered and registered
            log.exception("a parked live pull failed")
            self._close(parked)

    def _steps(self, parked: _Parked) -> None:
        live = parked.live
        while True:
            parked.kicked = False
            reason = live.due()
            if reason is not None:
                self._answer(parked, functools.partial(live.end, reason))
                return
            if live.waiter.event.is_set():
                try:
                    news = live.look()
                except Exception as exc:
                    self._answer(parked, _raiser(exc))
                    return
                if news is not None:
                    self._answer(parked, _returning(news))
                    return
            if not parked.kicked:
                parked.running = False
                if not parked.timer.active:
                    self._arm(parked)
                return

    def _answer(self, parked: _Parked, step: Callable[[], dict[str, Any]]) -> None:
        parked.answered = True
        try:
            payload = _http_bytes(parked.live.respond(step), parked.headers)
            with contextlib.suppress(OSError):  # the client went away
                parked.sock.sendall(payload)
        finally:
            self._close(parked)

    def _close(self, parked: _Parked) -> None:
        parked.answered = True
        parked.timer.stop()
        parked.timer.close()
        parked.sock.close()
        parked.live.release()
        self._parked.discard(parked)

    def drain(self, timeout: float) -> None:
        """Wait (up to `timeout`) until every parked pull was answered (after the hub closed)."""
        import gevent

        deadline = time.monotonic() + timeout
        while self._parked and time.monotonic() < deadline:
            gevent.sleep(0.05)


def _returning(reply: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: reply


def _raiser(exc: Exception) -> Callable[[], dict[str, Any]]:
    def step() -> dict[str, Any]:
        raise exc

    return step


def _http_bytes(response: Response, headers: list[tuple[str, str]]) -> bytes:
    """The whole HTTP/1.1 response: the headers the held response had (request id, security,
    CORS, Preference-Applied), the final response's over them, and `Connection: close`."""
    body = response.get_data()
    merged = {name.lower(): (name, value) for name, value in headers}
    for name, value in response.headers.items():
        merged[name.lower()] = (name, value)
    lines = [f"HTTP/1.1 {response.status}"]
    lines += [f"{n}: {v}" for key, (n, v) in merged.items() if key not in _HOP_BY_HOP]
    lines += [
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"Date: {formatdate(usegmt=True)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


parking = Parking()
