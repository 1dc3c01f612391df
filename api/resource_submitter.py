"""Resource mode (``SYTQ_API_RESOURCE_MODE``): a submit creates an LLMTask instead of enqueuing.

The controller enqueues each LLMTask with the task id ``llmtask-<uid>``, so once the apiserver has
accepted the object its UID gives the id the caller gets back; GET then finds the task on the
queue and in the database exactly as in queue mode. Until the controller has enqueued it, GET
finds the object through ``TaskNameIndex`` (task id -> object name, written right after create).

Object names are ``api-<submission id>``. With an Idempotency-Key the submission id is derived
from the key, so a repeat runs into the existing object (409) and answers with that object's id.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from fastapi import HTTPException
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client.exceptions import ApiException
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import FieldError
from api.submitter import AlreadySubmitted, ChatSubmission, QueueSubmitter
from sytq import redis_keys
from sytq.k8s_resources import (
    CLIENT_ANNOTATION,
    GROUP,
    LLMTASK_PLURAL,
    TASK_ID_PREFIX,
    VERSION,
    build_llmtask,
    task_id_for_uid,
)
from sytq.queue import QueueClient
from sytq.settings import ConfigError, Settings
from sytq.tasks import LLMChatPayload

OBJECT_NAME_PREFIX = "api-"
SUBMITTED_BY_LABEL = "llm.syt.io/submitted-by"
KUBE_REQUEST_SECONDS = 10.0
CREATES_AT_ONCE = 32  # a batch creates its objects in parallel, this many in flight
# How long GET can find a task that the controller has not enqueued yet (e.g. while it is down).
INDEX_TTL_SECONDS = 7 * 24 * 3600
_RETRY_AFTER = {"Retry-After": "2"}


class TaskNameIndex:
    """task id -> LLMTask name in Redis: the UID is only known after create and the API's Role
    may not patch labels, so this is how GET finds an object by the id it handed out."""

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int = INDEX_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def remember(self, task_id: str, name: str) -> None:
        await self._redis.set(redis_keys.llmtask_name_key(task_id), name, ex=self._ttl)

    async def name_of(self, task_id: str) -> str | None:
        raw = await self._redis.get(redis_keys.llmtask_name_key(task_id))
        return raw.decode() if raw is not None else None


class KubeLLMTasks:
    """LLMTask create/get in one namespace; the client is built on first use (config loading
    is async, and the connection pool belongs to the serving event loop)."""

    def __init__(self, namespace: str, kubeconfig: str | None) -> None:
        self.namespace = namespace
        self._kubeconfig = kubeconfig
        self._api: kclient.ApiClient | None = None
        self._custom: kclient.CustomObjectsApi | None = None
        self._lock = asyncio.Lock()

    async def _objects(self) -> kclient.CustomObjectsApi:
        if self._custom is not None:
            return self._custom
        async with self._lock:
            if self._custom is None:
                configuration = kclient.Configuration()
                if self._kubeconfig:
                    await kconfig.load_kube_config(
                        config_file=self._kubeconfig, client_configuration=configuration
                    )
                else:
                    kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                self._api = kclient.ApiClient(configuration)
                self._custom = kclient.CustomObjectsApi(self._api)
            return self._custom

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        custom = await self._objects()
        created: dict[str, Any] = await custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, LLMTASK_PLURAL, body, _request_timeout=KUBE_REQUEST_SECONDS
        )
        return created

    async def get(self, name: str) -> dict[str, Any] | None:
        custom = await self._objects()
        try:
            obj: dict[str, Any] = await custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, LLMTASK_PLURAL, name, _request_timeout=KUBE_REQUEST_SECONDS
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()


def _kubeconfig_source() -> str | None:
    """$KUBECONFIG, else the pod's ServiceAccount (None); neither is a start-up error."""
    path = os.environ.get("KUBECONFIG")
    if path:
        return path
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    raise ConfigError(
        "SYTQ_API_RESOURCE_MODE needs Kubernetes access: set KUBECONFIG or run in a pod with a ServiceAccount"
    )


def object_name(submission_id: str) -> str:
    return f"{OBJECT_NAME_PREFIX}{submission_id.lower()}"


def llmtask_for(item: ChatSubmission, namespace: str) -> dict[str, Any]:
    """The LLMTask for a validated submission; refuses what an LLMTask cannot carry."""
    if item.process_at is not None or item.process_in:
        raise FieldError(["body"], "delay_seconds and process_at are not supported in resource mode")
    payload: LLMChatPayload = item.payload
    if payload.metadata:
        raise FieldError(["body", "metadata"], "metadata is not supported in resource mode")
    messages = list(payload.messages)
    system = messages[0].content if len(messages) == 2 and messages[0].role == "system" else None
    single_user_turn = messages[-1].role == "user" and len(messages) == (2 if system is not None else 1)
    body = build_llmtask(
        namespace=namespace,
        name=object_name(item.task_id),
        model=payload.model,
        prompt=messages[-1].content if single_user_turn else None,
        messages=None if single_user_turn else messages,
        system=system if single_user_turn else None,
        parameters=payload.parameters,
        callback_url=payload.callback_url,
        queue=item.queue,
        max_retries=item.max_retry,
        timeout_seconds=math.ceil(item.timeout_seconds),
        labels={SUBMITTED_BY_LABEL: "api"},
    )
    if payload.client_id:
        body["metadata"]["annotations"] = {CLIENT_ANNOTATION: payload.client_id}
    return body


def _apiserver_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or b"{}").get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


class ResourceSubmitter:
    """TaskSubmitter that creates LLMTasks; the Go original's ``llm:process`` has no LLMTask
    form, so it still goes straight onto the queue."""

    def __init__(self, tasks: KubeLLMTasks, index: TaskNameIndex, process_submitter: QueueSubmitter) -> None:
        self.tasks = tasks
        self.index = index
        self._process = process_submitter

    async def submit_chat(self, item: ChatSubmission) -> str:
        body = llmtask_for(item, self.tasks.namespace)
        name = body["metadata"]["name"]
        try:
            created = await self.tasks.create(body)
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadySubmitted(await self._existing_task_id(name)) from exc
            raise self._refusal(exc) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise HTTPException(503, f"Kubernetes API unreachable: {exc}", headers=_RETRY_AFTER) from exc
        task_id = task_id_for_uid(created["metadata"]["uid"])
        await self._remember(task_id, name)
        return task_id

    def submit_chat_soon(self, item: ChatSubmission) -> asyncio.Future[str]:
        return asyncio.ensure_future(self.submit_chat(item))

    async def submit_chat_many(self, items: Sequence[ChatSubmission]) -> list[str | Exception]:
        gate = asyncio.Semaphore(CREATES_AT_ONCE)

        async def one(item: ChatSubmission) -> str | Exception:
            async with gate:
                try:
                    return await self.submit_chat(item)
                except StarletteHTTPException as exc:  # this item refused; the others go on
                    return ValueError(str(exc.detail))
                except AlreadySubmitted as exc:
                    return exc

        return list(await asyncio.gather(*(one(item) for item in items)))

    def submit_process(
        self, task_id: str, table_name: str, record_id: int, owner: str
    ) -> asyncio.Future[str]:
        return self._process.submit_process(task_id, table_name, record_id, owner)

    async def find(self, task_id: str) -> dict[str, Any] | None:
        """The LLMTask behind a task id this API handed out, or None."""
        if not task_id.startswith(TASK_ID_PREFIX):
            return None
        name = await self.index.name_of(task_id)
        if name is None:
            return None
        obj = await self.tasks.get(name)
        if obj is None or task_id_for_uid(obj["metadata"]["uid"]) != task_id:
            return None  # deleted, or deleted and re-created under the same name
        return obj

    async def aclose(self) -> None:
        await self.tasks.close()

    async def _existing_task_id(self, name: str) -> str:
        obj = await self.tasks.get(name)
        if obj is None:  # deleted between our create and this read: the caller may retry
            raise HTTPException(409, f"LLMTask {name} was deleted while being submitted; retry")
        task_id = task_id_for_uid(obj["metadata"]["uid"])
        await self._remember(task_id, name)
        return task_id

    async def _remember(self, task_id: str, name: str) -> None:
        try:
            await self.index.remember(task_id, name)
        except (RedisError, OSError):
            # The object exists and the controller will enqueue it; only the early GET is lost.
            return

    @staticmethod
    def _refusal(exc: ApiException) -> StarletteHTTPException:
        message = _apiserver_message(exc)
        if exc.status in (400, 422):
            return FieldError(["body"], f"rejected by the LLMTask schema: {message}")
        if exc.status in (401, 403):
            return HTTPException(503, f"the API may not create LLMTasks (check its RBAC): {message}")
        return HTTPException(503, f"Kubernetes API error {exc.status}: {message}", headers=_RETRY_AFTER)


def create_submitter(settings: Settings, redis: aioredis.Redis) -> ResourceSubmitter:
    return ResourceSubmitter(
        KubeLLMTasks(settings.api_resource_namespace, _kubeconfig_source()),
        TaskNameIndex(redis),
        QueueSubmitter(QueueClient(redis)),
    )
