"""asynq's protobuf messages (TaskMessage, ServerInfo, WorkerInfo), built at import time.

The descriptors are assembled in code from a FileDescriptorProto with asynq's field numbers
(asynq/internal/proto/asynq.proto), so no protoc step is needed and the wire format is the
protobuf library's own.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

__all__ = ["DecodeError", "ServerInfoProto", "TaskMessageProto", "WorkerInfoProto"]

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "sytq.asynq"  # wire format does not carry the package; a private one avoids pool clashes


def _add_field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    type_name: str | None = None,
    repeated: bool = False,
) -> None:
    field = msg.field.add()
    field.name = name
    field.number = number
    field.type = ftype  # type: ignore[assignment]
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name


def _add_map(msg: descriptor_pb2.DescriptorProto, name: str, number: int, value_type: int) -> None:
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = msg.nested_type.add()
    entry.name = entry_name
    entry.options.map_entry = True
    _add_field(entry, "key", 1, _F.TYPE_STRING)
    _add_field(entry, "value", 2, value_type)
    _add_field(msg, name, number, _F.TYPE_MESSAGE, f".{_PACKAGE}.{msg.name}.{entry_name}", repeated=True)


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto()
    f.name = "sytq/asynq.proto"
    f.package = _PACKAGE
    f.syntax = "proto3"
    f.dependency.append("google/protobuf/timestamp.proto")

    task = f.message_type.add()
    task.name = "TaskMessage"
    for name, number, ftype in (
        ("type", 1, _F.TYPE_STRING),
        ("payload", 2, _F.TYPE_BYTES),
        ("id", 3, _F.TYPE_STRING),
        ("queue", 4, _F.TYPE_STRING),
        ("retry", 5, _F.TYPE_INT32),
        ("retried", 6, _F.TYPE_INT32),
        ("error_msg", 7, _F.TYPE_STRING),
        ("timeout", 8, _F.TYPE_INT64),
        ("deadline", 9, _F.TYPE_INT64),
        ("unique_key", 10, _F.TYPE_STRING),
        ("last_failed_at", 11, _F.TYPE_INT64),
        ("retention", 12, _F.TYPE_INT64),
        ("completed_at", 13, _F.TYPE_INT64),
        ("group_key", 14, _F.TYPE_STRING),
    ):
        _add_field(task, name, number, ftype)
    _add_map(task, "headers", 15, _F.TYPE_STRING)

    ts = ".google.protobuf.Timestamp"
    server = f.message_type.add()
    server.name = "ServerInfo"
    for name, number, ftype in (
        ("host", 1, _F.TYPE_STRING),
        ("pid", 2, _F.TYPE_INT32),
        ("server_id", 3, _F.TYPE_STRING),
        ("concurrency", 4, _F.TYPE_INT32),
    ):
        _add_field(server, name, number, ftype)
    _add_map(server, "queues", 5, _F.TYPE_INT32)
    _add_field(server, "strict_priority", 6, _F.TYPE_BOOL)
    _add_field(server, "status", 7, _F.TYPE_STRING)
    _add_field(server, "start_time", 8, _F.TYPE_MESSAGE, ts)
    _add_field(server, "active_worker_count", 9, _F.TYPE_INT32)

    worker = f.message_type.add()
    worker.name = "WorkerInfo"
    for name, number, ftype in (
        ("host", 1, _F.TYPE_STRING),
        ("pid", 2, _F.TYPE_INT32),
        ("server_id", 3, _F.TYPE_STRING),
        ("task_id", 4, _F.TYPE_STRING),
        ("task_type", 5, _F.TYPE_STRING),
        ("task_payload", 6, _F.TYPE_BYTES),
        ("queue", 7, _F.TYPE_STRING),
    ):
        _add_field(worker, name, number, ftype)
    _add_field(worker, "start_time", 8, _F.TYPE_MESSAGE, ts)
    _add_field(worker, "deadline", 9, _F.TYPE_MESSAGE, ts)
    return f


def _load() -> tuple[Any, Any, Any]:
    from google.protobuf import timestamp_pb2  # registers google/protobuf/timestamp.proto in the pool

    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("sytq/asynq.proto")
    except KeyError:
        pool.Add(_build_file())
    file_desc = pool.FindFileByName("sytq/asynq.proto")
    del timestamp_pb2
    task, server, worker = (
        message_factory.GetMessageClass(file_desc.message_types_by_name[name])
        for name in ("TaskMessage", "ServerInfo", "WorkerInfo")
    )
    return task, server, worker


# Typed as Any: the classes are generated at runtime, so mypy cannot see their fields.
TaskMessageProto, ServerInfoProto, WorkerInfoProto = _load()
