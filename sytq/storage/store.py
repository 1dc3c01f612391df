"""The task store: the repository the worker writes and the API reads (GET /api/v1/tasks/{id}).

Calls are sync SQLAlchemy run on a small private thread pool, so the event loop never blocks on
the database. A lost database connection (restart, failover) is waited out for up to
``retry_for_seconds`` instead of failing the task: an LLM answer already paid for is not thrown away.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sytq.storage.batching import MicroBatcher
from sytq.storage.db_errors import describe, is_permanent
from sytq.storage.engine import create_engine
from sytq.storage.models import (
    CALLBACK_PENDING,
    STATUS_FAILED,
    STATUS_QUEUED,
    STATUS_RUNNING,
    STATUS_SUCCEEDED,
    LLMTaskRow,
)
from sytq.storage.mysql_literals import insert_statements
from sytq.storage.runner import DBRunner


def utcnow() -> datetime:
    """Naive UTC, as stored (MySQL DATETIME has no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class RowRefusedError(Exception):
    """The database refused this task's row for what it holds (not for a lost connection):
    writing it again cannot succeed, so the task fails alone and its batch neighbours are written."""

    def __init__(self, task_id: str, cause: DBAPIError) -> None:
        super().__init__(f"the database refused the row of task {task_id}: {describe(cause)}")
        self.task_id = task_id
        self.cause = cause


Item = TypeVar("Item")
Written = TypeVar("Written")


async def write_isolating_refusals(
    write: Callable[[list[Item]], Awaitable[Sequence[Written]]],
    items: list[Item],
    task_id_of: Callable[[Item], str],
) -> list[Written | BaseException]:
    """``write(items)``; when the database refuses the batch, it is split in halves until the
    refused rows stand alone: each of those gets a ``RowRefusedError``, every other row is written
    (a failed statement rolls its whole transaction back, so nothing is written twice)."""
    try:
        return list(await write(items))
    except DBAPIError as exc:
        if not is_permanent(exc):
            raise
        if len(items) == 1:
            return [RowRefusedError(task_id_of(items[0]), exc)]
    half = len(items) // 2
    first = await write_isolating_refusals(write, items[:half], task_id_of)
    return first + await write_isolating_refusals(write, items[half:], task_id_of)


def isolating_refusals(
    write: Callable[[list[Item]], Awaitable[Sequence[Written]]], task_id_of: Callable[[Item], str]
) -> Callable[[list[Item]], Awaitable[list[Written | BaseException]]]:
    """``write`` for a MicroBatcher, with refused rows isolated (``write_isolating_refusals``)."""

    async def isolating(items: list[Item]) -> list[Written | BaseException]:
        return await write_isolating_refusals(write, items, task_id_of)

    return isolating


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    type: str
    queue: str
    model: str | None
    status: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    llm_latency_ms: int | None
    content: str | None
    reasoning_content: str | None
    finish_reason: str | None
    usage: dict[str, Any] | None
    error: str | None
    callback_url: str | None
    callback_status: str | None
    callback_attempts: int
    metadata: dict[str, Any]
    callback_error: str | None = None
    client_id: str | None = None  # the submitter (tenant): who may read the task once it left the queue

    @property
    def finished(self) -> bool:
        return self.status in (STATUS_SUCCEEDED, STATUS_FAILED)

    @classmethod
    def from_row(cls, row: LLMTaskRow) -> TaskRecord:
        created = _aware(row.created_at)
        assert created is not None
        return cls(
            task_id=row.task_id,
            type=row.type,
            queue=row.queue,
            model=row.model,
            status=row.status,
            attempts=row.attempts,
            created_at=created,
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            llm_latency_ms=row.llm_latency_ms,
            content=row.content,
            reasoning_content=row.reasoning_content,
            finish_reason=row.finish_reason,
            usage=row.usage,
            error=row.error,
            callback_url=row.callback_url,
            callback_status=row.callback_status,
            callback_attempts=row.callback_attempts,
            metadata=dict(row.meta or {}),
            callback_error=row.callback_error,
            client_id=row.client_id,
        )


@dataclass(frozen=True)
class NewTask:
    """What is known about a task before the LLM is called."""

    task_id: str
    type: str
    queue: str
    model: str | None = None
    messages: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    client_id: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True)
class LLMOutcome:
    content: str
    reasoning_content: str | None
    finish_reason: str | None
    usage: dict[str, Any] | None
    llm_latency_ms: int
    model: str | None = None


class TaskStore:
    def __init__(self, engine: sa.Engine, *, threads: int = 8, retry_for_seconds: float = 120.0) -> None:
        self.engine = engine
        self._db = DBRunner(engine, threads=threads, retry_for_seconds=retry_for_seconds)
        self._run = self._db.run
        self._insert_batcher: MicroBatcher[dict[str, Any], bool] | None = None
        self._success_batcher: MicroBatcher[_Success, TaskRecord | None] | None = None
        self._first_answer_batcher: MicroBatcher[dict[str, Any], TaskRecord | None] | None = None
        self._exists_batcher: MicroBatcher[str, bool] | None = None

    @classmethod
    def from_url(cls, url: str, *, threads: int = 8, retry_for_seconds: float = 120.0) -> TaskStore:
        # A store that retries (the worker's) can skip the per-transaction ping; see create_engine.
        engine = create_engine(url, pool_size=threads, lean_checkout=retry_for_seconds > 0)
        return cls(engine, threads=threads, retry_for_seconds=retry_for_seconds)

    @property
    def db(self) -> DBRunner:
        """The store's runner (thread pool, outage wait), for queries kept in modules of their own."""
        return self._db

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        return await self._db.ping()

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord | None:
        def _get(session: Session) -> TaskRecord | None:
            row = session.get(LLMTaskRow, task_id)
            return TaskRecord.from_row(row) if row is not None else None

        return await self._run(_get)

    async def exists(self, task_id: str) -> bool:
        """Whether the task has a row; concurrent lookups share one batched query."""
        if self._exists_batcher is None:
            self._exists_batcher = MicroBatcher(self._existing_ids)
        return await self._exists_batcher.submit(task_id)

    async def _existing_ids(self, task_ids: list[str]) -> list[bool]:
        def _find(session: Session) -> set[str]:
            connection = session.connection()
            if connection.dialect.name == "mysql":
                quote_name, quote_value = _literal_quoting(connection)
                ids = ",".join([quote_value(task_id) for task_id in task_ids])
                statement = f"SELECT task_id FROM {quote_name(_TABLE.name)} WHERE task_id IN ({ids})"
                return set(_execute_literal(connection, statement).scalars())
            column = _TABLE.c.task_id
            return set(session.scalars(sa.select(column).where(column.in_(task_ids))))

        found = await self._run(_find)
        return [task_id in found for task_id in task_ids]

    # --- writes --------------------------------------------------------------------------------

    async def create_queued(self, task: NewTask) -> bool:
        """Insert the row at submit time (status queued); False when it already exists."""
        try:
            statement = sa.insert(_TABLE).values(_new_values(task, STATUS_QUEUED, 0))
            await self._run(functools.partial(_execute, statement))
        except IntegrityError:
            return False
        return True

    async def begin_attempt(self, task: NewTask, attempt: int) -> TaskRecord:
        """Create or touch the row for a run; the returned record tells if it is already finished."""

        def _touch(session: Session) -> TaskRecord | None:
            row = session.get(LLMTaskRow, task.task_id, with_for_update=True)
            if row is None:
                return None
            if not TaskRecord.from_row(row).finished:
                row.status = STATUS_RUNNING
                row.attempts = max(row.attempts, attempt)
                row.started_at = row.started_at or utcnow()
                _fill_request(row, task)
            return TaskRecord.from_row(row)

        # Insert first: the common case is a new task (batched with its neighbours, no lock on a
        # missing key); a re-delivery or retry finds the row and touches it.
        if attempt == 1:
            values = _new_values(task, STATUS_RUNNING, attempt)
            if await self._inserts().submit(values):
                return _record_from_values(values)
        touched = await self._run(_touch)
        if touched is not None:
            return touched
        values = _new_values(task, STATUS_RUNNING, attempt)
        if not await self._inserts().submit(values):
            raise LookupError(f"task {task.task_id}: row neither found nor insertable")
        return _record_from_values(values)

    def _inserts(self) -> MicroBatcher[dict[str, Any], bool]:
        if self._insert_batcher is None:
            self._insert_batcher = MicroBatcher(isolating_refusals(self._insert_rows, _row_task_id))
        return self._insert_batcher

    def _successes(self) -> MicroBatcher[_Success, TaskRecord | None]:
        if self._success_batcher is None:
            self._success_batcher = MicroBatcher(isolating_refusals(self._store_successes, _success_task_id))
        return self._success_batcher

    async def _insert_rows(self, values: list[dict[str, Any]]) -> list[bool]:
        """Insert all rows in one statement; True for each row inserted, False where it existed."""
        try:
            await self._run(lambda session: session.execute(sa.insert(_TABLE), values))
            return [True] * len(values)
        except IntegrityError:
            pass
        # Some ids exist (re-deliveries): one by one, to learn which.
        outcomes = []
        for value in values:
            statement = sa.insert(_TABLE).values(value)
            try:
                await self._run(functools.partial(_execute, statement))
                outcomes.append(True)
            except IntegrityError:
                outcomes.append(False)
        return outcomes

    async def mark_succeeded(self, started: TaskRecord, outcome: LLMOutcome) -> TaskRecord:
        """Store the answer on the row ``begin_attempt`` returned (one UPDATE, the hot path of retries).

        If another delivery stored an answer first, that stored row wins and is returned."""
        values = _answer_values(outcome, started.model, started.callback_url, started.callback_status)
        stored = await self._successes().submit((started, values))
        if stored is not None:
            return stored
        return dataclasses.replace(started, **(values | {"finished_at": _aware(values["finished_at"])}))

    async def store_first_answer(
        self, task: NewTask, outcome: LLMOutcome, attempt: int, *, started_at: datetime
    ) -> TaskRecord:
        """A first delivery's only write: the whole row, request and answer, inserted in one batched
        statement (no row before the call; a crash before this leaves nothing half-written).

        Should a row exist after all (an earlier delivery of the same id), the answer goes onto it,
        unless it already holds one: then that stored row wins and is returned."""
        values = _new_values(task, STATUS_SUCCEEDED, attempt, started_at=started_at)
        values |= _answer_values(outcome, task.model, task.callback_url, None)
        stored = await self._first_answers().submit(values)
        return stored if stored is not None else _record_from_values(values)

    def _first_answers(self) -> MicroBatcher[dict[str, Any], TaskRecord | None]:
        if self._first_answer_batcher is None:
            # The hot path's one write: a few batches at once, so one slow statement holds no queue.
            write = isolating_refusals(self._insert_answered_rows, _row_task_id)
            self._first_answer_batcher = MicroBatcher(write, writers=3)
        return self._first_answer_batcher

    async def _insert_answered_rows(self, rows: list[dict[str, Any]]) -> list[TaskRecord | None]:
        try:
            await self._run(lambda session: _insert_many(session.connection(), rows))
            return [None] * len(rows)
        except IntegrityError:
            pass
        # Some ids have rows already (re-deliveries): insert the rest, answer onto the others.
        ids = [row["task_id"] for row in rows]

        def _write(session: Session) -> list[TaskRecord | None]:
            answers = {row["task_id"]: {name: row[name] for name in _ANSWER_COLUMNS} for row in rows}
            existing, done_before = _answer_onto_rows(session, answers)
            fresh = [row for row in rows if row["task_id"] not in existing]
            if fresh:
                session.execute(sa.insert(_TABLE), fresh)
            return [done_before.get(task_id) for task_id in ids]

        return await self._run(_write)

    async def _store_successes(self, items: list[_Success]) -> list[TaskRecord | None]:
        """One transaction for many answers; None where stored now, the stored row where one was first."""
        ids = [started.task_id for started, _ in items]

        def _write(session: Session) -> list[TaskRecord | None]:
            _, done_before = _answer_onto_rows(session, {started.task_id: new for started, new in items})
            return [done_before.get(task_id) for task_id in ids]

        return await self._run(_write)

    async def mark_failed(self, task_id: str, error: str, *, final: bool) -> TaskRecord:
        """Record an attempt's error; ``final`` ends the task as failed (no more retries)."""

        def _fail(session: Session) -> TaskRecord:
            row = _must_get(session, task_id)
            if row.status == STATUS_SUCCEEDED:
                return TaskRecord.from_row(row)
            row.error = clip_text(error)
            if final:
                row.status = STATUS_FAILED
                row.finished_at = utcnow()
                if row.callback_url:
                    row.callback_status = CALLBACK_PENDING
            return TaskRecord.from_row(row)

        return await self._run(_fail)

    async def finish_lost(self, task: NewTask, error: str, attempts: int = 0) -> TaskRecord | None:
        """Fail a task the queue will not run again (archived, or gone) on its row, creating the row
        if it has none; its callback becomes pending. None when the row was final already.

        ``attempts`` is how many runs the queue started (kept if the row counted more). A row the
        database refuses with the request's values (a poison payload) is written bare."""

        def _finish(session: Session, new: NewTask) -> TaskRecord | None:
            row = session.get(LLMTaskRow, new.task_id, with_for_update=True)
            if row is None:
                values = _new_values(new, STATUS_FAILED, attempts) | {
                    "error": clip_text(error),
                    "finished_at": utcnow(),
                    "callback_status": CALLBACK_PENDING if new.callback_url else None,
                }
                session.execute(sa.insert(_TABLE).values(values))
                return _record_from_values(values)
            if TaskRecord.from_row(row).finished:
                return None
            row.status = STATUS_FAILED
            row.attempts = max(row.attempts, attempts)
            row.error = clip_text(error)
            row.finished_at = utcnow()
            if row.callback_url:
                row.callback_status = CALLBACK_PENDING
            return TaskRecord.from_row(row)

        try:
            return await self._run(functools.partial(_finish, new=task))
        except IntegrityError:  # a worker inserted the row meanwhile: finish that row instead
            return await self._run(functools.partial(_finish, new=task))
        except DBAPIError as exc:
            if not is_permanent(exc):
                raise
        bare = NewTask(task.task_id, task.type, task.queue, callback_url=task.callback_url)
        return await self._run(functools.partial(_finish, new=bare))

    async def set_callback_state(
        self, task_id: str, status: str | None, attempts: int, error: str | None
    ) -> None:
        def _set(session: Session) -> None:
            row = session.get(LLMTaskRow, task_id)
            if row is not None:
                row.callback_status = status
                row.callback_attempts = attempts
                row.callback_error = clip_text(error) if error else None

        await self._run(_set)


# A TEXT column holds 65,535 bytes; 4-byte UTF-8 characters make that 16,383 characters.
_TEXT_CHARS = 16_000


def clip_text(text: str) -> str:
    """Text cut to what a TEXT column stores whatever its characters (a longer one is refused)."""
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 1] + "…"


def _row_task_id(values: dict[str, Any]) -> str:
    return str(values["task_id"])


def _success_task_id(item: tuple[TaskRecord, dict[str, Any]]) -> str:
    return item[0].task_id


def _new_values(
    task: NewTask, status: str, attempt: int, *, started_at: datetime | None = None
) -> dict[str, Any]:
    """Column values of a new row (plain dicts: the ORM costs more CPU than the write on this path)."""
    now = started_at or utcnow()
    return {
        "task_id": task.task_id,
        "type": task.type,
        "queue": task.queue,
        "model": task.model,
        "status": status,
        "attempts": attempt,
        "messages": task.messages,
        "parameters": task.parameters,
        "metadata": task.metadata,
        "client_id": task.client_id,
        "created_at": now,
        "started_at": now if status in (STATUS_RUNNING, STATUS_SUCCEEDED) else None,
        "callback_url": task.callback_url,
        "callback_attempts": 0,
    }


_ANSWER_COLUMNS = (
    "status",
    "content",
    "reasoning_content",
    "finish_reason",
    "usage",
    "llm_latency_ms",
    "model",
    "error",
    "finished_at",
    "callback_status",
)


def _answer_values(
    outcome: LLMOutcome, model: str | None, callback_url: str | None, callback_status: str | None
) -> dict[str, Any]:
    """The columns an answer sets (``_ANSWER_COLUMNS``); a callback becomes pending with it."""
    return {
        "status": STATUS_SUCCEEDED,
        "content": outcome.content,
        "reasoning_content": outcome.reasoning_content,
        "finish_reason": outcome.finish_reason,
        "usage": outcome.usage,
        "llm_latency_ms": outcome.llm_latency_ms,
        "model": outcome.model or model,
        "error": None,
        "finished_at": utcnow(),
        "callback_status": CALLBACK_PENDING if callback_url else callback_status,
    }


def _answer_onto_rows(
    session: Session, answers: dict[str, dict[str, Any]]
) -> tuple[set[str], dict[str, TaskRecord]]:
    """Write each answer onto its task's row unless the row already holds one (another delivery
    stored it first). Returns the ids that have rows and the rows answered before, which win.

    The rows are locked reading two columns only; the full row (JSON messages and all) is loaded
    just for the rare task another delivery already answered."""
    columns = _TABLE.c
    locked = session.execute(
        sa.select(columns.task_id, columns.status).where(columns.task_id.in_(list(answers))).with_for_update()
    )
    statuses: dict[str, str] = {task_id: status for task_id, status in locked}
    done_before = _load_records(session, [t for t, status in statuses.items() if status == STATUS_SUCCEEDED])
    updates = {t: answer for t, answer in answers.items() if t in statuses and t not in done_before}
    if updates:
        _write_answers(session.connection(), updates)
    return set(statuses), done_before


def _load_records(session: Session, task_ids: list[str]) -> dict[str, TaskRecord]:
    """Full rows of these ids (JSON messages and all): only for the rare already-answered task."""
    if not task_ids:
        return {}
    rows = session.scalars(sa.select(LLMTaskRow).where(LLMTaskRow.task_id.in_(task_ids)))
    return {row.task_id: TaskRecord.from_row(row) for row in rows}


def _record_from_values(values: dict[str, Any]) -> TaskRecord:
    return TaskRecord(
        task_id=values["task_id"],
        type=values["type"],
        queue=values["queue"],
        model=values["model"],
        status=values["status"],
        attempts=values["attempts"],
        created_at=values["created_at"].replace(tzinfo=UTC),
        started_at=_aware(values["started_at"]),
        finished_at=_aware(values.get("finished_at")),
        llm_latency_ms=values.get("llm_latency_ms"),
        content=values.get("content"),
        reasoning_content=values.get("reasoning_content"),
        finish_reason=values.get("finish_reason"),
        usage=values.get("usage"),
        error=values.get("error"),
        callback_url=values["callback_url"],
        callback_status=values.get("callback_status"),
        callback_attempts=0,
        metadata=dict(values["metadata"] or {}),
        client_id=values.get("client_id"),
    )


_TABLE: sa.Table = LLMTaskRow.__table__  # type: ignore[assignment]
# (the row begin_attempt returned, the column values of its answer)
_Success = tuple[TaskRecord, dict[str, Any]]


_STATEMENT_BYTES = 1_000_000  # keep each UPDATE well under MySQL's max_allowed_packet (16 MB)


def _write_answers(connection: sa.Connection, updates: dict[str, dict[str, Any]]) -> None:
    """Store many answers with a few UPDATE statements, each column a CASE on the task id.

    An executemany UPDATE is one round trip per row (PyMySQL folds only INSERTs), and each round trip
    has to win the GIL back from the busy event loop: 256 rows took 100-500 ms. SQL text on the driver
    skips SQLAlchemy's per-batch compile of thousands of parameters."""
    chunk: dict[str, dict[str, Any]] = {}
    size = 0
    for task_id, values in updates.items():
        chunk[task_id] = values
        size += len(values.get("content") or "") + len(values.get("reasoning_content") or "") + 200
        if size >= _STATEMENT_BYTES:
            _update_chunk(connection, chunk)
            chunk, size = {}, 0
    if chunk:
        _update_chunk(connection, chunk)


def _update_chunk(connection: sa.Connection, updates: dict[str, dict[str, Any]]) -> None:
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    params: list[Any] = []
    assignments = []
    for name in next(iter(updates.values())):
        process = _TABLE.c[name].type.bind_processor(dialect)
        column = [process(values[name]) if process else values[name] for values in updates.values()]
        if all(value == column[0] for value in column):
            assignments.append(f"{quote(name)} = {mark}")
            params.append(column[0])
            continue
        whens = f" WHEN {mark} THEN {mark}" * len(column)
        assignments.append(f"{quote(name)} = CASE {quote('task_id')}{whens} END")
        for task_id, value in zip(updates, column, strict=True):
            params += (task_id, value)
    params += updates
    sql = (
        f"UPDATE {quote(_TABLE.name)} SET {', '.join(assignments)} "
        f"WHERE {quote('task_id')} IN ({', '.join([mark] * len(updates))})"
    )
    connection.exec_driver_sql(sql, tuple(params))


def _insert_many(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys (column names) in as few statements as fit."""
    if connection.dialect.name != "mysql":
        connection.execute(sa.insert(_TABLE), rows)
        return
    quote_name, quote_value = _literal_quoting(connection)
    names = list(rows[0])
    statements = insert_statements(
        quote_name(_TABLE.name),
        [quote_name(name) for name in names],
        ([row[name] for name in names] for row in rows),
        quote_value,
    )
    for statement in statements:
        _execute_literal(connection, statement)


# MySQL/MariaDB hot-path statements are literal SQL text (see mysql_literals: the driver's per-value
# escaping was most of the database threads' CPU). These two helpers are all such statements use.
def _literal_quoting(connection: sa.Connection) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """Identifier quoting, and string literals quoted by the driver connection's own escaping
    (which honours the server's NO_BACKSLASH_ESCAPES mode)."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    quote_value: Callable[[str], str] = dbapi.escape
    return connection.dialect.identifier_preparer.quote, quote_value


def _execute_literal(connection: sa.Connection, statement: str) -> sa.CursorResult[Any]:
    # The driver still applies %-formatting to statement text, hence the doubled '%'.
    return connection.exec_driver_sql(statement.replace("%", "%%"))


def _execute(statement: sa.Executable, session: Session) -> None:
    session.execute(statement)


def _fill_request(row: LLMTaskRow, task: NewTask) -> None:
    """Complete a row created at submit time (status queued) with what the worker knows."""
    row.model = row.model or task.model
    row.messages = row.messages or task.messages
    row.parameters = row.parameters or task.parameters
    row.meta = row.meta or task.metadata
    row.client_id = row.client_id or task.client_id
    row.callback_url = row.callback_url or task.callback_url


def _must_get(session: Session, task_id: str) -> LLMTaskRow:
    row = session.get(LLMTaskRow, task_id, with_for_update=True)
    if row is None:
        raise LookupError(f"task {task_id} has no row; begin_attempt must run first")
    return row
