"""``sytq api --workers 2``: a socket per worker, connections spread over both, dead workers replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sytq_cli.api_workers import ApiWorkers, WorkersFailed
from tests.harness.queue_fixtures import wait_until
from tests.harness.raw_http import post
from tests.harness.services import RedisServer, env_without_settings, free_port

pytestmark = pytest.mark.slow  # starts the command in subprocesses

LISTEN, ESTABLISHED = "0A", "01"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_inodes(port: int, state: str) -> set[str]:
    """Inodes of this machine's IPv4 TCP sockets whose local port is ``port``, in ``state``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            found.add(fields[9])
    return found


def _held(pid: int, port: int, state: str) -> int:
    return len(_socket_inodes(pid) & _tcp_inodes(port, state))


@pytest.fixture
def api_workers(redis_server: RedisServer) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = env_without_settings()
    env.update(
        SYTQ_REDIS_URL=redis_server.url,
        SYTQ_AUTH_DISABLED="true",
        SYTQ_ID_SECRET="workers-test",
        SYTQ_DATABASE_URL="sqlite://",
    )
    command = [
        sys.executable,
        "-m",
        "sytq_cli",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _workers(parent: int, port: int) -> list[int]:
    """The parent's children listening on ``port`` (multiprocessing also starts a resource tracker)."""
    return [child for child in _children(parent) if _held(child, port, LISTEN) == 1]


def _both_listening(parent: int, port: int) -> bool:
    return len(_workers(parent, port)) == 2


def _submit_on_many(port: int, connections: int) -> list[socket.socket]:
    """Opens ``connections`` keep-alive connections and submits once on each; they stay open."""
    opened = []
    for _ in range(connections):
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(post("/api/v1/tasks/llm", b'{"prompt": "hi"}', {"content-type": "application/json"}))
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK")
        opened.append(conn)
    return opened


async def test_each_worker_listens_on_its_own_socket_and_takes_connections(
    api_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = api_workers
    await wait_until(lambda: _both_listening(proc.pid, port), within=60, what="two workers listening")
    assert len(_tcp_inodes(port, LISTEN)) == 2  # one socket per worker, none in the parent
    assert _held(proc.pid, port, LISTEN) == 0
    connections = _submit_on_many(port, 32)
    try:
        held = [_held(worker, port, ESTABLISHED) for worker in _workers(proc.pid, port)]
        # The kernel spreads connections over the two sockets: all 32 on one worker has odds 2**-31.
        assert sum(held) == 32 and min(held) >= 1, held
    finally:
        for conn in connections:
            conn.close()


async def test_a_dead_worker_is_replaced_and_sigterm_stops_all(
    api_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = api_workers
    await wait_until(lambda: _both_listening(proc.pid, port), within=60, what="two workers listening")
    first, second = _workers(proc.pid, port)
    os.kill(first, signal.SIGKILL)
    await wait_until(
        lambda: first not in _children(proc.pid) and _both_listening(proc.pid, port),
        within=60,
        what="a new worker in place of the killed one",
    )
    assert second in _workers(proc.pid, port)
    for conn in _submit_on_many(port, 8):
        conn.close()
    workers, children = _workers(proc.pid, port), _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not [pid for pid in workers if _alive(pid)]  # joined before the parent exited
    await wait_until(lambda: not [pid for pid in children if _alive(pid)], what="no process left")


async def test_a_supervisor_killed_outright_takes_its_workers_with_it(
    api_workers: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = api_workers
    await wait_until(lambda: _both_listening(proc.pid, port), what="two workers listening")
    workers = _workers(proc.pid, port)
    proc.kill()  # SIGKILL: the supervisor cannot pass anything on
    proc.wait(30)
    await wait_until(lambda: not [pid for pid in workers if _alive(pid)], what="the orphaned workers gone")
    with socket.socket() as probe:  # and the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def _exits_at_once(options: dict[str, object]) -> None:
    raise SystemExit(3)


def test_a_worker_that_keeps_dying_stops_the_server() -> None:
    workers = ApiWorkers({"host": "127.0.0.1", "port": free_port()}, 2, target=_exits_at_once)
    with pytest.raises(WorkersFailed, match="3 times in a row"):
        workers.run()


def test_a_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_without_settings()
        env.update(SYTQ_AUTH_DISABLED="true", SYTQ_REDIS_URL="redis://127.0.0.1:1/0", SYTQ_ID_SECRET="x")
        run = subprocess.run(
            [sys.executable, "-m", "sytq_cli", "api", "--port", str(port), "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert "Address already in use" in run.stderr and "Traceback" not in run.stderr
