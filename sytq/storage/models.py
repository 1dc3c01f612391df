"""SQLAlchemy 2 models: one row per task, holding request, response, usage, timings and callback state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# MySQL TEXT stops at 64 KiB and DATETIME drops microseconds unless asked; widen both there.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"
FINAL_STATUSES = frozenset({STATUS_SUCCEEDED, STATUS_FAILED})

CALLBACK_PENDING = "pending"
CALLBACK_DELIVERED = "delivered"
CALLBACK_FAILED = "failed"


class Base(DeclarativeBase):
    pass


class LLMTaskRow(Base):
    __tablename__ = "sytq_llm_tasks"
    __table_args__ = (
        sa.Index("ix_sytq_llm_tasks_status", "status"),
        sa.Index("ix_sytq_llm_tasks_created_at", "created_at"),
        sa.Index("ix_sytq_llm_tasks_callback_status", "callback_status"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"},
    )

    # The queue's task id; 191 chars keeps the key inside utf8mb4's classic index limit.
    task_id: Mapped[str] = mapped_column(sa.String(191), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    queue: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)

    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", sa.JSON)
    client_id: Mapped[str | None] = mapped_column(sa.String(128))

    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    llm_latency_ms: Mapped[int | None] = mapped_column(sa.Integer)

    content: Mapped[str | None] = mapped_column(LongText)
    reasoning_content: Mapped[str | None] = mapped_column(LongText)
    finish_reason: Mapped[str | None] = mapped_column(sa.String(32))
    usage: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)

    callback_url: Mapped[str | None] = mapped_column(sa.String(2048))
    callback_status: Mapped[str | None] = mapped_column(sa.String(16))
    callback_attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    callback_error: Mapped[str | None] = mapped_column(sa.Text)
