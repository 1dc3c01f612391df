"""Callback receivers that misbehave, over real TCP on loopback (a thread per connection).

Modes: ``drip`` answers one byte every ``interval`` seconds; ``flood`` answers 200 with a 1 GiB
body sent as fast as the socket takes it (``status`` overrides 200); ``silent`` reads the request
and never answers; ``ok`` answers 200 at once (a receiver that recovered: ``mode`` may change at
any time, for the connections that come next). Counts open connections (and their peak),
connections seen and bytes sent.
"""

from __future__ import annotations

import socket
import threading

from tests.harness.services import free_port

GIB = 1 << 30
MODES = ("drip", "flood", "silent", "ok")


class HostileReceiver:
    def __init__(self, mode: str, *, interval: float = 1.0, status: int = 200) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode}")
        self.mode, self.interval, self.status = mode, interval, status
        self.port = free_port()
        self.open_connections = 0
        self.peak_open_connections = 0
        self.connections = 0
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
            self.peak_open_connections = max(self.peak_open_connections, self.open_connections)
            self.connections += 1
        try:
            with conn:
                self._read_request(conn)
                answer = {"drip": self._drip, "flood": self._flood, "silent": self._silent, "ok": self._ok}
                answer[self.mode](conn)
        except OSError:
            pass  # the client gave up: what these receivers are for
        finally:
            with self._lock:
                self.open_connections -= 1

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("closed")
            body += chunk

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.bytes_sent += len(data)

    def _drip(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        for byte in answer:
            if self._peer_closed(conn, self.interval):
                return
            self._send(conn, bytes([byte]))

    def _flood(self, conn: socket.socket) -> None:
        self._send(conn, b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (self.status, GIB))
        block = b"x" * 65536
        for _ in range(GIB // len(block)):
            if self._stop.is_set():
                return
            self._send(conn, block)

    def _ok(self, conn: socket.socket) -> None:
        self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def _silent(self, conn: socket.socket) -> None:
        while not self._peer_closed(conn, 0.2):
            pass

    def _peer_closed(self, conn: socket.socket, wait: float) -> bool:
        """Wait up to ``wait`` seconds; True once the client has closed (or the receiver stops), so
        that open_connections follows the client's side closely."""
        conn.settimeout(wait)
        try:
            return self._stop.is_set() or not conn.recv(1)
        except TimeoutError:
            return self._stop.is_set()
