"""One POST on a connection of its own to a given address (the host name kept for Host and TLS),
its response body read up to a cap; for low-volume requests to many hosts (callbacks)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from sytq.http1.connection import HTTPConnectionError, HTTPResponse, host_header, request_head, with_body
from sytq.http1.dial import open_connection
from sytq.http1.proxy import Proxy


async def post_once(
    url: str,
    address: str,
    body: bytes,
    headers: dict[str, str],
    *,
    max_body: int,
    proxy: Proxy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> HTTPResponse:
    """POST ``body`` to ``url`` at ``address`` (no name lookup). Through a proxy the connection is a
    CONNECT tunnel to that address, so the proxy cannot pick another. No time limit of its own:
    the caller bounds the whole exchange."""
    parts = urlsplit(url)
    host = parts.hostname or address
    port = parts.port or (443 if parts.scheme == "https" else 80)
    tls = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = request_head(
        "POST", path, {"Host": host_header(host, port, parts.scheme), **headers, "Connection": "close"}
    )
    connection = await open_connection(address, port, tls=tls, server_hostname=host, proxy=proxy, tunnel=True)
    try:
        response, _ = await connection.request(with_body(head, body), max_body=max_body)
    finally:
        connection.close()
    if response is None:
        raise HTTPConnectionError("server closed the connection before answering")
    return response
