"""``sytq records get TABLE ID``: one row of a record-mode table, read straight from the record database."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from sqlalchemy.exc import DBAPIError

from sytq.settings import get_settings
from sytq.storage import RecordStore, RecordTableNotAllowed
from sytq.storage.db_errors import describe
from sytq_cli.client import CommandError


async def _read(table: str, record_id: int) -> dict[str, Any] | None:
    settings = get_settings()
    store = RecordStore.from_url(
        settings.effective_record_database_url, settings.record_table_allowlist, retry_for_seconds=0
    )
    try:
        return await store.read_row(table, record_id)
    finally:
        await store.close()


def _cmd_get(args: argparse.Namespace) -> int:
    try:
        row = asyncio.run(_read(args.table, args.id))
    except RecordTableNotAllowed as exc:
        raise CommandError(str(exc)) from exc
    except DBAPIError as exc:
        raise CommandError(f"{args.table} row {args.id}: {describe(exc)}") from exc
    if row is None:
        raise CommandError(f"{args.table} has no row with id {args.id}")
    print(json.dumps(row, ensure_ascii=False, indent=2, default=str))
    return 0


def add_records_commands(sub: Any) -> None:
    records = sub.add_parser("records", help="read rows of record-mode (llm:process) tables")
    actions = records.add_subparsers(dest="records_command", required=True, metavar="ACTION")
    get = actions.add_parser(
        "get", help="print one row as JSON (SYTQ_RECORD_DATABASE_URL, allowlisted tables)"
    )
    get.add_argument("table")
    get.add_argument("id", type=int)
    get.set_defaults(handler=_cmd_get)
