"""One signed callback POST, with the SSRF guard applied to the target and to every redirect hop,
each sent to the address the guard vetted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from sytq.callbacks.signing import signed_headers
from sytq.callbacks.ssrf import (
    IPAddress,
    IPNetwork,
    UnresolvableCallbackHost,
    check_callback_url,
    pinned_request,
)

# 307/308 keep method and body, so the signed POST can be replayed as is; other 3xx are failures.
_FOLLOWED_REDIRECTS = (307, 308)
MAX_REDIRECTS = 3


class CallbackDeliveryError(Exception):
    """The receiver did not accept the callback (non-2xx, timeout, connection); worth retrying."""


@dataclass(frozen=True)
class DeliveryResult:
    status_code: int
    url: str  # the URL that finally answered (after redirects)


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
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
    client: httpx.AsyncClient,
    task_id: str,
    url: str,
    body: dict[str, Any],
    *,
    secret: str | bytes | None,
    allow_nets: str | Iterable[str | IPNetwork] | None,
    timeout_seconds: float,
) -> DeliveryResult:
    """POST ``body`` to ``url``; raises UnsafeCallbackURL (do not retry) or CallbackDeliveryError (retry)."""
    data = encode_body(body)
    target = url
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            addresses = await asyncio.to_thread(check_callback_url, target, allow_nets)
        except UnresolvableCallbackHost as exc:
            raise CallbackDeliveryError(str(exc)) from exc
        headers = signed_headers(secret, task_id, data)
        response = await _post_to_vetted(client, target, addresses, data, headers, timeout_seconds)
        if response.status_code in _FOLLOWED_REDIRECTS and "location" in response.headers:
            target = urljoin(target, response.headers["location"])
            continue
        if 200 <= response.status_code < 300:
            return DeliveryResult(status_code=response.status_code, url=target)
        raise CallbackDeliveryError(f"callback to {target} answered HTTP {response.status_code}")
    raise CallbackDeliveryError(f"callback to {url} redirected more than {MAX_REDIRECTS} times")


async def _post_to_vetted(
    client: httpx.AsyncClient,
    url: str,
    addresses: list[IPAddress],
    data: bytes,
    headers: dict[str, str],
    timeout_seconds: float,
) -> httpx.Response:
    """POST to the addresses the guard just vetted, in order until one connects: never to whatever
    the host name resolves to a moment later (DNS rebinding)."""
    for index, address in enumerate(addresses):
        pinned_url, host_header, extensions = pinned_request(url, address)
        try:
            return await client.post(
                pinned_url, content=data, headers=headers | host_header, timeout=timeout_seconds,
                follow_redirects=False, extensions=extensions,
            )
        except httpx.ConnectError as exc:
            if index + 1 < len(addresses):
                continue
            raise CallbackDeliveryError(f"callback to {url} failed: {type(exc).__name__}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise CallbackDeliveryError(f"callback to {url} timed out after {timeout_seconds}s") from exc
        except httpx.HTTPError as exc:
            raise CallbackDeliveryError(f"callback to {url} failed: {type(exc).__name__}: {exc}") from exc
    raise CallbackDeliveryError(f"callback to {url}: no address to call")
