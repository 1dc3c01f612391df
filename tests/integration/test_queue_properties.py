"""Property: any sequence of enqueue / dequeue / succeed / fail / forward / recover / requeue /
inspector moves keeps every task in exactly one state structure, matching its hash's state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sytq.queue import EnqueueRequest, Inspector, QueueClient, QueueError
from sytq.queue import redis_ops as ops
from sytq.queue.codec import TaskMessage
from sytq.queue.redis_ops import RedisOps
from tests.harness.services import RedisServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

Q = "prop"
FAR_FUTURE = int(time.time()) + 10 * 365 * 86400
DAY = "2030-01-01"

op_strategy = st.one_of(
    st.tuples(st.just("enqueue"), st.booleans(), st.booleans()),
    st.tuples(st.just("dequeue"), st.integers(1, 4)),
    st.tuples(st.just("succeed"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("fail"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("requeue"), st.integers(0, 50)),
    st.tuples(st.just("forward")),
    st.tuples(st.just("recover")),
    st.tuples(st.just("janitor")),
    st.tuples(st.just("inspect"), st.sampled_from(["delete", "run", "archive"]), st.integers(0, 50)),
)


async def _structures(client: aioredis.Redis) -> dict[str, list[str]]:
    def ids(values: list[bytes]) -> list[str]:
        return [v.decode() for v in values]

    out = {
        "pending": ids(await client.lrange(f"asynq:{{{Q}}}:pending", 0, -1)),
        "active": ids(await client.lrange(f"asynq:{{{Q}}}:active", 0, -1)),
    }
    for name in ("scheduled", "retry", "archived", "completed"):
        out[name] = ids(await client.zrange(f"asynq:{{{Q}}}:{name}", 0, -1))
    out["lease"] = ids(await client.zrange(f"asynq:{{{Q}}}:lease", 0, -1))
    return out


async def _check_invariant(client: aioredis.Redis) -> None:
    structures = await _structures(client)
    lease = structures.pop("lease")
    placed: Counter[str] = Counter()
    for name, members in structures.items():
        for task_id in members:
            placed[task_id] += 1
            state = await client.hget(f"asynq:{{{Q}}}:t:{task_id}", "state")
            assert state == name.encode(), f"{task_id} sits in {name} but its hash says {state!r}"
    assert all(n == 1 for n in placed.values()), f"tasks in several structures: {placed}"
    assert sorted(lease) == sorted(structures["active"]), "lease set differs from active list"
    hashes = {k.decode().rsplit(":", 1)[1] for k in await client.keys(f"asynq:{{{Q}}}:t:*")}
    assert hashes == set(placed), f"task hashes without a structure: {hashes - set(placed)}"


async def _run(url: str, steps: list[tuple[object, ...]]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
        redis = RedisOps(client)
        queue = QueueClient(client)
        inspector = Inspector(client)
        held: list[tuple[str, TaskMessage]] = []
        known: list[str] = []
        now = int(time.time())
        for step in steps:
            kind = step[0]
            if kind == "enqueue":
                later, unique = bool(step[1]), bool(step[2])
                req = EnqueueRequest(
                    "t",
                    f"{len(known) % 3}".encode(),
                    queue=Q,
                    max_retry=1,
                    process_in=600 if later else None,
                    unique_for=60 if unique else None,
                )
                result = (await queue.enqueue_many([req]))[0]
                if not isinstance(result, QueueError):
                    known.append(result.id)
            elif kind == "dequeue":
                rows = await redis.run_one(ops.dequeue_call([Q], int(step[1]), now + 30))  # type: ignore[call-overload]
                for i in range(0, len(rows), 3):
                    held.append((rows[i + 1].decode(), TaskMessage.decode(rows[i + 2])))
            elif kind in ("succeed", "fail", "requeue") and held:
                task_id, msg = held.pop(int(step[1]) % len(held))  # type: ignore[call-overload]
                if kind == "succeed":
                    keep = bool(step[2])
                    item = (
                        task_id,
                        msg.unique_key,
                        msg.encode() if keep else b"",
                        now + 60 if keep else 0,
                        "",
                        b"",
                    )
                    await redis.run_one(ops.ack_batch_call(Q, DAY, "", [item]))
                elif kind == "fail" and (step[2] or msg.retried >= msg.retry):
                    await redis.run_one(
                        ops.archive_call(Q, task_id, msg.encode(), now, day=DAY, channel="", event="")
                    )
                elif kind == "fail":
                    retried = msg.replace(retried=msg.retried + 1).encode()
                    await redis.run_one(
                        ops.retry_call(
                            Q, task_id, retried, now + 5, day=DAY, is_failure=True, channel="", event=""
                        )
                    )
                else:
                    await redis.run_one(ops.requeue_call(Q, task_id, time.time_ns()))
            elif kind == "forward":
                await redis.run(ops.forward_calls(Q, FAR_FUTURE, time.time_ns()))
            elif kind == "recover":
                held.clear()  # the worker "died": its leases are taken over
                rows = await redis.run_one(ops.list_lease_expired_call(Q, FAR_FUTURE))
                for i in range(0, len(rows), 2):
                    task_id, msg = rows[i].decode(), TaskMessage.decode(rows[i + 1])
                    call = (
                        ops.archive_call(Q, task_id, msg.encode(), now, day=DAY, channel="", event="")
                        if msg.retried >= msg.retry
                        else ops.retry_call(
                            Q,
                            task_id,
                            msg.replace(retried=msg.retried + 1).encode(),
                            now,
                            day=DAY,
                            is_failure=True,
                            channel="",
                            event="",
                        )
                    )
                    await redis.run_one(call)
            elif kind == "janitor":
                await redis.run_one(ops.delete_expired_completed_call(Q, FAR_FUTURE))
            elif kind == "inspect" and known:
                task_id = known[int(step[2]) % len(known)]  # type: ignore[call-overload]
                op = {
                    "delete": inspector.delete_task,
                    "run": inspector.run_task,
                    "archive": inspector.archive_task,
                }
                with contextlib.suppress(QueueError):  # not applicable in that state: active, there, gone
                    await op[str(step[1])](Q, task_id)
            await _check_invariant(client)
    finally:
        await client.aclose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op_strategy, min_size=1, max_size=40))
def test_every_task_is_in_exactly_one_structure(
    redis_server: RedisServer, steps: list[tuple[object, ...]]
) -> None:
    if not redis_server.running:
        redis_server.start()
    asyncio.run(_run(redis_server.url, steps))
