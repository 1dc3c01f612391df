"""sytq api's HTTP protocol writes a response's head and body in one write, with the same bytes."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from sytq_cli.one_write_http import FLUSH_AT_BYTES, CoalescingTransport, OneWriteHttpToolsProtocol
from tests.harness.raw_http import exchange, masked, serving


class RecordingTransport:
    """The transport's writing side, recording each write as the socket would receive it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def _one_loop_pass() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_writes_of_one_loop_pass_leave_as_one_write() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert real.writes == []
    await _one_loop_pass()
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await _one_loop_pass()
    assert real.writes[1:] == [b"next"]


async def test_a_large_write_and_close_go_out_at_once_in_order() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"head")
    big = b"x" * FLUSH_AT_BYTES
    transport.write(big)
    assert real.writes == [b"head" + big]
    transport.write(b"tail")
    transport.close()
    assert real.writes[1:] == [b"tail"] and real.closed
    await _one_loop_pass()
    assert len(real.writes) == 2  # the scheduled flush finds nothing more


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/big":
        answer = b"y" * (3 * FLUSH_AT_BYTES + 7)
    elif scope["path"] == "/boom":
        raise RuntimeError("the app fails before answering")
    else:
        answer = b'{"echo":' + str(len(body)).encode() + b"}"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


REQUESTS = (
    b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n"
    b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n"
    b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n"
    b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n"  # answered 500, and the connection is closed
)


async def _exchange(protocol: Any) -> bytes:
    async with serving(_app, protocol) as port:
        return masked(await exchange(port, REQUESTS))  # pipelined on one keep-alive connection


async def test_the_answers_are_byte_for_byte_the_stock_protocols() -> None:
    ours = await _exchange(OneWriteHttpToolsProtocol)
    theirs = await _exchange("httptools")
    assert ours == theirs
    assert ours.count(b"HTTP/1.1 200 OK") == 4 and b"HTTP/1.1 500 Internal Server Error" in ours
