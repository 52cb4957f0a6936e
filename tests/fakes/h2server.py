"""A small HTTP/2-over-TLS server (h2 state machine, one thread per connection) on which the
APNs and FCM fakes are built: real frames, real ALPN, and GOAWAY when a fake asks for it.

A handler gets a `Request` and returns a `Reply`; `Reply.goaway` makes the server answer,
then send GOAWAY naming that stream as the last one it processed, ignore any later streams
and close once the client does, as APNs does when it shuts a connection down.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    goaway: bool = False


class H2Server:
    def __init__(self, cert_file: Path, key_file: Path, handler: Callable[[Request], Reply]):
        self._handler = handler
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.origin = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        streams: dict[int, Request] = {}
        try:
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = dict(event.headers)
                        streams[event.stream_id] = Request(
                            headers.pop(":method"), headers.pop(":path"), headers
                        )
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id].body += event.data
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        reply = self._handler(streams.pop(event.stream_id))
                        self._answer(conn, event.stream_id, reply)
                        if reply.goaway:
                            conn.close_connection(last_stream_id=event.stream_id)
                            sock.sendall(conn.data_to_send())
                            self._drain(sock)
                            return
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    @staticmethod
    def _drain(sock: ssl.SSLSocket) -> None:
        """After GOAWAY, read and ignore what the client had already sent (streams past the
        last processed one) until it closes, as a graceful HTTP/2 shutdown does."""
        sock.settimeout(2.0)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    @staticmethod
    def _answer(conn: h2.connection.H2Connection, stream_id: int, reply: Reply) -> None:
        headers = [(":status", str(reply.status)), ("content-length", str(len(reply.body)))]
        headers += [(name.lower(), value) for name, value in reply.headers.items()]
        conn.send_headers(stream_id, headers, end_stream=not reply.body)
        if reply.body:
            conn.send_data(stream_id, reply.body, end_stream=True)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
