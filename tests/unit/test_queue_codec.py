"""Pure parts of the queue: protobuf wire format, key names, retry backoff, priorities."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sytq import redis_keys as keys
from sytq.queue import ServerConfig, default_retry_delay
from sytq.queue.client import new_task_id
from sytq.queue.codec import CorruptTaskError, TaskMessage, encode_task
from sytq.queue.processor import queue_order
from sytq.queue.proto import ServerInfoProto, TaskMessageProto, WorkerInfoProto


def test_task_message_uses_asynq_field_numbers() -> None:
    msg = TaskMessage(type="t", payload=b"p", id="i", queue="q", retry=25, retried=1)
    # field 1 (type) tag 0x0a, field 2 (payload) 0x12, 3 (id) 0x1a, 4 (queue) 0x22, 5 (retry) 0x28, 6 0x30
    assert msg.encode() == b"\x0a\x01t\x12\x01p\x1a\x01i\x22\x01q\x28\x19\x30\x01"
    with_headers = TaskMessage(type="t", payload=b"", id="i", queue="q", retry=0, headers={"k": "v"})
    assert b"\x7a" in with_headers.encode()  # field 15, length-delimited


_INT32 = st.integers(min_value=0, max_value=2**31 - 1)
_INT64 = st.integers(min_value=0, max_value=2**62)


# encode_task's arguments, in its order
_NEW_TASKS = st.tuples(
    st.text(min_size=1),
    st.binary(),
    st.text(min_size=1),
    st.text(min_size=1),
    _INT32,
    _INT64,
    _INT64,
    st.text(),
    _INT64,
    st.dictionaries(st.text(), st.text(), max_size=3),
)


_LATER = st.tuples(_INT32, st.text(), _INT64, _INT64, st.text())  # retried, error, failed/completed at, group


@given(_NEW_TASKS, _LATER)
def test_a_task_messages_bytes_are_protobufs_own(fields: tuple[Any, ...], later: tuple[Any, ...]) -> None:
    names = ["type", "payload", "id", "queue", "retry", "timeout", "deadline", "unique_key", "retention"]
    names.append("headers")
    new = dict(zip(names, fields, strict=True))
    # What protobuf writes given every field at once, against our writer that sets only non-defaults.
    assert encode_task(*fields) == TaskMessageProto(**new).SerializeToString()
    assert TaskMessage.decode(encode_task(*fields)) == TaskMessage(**new)
    history = dict(
        zip(["retried", "error_msg", "last_failed_at", "completed_at", "group_key"], later, strict=True)
    )
    message = TaskMessage(**new, **history)
    assert message.encode() == TaskMessageProto(**new, **history).SerializeToString()
    assert TaskMessage.decode(message.encode()) == message


@pytest.mark.parametrize("data", [b"", None, b"\xff\xff\xff\xff", b"\x0a\x05ab"])
def test_corrupt_bytes_give_a_clear_error(data: bytes | None) -> None:
    with pytest.raises(CorruptTaskError):
        TaskMessage.decode(data)


def test_server_and_worker_info_field_numbers() -> None:
    info = ServerInfoProto(
        host="h",
        pid=7,
        server_id="s",
        concurrency=3,
        queues={"a": 1},
        strict_priority=True,
        status="active",
        active_worker_count=2,
    )
    raw = info.SerializeToString()
    assert raw.startswith(b"\x0a\x01h\x10\x07\x1a\x01s\x20\x03")
    assert b"\x30\x01" in raw and b"\x3a\x06active" in raw and raw.endswith(b"\x48\x02")
    worker = WorkerInfoProto(task_id="x", task_type="y", queue="q")
    assert worker.SerializeToString() == b"\x22\x01x\x2a\x01y\x3a\x01q"


def test_key_names() -> None:
    assert keys.task_key("default", "abc") == "asynq:{default}:t:abc"
    assert keys.processed_key("q", "2024-01-02") == "asynq:{q}:processed:2024-01-02"
    assert keys.unique_key("q", "t", b"x") == "asynq:{q}:unique:t:" + hashlib.md5(b"x").hexdigest()
    assert keys.server_info_key("host", 12, "id") == "asynq:servers:{host:12:id}"
    assert keys.workers_key("host", 12, "id") == "asynq:workers:{host:12:id}"


def test_default_retry_delay_is_asynqs_formula() -> None:
    err = RuntimeError("x")
    for n in (0, 1, 5, 10):
        delays = {default_retry_delay(n, err, None) for _ in range(200)}  # type: ignore[arg-type]
        low, high = n**4 + 15, n**4 + 15 + 29 * (n + 1)
        assert all(low <= d <= high for d in delays)
        assert len(delays) > 1


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ServerConfig(queues={}).validate()
    with pytest.raises(ValueError):
        ServerConfig(queues={"a": 0}).validate()
    with pytest.raises(ValueError):
        ServerConfig(concurrency=0).validate()


def test_strict_priority_order_and_weighted_shuffle() -> None:
    assert queue_order({"low": 1, "high": 9, "mid": 3}, strict_priority=True) == ["high", "mid", "low"]
    firsts = [queue_order({"low": 1, "high": 9}, strict_priority=False)[0] for _ in range(2000)]
    assert 0.85 < firsts.count("high") / 2000 < 0.95


def test_task_ids_are_uuid4() -> None:
    import uuid

    from sytq.queue.client import new_task_id

    ids = {new_task_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in list(ids)[:200]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_enqueue_placement_strings() -> None:
    from sytq.queue.redis_ops import enqueue_placement

    assert enqueue_placement(None, 123, "", 0) == "p123"
    assert enqueue_placement(456, 123, "", 0) == "s456"
    assert enqueue_placement(None, 1, "asynq:{q}:unique:t:ab|c", 60) == "p1|60|asynq:{q}:unique:t:ab|c"


def test_transient_replies_are_told_apart() -> None:
    from redis import exceptions as redis_errors

    from sytq.queue.redis_ops import _is_transient

    assert _is_transient(redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert _is_transient(redis_errors.ReadOnlyError("You can't write against a read only replica."))
    assert _is_transient(redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"))
    assert not _is_transient(redis_errors.ResponseError("ERR wrong number of arguments"))
    assert not _is_transient(1)


def test_invalid_enqueue_arguments_are_rejected_before_redis() -> None:
    from datetime import datetime

    from sytq.queue import EnqueueRequest, InvalidTaskError
    from sytq.queue.client import _Moment, _prepare

    for bad in (
        EnqueueRequest("t", "not bytes"),  # type: ignore[arg-type]
        EnqueueRequest("t", b"", queue=" "),
        EnqueueRequest("t", b"", headers={"k": 1}),  # type: ignore[dict-item]
        EnqueueRequest("t", b"", process_in=5, process_at=datetime.now()),
        EnqueueRequest("t", b"", retention=float("inf")),
        EnqueueRequest("t", b"", max_retry="5"),  # type: ignore[arg-type]
        EnqueueRequest("t", b"", max_retry=2**40),
        EnqueueRequest("t", b"", timeout="10"),  # type: ignore[arg-type]
        EnqueueRequest("t", b"", process_at="tomorrow"),  # type: ignore[arg-type]
        EnqueueRequest("t", b"", deadline=1234),  # type: ignore[arg-type]
        EnqueueRequest("t", b"", headers=[1, 2]),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidTaskError):
            _prepare(bad, _Moment())


def test_a_forked_child_draws_task_ids_of_its_own() -> None:
    """Ids come from a pool of random bytes; a child must not reuse what its parent holds."""
    new_task_id()  # the parent's pool is filled
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writer, new_task_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 64).decode()
    os.close(reader)
    assert uuid.UUID(childs).version == 4
    assert childs != new_task_id()


def test_enqueue_request_fields_keep_the_order_hot_paths_build_them_in() -> None:
    """QueueClient.enqueue and the API's submitter build EnqueueRequest positionally."""
    from api.submitter import ChatSubmission, _request
    from sytq.queue.models import EnqueueRequest

    assert EnqueueRequest._fields == (
        "type", "payload", "queue", "task_id", "max_retry", "timeout", "deadline",
        "process_at", "process_in", "unique_for", "retention", "headers",
    )  # fmt: skip
    item = ChatSubmission("id-1", b"{}", "q", 3, 600.0, 86400.0, None, 5.0)
    assert _request(item) == EnqueueRequest(
        type="llm:chat", payload=b"{}", queue="q", task_id="id-1", max_retry=3, timeout=600.0,
        process_in=5.0, retention=86400.0,
    )  # fmt: skip
