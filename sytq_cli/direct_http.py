"""``sytq api``'s HTTP protocol: the submit routes answered without an ASGI request cycle.

uvicorn's protocol gives every request a request/response cycle object with an event, generic
ASGI ``send`` and ``receive`` and a header check per answer (bench/results/api-profile.md). For
the requests a PHP app sends most (``POST`` of a small body to a submit path), this protocol
hands the complete body to the app's ``SubmitFastLane`` (the very routes, checks and exception
handlers the ASGI path runs), renders its answer with the bytes uvicorn would write and sends it
in one write. Every other request, and any submit it is not sure about (a query string, escapes,
chunked or oversized bodies, ``Expect: 100-continue``, pipelined behind another request, a
concurrency limit or root path, an app wrapped in other middleware), takes uvicorn's own path.
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr

from api.fast_lane import AppResponse, Finish, Pending, SubmitFastLane, plain_parts
from sytq_cli.one_write_http import OneWriteHttpToolsProtocol

Message = MutableMapping[str, Any]  # an ASGI message
_DISCONNECT: Message = {"type": "http.disconnect"}


class _NoEvent:
    """uvicorn's protocol sets its cycle's event when the connection drops; nothing waits on ours."""

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()


class DirectRequest:
    """One request served directly: the fields of uvicorn's cycle that its protocol reads and writes."""

    __slots__ = (
        "body",
        "body_taken",
        "disconnected",
        "keep_alive",
        "message_event",
        "more_body",
        "response_complete",
        "scope",
    )

    def __init__(self, scope: Any, keep_alive: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.disconnected = False  # uvicorn's protocol sets it when the connection drops
        self.body_taken = False
        self.message_event = _NO_EVENT

    async def receive(self) -> Message:
        # The body is given once, whole; a second receive (or one after a drop) sees the end.
        if self.more_body or self.disconnected or self.body_taken:
            return _DISCONNECT
        body, self.body = bytes(self.body), bytearray()
        self.body_taken = True
        return {"type": "http.request", "body": body, "more_body": False}


# Headers seen valid, with their lower-cased names: an app answers with the same few headers (and
# the same few lengths) again and again, so most answers skip uvicorn's two header checks.
_CHECKED: dict[tuple[bytes, bytes], bytes] = {}
_CHECKED_MAX = 1024
# The same for a plain answer's whole start (status and header list): what _start made of it.
_STARTED: dict[tuple[Any, ...], tuple[list[bytes], int | None, bool, bool, bool]] = {}


class InvalidAnswer(RuntimeError):
    """The app sent messages uvicorn would refuse too (raised where uvicorn's ``send`` raises)."""


class Answer:
    """An ASGI ``send`` that keeps the answer and renders it as uvicorn's protocol writes it."""

    __slots__ = ("_auto_chunked", "_chunked", "_closes", "_head", "_length", "_parts", "complete", "status")

    def __init__(self) -> None:
        self.complete = False
        self.status = 0
        self._head: list[bytes] = []
        self._parts: list[bytes] = []
        self._length: int | None = None
        self._chunked = False
        self._auto_chunked = False
        self._closes = False

    @property
    def started(self) -> bool:
        return bool(self._head)

    @property
    def closes(self) -> bool:
        """The app answered ``connection: close``."""
        return self._closes

    async def send(self, message: Message) -> None:
        if not self._head:
            if message["type"] != "http.response.start":
                raise InvalidAnswer(f"expected http.response.start, got {message['type']!r}")
            self._start(message["status"], message.get("headers", ()))
        elif not self.complete:
            if message["type"] != "http.response.body":
                raise InvalidAnswer(f"expected http.response.body, got {message['type']!r}")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise InvalidAnswer(f"{message['type']!r} sent after the answer was complete")

    def whole(self, status: int, headers: Any, body: bytes) -> None:
        """The answer of a plain Response: its start and its one body message."""
        key = (status, *headers)
        try:
            started = _STARTED.get(key)
            remember = len(_STARTED) < _CHECKED_MAX
        except TypeError:  # a header given as a list: not remembered
            started, remember = None, False
        if started is None:
            self._start(status, headers)
            if remember:
                _STARTED[key] = (self._head, self._length, self._chunked, self._auto_chunked, self._closes)
        else:
            self.status = status
            self._head, self._length, self._chunked, self._auto_chunked, self._closes = started
        self._body(body, False)

    def _start(self, status: int, headers: Any) -> None:
        # Started even if a header is refused below: uvicorn then drops the connection unanswered.
        head = self._head = [b""]
        head[0], self.status = STATUS_LINE[status], status
        for raw_name, value in headers:
            name = _CHECKED.get((raw_name, value))
            if name is None:
                if HEADER_RE.search(raw_name) or HEADER_VALUE_RE.search(value):
                    raise InvalidAnswer("invalid HTTP header")
                name = raw_name.lower()
                if len(_CHECKED) < _CHECKED_MAX:
                    _CHECKED[raw_name, value] = name
            if name == b"content-length" and not self._chunked and self._length is None:
                self._length = int(value)
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._length, self._chunked = None, True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self._closes = True
            head += (name, b": ", value, b"\r\n")
        if self._length is None and not self._chunked and status not in (204, 304):
            self._chunked = self._auto_chunked = True

    def _body(self, body: bytes, more_body: bool) -> None:
        if self._chunked:
            if body:
                self._parts += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more_body:
                self._parts.append(b"0\r\n\r\n")
        elif body:
            if self._length is None or len(body) > self._length:
                raise InvalidAnswer("response content longer than Content-Length")
            self._length -= len(body)
            self._parts.append(body)
        if not more_body:
            if self._length:
                raise InvalidAnswer("response content shorter than Content-Length")
            self.complete = True

    def render(self, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        """Status line, the server's default headers, the app's, then what uvicorn adds."""
        out = [self._head[0], _rendered(default_headers)]
        out += self._head[1:]
        if not keep_alive and not self._closes:
            out.append(b"connection: close\r\n")
        if self._auto_chunked:
            out.append(b"transfer-encoding: chunked\r\n")
        out.append(b"\r\n")
        out += self._parts
        return b"".join(out)


_last_defaults: tuple[object, bytes] = (None, b"")


def _rendered(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The server's default headers as bytes. uvicorn replaces the list when the date changes (once
    a second), so the last rendering is kept for as long as the list is the same object."""
    global _last_defaults
    if _last_defaults[0] is not default_headers:
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
        _last_defaults = (default_headers, lines)
    return _last_defaults[1]


_INTERNAL_ERROR_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]


class DirectSubmitProtocol(OneWriteHttpToolsProtocol):
    """``OneWriteHttpToolsProtocol`` that serves plain submits straight through ``SubmitFastLane``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lane = self.app if isinstance(self.app, SubmitFastLane) else None
        plain_server = self.limit_concurrency is None and not self.root_path
        self._lane = lane if plain_server else None
        self._paths = lane.raw_paths if lane is not None else {}

    def _direct_path(self) -> str | None:
        """The route this request may be served directly on, or None for uvicorn's own path."""
        path = self._paths.get(self.url)
        if path is None or self.expect_100_continue or self.pipeline:
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind a request still being answered: uvicorn queues it
        if self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return None
        assert self._lane is not None
        length = -1
        for name, value in self.headers:
            if name == b"content-length":
                if length >= 0 or not value.isdigit():
                    return None
                length = int(value)
            elif name == b"transfer-encoding":
                return None
        return path if 0 <= length <= self._lane.max_body_bytes else None

    def on_headers_complete(self) -> None:
        path = self._direct_path() if self._lane is not None else None
        if path is None:
            super().on_headers_complete()
            return
        http_version = self.parser.get_http_version()
        scope: Any = self.scope
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = path
        scope["raw_path"] = self.url
        scope["query_string"] = b""
        self.cycle = DirectRequest(scope, http_version != "1.0" and self.parser.should_keep_alive())  # type: ignore[assignment]
        # Busy, even when an earlier request of the same read was answered (and marked the
        # connection idle) while it was parsed.
        self._unset_keepalive_if_required()

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is DirectRequest:
            cycle.body += body  # at most max_body_bytes: Content-Length was checked
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is not DirectRequest:
            super().on_message_complete()
            return
        cycle.more_body = False
        assert self._lane is not None
        scope = cycle.scope
        now = self._lane.answer_now(scope["path"], scope["headers"], bytes(cycle.body))
        if now is None:
            self._start_task(self._answer(cycle))
        elif isinstance(now, Pending):
            now.future.add_done_callback(functools.partial(self._finish, cycle, now.finish))
        else:
            self._answer_with(cycle, now)

    def _start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _finish(self, request: DirectRequest, finish: Finish, enqueued: Any) -> None:
        try:
            response = finish(enqueued)
        except Exception as exc:  # the queue refused: the app's handler answers
            self._start_task(self._answer(request, exc))
            return
        except BaseException as exc:
            self._failed(request, Answer(), exc)
            return
        self._answer_with(request, response)

    async def _answer(self, request: DirectRequest, refused: Exception | None = None) -> None:
        """The route's answer (or, when ``refused``, its handler's for that exception)."""
        lane = self._lane
        assert lane is not None
        try:
            if refused is None:
                response = await lane.respond(request.scope, request.receive)
            else:
                response = await lane.refusal(request.scope, request.receive, refused)
        except BaseException as exc:
            self._failed(request, Answer(), exc)
            return
        self._answer_with(request, response)

    def _answer_with(self, request: DirectRequest, response: AppResponse) -> None:
        """Send ``response``: at once when it is plain (one start, one body), else from a task."""
        parts = plain_parts(response)
        if parts is None:
            self._start_task(self._render(request, response))
            return
        answer = Answer()
        try:
            answer.whole(*parts)
        except BaseException as exc:
            self._failed(request, answer, exc)
            return
        self._send(request, answer)

    async def _render(self, request: DirectRequest, response: AppResponse) -> None:
        """A response that sends itself (streamed, or with a background task)."""
        answer = Answer()
        try:
            await response(request.scope, request.receive, answer.send)
            if not answer.complete:
                raise InvalidAnswer("the app returned without completing its answer")
        except BaseException as exc:
            self._failed(request, answer, exc)
            return
        self._send(request, answer)

    def _failed(self, request: DirectRequest, answer: Answer, exc: BaseException) -> None:
        """As uvicorn: log it; an answer already started drops the connection, else a 500."""
        self.logger.error("Exception in ASGI application\n", exc_info=exc)
        if answer.started:
            self.transport.close()
        else:
            self._send(request, _internal_error())

    def _send(self, request: DirectRequest, answer: Answer) -> None:
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(request.scope),
                "POST",
                request.scope["path"],
                request.scope["http_version"],
                answer.status,
            )
        if self.transport.is_closing():
            return
        keep_alive = request.keep_alive and not answer.closes  # shutdown() may have turned it off meanwhile
        request.response_complete = True
        self.transport.write_now(answer.render(self.server_state.default_headers, keep_alive))  # type: ignore[attr-defined]
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()


def _internal_error() -> Answer:
    """uvicorn's answer when the app fails before it started one."""
    answer = Answer()
    answer.whole(500, _INTERNAL_ERROR_HEADERS, b"Internal Server Error")
    return answer
