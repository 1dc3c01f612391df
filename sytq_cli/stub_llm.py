"""A stub OpenAI-compatible LLM server for tests, local runs and benchmarks (always over real HTTP).

Plain ASGI (no framework) so one process sustains thousands of concurrent slow requests.
Answers are derived from the prompt, so the same request always gets the same content.
Faults and latency are set at start (``--faults 429:0.1,hang:0.01 --latency 0.5-2``) or at run time
with ``POST /_stub/config`` ``{"latency": "2", "faults": [{"kind": "429", "times": 2, "match": "x"}]}``.
Fault kinds: any HTTP status ("429", "500", "503", "400", ...), "hang", "malformed", "empty",
"keepalive" (blank lines / SSE comments before the answer).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_KINDS_SPECIAL = ("hang", "malformed", "empty", "keepalive")
_MODELS = ("deepseek-chat", "deepseek-reasoner")


@dataclass
class FaultRule:
    kind: str
    rate: float = 1.0
    times: int | None = None  # only the next N matching requests
    match: str | None = None  # only requests whose messages contain this text
    retry_after: float | None = None
    keepalive_lines: int = 3
    keepalive_interval: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in _KINDS_SPECIAL and not (self.kind.isdigit() and 400 <= int(self.kind) <= 599):
            raise ValueError(f"unknown fault kind {self.kind!r}: an HTTP status or one of {_KINDS_SPECIAL}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")


@dataclass(frozen=True)
class Latency:
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """``"2"`` = fixed 2 s; ``"0.5-2"`` = uniform between 0.5 and 2 s."""
        low, _, high = spec.strip().partition("-")
        try:
            lo = float(low or 0)
            hi = float(high) if high else lo
        except ValueError as exc:
            raise ValueError(f"latency {spec!r}: use seconds or 'min-max'") from exc
        if lo < 0 or hi < lo:
            raise ValueError(f"latency {spec!r}: need 0 <= min <= max")
        return cls(lo, hi)

    def sample(self) -> float:
        return self.low if self.high == self.low else random.uniform(self.low, self.high)


def parse_faults(spec: str) -> list[FaultRule]:
    """``"429:0.1,500:0.05,hang"`` -> rules with those rates (default rate 1)."""
    rules = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            kind, _, rate = part.partition(":")
            rules.append(FaultRule(kind=kind.strip(), rate=float(rate) if rate else 1.0))
    return rules


@dataclass
class StubConfig:
    latency: Latency = field(default_factory=Latency)
    faults: list[FaultRule] = field(default_factory=list)

    @classmethod
    def from_strings(cls, latency: str = "0", faults: str = "") -> StubConfig:
        return cls(latency=Latency.parse(latency), faults=parse_faults(faults))


def deterministic_content(model: str, prompt: str) -> str:
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()[:16]
    return f"stub answer {digest} to: {prompt[:200]}"


class StubLLM:
    """The ASGI application; ``stats`` counts requests per prompt so tests can spot double calls."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.requests = 0
        self.by_prompt: Counter[str] = Counter()
        # The last requests' model, max_tokens and messages, so tests can check what callers sent.
        self.recent: deque[dict[str, Any]] = deque(maxlen=100)
        self.faults_served: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        # Answered chat calls and the seconds spent in them: the latency callers really saw from us,
        # which a busy machine can stretch beyond the configured latency.
        self.completed = 0
        self.handler_seconds = 0.0

    # --- plumbing ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].removeprefix("/v1")
        method = scope["method"]
        body = await _read_body(receive)
        if path == "/chat/completions" and method == "POST":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = time.monotonic()
            try:
                await self._chat(body, receive, send)
            finally:
                self.in_flight -= 1
                self.completed += 1
                self.handler_seconds += time.monotonic() - started
        elif path == "/models" and method == "GET":
            models = [{"id": m, "object": "model", "owned_by": "stub"} for m in _MODELS]
            await _send_json(send, 200, {"object": "list", "data": models})
        elif path == "/_stub/config" and method == "POST":
            await self._configure(body, send)
        elif path == "/_stub/stats" and method == "GET":
            brief = b"brief" in scope.get("query_string", b"")
            await _send_json(send, 200, self.stats(per_prompt=not brief))
        elif path == "/_stub/reset" and method == "POST":
            self.reset()
            await _send_json(send, 200, {"ok": True})
        else:
            await _send_error(send, 404, f"no route {method} {path}", "not_found")

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def stats(self, per_prompt: bool = True) -> dict[str, Any]:
        """Counters; ``per_prompt`` adds the per-prompt call counts (large under load)."""
        stats: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "completed": self.completed,
            "handler_seconds": round(self.handler_seconds, 3),
            "faults": dict(self.faults_served),
        }
        if per_prompt:
            stats["by_prompt"] = dict(self.by_prompt)
            stats["recent"] = list(self.recent)
        return stats

    def reset(self) -> None:
        self.config = StubConfig()
        self.requests = 0
        self.max_in_flight = self.in_flight
        self.by_prompt.clear()
        self.recent.clear()
        self.faults_served.clear()

    async def _configure(self, body: bytes, send: Send) -> None:
        try:
            doc = json.loads(body or b"{}")
            faults = doc.get("faults", [])
            rules = parse_faults(faults) if isinstance(faults, str) else [FaultRule(**f) for f in faults]
            latency = Latency.parse(str(doc.get("latency", "0")))
        except (ValueError, TypeError, AttributeError) as exc:
            await _send_error(send, 400, f"bad stub config: {exc}", "invalid_request")
            return
        self.config = StubConfig(latency=latency, faults=rules)
        await _send_json(send, 200, {"ok": True})

    # --- chat/completions --------------------------------------------------------------------

    def _pick_fault(self, prompt: str) -> FaultRule | None:
        for rule in self.config.faults:
            if rule.match is not None and rule.match not in prompt:
                continue
            if rule.times is not None and rule.times <= 0:
                continue
            if rule.rate < 1.0 and random.random() >= rule.rate:
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule
        return None

    async def _chat(self, body: bytes, receive: Receive, send: Send) -> None:
        try:
            request = json.loads(body)
            model = str(request["model"])
            messages = request["messages"]
            prompt = "\n".join(str(m.get("content", "")) for m in messages)
        except (ValueError, KeyError, TypeError, AttributeError):
            await _send_error(send, 400, "invalid request body", "invalid_request")
            return
        self.requests += 1
        self.by_prompt[prompt] += 1
        self.recent.append({"model": model, "max_tokens": request.get("max_tokens"), "messages": messages})
        fault = self._pick_fault(prompt)
        if fault is not None:
            self.faults_served[fault.kind] += 1
        stream = bool(request.get("stream"))
        if fault is not None and fault.kind == "hang":
            await _wait_for_disconnect(receive, 3600)
            return
        await asyncio.sleep(self.config.latency.sample())
        if fault is not None and fault.kind.isdigit():
            headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            await _send_error(send, int(fault.kind), f"stub fault {fault.kind}", "stub_fault", headers)
            return
        content = "" if fault is not None and fault.kind == "empty" else deterministic_content(model, prompt)
        keepalive = fault if fault is not None and fault.kind == "keepalive" else None
        if stream:
            await self._send_stream(send, model, content, keepalive)
            return
        await send(_start(200, "application/json"))
        if keepalive is not None:
            for _ in range(keepalive.keepalive_lines):
                await send({"type": "http.response.body", "body": b"\n", "more_body": True})
                await asyncio.sleep(keepalive.keepalive_interval)
        if fault is not None and fault.kind == "malformed":
            payload = b'{"id": "stub", "choices": [{"message": {"content": "trunc'
        else:
            payload = json.dumps(_completion(model, prompt, content)).encode()
        await send({"type": "http.response.body", "body": payload})

    async def _send_stream(self, send: Send, model: str, content: str, keepalive: FaultRule | None) -> None:
        await send(_start(200, "text/event-stream"))
        if keepalive is not None:
            for _ in range(keepalive.keepalive_lines):
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                await asyncio.sleep(keepalive.keepalive_interval)
        full = _completion(model, "", content)
        words = content.split(" ")
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            chunk = {"id": full["id"], "model": model, "choices": [{"index": 0, "delta": {"content": piece}}]}
            await send({"type": "http.response.body", "body": _sse(chunk), "more_body": True})
        last = {
            "id": full["id"],
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": full["usage"],
        }
        await send({"type": "http.response.body", "body": _sse(last), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _completion(model: str, prompt: str, content: str) -> dict[str, Any]:
    prompt_tokens = max(1, len(prompt) // 4)
    completion_tokens = max(1, len(content) // 4) if content else 0
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if "reasoner" in model:
        message["reasoning_content"] = f"stub reasoning about {len(prompt)} characters"
    return {
        "id": "stub-" + hashlib.sha256(content.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": prompt_tokens,
        },
    }


def _sse(doc: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def _start(status: int, content_type: str, extra: dict[str, str] | None = None) -> Message:
    headers = [(b"content-type", content_type.encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _send_json(send: Send, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
    await send(_start(status, "application/json", headers))
    await send({"type": "http.response.body", "body": json.dumps(doc).encode()})


async def _send_error(
    send: Send, status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> None:
    await _send_json(send, status, {"error": {"message": message, "type": kind}}, headers)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _wait_for_disconnect(receive: Receive, limit: float) -> None:
    try:
        async with asyncio.timeout(limit):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


def create_app(config: StubConfig | None = None) -> StubLLM:
    return StubLLM(config or StubConfig())


def serve(host: str, port: int, latency: str = "0", faults: str = "") -> None:
    """Run the stub until interrupted (blocking)."""
    import uvicorn

    app = create_app(StubConfig.from_strings(latency, faults))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        backlog=16384,
        timeout_keep_alive=120,
        lifespan="on",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sytq stub-llm", description="Stub OpenAI-compatible LLM server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--latency", default="0", help="seconds, or min-max (uniform)")
    parser.add_argument("--faults", default="", help="e.g. 429:0.1,500:0.05,hang:0.01,keepalive:0.2")
    args = parser.parse_args(argv)
    try:
        StubConfig.from_strings(args.latency, args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    serve(args.host, args.port, args.latency, args.faults)


if __name__ == "__main__":
    main()
