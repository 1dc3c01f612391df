"""One HTTP/1.1 client connection: the request written in one piece, the response parsed by
httptools (llhttp: Content-Length and chunked), its body buffered up to a cap or streamed to a sink."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

BodySink = Callable[[bytes], None]


class HTTPConnectionError(Exception):
    """The connection failed or closed before a whole response arrived."""


class ConnectFailed(HTTPConnectionError):
    """No connection could be opened (nothing was sent)."""


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    truncated: bool = False  # the body went past the exchange's cap: cut there, connection closed


@dataclass
class _Exchange:
    """What the parser collects for one response."""

    waiter: asyncio.Future[HTTPResponse]
    max_body: int | None
    sink: BodySink | None
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    started: bool = False  # a response byte arrived


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    """Request line and headers up to the blank line, without Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def with_body(head: bytes, body: bytes) -> bytes:
    return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def host_header(host: str, port: int, scheme: str) -> str:
    """``host``, ``host:port`` off the scheme's default port; IPv6 literals keep their brackets."""
    literal = f"[{host}]" if ":" in host else host
    return literal if port == (443 if scheme == "https" else 80) else f"{literal}:{port}"


class Connection(asyncio.Protocol):
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
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ or HTTPConnectionError(str(exc)))  # the sink's own error
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
        if self._exchange is not None:
            self._exchange.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        if exchange is None:  # the exchange already ended at its cap
            return
        if exchange.sink is not None and self._parser.get_status_code() == 200:
            exchange.sink(body)
            return
        exchange.size += len(body)
        if exchange.max_body is not None and exchange.size > exchange.max_body:
            # Keep what fits and drop the connection: the rest is never read.
            exchange.body.append(body[: len(body) - (exchange.size - exchange.max_body)])
            self._complete(truncated=True)
            self.close()
            return
        exchange.body.append(body)

    def on_message_complete(self) -> None:
        if self._exchange is not None:
            self.reusable = self._parser.should_keep_alive()
            self._complete(truncated=False)

    # --- use ---------------------------------------------------------------------------------

    async def request(
        self, raw: bytes, *, max_body: int | None = None, sink: BodySink | None = None
    ) -> tuple[HTTPResponse | None, bool]:
        """The response, or (None, False) when the connection failed before any byte came back.

        ``max_body``: bytes of body kept at most; ``sink``: receives a 200 answer's body as it
        arrives (not buffered); its exception ends the exchange."""
        assert self.transport is not None and self._exchange is None
        exchange = _Exchange(asyncio.get_running_loop().create_future(), max_body, sink)
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

    def _complete(self, *, truncated: bool) -> None:
        exchange, self._exchange = self._exchange, None
        assert exchange is not None
        if not exchange.waiter.done():
            status = self._parser.get_status_code()
            response = HTTPResponse(status, exchange.headers, b"".join(exchange.body), truncated)
            exchange.waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.waiter.done():
            exchange.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
