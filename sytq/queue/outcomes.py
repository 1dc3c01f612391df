"""What happens to a finished task: the acknowledgement, retry or archive call, decided as asynq does."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sytq.queue import redis_ops
from sytq.queue.codec import TaskMessage
from sytq.queue.config import ServerConfig
from sytq.queue.held import HeldTask
from sytq.queue.models import RetryIn, SkipRetry
from sytq.queue.redis_ops import Call, CallBatcher
from sytq.queue.retry import default_retry_delay
from sytq.queue.task import Task
from sytq.queue.task_events import task_event

log = logging.getLogger(__name__)

CORRUPT_TASK_TYPE = "sytq:corrupt-message"  # type of an archived task whose stored message was unreadable
_MAX_RETRY_DELAY = 365 * 86400.0  # a retry_delay beyond a year is a bug; keep the zset score sane


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass
class Outcome:
    queue: str
    task_id: str
    kind: str  # done | retry | archive | requeue | drop | forget (lease lost: nothing to write)
    call: Call | None = None  # retry / archive / requeue / drop
    ack_item: redis_ops.AckItem | None = None  # done


class Outcomes:
    """Builds the handler's Task and, once it finished, the Redis call for its outcome."""

    def __init__(self, config: ServerConfig, writer: CallBatcher, channel: str) -> None:
        self._config = config
        self._writer = writer
        self.channel = channel  # "" = no task events

    def task_for(self, queue: str, task_id: str, msg: TaskMessage, deadline: float) -> Task:
        return Task(
            self._writer,
            id=msg.id or task_id,
            type=msg.type,
            payload=msg.payload,
            queue=queue,
            retried=msg.retried,
            max_retry=msg.retry,
            headers=dict(msg.headers),
            deadline=datetime.fromtimestamp(deadline, UTC) if deadline else None,
        )

    def finished(self, task_id: str, held: HeldTask, task: Task, error: BaseException | None) -> Outcome:
        msg, queue, now = held.msg, held.queue, time.time()
        if error is None:
            if msg.retention > 0:
                done = msg.replace(completed_at=int(now)).encode()
                expire = int(now) + msg.retention
                event = self._event(task_id, queue, msg.type, "completed", msg.retried, None)
            else:
                done, expire = b"", 0
                event = self._event(task_id, queue, msg.type, "succeeded", msg.retried, None)
            result = task.attached_result or b""
            ack = (task_id, msg.unique_key, done, expire, event, result)
            return Outcome(queue, task_id, "done", ack_item=ack)
        kind, call = self.failure(queue, task_id, msg, error, task, now)
        return Outcome(queue, task_id, kind, call=call)

    def failure(
        self, queue: str, task_id: str, msg: TaskMessage, error: BaseException, task: Task, now: float
    ) -> tuple[str, Call]:
        """Archive (SkipRetry, or out of retries) or schedule a retry, as asynq does."""
        text = error_text(error)
        if isinstance(error, SkipRetry) or msg.retried >= msg.retry:
            archived = msg.replace(error_msg=text, last_failed_at=int(now)).encode()
            return "archive", self._archive_call(queue, task_id, archived, msg.type, msg.retried, text, now)
        delay = self._retry_delay(msg, error, task)
        retried = msg.replace(retried=msg.retried + 1, error_msg=text, last_failed_at=int(now))
        return "retry", redis_ops.retry_call(
            queue,
            task_id,
            retried.encode(),
            math.ceil(now + delay),
            day=utc_day(now),
            is_failure=True,
            channel=self.channel,
            event=self._event(task_id, queue, msg.type, "retry", retried.retried, text),
        )

    def quarantine(self, queue: str, task_id: str, raw: bytes, error: Exception, now: float) -> Call:
        """Archive an undecodable task under a valid message (so asynq tools can still list the
        queue) that keeps the original bytes as its payload."""
        text = f"corrupt task message: {error}"
        msg = TaskMessage(
            type=CORRUPT_TASK_TYPE,
            payload=raw,
            id=task_id,
            queue=queue,
            retry=0,
            error_msg=text,
            last_failed_at=int(now),
        )
        return self._archive_call(queue, task_id, msg.encode(), CORRUPT_TASK_TYPE, 0, text, now)

    def _archive_call(
        self, queue: str, task_id: str, raw: bytes, task_type: str, retried: int, text: str, now: float
    ) -> Call:
        event = self._event(task_id, queue, task_type, "archived", retried, text)
        return redis_ops.archive_call(
            queue, task_id, raw, int(now), day=utc_day(now), channel=self.channel, event=event
        )

    def _retry_delay(self, msg: TaskMessage, error: BaseException, task: Task) -> float:
        if isinstance(error, RetryIn):
            return min(error.delay, _MAX_RETRY_DELAY) if math.isfinite(error.delay) else _MAX_RETRY_DELAY
        try:
            delay = float(self._config.retry_delay(msg.retried, error, task))
        except Exception:
            log.exception("retry_delay function failed; using asynq's default")
            delay = default_retry_delay(msg.retried, error, task)
        if not math.isfinite(delay) or delay < 0:
            return default_retry_delay(msg.retried, error, task)
        return min(delay, _MAX_RETRY_DELAY)

    def _event(
        self, task_id: str, queue: str, task_type: str, state: str, retried: int, error: str | None
    ) -> str:
        if not self.channel:
            return ""
        return task_event(task_id, queue, task_type, state, retried, error)


def error_text(error: BaseException) -> str:
    text = str(error) if not isinstance(error, RetryIn) else error.message
    return text or type(error).__name__
