"""JSON logs; every line written while a task runs carries its task id (via a contextvar)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("sytq_task_id", default=None)
current_task_type: contextvars.ContextVar[str | None] = contextvars.ContextVar("sytq_task_type", default=None)


@contextlib.contextmanager
def task_context(task_id: str, task_type: str | None = None) -> Iterator[None]:
    """Tag the log lines of the enclosed code (and the tasks it awaits) with this task."""
    id_token = current_task_id.set(task_id)
    type_token = current_task_type.set(task_type)
    try:
        yield
    finally:
        current_task_type.reset(type_token)
        current_task_id.reset(id_token)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        task_id = current_task_id.get()
        if task_id is not None:
            entry["task_id"] = task_id
            entry["task_type"] = current_task_type.get()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TaskIdText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task_id = current_task_id.get()
        return f"{line} task_id={task_id}" if task_id else line


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if json_lines else _TaskIdText("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_sytq", False):
            root.removeHandler(existing)
    handler._sytq = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO: far too loud at thousands of calls per second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
