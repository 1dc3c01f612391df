"""Opening a connection: direct, or through a forward proxy (a CONNECT tunnel, TLS inside it)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from sytq.http1.connection import ConnectFailed, Connection, HTTPConnectionError
from sytq.http1.proxy import Proxy

MAX_PROXY_REPLY = 16_384


class _TunnelReply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT (status line and headers, no body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if self.reply.done():
            return
        if found:
            self.reply.set_result((head, rest))  # rest: a refusal's body, or bytes that must not be there
        elif len(self._buffer) > MAX_PROXY_REPLY:
            self.reply.set_exception(HTTPConnectionError("proxy sent an unexpected answer to CONNECT"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(HTTPConnectionError("proxy closed the connection during CONNECT"))


async def open_connection(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    proxy: Proxy | None = None,
    tunnel: bool = False,
) -> Connection:
    """A connection to ``host:port`` (TLS with ``server_hostname`` when ``tls`` is given). With a
    proxy: a CONNECT tunnel when ``tls`` or ``tunnel`` is set, else a plain connection to the proxy
    (the caller then sends absolute-form requests). The caller bounds the time it may take."""
    loop = asyncio.get_running_loop()
    if proxy is None:
        try:
            _, connection = await loop.create_connection(
                Connection, host, port, ssl=tls, server_hostname=server_hostname if tls else None
            )
        except OSError as exc:
            raise ConnectFailed(f"connect to {host}:{port} failed: {exc}") from exc
        return connection
    try:
        transport, handshake = await loop.create_connection(_TunnelReply, proxy.host, proxy.port)
    except OSError as exc:
        raise ConnectFailed(f"connect to proxy {proxy.url} failed: {exc}") from exc
    if tls is None and not tunnel:
        connection = Connection()
        transport.set_protocol(connection)
        connection.connection_made(transport)
        return connection
    try:
        return await _through_tunnel(transport, handshake, host, port, tls, server_hostname, proxy)
    except BaseException:
        transport.close()
        raise


async def _through_tunnel(
    transport: asyncio.BaseTransport,
    handshake: _TunnelReply,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    proxy: Proxy,
) -> Connection:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    assert handshake.transport is not None
    handshake.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head, rest = await handshake.reply
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or not 200 <= int(fields[1]) < 300:
        raise HTTPConnectionError(f"proxy {proxy.url} refused CONNECT {authority}: {status_line.strip()!r}")
    if rest:
        raise HTTPConnectionError(f"proxy {proxy.url} sent bytes after accepting CONNECT {authority}")
    connection = Connection()
    if tls is None:
        transport.set_protocol(connection)
        connection.connection_made(transport)
        return connection
    loop = asyncio.get_running_loop()
    try:
        secured = await loop.start_tls(transport, connection, tls, server_hostname=server_hostname)  # type: ignore[arg-type]
    except (OSError, ssl.SSLError) as exc:
        raise HTTPConnectionError(f"TLS to {authority} through proxy {proxy.url} failed: {exc}") from exc
    if secured is None:
        with contextlib.suppress(Exception):
            transport.close()
        raise HTTPConnectionError(f"TLS to {authority} through proxy {proxy.url} failed")
    connection.connection_made(secured)
    return connection
