"""Signed delivery over real HTTP: redirects are followed only to safe targets, failures are clear."""

from __future__ import annotations

import httpx
import pytest

from sytq.callbacks import CallbackDeliveryError, UnsafeCallbackURL, deliver_callback, verify_signature
from tests.harness.llm_fixtures import CallbackReceiver

BODY = {"task_id": "t1", "status": "succeeded", "result": None, "usage": None, "error": None, "metadata": {}}


async def deliver(url: str, allow_nets: str = "127.0.0.0/8") -> str:
    async with httpx.AsyncClient() as client:
        result = await deliver_callback(
            client, "t1", url, BODY, secret="k", allow_nets=allow_nets, timeout_seconds=2
        )
    return result.url


async def test_307_is_followed_to_a_safe_target(callback_receiver: CallbackReceiver) -> None:
    final = CallbackReceiver()
    final.up()
    try:
        callback_receiver.status, callback_receiver.location = 307, final.url + "/moved"
        assert await deliver(callback_receiver.url + "/hook") == final.url + "/moved"
        [got] = final.received
        signature, timestamp = got.headers["X-SYTQ-Signature"], got.headers["X-SYTQ-Timestamp"]
        assert verify_signature("k", got.body, signature, timestamp)
    finally:
        final.down()


async def test_redirect_to_a_metadata_address_is_refused(callback_receiver: CallbackReceiver) -> None:
    callback_receiver.status, callback_receiver.location = 308, "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(UnsafeCallbackURL, match="metadata"):
        await deliver(callback_receiver.url)


async def test_other_redirects_and_errors_are_retryable_failures(callback_receiver: CallbackReceiver) -> None:
    callback_receiver.status, callback_receiver.location = 302, callback_receiver.url + "/elsewhere"
    with pytest.raises(CallbackDeliveryError, match="HTTP 302"):
        await deliver(callback_receiver.url)
    callback_receiver.status, callback_receiver.location = 500, None
    with pytest.raises(CallbackDeliveryError, match="HTTP 500"):
        await deliver(callback_receiver.url)
    callback_receiver.down()
    with pytest.raises(CallbackDeliveryError, match="failed"):
        await deliver(callback_receiver.url)


async def test_unsafe_target_is_refused_before_any_request(callback_receiver: CallbackReceiver) -> None:
    with pytest.raises(UnsafeCallbackURL, match="loopback"):
        await deliver(callback_receiver.url, allow_nets="")
    assert callback_receiver.received == []


async def test_unresolvable_host_is_a_retryable_failure_not_a_refusal() -> None:
    # A name that does not resolve may be a passing DNS failure: delivery must retry it later.
    with pytest.raises(CallbackDeliveryError, match="does not resolve") as caught:
        await deliver("http://no-such-host.invalid/hook")
    assert not isinstance(caught.value, UnsafeCallbackURL)
