"""One signed callback POST under one deadline, with the SSRF guard applied to the target and to
every redirect hop, each sent to the address the guard vetted; the answer's body read up to a cap."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from sytq.callbacks.signing import signed_headers
from sytq.callbacks.ssrf import IPAddress, IPNetwork, UnresolvableCallbackHost, check_callback_url
from sytq.gojson import GoMap, marshal
from sytq.http1 import ConnectFailed, HTTPConnectionError, HTTPResponse, Proxy, post_once

# 307/308 keep method and body, so the signed POST can be replayed as is; other 3xx are failures.
_FOLLOWED_REDIRECTS = (307, 308)
MAX_REDIRECTS = 3
# What a receiver's answer may add to a worker's memory; the status decides, the rest is dropped.
MAX_RESPONSE_BYTES = 65_536
USER_AGENT = "syt-queue-callbacks"  # some receivers' firewalls refuse requests without one


class CallbackDeliveryError(Exception):
    """The receiver did not accept the callback (non-2xx, timeout, connection); worth retrying."""


@dataclass(frozen=True)
class DeliveryResult:
    status_code: int
    url: str  # the URL that finally answered (after redirects)


# The Go original's record-mode callback: its receivers may compare or verify the bytes it sent.
RECORD_BODY_KEYS = ("result", "status", "timestamp")


def record_callback_body(report: str, timestamp: int) -> dict[str, Any]:
    """The Go original's record-mode callback, the body existing receivers parse."""
    return {"result": report, "status": "success", "timestamp": timestamp}


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: the record-mode body as the original's
    ``json.Marshal`` of its map wrote it (``<`` as ``\\u003c`` …), any other body as compact JSON."""
    if tuple(body) == RECORD_BODY_KEYS:
        return marshal(GoMap(body))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def callback_body(
    task_id: str,
    status: str,
    result: Any,
    usage: dict[str, Any] | None,
    error: str | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON document every callback carries."""
    return {
        "task_id": task_id,
        "status": status,
        "result": result,
        "usage": usage,
        "error": error,
        "metadata": metadata or {},
    }


async def deliver_callback(
    task_id: str,
    url: str,
    body: dict[str, Any],
    *,
    secret: str | bytes | None,
    allow_nets: str | Iterable[str | IPNetwork] | None,
    timeout_seconds: float,
    proxy: Proxy | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> DeliveryResult:
    """POST ``body`` to ``url``; raises UnsafeCallbackURL (do not retry) or CallbackDeliveryError (retry).

    ``timeout_seconds`` bounds the whole delivery (name checks, connects, sending, every redirect
    hop, reading the answer), so a receiver that answers one byte at a time cannot hold it longer."""
    try:
        async with asyncio.timeout(timeout_seconds):
            data = encode_body(body)
            return await _deliver(task_id, url, data, secret, allow_nets, proxy, max_response_bytes)
    except TimeoutError as exc:
        message = f"callback to {url} got no whole answer within {timeout_seconds:g}s (timed out)"
        raise CallbackDeliveryError(message) from exc


async def _deliver(
    task_id: str,
    url: str,
    data: bytes,
    secret: str | bytes | None,
    allow_nets: str | Iterable[str | IPNetwork] | None,
    proxy: Proxy | None,
    max_response_bytes: int,
) -> DeliveryResult:
    target = url
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            addresses = await asyncio.to_thread(check_callback_url, target, allow_nets)
        except UnresolvableCallbackHost as exc:
            raise CallbackDeliveryError(str(exc)) from exc
        headers = signed_headers(secret, task_id, data) | {"User-Agent": USER_AGENT}
        response = await _post_to_vetted(target, addresses, data, headers, proxy, max_response_bytes)
        if response.status in _FOLLOWED_REDIRECTS and "location" in response.headers:
            target = urljoin(target, response.headers["location"])
            continue
        if 200 <= response.status < 300:
            return DeliveryResult(status_code=response.status, url=target)
        raise CallbackDeliveryError(f"callback to {target} answered HTTP {response.status}")
    raise CallbackDeliveryError(f"callback to {url} redirected more than {MAX_REDIRECTS} times")


async def _post_to_vetted(
    url: str,
    addresses: list[IPAddress],
    data: bytes,
    headers: dict[str, str],
    proxy: Proxy | None,
    max_response_bytes: int,
) -> HTTPResponse:
    """POST to the addresses the guard just vetted, in order until one connects: never to whatever
    the host name resolves to a moment later (DNS rebinding). The host name stays in the Host
    header and is the TLS server name, so certificates are checked against it."""
    for index, address in enumerate(addresses):
        try:
            return await post_once(url, str(address), data, headers, max_body=max_response_bytes, proxy=proxy)
        except ConnectFailed as exc:
            if index + 1 < len(addresses):
                continue
            raise CallbackDeliveryError(f"callback to {url} failed: {exc}") from exc
        except HTTPConnectionError as exc:
            raise CallbackDeliveryError(f"callback to {url} failed: {exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise CallbackDeliveryError(f"callback to {url} failed: {type(exc).__name__}: {exc}") from exc
    raise CallbackDeliveryError(f"callback to {url}: no address to call")
