"""Real Redis and MariaDB servers for the test suite, on free loopback ports.

Each server runs as a child process in its own temporary directory and can be stopped and
started again on the same port (tests of outages need that). Children are asked to die with
the test process (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn for children: own process group, and SIGKILL when the test process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def env_without_settings(*, llm_key: bool = True) -> dict[str, str]:
    """This process's environment without any ``SYTQ_*`` setting (and without the provider key
    unless ``llm_key``): a child started with it sees only the configuration a test gives it."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SYTQ_") and (llm_key or k != "DEEPSEEK_API_KEY")
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _find_binary(*names: str) -> str:
    for name in names:
        for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    raise RuntimeError(f"none of {names} is installed; run `make deps` (hack/install-test-deps.sh)")


class _ServerProcess:
    """A restartable child server bound to one loopback port (and to the same port of
    ``extra_address`` if given, e.g. a test cluster's bridge address, for its pods)."""

    def __init__(self, name: str, extra_address: str | None = None) -> None:
        self.extra_address = extra_address
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sytq-{name}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / f"{name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _addresses(self) -> list[str]:
        return ["127.0.0.1", *([self.extra_address] if self.extra_address else [])]

    def _after_first_start(self) -> None:
        """Hook for one-time set-up once the server listens."""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        first = self._proc is None
        log = self._log.open("ab")
        self._proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        log.close()
        try:
            wait_for_port(self.port, timeout=60.0, proc=self._proc)
        except Exception as exc:
            log_tail = self._log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{exc}\n--- log ---\n{log_tail}") from exc
        if first:
            self._after_first_start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer(_ServerProcess):
    """Debian's redis-server, no persistence; ``password`` is required of clients if given."""

    def __init__(self, extra_address: str | None = None, password: str | None = None) -> None:
        super().__init__("redis", extra_address)
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            _find_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            *self._addresses(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            *(["--requirepass", self.password] if self.password else []),
        ]


class MariaDBServer(_ServerProcess):
    """Debian's mariadb-server on a private data directory, root without password over TCP."""

    database = "sytq_test"

    def __init__(self, extra_address: str | None = None) -> None:
        super().__init__("mariadb", extra_address)
        self.datadir = self.workdir / "data"
        self.socket = self.workdir / "mysqld.sock"
        self._install_datadir(_find_binary("mariadb-install-db", "mysql_install_db"))

    def _install_datadir(self, install: str, attempts: int = 2) -> None:
        """mariadb-install-db has been seen to fail once under heavy machine load: retry on a clean dir."""
        user = "--user=root" if os.geteuid() == 0 else f"--user={os.environ.get('USER', 'nobody')}"
        for attempt in range(1, attempts + 1):
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir.mkdir()
            result = subprocess.run(
                [
                    install,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    user,
                ],
                check=False,
                capture_output=True,
            )
            if result.returncode == 0:
                return
            if attempt == attempts:
                raise RuntimeError(
                    f"{install} failed with exit {result.returncode}:\n"
                    f"{result.stdout.decode(errors='replace')[-2000:]}\n"
                    f"{result.stderr.decode(errors='replace')[-2000:]}"
                )

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{self.database}?charset=utf8mb4"

    def url_for(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def _command(self) -> list[str]:
        cmd = [
            _find_binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={','.join(self._addresses())}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
            "--character-set-server=utf8mb4",
            # MariaDB's and MySQL 8's default, set explicitly: a value a column refuses is an error.
            "--sql-mode=STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
            "--collation-server=utf8mb4_unicode_ci",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        return cmd

    def _after_first_start(self) -> None:
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        return self.url_for(name)

    def fetch_one(self, sql: str, database: str, *args: object) -> dict[str, object] | None:
        """The first row of a query, as a dict (None when there is none)."""
        import pymysql

        conn = pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            cursorclass=pymysql.cursors.DictCursor,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                row = cur.fetchone()
            return dict(row) if row else None
        finally:
            conn.close()

    def execute(self, sql: str, database: str | None = None) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
            conn.commit()
        finally:
            conn.close()


def managed(factory: Callable[[], _ServerProcess]) -> _ServerProcess:
    server = factory()
    server.start()
    return server
