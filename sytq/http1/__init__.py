"""Our HTTP/1.1 client (httptools parser): the provider's keep-alive pool, one-shot callback POSTs,
forward proxies (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, CONNECT tunnels)."""

from sytq.http1.connection import BodySink, ConnectFailed, HTTPConnectionError, HTTPResponse
from sytq.http1.oneshot import post_once
from sytq.http1.pool import HTTP1Pool
from sytq.http1.proxy import DIRECT, Proxy, bypasses_proxy, parse_proxy, proxy_for

__all__ = [
    "DIRECT",
    "BodySink",
    "ConnectFailed",
    "HTTP1Pool",
    "HTTPConnectionError",
    "HTTPResponse",
    "Proxy",
    "bypasses_proxy",
    "parse_proxy",
    "post_once",
    "proxy_for",
]
