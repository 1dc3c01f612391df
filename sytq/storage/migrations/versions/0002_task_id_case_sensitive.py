"""task ids compared byte for byte on MySQL/MariaDB

Revision ID: 0002
Revises: 0001

The table's collation (utf8mb4_unicode_ci) made ``Abc`` and ``abc`` (and ``abc `` with a trailing
space) one primary key: two queue tasks, whose ids Redis tells apart, shared one row. The key
column gets a binary collation that also does not pad: MariaDB's ``utf8mb4_nopad_bin``, MySQL 8's
``utf8mb4_0900_bin``, else ``utf8mb4_bin``. SQLite compares text byte for byte already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PREFERRED = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _alter_key(collation: str) -> None:
    op.execute(
        f"ALTER TABLE sytq_llm_tasks MODIFY task_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    available = set(
        bind.execute(
            sa.text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :names"
            ),
            {"names": _PREFERRED},
        ).scalars()
    )
    _alter_key(next(name for name in _PREFERRED if name in available))


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        _alter_key("utf8mb4_unicode_ci")
