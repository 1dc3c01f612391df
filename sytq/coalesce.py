"""Coalescing: concurrent callers' items share one round trip.

While one batch is being sent, new items wait; the next batch takes them all (up to a cap). Each
caller still awaits its own result, so many simultaneous callers cost the far end about what one
batch does (one pipeline, one statement) and never need a connection each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """``send`` gets a batch and returns one result per item, in order. A result that is an
    exception is raised to its own caller; an exception raised by ``send`` goes to every caller of
    that batch (the next batch is still sent)."""

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int | None = None,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        # A sender bound to another (closed) event loop can never run again: start one here.
        if self._sender is None or self._sender.done() or self._sender.get_loop() is not loop:
            self._sender = asyncio.create_task(self._send_waiting())
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        cap = self._max_batch
        if cap is None or len(self._waiting) <= cap:
            batch, self._waiting = self._waiting, []
        else:
            batch, self._waiting = self._waiting[:cap], self._waiting[cap:]
        return batch

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch = self._take()
            try:
                results = await self._send([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
