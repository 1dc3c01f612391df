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
    that batch (the next batch is still sent).

    ``senders`` batches may be on their way at once (for a far end that answers batches in
    parallel, such as a database with several connections); a new one starts only while every
    running sender is busy, so a quiet caller still sees one batch at a time."""

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int | None = None,
        senders: int = 1,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._senders_max = senders
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._senders: list[asyncio.Task[None]] = []

    async def submit(self, item: Item) -> Result:
        return await self.submit_soon(item)

    def submit_soon(self, item: Item) -> asyncio.Future[Result]:
        """``submit`` without a coroutine: the future of ``item``'s result (for callers that answer
        from a done-callback). Must be called from a running event loop."""
        senders = self._senders
        if len(senders) == self._senders_max == 1 and not senders[0].done():
            # The usual case: the one sender is running and will take the item. Its loop is the
            # running one (a loop that ends cancels its tasks), and asking Python for the running
            # loop costs a getpid() system call per item on 3.11.
            future: asyncio.Future[Result] = senders[0].get_loop().create_future()
            self._waiting.append((item, future))
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((item, future))
        # A sender bound to another (closed) event loop can never run again: start one here.
        senders = [t for t in senders if not t.done() and t.get_loop() is loop]
        if len(senders) < self._senders_max:
            senders.append(asyncio.create_task(self._send_waiting()))
        self._senders = senders
        return future

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
