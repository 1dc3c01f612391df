"""Handler for ``callback:deliver``: one signed POST; the outcome is stored on the task row."""

from __future__ import annotations

from pydantic import ValidationError

from sytq.callbacks import CallbackDeliveryError, UnsafeCallbackURL, deliver_callback
from sytq.log_setup import task_context
from sytq.metrics import CALLBACKS
from sytq.queue import SkipRetry, Task
from sytq.storage import CALLBACK_DELIVERED, CALLBACK_FAILED, CALLBACK_PENDING
from sytq.tasks import CallbackPayload
from worker.pipeline import Pipeline


async def handle_callback(pipeline: Pipeline, task: Task) -> None:
    try:
        payload = CallbackPayload.model_validate_json(task.payload)
    except ValidationError as exc:
        raise SkipRetry(f"invalid callback:deliver payload: {exc}") from exc
    settings, store = pipeline.settings, pipeline.store
    attempt = task.retried + 1
    secret = settings.callback_secret.get_secret_value() if settings.callback_secret else None
    with task_context(payload.task_id, task.type):
        try:
            await deliver_callback(
                payload.task_id,
                payload.url,
                payload.body,
                secret=secret,
                allow_nets=settings.callback_allow_nets,
                timeout_seconds=settings.callback_timeout_seconds,
                proxy=pipeline.callback_proxy,
            )
        except UnsafeCallbackURL as exc:
            CALLBACKS.labels(outcome="refused").inc()
            await store.set_callback_state(payload.task_id, CALLBACK_FAILED, attempt, str(exc))
            raise SkipRetry(str(exc)) from exc
        except CallbackDeliveryError as exc:
            final = task.retried >= task.max_retry
            CALLBACKS.labels(outcome="gave_up" if final else "retry").inc()
            state = CALLBACK_FAILED if final else CALLBACK_PENDING
            await store.set_callback_state(payload.task_id, state, attempt, str(exc))
            if final:
                raise SkipRetry(str(exc)) from exc
            raise
        CALLBACKS.labels(outcome="delivered").inc()
        await store.set_callback_state(payload.task_id, CALLBACK_DELIVERED, attempt, None)
