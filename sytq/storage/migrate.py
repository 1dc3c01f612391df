"""Run the packaged Alembic migrations from code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from sytq.storage.engine import create_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_NAME = "sytq_migrations"


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call from several pods at once."""
    engine = create_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            mysql = connection.dialect.name in ("mysql", "mariadb")
            if mysql:
                # Pods starting together must not race to create the same tables.
                connection.execute(sa.text("SELECT GET_LOCK(:n, 120)"), {"n": _LOCK_NAME})
            try:
                command.upgrade(alembic_config(connection), revision)
                connection.commit()
            finally:
                if mysql:
                    connection.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
    finally:
        engine.dispose()
