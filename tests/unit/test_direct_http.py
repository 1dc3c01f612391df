"""sytq api's protocol answers submits directly with the bytes uvicorn's own protocol writes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from api.fast_lane import SubmitFastLane
from api.responses import ReadyResponse
from sytq_cli.direct_http import Answer, DirectRequest, DirectSubmitProtocol, InvalidAnswer
from tests.harness.raw_http import answers, closed, exchange, masked, post, serving


class CountingProtocol(DirectSubmitProtocol):
    """Counts the requests answered on the direct path (the rest went through uvicorn's cycle)."""

    direct = 0  # answered on the direct path
    routed = 0  # of those, through the route's coroutine (the others by its instant form)

    def _send(self, request: DirectRequest, answer: Answer) -> None:
        CountingProtocol.direct += 1
        super()._send(request, answer)

    async def _answer(self, request: DirectRequest, refused: Exception | None = None) -> None:
        CountingProtocol.routed += 1
        await super()._answer(request, refused)


async def _ok(request: Request) -> Response:
    body = await request.body()
    return ReadyResponse(b'{"echo":%d}' % len(body), b"application/json")


async def _stream(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one", b"two", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


async def _closing(request: Request) -> Response:
    return Response(b"bye", headers={"connection": "close"})


async def _empty(request: Request) -> Response:
    return Response(status_code=204)


async def _boom(request: Request) -> Response:
    raise RuntimeError("the route fails")


async def _bad_header(request: Request) -> Response:
    return Response(b"x", headers={"x-bad": "line\nbreak"})


async def _slow(request: Request) -> Response:
    await asyncio.sleep(1.5)  # longer than the keep-alive timeout the tests set
    return Response(b"late")


ROUTES = {
    "/ok": _ok,
    "/stream": _stream,
    "/close": _closing,
    "/empty": _empty,
    "/boom": _boom,
    "/bad-header": _bad_header,
    "/slow": _slow,
}
LANE = SubmitFastLane(FastAPI(), ROUTES, max_body_bytes=1000)
CASES = [
    post("/ok", b"hello"),
    post("/ok", b""),
    post("/stream", b"x"),
    post("/close", b"x"),
    post("/empty", b"x"),
    post("/boom", b"x"),
    post("/ok", b"y" * 1001),  # over the cap: uvicorn's path answers 413
    post("/ok?query=1", b"x"),  # not a plain path: uvicorn's path
    post("/ok", b"x", {"expect": "100-continue"}),
    b"POST /ok HTTP/1.1\r\nhost: api\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /ok HTTP/1.0\r\nhost: api\r\ncontent-length: 2\r\n\r\nhi",
    b"GET /ok HTTP/1.1\r\nhost: api\r\n\r\n",
]


async def _each_alone(protocol: Any) -> list[bytes]:
    async with serving(LANE, protocol) as port:
        return [masked(await exchange(port, closed(request))) for request in CASES]


async def test_each_answer_is_byte_for_byte_uvicorns() -> None:
    CountingProtocol.direct = 0
    ours = await _each_alone(CountingProtocol)
    theirs = await _each_alone("httptools")
    for request, mine, stock in zip(CASES, ours, theirs, strict=True):
        assert mine == stock, request
    # Plain POSTs within the cap took the direct path; the query, 100-continue, chunked and GET did not.
    assert CountingProtocol.direct == 7
    assert answers(b"".join(ours)) == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 500 Internal Server Error",
        b"HTTP/1.1 413 Request Entity Too Large",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
    ]
    assert b"transfer-encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n" in ours[2]


async def test_pipelined_requests_are_answered_in_order() -> None:
    requests = post("/ok", b"1") + post("/ok", b"22") + post("/stream", b"") + closed(post("/ok", b"4444"))
    CountingProtocol.direct = 0
    async with serving(LANE, CountingProtocol) as port:
        ours = masked(await exchange(port, requests))
    async with serving(LANE, "httptools") as port:
        theirs = masked(await exchange(port, requests))
    assert ours == theirs
    assert re.findall(rb'\{"echo":\d+\}', ours) == [
        b'{"echo":1}',
        b'{"echo":2}',
        b'{"echo":4}',
    ]
    assert CountingProtocol.direct >= 1  # the first; those queued behind it took uvicorn's path


async def test_a_header_uvicorn_refuses_drops_the_connection_unanswered() -> None:
    for protocol in (CountingProtocol, "httptools"):
        async with serving(LANE, protocol) as port:
            assert await exchange(port, post("/bad-header", b"x")) == b""


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


@pytest.mark.parametrize("path", ["/ok", "/slow"])
async def test_an_idle_connection_closes_after_the_keep_alive_timeout(path: str) -> None:
    """A connection is closed once idle for timeout_keep_alive, not while a request is answered
    (``/slow`` outlasts the timeout), and it stays usable in between."""
    async with serving(LANE, CountingProtocol, timeout_keep_alive=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(post(path, b"x"))
            assert (await _read_answer(reader)).startswith(b"HTTP/1.1 200 OK")
            writer.write(post("/ok", b"again"))
            assert (await _read_answer(reader)).endswith(b'{"echo":5}')
            idle_from = time.monotonic()
            assert await asyncio.wait_for(reader.read(-1), 10) == b""  # closed by the server
            idle = time.monotonic() - idle_from
        finally:
            writer.close()
    assert 0.9 <= idle < 5, idle


async def test_requests_within_the_timeout_keep_the_connection_open() -> None:
    """Each answer restarts the idle time: a client pausing for most of the timeout between
    requests keeps its connection past several timeouts."""
    timeout, pause = 2.0, 1.2
    async with serving(LANE, CountingProtocol, timeout_keep_alive=timeout) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(3):
                writer.write(post("/ok", b"x"))
                assert (await _read_answer(reader)).endswith(b'{"echo":1}')
                await asyncio.sleep(pause)  # the client idles, for less than the timeout
            idle_from = time.monotonic() - pause
            assert await asyncio.wait_for(reader.read(-1), 10) == b""
            idle = time.monotonic() - idle_from
        finally:
            writer.close()
    assert timeout - 0.1 <= idle < timeout + 3, idle


async def test_the_rendered_date_follows_the_servers_headers() -> None:
    """uvicorn swaps in a new default-header list each second; each answer carries the current one."""
    rendered = []
    for date in (b"Fri, 04 Dec 2026 10:00:00 GMT", b"Fri, 04 Dec 2026 10:00:01 GMT"):
        answer = Answer()
        answer.whole(200, [(b"content-length", b"2")], b"{}")
        rendered.append(answer.render([(b"date", date), (b"server", b"uvicorn")], keep_alive=True))
    tail = b"\r\nserver: uvicorn\r\ncontent-length: 2\r\n\r\n{}"
    assert rendered == [
        b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 10:00:00 GMT" + tail,
        b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 10:00:01 GMT" + tail,
    ]


def test_a_plain_answer_renders_alike_from_its_remembered_start() -> None:
    headers = [(b"content-length", b"2"), (b"Content-Type", b"application/json")]
    rendered = []
    for _ in range(2):
        answer = Answer()
        answer.whole(201, headers, b"{}")
        rendered.append((answer.status, answer.render([], keep_alive=False)))
    expected = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\ncontent-type: application/json\r\n"
    assert rendered[0] == rendered[1] == (201, expected + b"connection: close\r\n\r\n{}")
    with pytest.raises(InvalidAnswer, match="longer than Content-Length"):
        Answer().whole(201, headers, b"{}{}")  # a remembered start still holds its body to its length
    for _ in range(2):  # a refused start is refused every time, never remembered
        with pytest.raises(InvalidAnswer, match="invalid HTTP header"):
            Answer().whole(200, [(b"x-bad", b"a\nb")], b"")
    answer = Answer()
    answer.whole(200, [[b"content-length", b"0"]], b"")  # an unhashable header list: not remembered
    assert answer.render([], keep_alive=True) == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def test_a_route_gets_the_body_once_and_then_the_end() -> None:
    request = DirectRequest({"type": "http"}, keep_alive=True)
    request.body += b'{"prompt":"q"}'
    request.more_body = False
    assert await request.receive() == {"type": "http.request", "body": b'{"prompt":"q"}', "more_body": False}
    assert await request.receive() == {"type": "http.disconnect"}
    assert not request.disconnected  # a body taken is not a dropped connection

    dropped = DirectRequest({"type": "http"}, keep_alive=True)
    dropped.body += b"{}"
    dropped.more_body = False
    dropped.disconnected = True  # what uvicorn's protocol writes when the client goes
    assert await dropped.receive() == {"type": "http.disconnect"}
