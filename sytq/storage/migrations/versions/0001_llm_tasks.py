"""create sytq_llm_tasks

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

long_text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "sytq_llm_tasks",
        sa.Column("task_id", sa.String(191), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("messages", sa.JSON, nullable=True),
        sa.Column("parameters", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("started_at", timestamp, nullable=True),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.Column("llm_latency_ms", sa.Integer, nullable=True),
        sa.Column("content", long_text, nullable=True),
        sa.Column("reasoning_content", long_text, nullable=True),
        sa.Column("finish_reason", sa.String(32), nullable=True),
        sa.Column("usage", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("callback_url", sa.String(2048), nullable=True),
        sa.Column("callback_status", sa.String(16), nullable=True),
        sa.Column("callback_attempts", sa.Integer, nullable=False),
        sa.Column("callback_error", sa.Text, nullable=True),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_sytq_llm_tasks_status", "sytq_llm_tasks", ["status"])
    op.create_index("ix_sytq_llm_tasks_created_at", "sytq_llm_tasks", ["created_at"])


def downgrade() -> None:
    op.drop_table("sytq_llm_tasks")
