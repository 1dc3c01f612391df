"""A demo ``valuation_records`` table (the Go original's columns) in the embedded SQLite, for ``make run``."""

from __future__ import annotations

import sqlalchemy as sa

DEMO_TABLE = "valuation_records"
_SYSTEM = "你是一位二手车估值师，请给出估价区间和简短理由。"
DEMO_ROWS = (
    (1, "请估值：2019 款丰田卡罗拉 1.2T 自动挡，行驶 6 万公里，无事故。"),
    (2, "请估值：2017 款本田雅阁 2.0L，行驶 9 万公里，一次小刮擦。"),
    (3, "请估值：2021 款比亚迪汉 EV，行驶 3 万公里，电池健康度 95%。"),
)


def demo_table(metadata: sa.MetaData) -> sa.Table:
    """The original's DDL in SQLAlchemy terms (SQLite has no ON UPDATE; updated_at is left as is)."""
    return sa.Table(
        DEMO_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(50)),
        sa.Column("user_message", sa.Text),
        sa.Column("sys_message", sa.Text),
        sa.Column("report", sa.Text),
        sa.Column("failed_times", sa.Integer, server_default="0"),
        sa.Column("failed_info", sa.Text),
        sa.Column("progress", sa.String(50)),
        sa.Column("progress_info", sa.Text),
        sa.Column("current_task_node", sa.Integer, server_default="0"),
        sa.Column("callback_url", sa.String(255)),
        sa.Column("created_at", sa.TIMESTAMP, server_default=sa.func.current_timestamp()),
        sa.Column("updated_at", sa.TIMESTAMP, server_default=sa.func.current_timestamp()),
    )


def ensure_demo_records(url: str) -> None:
    """Create the table if missing and add demo rows 1-3 where absent (rows already there are kept)."""
    engine = sa.create_engine(url)
    try:
        table = demo_table(sa.MetaData())
        table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            present = set(
                conn.scalars(sa.select(table.c.id).where(table.c.id.in_([r[0] for r in DEMO_ROWS])))
            )
            rows = [
                {"id": rid, "status": "待处理", "sys_message": _SYSTEM, "user_message": user}
                for rid, user in DEMO_ROWS
                if rid not in present
            ]
            if rows:
                conn.execute(sa.insert(table), rows)
    finally:
        engine.dispose()
