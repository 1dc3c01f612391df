"""Task storage: SQLAlchemy models, Alembic migrations and the TaskStore repository."""

from sytq.storage.migrate import upgrade
from sytq.storage.models import (
    CALLBACK_DELIVERED,
    CALLBACK_FAILED,
    CALLBACK_PENDING,
    STATUS_FAILED,
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SUCCEEDED,
)
from sytq.storage.records import Record, RecordStore, RecordTableNotAllowed
from sytq.storage.store import LLMOutcome, NewTask, RowRefusedError, TaskRecord, TaskStore, utcnow

__all__ = [
    "CALLBACK_DELIVERED",
    "CALLBACK_FAILED",
    "CALLBACK_PENDING",
    "STATUS_FAILED",
    "STATUS_QUEUED",
    "STATUS_RUNNING",
    "STATUS_SUCCEEDED",
    "LLMOutcome",
    "NewTask",
    "Record",
    "RecordStore",
    "RecordTableNotAllowed",
    "RowRefusedError",
    "TaskRecord",
    "TaskStore",
    "upgrade",
    "utcnow",
]
