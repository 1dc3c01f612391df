"""``sytq api --workers N`` (N > 1): N uvicorn processes, each listening on its own SO_REUSEPORT socket.

uvicorn's worker mode shares one listening socket, and uvloop accepts every connection pending at
a wake-up in the process that woke first: a client that opens its keep-alive connections at once
(a proxy's upstream pool, PHP-FPM workers with persistent handles, a load generator) can land all
of them on one worker while the others idle. With a socket per worker the kernel spreads new
connections across the workers instead.

The parent only supervises: a worker that dies is started again (one that keeps dying within
seconds of its start stops the whole server with a clear error), and SIGTERM or SIGINT is passed
to every worker, which finishes its requests as uvicorn does on its own. A supervisor that is
killed outright takes its workers with it (on Linux).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("uvicorn.error")  # beside the workers' own lines

QUICK_DEATH_SECONDS = 10.0  # a worker dying this soon after its start counts as a failed start
FAILED_STARTS_ALLOWED = 3  # in a row, per worker slot
SUPERVISE_EVERY_SECONDS = 0.5
STOP_GRACE_SECONDS = 30.0  # beyond uvicorn's own graceful shutdown of a worker
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


class WorkersFailed(RuntimeError):
    """A worker could not stay up: the server stopped."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT: every worker binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_one(config_options: dict[str, Any]) -> None:
    """A worker process: uvicorn serving the app on a socket of its own."""
    import uvicorn

    _stop_with_supervisor()
    config = uvicorn.Config(**config_options)
    sock = listening_socket(config.host, config.port)
    uvicorn.Server(config).run(sockets=[sock])


def _stop_with_supervisor() -> None:
    """Linux: the kernel sends this worker SIGTERM (uvicorn's graceful stop) when its supervisor
    dies, however it dies: a supervisor killed with SIGKILL would otherwise leave its workers
    serving on, unsupervised and holding the port."""
    supervisor = multiprocessing.parent_process()
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("API worker: cannot ask to stop with its supervisor (errno %d)", ctypes.get_errno())
        return
    if os.getppid() != supervisor.pid:  # it died before the request above took effect
        raise SystemExit(0)


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    started: float
    failed_starts: int = 0


@dataclass
class ApiWorkers:
    """Starts ``workers`` processes running ``serve_one(config_options)`` and keeps them running."""

    config_options: dict[str, Any]
    workers: int
    target: Callable[[dict[str, Any]], None] = serve_one
    _slots: list[_Slot] = field(default_factory=list)
    _stopping: bool = False

    def run(self) -> int:
        host, port = self.config_options["host"], int(self.config_options["port"])
        if not port:
            raise WorkersFailed("--workers above 1 needs a fixed port, not 0")
        # Bound once here first: a port already in use fails now, in one line, before any worker starts.
        listening_socket(host, port).close()
        context = multiprocessing.get_context("spawn")
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._slots = [self._start(context) for _ in range(self.workers)]
            log.info("serving on %s:%d with %d worker processes", host, port, self.workers)
            while not self._stopping:
                sentinels = [slot.process.sentinel for slot in self._slots]
                multiprocessing.connection.wait(sentinels, timeout=SUPERVISE_EVERY_SECONDS)
                if not self._stopping:
                    self._restart_dead(context)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _start(self, context: Any, failed_starts: int = 0) -> _Slot:
        process = context.Process(target=self.target, args=(self.config_options,), name="sytq-api-worker")
        process.start()
        return _Slot(process, time.monotonic(), failed_starts)

    def _restart_dead(self, context: Any) -> None:
        for index, slot in enumerate(self._slots):
            if slot.process.is_alive():
                continue
            quick = time.monotonic() - slot.started < QUICK_DEATH_SECONDS
            failed_starts = slot.failed_starts + 1 if quick else 0
            log.warning(
                "API worker %s exited with code %s; starting another", slot.process.pid, slot.process.exitcode
            )
            if failed_starts >= FAILED_STARTS_ALLOWED:
                raise WorkersFailed(
                    f"an API worker exited within {QUICK_DEATH_SECONDS:.0f} s of its start "
                    f"{failed_starts} times in a row (exit code {slot.process.exitcode}); see its log above"
                )
            self._slots[index] = self._start(context, failed_starts)

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for slot in self._slots:
            if slot.process.is_alive():
                slot.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for slot in self._slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
