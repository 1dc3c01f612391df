"""``sytq run``: the whole system on one machine, for ``make run``.

Fills every missing connection with a local stand-in and says so loudly: an embedded Valkey
when SYTQ_REDIS_URL is unset, a SQLite file when SYTQ_DATABASE_URL is unset, the stub LLM when
DEEPSEEK_API_KEY is unset. With no API keys it switches authentication off and listens on
127.0.0.1 only; with no callback secret it generates one into the data directory (kept for the
next run). The API and a worker then run as child processes with that environment; if either
dies, everything stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import httpx

from sytq.settings import Settings
from sytq_cli.demo_records import DEMO_TABLE, ensure_demo_records
from sytq_cli.embedded import EmbeddedValkey

_BANNER = "=" * 78
_PR_SET_PDEATHSIG = 1


def announce(message: str) -> None:
    print(f"{_BANNER}\n*** {message}\n{_BANNER}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited with {proc.returncode}")  # type: ignore[arg-type]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def _die_with_parent() -> None:
    """Children get SIGTERM if ``sytq run`` itself is killed, so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _sytq(*args: str) -> list[str]:
    return [sys.executable, "-m", "sytq_cli", *args]


class _Children:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def watch(self) -> Iterator[subprocess.Popen[bytes]]:
        """Yields the first child that exits."""
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    yield proc
                    return
            time.sleep(0.5)


def _prepare_storage(url: str) -> None:
    from sytq.storage import upgrade

    upgrade(url)


def ready_curl(api_url: str, with_key: bool) -> str:
    auth = ' -H "Authorization: Bearer $SYTQ_API_KEY"' if with_key else ""
    return (
        f"curl -s -X POST {api_url}/api/v1/tasks/llm -H 'Content-Type: application/json'{auth} \\\n"
        '     -d \'{"prompt": "Write a haiku about queues", "model": "deepseek-chat"}\'\n'
        f"curl -s {api_url}/api/v1/tasks/<task_id>{auth}"
    )


LOOPBACK = "127.0.0.1"


def callback_secret_file(data_dir: Path) -> tuple[str, bool]:
    """The callback secret kept in ``data_dir`` (created on first use, owner-only) and whether it is new."""
    path = data_dir / "callback-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret, True


def secure_local_defaults(settings: Settings, env: dict[str, str]) -> str:
    """Fill the auth and signing settings a local trial lacks; returns the API's listen address."""
    keyed = bool(settings.api_keys or settings.basic_auth_users)
    if not keyed:
        env["SYTQ_AUTH_DISABLED"] = "true"
        announce(
            f"No SYTQ_API_KEYS: AUTHENTICATION IS OFF (SYTQ_AUTH_DISABLED=true) and the API listens on "
            f"{LOOPBACK} ONLY. Configure keys before exposing it."
        )
    if not settings.callback_secret and not settings.callback_unsigned:
        secret, created = callback_secret_file(settings.data_dir)
        env["SYTQ_CALLBACK_SECRET"] = secret
        where = settings.data_dir / "callback-secret"
        announce(
            f"SYTQ_CALLBACK_SECRET is not set: callbacks are signed with the {'new' if created else 'kept'}"
            f" secret in {where}:\n    {secret}"
        )
    # Keys configured and an address asked for explicitly: listen there; otherwise loopback only.
    return settings.api_host if keyed and "api_host" in settings.model_fields_set else LOOPBACK


def run_all(port: int | None = None) -> int:
    settings = Settings()
    env = dict(os.environ)
    children = _Children()
    valkey: EmbeddedValkey | None = None

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not settings.redis_url:
            valkey = EmbeddedValkey(settings.data_dir / "valkey")
            env["SYTQ_REDIS_URL"] = valkey.start()
            announce(
                f"SYTQ_REDIS_URL is not set: using an EMBEDDED VALKEY at {env['SYTQ_REDIS_URL']} "
                f"(data in {settings.data_dir / 'valkey'})"
            )
        if not settings.database_url:
            env["SYTQ_DATABASE_URL"] = settings.effective_database_url
            announce(f"SYTQ_DATABASE_URL is not set: using SQLITE at {settings.effective_database_url}")
        _prepare_storage(env["SYTQ_DATABASE_URL"])
        if not settings.database_url and not settings.record_database_url:
            ensure_demo_records(settings.effective_record_database_url)
            announce(
                f"Record mode demo: table {DEMO_TABLE} in the SQLite file with rows 1-3 "
                "(see the README's record-mode example)"
            )
        if settings.uses_stub_llm:
            stub_port = free_port()
            stub = children.start(_sytq("stub-llm", "--port", str(stub_port)), env)
            env["SYTQ_LLM_BASE_URL"] = f"http://127.0.0.1:{stub_port}"
            _wait_http(f"{env['SYTQ_LLM_BASE_URL']}/models", stub)
            announce(
                f"DEEPSEEK_API_KEY is not set: answers come from the STUB LLM at {env['SYTQ_LLM_BASE_URL']}"
                " (canned text, not a real model)"
            )
        host = secure_local_defaults(settings, env)
        api_port = port or settings.api_port
        api = children.start(_sytq("api", "--host", host, "--port", str(api_port)), env)
        children.start(_sytq("worker"), env)
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api_url}/healthz", api)
        announce(
            f"SYT Queue is up: API {api_url} (docs {api_url}/docs), listening on {host}:{api_port}. Try:\n\n"
            f"{ready_curl(api_url, bool(settings.api_keys))}\n"
        )
        for proc in children.watch():
            print(
                f"sytq run: {' '.join(map(str, proc.args))} exited with {proc.returncode}; stopping",  # type: ignore[arg-type]
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        print("sytq run: stopping", file=sys.stderr)
        return 0
    except RuntimeError as exc:
        print(f"sytq run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop()
        if valkey is not None:
            valkey.stop()
