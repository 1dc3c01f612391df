"""Group commit for the hot path: concurrent callers' writes share one transaction.

While one batch is being written, new items queue up; the next batch takes them all (up to a cap).
Each caller still awaits its own outcome, so "stored before acknowledged" holds per task, while the
database sees one round trip per batch instead of several per task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sytq.coalesce import Coalescer, Item, Result


class MicroBatcher(Coalescer[Item, Result]):
    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int = 256,
        writers: int = 1,
    ) -> None:
        super().__init__(write, max_batch, writers)
