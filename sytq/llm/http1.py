"""A small HTTP/1.1 client for the provider's non-streaming POSTs: keep-alive connections, one
request at a time per connection, responses parsed by httptools (llhttp: Content-Length and chunked).

Why not aiohttp here: with thousands of calls in flight its per-request machinery (request and
response objects, a writer task, timers, cookie and payload handling) was about half of the worker's
event-loop CPU per task. This does one write and one parse per call.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools


class HTTPConnectionError(Exception):
    """The connection failed or closed before a whole response arrived."""


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Exchange:
    """What the parser collects for one response."""

    waiter: asyncio.Future[HTTPResponse]
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    started: bool = False  # a response byte arrived


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: _Exchange | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, hence no isinstance).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        exchange.started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPConnectionError(f"unparsable HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        self._fail(HTTPConnectionError("server closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPConnectionError(f"connection lost: {exc}" if exc else "server closed the connection"))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._exchange is not None
        self._exchange.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        assert self._exchange is not None
        self._exchange.body.append(body)

    def on_message_complete(self) -> None:
        exchange, self._exchange = self._exchange, None
        assert exchange is not None
        self.reusable = self._parser.should_keep_alive()
        if not exchange.waiter.done():
            response = HTTPResponse(self._parser.get_status_code(), exchange.headers, b"".join(exchange.body))
            exchange.waiter.set_result(response)

    # --- use ---------------------------------------------------------------------------------

    async def request(self, raw: bytes) -> tuple[HTTPResponse | None, bool]:
        """The response, or (None, started) when the connection failed; started: a byte came back."""
        assert self.transport is not None and self._exchange is None
        exchange = _Exchange(asyncio.get_running_loop().create_future())
        self._exchange = exchange
        self.reusable = False
        self.transport.write(raw)
        try:
            return await exchange.waiter, True
        except HTTPConnectionError:
            self.close()
            if exchange.started:
                raise
            return None, False

    def _fail(self, exc: HTTPConnectionError) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.waiter.done():
            exchange.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HTTP1Pool:
    """Keep-alive connections to one origin, for POSTs of a JSON body."""

    def __init__(self, url: str, headers: dict[str, str], *, connect_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"provider URL must be http(s)://host/...: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.connect_timeout = connect_timeout
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and default_port:  # an IPv6 literal keeps its brackets
            host_header = f"[{self.host}]"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, body: bytes) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them
            self.close()
            self._loop = loop
        raw = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            # A kept-alive connection the server closed meanwhile fails before any byte comes
            # back; the request is then sent once more on a fresh connection.
            response = await self._exchange(connection, raw)
            if response is not None:
                return response
        response = await self._exchange(await self._connect(), raw)
        if response is None:
            raise HTTPConnectionError("server closed the connection before answering")
        return response

    async def _exchange(self, connection: _Connection, raw: bytes) -> HTTPResponse | None:
        try:
            response, _ = await connection.request(raw)
        except BaseException:
            connection.close()  # cancelled or failed mid-response: never reuse
            raise
        if response is not None and connection.reusable and not connection.closed:
            self._idle.append(connection)
        elif response is not None:
            connection.close()
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError as exc:
            raise HTTPConnectionError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise HTTPConnectionError(f"connect to {self.host}:{self.port} failed: {exc}") from exc
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
