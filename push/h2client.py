"""Many requests in flight on one HTTP/2 connection, on asyncio with h2.

A push provider (APNs) answers each request on its own stream; one connection carries as many
streams at once as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows (APNs: about 1,000),
so a worker process needs one connection and no thread per request in flight.

Failures say whether the request may have arrived:
- `NotSent`: it never left, or the server said it did not process it (a refused stream, a
  stream above a GOAWAY's last stream id). Sending it again cannot deliver it twice.
- `Unanswered`: it left and no answer came (connection lost, stream reset, timeout). It may
  have been delivered, so it is never sent again (at most once).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

T = TypeVar("T")


class NotSent(Exception):
    """The request did not reach the server's application: safe to send again."""


class Unanswered(Exception):
    """The request left without an answer: it may have been delivered."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Stream:
    answer: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class H2Connection:
    """One HTTP/2 connection over TLS to `origin`. Open it with `await connect()`; `request`
    may then be awaited by many tasks at once. After a GOAWAY or a lost connection it is
    `closed`, and its owner opens a new one."""

    def __init__(self, origin: str, context: ssl.SSLContext, connect_timeout: float = 5.0):
        parts = urlsplit(origin)
        self.host = parts.hostname or ""
        self.port = parts.port or 443
        self.authority = parts.netloc
        self._context = context
        self._connect_timeout = connect_timeout
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._streams: dict[int, _Stream] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # a stream ended, a window opened, settings arrived
        self._flush_scheduled = False
        self.closed = False

    async def connect(self) -> None:
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=self._context, server_hostname=self.host
                ),
                self._connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.closed = True
            raise NotSent(f"connect: {type(exc).__name__}: {exc}") from exc
        ssl_object = self._writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            self._writer.close()
            self.closed = True
            raise NotSent("the server does not speak HTTP/2")
        self._h2.initiate_connection()
        self._flush()
        self._reader_task = asyncio.create_task(self._read(reader))

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    def _capacity(self) -> int:
        return min(self._h2.remote_settings.max_concurrent_streams, 1000)

    async def request(
        self, path: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> Response:
        """POST `body` to `path`; raises NotSent or Unanswered."""
        while not self.closed and len(self._streams) >= self._capacity():
            self._changed.clear()
            await self._changed.wait()
        if self.closed:
            raise NotSent("connection closed")
        stream_id = self._h2.get_next_available_stream_id()
        stream = _Stream(asyncio.get_running_loop().create_future())
        self._streams[stream_id] = stream
        request_headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
            *headers,
            ("content-length", str(len(body))),
        ]
        try:
            self._h2.send_headers(stream_id, request_headers, end_stream=not body)
            await self._send_body(stream_id, body)
        except (h2.exceptions.ProtocolError, NotSent) as exc:
            self._streams.pop(stream_id, None)
            raise NotSent(f"not sent: {exc}") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(stream.answer), timeout)
        except TimeoutError:
            self._streams.pop(stream_id, None)
            self._reset(stream_id)
            raise Unanswered("no answer in time") from None

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            if self.closed:
                raise NotSent("connection closed")
            window = min(
                self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size
            )
            if window <= 0:
                self._schedule_flush()
                self._changed.clear()
                await self._changed.wait()
                continue
            piece, view = view[:window], view[window:]
            self._h2.send_data(stream_id, piece.tobytes(), end_stream=not view)
        self._schedule_flush()

    def _reset(self, stream_id: int) -> None:
        try:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._schedule_flush()
        except h2.exceptions.ProtocolError:
            pass

    def _schedule_flush(self) -> None:
        # Requests made in one turn of the loop leave in one write.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    self._handle(event)
                self._flush()
                self._changed.set()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._lost(Unanswered("connection lost"))

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                for name, value in event.headers:
                    if name == ":status":
                        stream.status = int(value)
                    else:
                        stream.headers[name] = value
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.answer.done():
                stream.answer.set_result(
                    Response(stream.status, stream.headers, bytes(stream.body))
                )
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.answer.done():
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                failure = NotSent if refused else Unanswered
                stream.answer.set_exception(failure(f"stream reset: {event.error_code!r}"))
        elif isinstance(event, h2.events.ConnectionTerminated):
            # GOAWAY: streams above its last stream id were not processed; the others still
            # get their answers before the server closes.
            self.closed = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in [s for s in self._streams if s > last]:
                stream = self._streams.pop(stream_id)
                if not stream.answer.done():
                    stream.answer.set_exception(NotSent("GOAWAY: not processed"))

    def _lost(self, failure: Exception) -> None:
        self.closed = True
        for stream in self._streams.values():
            if not stream.answer.done():
                stream.answer.set_exception(failure)
        self._streams.clear()
        self._changed.set()
        if self._writer is not None:
            self._writer.close()

    async def close(self) -> None:
        if self._writer is not None and not self.closed:
            try:
                self._h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
        self.closed = True
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()


class LoopThread:
    """An asyncio event loop in a daemon thread of its own, for callers in other threads."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"{self._name}-loop", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running()).result()

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None
