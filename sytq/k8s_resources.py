"""Names of our Kubernetes API and the translation between an LLMTask and a queue task.

Shared by the controller (which enqueues LLMTasks) and the API's resource mode (which creates
them): object building is plain data; the two client helpers at the end use kubernetes_asyncio.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from sytq.tasks import ChatMessage, LLMChatPayload, LLMParameters, build_messages

GROUP = "llm.syt.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
LLMTASK_KIND = "LLMTask"
LLMTASK_PLURAL = "llmtasks"
LLMWORKERPOOL_KIND = "LLMWorkerPool"
LLMWORKERPOOL_PLURAL = "llmworkerpools"

TASK_ID_PREFIX = "llmtask-"
# The API caller that asked for an LLMTask (resource mode): its tenant, carried onto the queue task.
CLIENT_ANNOTATION = "llm.syt.io/client"
# Holds an LLMTask until its queue task is off the queue. The controller adds it before it
# enqueues; creators that set it themselves (build_llmtask) save the controller that write.
LLMTASK_FINALIZER = f"{GROUP}/finalizer"
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 900
RESULT_PREVIEW_MAX_BYTES = 1024

# Phases, Job-style: the last three are final.
PHASE_PENDING = "Pending"
PHASE_QUEUED = "Queued"
PHASE_RUNNING = "Running"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASE_CANCELLED = "Cancelled"
FINAL_PHASES = frozenset({PHASE_SUCCEEDED, PHASE_FAILED, PHASE_CANCELLED})

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def task_id_for_uid(uid: str) -> str:
    """The queue task id of an LLMTask: fixed by its UID, so re-reconciling never enqueues twice."""
    if not uid:
        raise ValueError("an LLMTask without a UID cannot be enqueued")
    return f"{TASK_ID_PREFIX}{uid}"


def resource_key(namespace: str, name: str) -> str:
    """``namespace/name``, the form carried in ``LLMChatPayload.resource``."""
    return f"{namespace}/{name}"


def build_llmtask(
    *,
    namespace: str,
    model: str,
    prompt: str | None = None,
    messages: list[ChatMessage] | None = None,
    system: str | None = None,
    parameters: LLMParameters | None = None,
    callback_url: str | None = None,
    queue: str | None = None,
    max_retries: int | None = None,
    timeout_seconds: int | None = None,
    ttl_seconds_after_finished: int | None = None,
    name: str | None = None,
    generate_name: str = "llmtask-",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An LLMTask object ready for ``create_namespaced_custom_object``.

    Without ``name`` the apiserver picks one from ``generate_name``; the created object's UID then
    gives the task id (``task_id_for_uid``), which the API returns to its caller.
    """
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of prompt or messages")
    if name is not None and not _DNS_LABEL.match(name):
        raise ValueError(f"LLMTask name {name!r} is not a DNS-1123 label")
    metadata: dict[str, Any] = {"namespace": namespace, "finalizers": [LLMTASK_FINALIZER]}
    if name is not None:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_name
    if labels:
        metadata["labels"] = dict(labels)
    spec: dict[str, Any] = {"model": model}
    if prompt is not None:
        spec["prompt"] = prompt
    if messages is not None:
        spec["messages"] = [{"role": m.role, "content": m.content} for m in messages]
    if system:
        spec["system"] = system
    if parameters is not None:
        params = _parameters_to_spec(parameters)
        if params:
            spec["parameters"] = params
    optional = {
        "callbackUrl": callback_url,
        "queue": queue,
        "maxRetries": max_retries,
        "timeoutSeconds": timeout_seconds,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    return {"apiVersion": API_VERSION, "kind": LLMTASK_KIND, "metadata": metadata, "spec": spec}


def _parameters_to_spec(parameters: LLMParameters) -> dict[str, Any]:
    mapping = {
        "temperature": parameters.temperature,
        "maxTokens": parameters.max_tokens,
        "topP": parameters.top_p,
        "stop": parameters.stop,
        "responseFormat": parameters.response_format,
    }
    return {key: value for key, value in mapping.items() if value is not None}


def payload_from_spec(
    spec: Mapping[str, Any], *, namespace: str, name: str, default_model: str, client_id: str | None = None
) -> LLMChatPayload:
    """The ``llm:chat`` payload for an LLMTask spec (already validated by the apiserver's schema).

    Raises ``ValueError`` (pydantic's included) if the spec still does not make a valid payload.
    """
    raw_messages = spec.get("messages")
    messages = [ChatMessage(**m) for m in raw_messages] if raw_messages is not None else None
    params = spec.get("parameters") or {}
    parameters = LLMParameters(
        temperature=params.get("temperature"),
        max_tokens=params.get("maxTokens"),
        top_p=params.get("topP"),
        stop=params.get("stop"),
        response_format=params.get("responseFormat"),
    )
    return LLMChatPayload(
        model=spec.get("model") or default_model,
        messages=build_messages(spec.get("prompt"), messages, spec.get("system")),
        parameters=parameters,
        callback_url=spec.get("callbackUrl"),
        client_id=client_id or None,
        resource=resource_key(namespace, name),
    )


async def kube_api_client(pool_size: int = 16) -> kclient.ApiClient:
    """A Kubernetes API client: the pod's ServiceAccount in a cluster, else ``$KUBECONFIG``."""
    configuration = kclient.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        # Read $KUBECONFIG now: kubernetes_asyncio's default is fixed when it is imported.
        await kconfig.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    api = kclient.ApiClient(configuration)
    if not _proxy_in_environment():
        # kubernetes_asyncio opens its aiohttp session with trust_env=True, which makes every
        # request look up proxy variables and ~/.netrc in a worker thread: two thread hops per
        # request, a large share of the controller's CPU under a burst. Without proxy variables that
        # lookup finds nothing to use (a proxy in the kubeconfig is passed per request anyway).
        api.rest_client.pool_manager._trust_env = False
    return api


def _proxy_in_environment() -> bool:
    return any(key.lower().endswith("_proxy") and value for key, value in os.environ.items())


async def create_llmtask(api: kclient.ApiClient, body: Mapping[str, Any]) -> str:
    """Create the LLMTask built by ``build_llmtask``; returns the queue task id it will run under.

    The API's resource mode answers ``{"task_id": <this>, "status": "enqueued"}``: the controller
    enqueues under exactly this id, so ``GET /api/v1/tasks/{id}`` works as in direct mode.
    Raises ``kubernetes_asyncio.client.exceptions.ApiException`` (e.g. 422 with the apiserver's
    validation message, 403 without RBAC) for the caller to map to an HTTP error.
    """
    namespace = body["metadata"]["namespace"]
    created = await kclient.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, LLMTASK_PLURAL, dict(body)
    )
    return task_id_for_uid(str(created["metadata"]["uid"]))
