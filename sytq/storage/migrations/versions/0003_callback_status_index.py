"""index on callback_status

Revision ID: 0003
Revises: 0002

The reconciler looks for callbacks left pending; without an index that is a scan of every row.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sytq_llm_tasks_callback_status", "sytq_llm_tasks", ["callback_status"])


def downgrade() -> None:
    op.drop_index("ix_sytq_llm_tasks_callback_status", "sytq_llm_tasks")
