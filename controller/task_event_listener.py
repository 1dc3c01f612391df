"""Listens to the workers' task events on Redis pub/sub and wakes the matching LLMTask mirrors."""

from __future__ import annotations

from controller.context import ControllerContext
from sytq.queue import TASK_EVENTS_CHANNEL, parse_task_event, subscribe


async def listen(ctx: ControllerContext) -> None:
    """Run until cancelled; after a lost subscription every mirror is woken to resync."""

    def on_message(message: bytes) -> None:
        header = parse_task_event(message)
        if header is not None:
            ctx.wakeups.notify(header.task_id, header.sent_at)

    # events sent while we were not subscribed are lost: wake every mirror on (re)subscribe
    await subscribe(ctx.redis, TASK_EVENTS_CHANNEL, on_message, on_subscribed=ctx.wakeups.notify_all)
