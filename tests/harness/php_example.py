"""The PHP example (examples/php) as a user runs it: the callback receiver under PHP's built-in server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PHP_DIR = Path(__file__).resolve().parents[2] / "examples" / "php"


def start_php_receiver(host: str, port: int, secret: str, log: Path) -> subprocess.Popen[bytes]:
    """callback_receiver.php listening on ``host:port``; each callback its verifier accepts is
    appended to ``log`` (one JSON line)."""
    env = {**os.environ, "SYTQ_CALLBACK_SECRET": secret, "SYTQ_CALLBACK_LOG": str(log)}
    return subprocess.Popen(
        ["php", "-S", f"{host}:{port}", str(PHP_DIR / "callback_receiver.php")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
