"""Hostile callback receivers over real TCP: one deadline bounds the whole delivery, and at most
MAX_RESPONSE_BYTES of an answer is ever read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sytq.callbacks import CallbackDeliveryError, deliver_callback
from sytq.callbacks.delivery import MAX_RESPONSE_BYTES
from sytq.http1 import post_once
from tests.harness.hostile_receivers import GIB, HostileReceiver

BODY = {"task_id": "t1", "status": "succeeded", "result": None, "usage": None, "error": None, "metadata": {}}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def receivers() -> Iterator[list[HostileReceiver]]:
    made: list[HostileReceiver] = []
    yield made
    for receiver in made:
        receiver.close()


async def deliver(url: str, deadline: float) -> tuple[float, object]:
    started = time.monotonic()
    try:
        outcome: object = await deliver_callback(
            "t1", url, BODY, secret="k", allow_nets="127.0.0.0/8", timeout_seconds=deadline
        )
    except CallbackDeliveryError as exc:
        outcome = exc
    return time.monotonic() - started, outcome


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["drip", "silent"])
async def test_a_receiver_that_drips_or_never_answers_is_cut_at_the_deadline(
    receivers: list[HostileReceiver], mode: str
) -> None:
    """Dripping one byte a second never trips a per-read timeout; the one deadline ends it."""
    receiver = HostileReceiver(mode, interval=0.5)
    receivers.append(receiver)
    took, outcome = await deliver(receiver.url, deadline=2.0)
    assert isinstance(outcome, CallbackDeliveryError) and "timed out" in str(outcome)
    assert 2.0 <= took < 3.5
    if mode == "drip":
        assert 1 <= receiver.bytes_sent < 10  # it did answer, a byte at a time
    for _ in range(100):  # the connection is closed at the deadline, not left behind
        if receiver.open_connections == 0:
            break
        await asyncio.sleep(0.02)
    assert receiver.open_connections == 0


@pytest.mark.parametrize("status", [200, 500])
async def test_a_gigabyte_answer_is_read_up_to_the_cap_and_dropped(
    receivers: list[HostileReceiver], status: int
) -> None:
    receiver = HostileReceiver("flood", status=status)
    receivers.append(receiver)
    before = rss_bytes()
    took, outcome = await deliver(receiver.url, deadline=10.0)
    if status == 200:
        assert getattr(outcome, "status_code", None) == 200  # the status decides; the body is dropped
    else:
        assert isinstance(outcome, CallbackDeliveryError) and "HTTP 500" in str(outcome)
    assert took < 5.0
    await asyncio.sleep(0.2)  # the receiver's last sends fail once the connection is gone
    # What the receiver got into the socket: the cap plus the kernel's buffers, not the gigabyte.
    assert receiver.bytes_sent < 32 * 1024 * 1024 < GIB
    assert rss_bytes() - before < 16 * 1024 * 1024
    assert MAX_RESPONSE_BYTES == 65_536


async def test_post_once_keeps_exactly_the_cap_of_a_flood(receivers: list[HostileReceiver]) -> None:
    receiver = HostileReceiver("flood")
    receivers.append(receiver)
    response = await post_once(receiver.url, "127.0.0.1", b"{}", {}, max_body=1000)
    assert response.status == 200 and response.truncated and response.body == b"x" * 1000
