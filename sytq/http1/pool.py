"""Keep-alive connections to one origin for POSTs of a JSON body, directly or through a proxy.

Why our own client: per call it does one write and one parse; aiohttp's request machinery (request
and response objects, a writer task, timers) and httpx's pool cost several times the CPU at
thousands of calls in flight (bench/results/http_clients.md).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from sytq.http1.connection import (
    BodySink,
    Connection,
    HTTPConnectionError,
    HTTPResponse,
    host_header,
    request_head,
    with_body,
)
from sytq.http1.dial import open_connection
from sytq.http1.proxy import Proxy


class HTTP1Pool:
    """POSTs to one URL over kept-alive connections, one request at a time per connection."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        proxy: Proxy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"provider URL must be http(s)://host/...: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.connect_timeout = connect_timeout
        self.proxy = proxy
        https = parts.scheme == "https"
        self._ssl = (ssl_context or ssl.create_default_context()) if https else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = host_header(self.host, self.port, parts.scheme)
        target = path
        extra: dict[str, str] = {}
        if proxy is not None and not https:  # plain http through a proxy: absolute-form request
            target = f"http://{host}{path}"
            if proxy.authorization:
                extra["Proxy-Authorization"] = proxy.authorization
        self._head = request_head("POST", target, {"Host": host, **headers, **extra})
        self._idle: list[Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, body: bytes, *, sink: BodySink | None = None) -> HTTPResponse:
        """The response; a 200's body goes to ``sink`` as it arrives when one is given."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them
            self.close()
            self._loop = loop
        raw = with_body(self._head, body)
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            # A kept-alive connection the server closed meanwhile fails before any byte comes
            # back; the request is then sent once more on a fresh connection.
            response = await self._exchange(connection, raw, sink)
            if response is not None:
                return response
        response = await self._exchange(await self._connect(), raw, sink)
        if response is None:
            raise HTTPConnectionError("server closed the connection before answering")
        return response

    async def _exchange(
        self, connection: Connection, raw: bytes, sink: BodySink | None
    ) -> HTTPResponse | None:
        try:
            response, _ = await connection.request(raw, sink=sink)
        except BaseException:
            connection.close()  # cancelled or failed mid-response: never reuse
            raise
        if response is not None and connection.reusable and not connection.closed:
            self._idle.append(connection)
        elif response is not None:
            connection.close()
        return response

    async def _connect(self) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await open_connection(
                    self.host, self.port, tls=self._ssl, server_hostname=self.host, proxy=self.proxy
                )
        except TimeoutError as exc:
            via = f" through proxy {self.proxy.url}" if self.proxy else ""
            raise HTTPConnectionError(f"connect to {self.host}:{self.port}{via} timed out") from exc

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
