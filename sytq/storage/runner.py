"""Runs sync SQLAlchemy work from async code: a private thread pool, one transaction per call,
and a wait-out of lost connections (database restart, failover) instead of failing at once."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sytq.storage.db_errors import describe, is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


class DBRunner:
    def __init__(self, engine: sa.Engine, *, threads: int, retry_for_seconds: float) -> None:
        self.engine = engine
        self.retry_for_seconds = retry_for_seconds
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sytq-db")

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a transaction on the pool, waiting out a database that is away."""
        loop = asyncio.get_running_loop()
        give_up_at = time.monotonic() + self.retry_for_seconds
        delay = 0.2
        while True:
            try:
                return await loop.run_in_executor(self._pool, functools.partial(self._in_session, fn))
            except DBAPIError as exc:
                if not is_transient(exc) or time.monotonic() + delay > give_up_at:
                    raise
                log.warning("database unavailable, retrying in %.1fs: %s", delay, describe(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _in_session(self, fn: Callable[[Session], T]) -> T:
        with self._sessions.begin() as session:
            return fn(session)

    async def ping(self) -> bool:
        """True when the database answers now (for /readyz); never waits out an outage."""

        def _ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, _ping)
        except DBAPIError:
            return False
        return True

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.engine.dispose)
