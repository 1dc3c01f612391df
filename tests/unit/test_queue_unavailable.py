"""Which low-level failures the queue reports as "Redis unavailable" (503 at the API)."""

from __future__ import annotations

import pytest

from sytq.queue import QueueUnavailableError
from sytq.queue.redis_ops import unavailable_as_queue_error


async def test_uvloop_closed_transport_during_handshake_is_unavailability() -> None:
    # The exact message uvloop raises when Redis is killed between accept and CLIENT SETINFO.
    with pytest.raises(QueueUnavailableError, match="Redis is unavailable"):
        async with unavailable_as_queue_error():
            raise RuntimeError(
                "unable to perform operation on <TCPTransport closed=True reading=False 0x7f2750>; "
                "the handler is closed"
            )


async def test_connection_refused_is_unavailability() -> None:
    with pytest.raises(QueueUnavailableError):
        async with unavailable_as_queue_error():
            raise ConnectionRefusedError(111, "Connection refused")


async def test_other_runtime_errors_are_not_hidden() -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        async with unavailable_as_queue_error():
            raise RuntimeError("a bug")
