"""Signed delivery over real HTTP: redirects are followed only to safe targets, failures are clear."""

from __future__ import annotations

import pytest

from sytq.callbacks import CallbackDeliveryError, UnsafeCallbackURL, deliver_callback, verify_signature
from tests.harness.llm_fixtures import CallbackReceiver

BODY = {"task_id": "t1", "status": "succeeded", "result": None, "usage": None, "error": None, "metadata": {}}


async def deliver(url: str, allow_nets: str = "127.0.0.0/8") -> str:
    result = await deliver_callback("t1", url, BODY, secret="k", allow_nets=allow_nets, timeout_seconds=2)
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


async def test_a_host_name_is_called_at_the_address_vetted_with_its_own_host_header(
    callback_receiver: CallbackReceiver,
) -> None:
    """No second DNS lookup between the SSRF check and the connection (DNS rebinding): delivery
    connects to the vetted address (trying each until one connects; `localhost` may list ::1 first,
    where the receiver does not listen) and names the host in the Host header."""
    port = callback_receiver.url.rsplit(":", 1)[1]
    assert await deliver(f"http://localhost:{port}/hook", allow_nets="127.0.0.0/8,::1/128") == (
        f"http://localhost:{port}/hook"
    )
    [got] = callback_receiver.received
    assert got.headers["Host"] == f"localhost:{port}" and got.path == "/hook"
    assert got.headers["User-Agent"] == "syt-queue-callbacks"
