"""The Go side of the interop tests: the real asynq v0.26.0 (client, server, Inspector) driven through
our `asynqprobe` program, plus a helper that runs our own Server inside the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.services import RedisServer
from tests.interop.probe_build import ProbeBuildError, build_asynqprobe

JSON = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


class GoServer:
    """A running `asynqprobe serve` process; its JSON-line events are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[JSON] = []
        self._eof = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for line in self.proc.stdout:
                event = json.loads(line)
                if "payload" in event:
                    event["payload"] = unb64(event["payload"])
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._eof = True  # waiters fail now instead of at their timeout
                self._changed.notify_all()

    def handled(self, outcome: str | None = None) -> list[JSON]:
        return [
            e
            for e in self.events
            if e["event"] in ("handled", "running") and (outcome is None or e["outcome"] == outcome)
        ]

    async def wait_for(self, predicate: Callable[[list[JSON]], bool], within: float = 20.0) -> list[JSON]:
        """Wait until ``predicate(events)`` holds; fail with the events seen so far if it never does."""

        async def until() -> None:
            async with self._changed:
                while not predicate(self.events):
                    if self._eof:
                        raise AssertionError(f"asynqprobe serve exited early; events: {self.events}")
                    await self._changed.wait()

        try:
            await asyncio.wait_for(until(), within)
        except TimeoutError:
            raise AssertionError(f"timed out after {within}s; events so far: {self.events}") from None
        return self.events

    async def wait_ready(self) -> None:
        await self.wait_for(lambda events: any(e["event"] == "ready" for e in events))

    async def stop(self) -> None:
        """Graceful stop (SIGTERM): asynq's shutdown, the way a deployment is switched off."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 30)
        await self._reader

    async def kill(self) -> None:
        """kill -9: the process dies holding its leases, as a crashed Go worker would."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader


class AsynqProbe:
    """Async driver of the Go program: the real asynq client, server and Inspector."""

    def __init__(self, binary: Path, redis_url: str) -> None:
        self.binary = binary
        self.redis_url = redis_url

    async def _run(self, *args: str, stdin: bytes | None = None) -> Any:
        proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            "--redis",
            self.redis_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        if proc.returncode != 0:
            raise AssertionError(f"asynqprobe {args[0]} failed ({proc.returncode}): {err.decode()}")
        return json.loads(out)

    async def enqueue(self, *specs: JSON) -> list[JSON]:
        """Enqueue with Go's asynq.Client; spec payloads are bytes. Returns one {task}|{error,kind} each."""
        wire = [{**spec, "payload": b64(spec.get("payload", b""))} for spec in specs]
        results: list[JSON] = await self._run("enqueue", stdin=json.dumps(wire).encode())
        for result in results:
            if "task" in result:
                _decode_task(result["task"])
        return results

    async def enqueue_ok(self, *specs: JSON) -> list[JSON]:
        results = await self.enqueue(*specs)
        assert all("task" in r for r in results), results
        return [r["task"] for r in results]

    async def inspect(self, queue: str = "default", ids: list[str] | tuple[str, ...] = ()) -> JSON:
        """Go Inspector: {"queues": [...], "stats": QueueInfo, "tasks": {id: {task}|{error,kind}}}."""
        out: JSON = await self._run("inspect", "--queue", queue, "--ids", ",".join(ids))
        for lookup in out["tasks"].values():
            if "task" in lookup:
                _decode_task(lookup["task"])
        return out

    async def task(self, queue: str, task_id: str) -> JSON:
        lookup = (await self.inspect(queue, [task_id]))["tasks"][task_id]
        assert "task" in lookup, f"Go Inspector cannot read {queue}/{task_id}: {lookup}"
        task: JSON = lookup["task"]
        return task

    async def stats(self, queue: str = "default") -> JSON:
        out = await self.inspect(queue)
        assert "stats" in out, out
        stats: JSON = out["stats"]
        return stats

    async def list(self, queue: str, state: str, page_size: int = 100) -> list[JSON]:
        tasks: list[JSON] = await self._run(
            "list", "--queue", queue, "--state", state, "--page-size", str(page_size)
        )
        for task in tasks:
            _decode_task(task)
        return tasks

    async def op(self, action: str, queue: str = "default", task_id: str = "") -> JSON:
        result: JSON = await self._run("op", "--action", action, "--queue", queue, "--id", task_id)
        return result

    async def servers(self) -> list[JSON]:
        servers: list[JSON] = await self._run("servers")
        for server in servers:
            for worker in server["active_workers"]:
                worker["payload"] = unb64(worker["payload"])
        return servers

    @contextlib.asynccontextmanager
    async def serve(self, *args: str) -> AsyncIterator[GoServer]:
        """Run a Go asynq server (see `asynqprobe serve` flags); stopped gracefully on exit."""
        proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            "serve",
            "--redis",
            self.redis_url,
            *args,
            stdout=asyncio.subprocess.PIPE,
        )
        server = GoServer(proc)
        try:
            await server.wait_ready()
            yield server
        finally:
            # Graceful by default: a kill would leave tasks active under a lease nobody extends.
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            with contextlib.suppress(Exception):
                await server._reader


def _decode_task(task: JSON) -> None:
    task["payload"] = unb64(task["payload"])
    task["result"] = unb64(task["result"]) if task["result"] else None


@pytest.fixture(scope="session")
def asynqprobe_binary() -> Path:
    try:
        return build_asynqprobe()
    except ProbeBuildError as err:
        pytest.fail(str(err))  # interop is required in CI: a missing build fails, never skips


@pytest.fixture
def asynqprobe(asynqprobe_binary: Path, redis_server: RedisServer, redis_client: Any) -> Iterator[AsynqProbe]:
    """The Go side, pointed at the same (freshly flushed) Redis as ``redis_client``."""
    yield AsynqProbe(asynqprobe_binary, redis_server.url)


@contextlib.asynccontextmanager
async def our_server(
    redis: Any,
    handlers: dict[str, Callable[[Any], Any]],
    queues: dict[str, int] | None = None,
    concurrency: int = 10,
    **config: Any,
) -> AsyncIterator[Any]:
    """Run our engine's Server in this event loop for the duration of the block."""
    from sytq.queue import Server, ServerConfig

    server = Server(
        redis,
        ServerConfig(queues=queues or {"default": 1}, concurrency=concurrency, **config),
        handlers=handlers,
    )
    runner = asyncio.create_task(server.run(install_signal_handlers=False))
    started = asyncio.ensure_future(server.wait_started())
    try:
        await asyncio.wait({runner, started}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # re-raise why the server could not start
            raise AssertionError("our Server returned before it started")
        assert started.done(), "our Server did not start within 20s"
        yield server
    finally:
        server.request_stop()
        await asyncio.wait_for(runner, 30)


async def eventually(check: Callable[[], Any], within: float = 20.0, interval: float = 0.05) -> Any:
    """Poll an (async) check until it returns a truthy value; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met after {within}s; last value: {value!r}")
        await asyncio.sleep(interval)


def _unix(moment: Any) -> int:
    """asynq keeps whole Unix seconds; our TaskInfo holds datetimes (None = unset, asynq's 0)."""
    return int(moment.timestamp()) if moment is not None else 0


def assert_same_task(ours: Any, go: JSON) -> None:
    """Our Inspector's TaskInfo and the Go Inspector's view of one task agree field by field."""
    mine: JSON = {
        "id": ours.id,
        "queue": ours.queue,
        "type": ours.type,
        "payload": ours.payload,
        "state": str(ours.state),
        "max_retry": ours.max_retry,
        "retried": ours.retried,
        "last_err": ours.last_error,
        "last_failed_at": _unix(ours.last_failed_at),
        "timeout": float(ours.timeout),
        "deadline": _unix(ours.deadline),
        "retention": float(ours.retention),
        "completed_at": _unix(ours.completed_at),
        "result": ours.result or None,
        "headers": dict(ours.headers or {}),
    }
    theirs = {key: go[key] for key in mine}
    theirs["headers"] = dict(theirs["headers"] or {})
    if go["state"] in ("scheduled", "retry"):
        # Only these states carry a stored time; asynq reports "now" / zero for the others.
        mine["next_process_at"] = _unix(ours.next_process_at)
        theirs["next_process_at"] = go["next_process_at"]
    assert mine == theirs
