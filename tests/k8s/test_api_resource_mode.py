"""Ingress resource mode on the real apiserver: POST /api/v1/tasks/llm creates an LLMTask (the API
acting as its ServiceAccount, with the manifests' Role), the seed contract stays byte for byte,
and GET answers before the controller has enqueued it and after the worker finished it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.resource_submitter import SUBMITTED_BY_LABEL
from sytq_cli.stub_llm import deterministic_content
from tests.harness.api_fixtures import RunningApi
from tests.harness.operator_fixtures import NAMESPACE, OperatorEnv, wait_until

API_SA = "syt-queue-api"
ACCEPTED = re.compile(
    rb'^\{"task_id":"(llmtask-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",'
    rb'"status":"enqueued"\}$'
)
API_CREATED = f"{SUBMITTED_BY_LABEL}=api"


@pytest.fixture
def resource_api(
    operator_env: OperatorEnv, start_api: Callable[..., RunningApi], monkeypatch: pytest.MonkeyPatch
) -> RunningApi:
    kubeconfig = operator_env.kube.service_account_kubeconfig(NAMESPACE, API_SA)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return start_api(api_resource_mode=True, api_resource_namespace=NAMESPACE)


def _accepted_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    match = ACCEPTED.match(response.content)
    assert match, response.content
    return match.group(1).decode()


def _get(api: RunningApi, task_id: str) -> httpx.Response:
    return httpx.get(f"{api.url}/api/v1/tasks/{task_id}", timeout=10)


def test_submit_creates_llmtask_and_get_follows_it(
    operator_env: OperatorEnv, resource_api: RunningApi
) -> None:
    env, api = operator_env, resource_api
    env.start_stub()
    callback = f"{env.stub_url}/callback"
    prompt = f"resource mode {uuid.uuid4().hex}"
    submitted = httpx.post(
        f"{api.url}/api/v1/tasks/llm",
        json={"prompt": prompt, "model": "deepseek-chat", "callback_url": callback},
        timeout=10,
    )
    task_id = _accepted_id(submitted)

    (obj,) = env.llmtasks(API_CREATED)
    assert task_id == f"llmtask-{obj['metadata']['uid']}"
    assert obj["spec"]["prompt"] == prompt
    assert obj["spec"]["model"] == "deepseek-chat"
    assert obj["spec"]["callbackUrl"] == callback
    assert "messages" not in obj["spec"]

    # No controller yet: the task is on no queue and in no table, the object alone answers.
    early = _get(api, task_id)
    assert early.status_code == 200, early.text
    assert early.json()["task_id"] == task_id
    assert early.json()["state"] == "pending"

    env.start_worker(SYTQ_DATABASE_URL=api.settings.database_url or "")
    controller = env.start_controller()
    name = obj["metadata"]["name"]
    wait_until(
        lambda: env.llmtask(name).get("status", {}).get("phase") == "Succeeded",
        30,
        lambda: f"LLMTask Succeeded; controller log:\n{controller.log()}",
    )
    done = _get(api, task_id)
    assert done.status_code == 200, done.text
    view: dict[str, Any] = done.json()
    assert view["state"] in ("completed", "succeeded"), view
    assert view["type"] == "llm:chat"
    assert view["result"]["content"] == deterministic_content("deepseek-chat", prompt)
    assert view["usage"]["total_tokens"] > 0


def test_idempotency_key_repeat_and_invalid_input_create_nothing_more(
    operator_env: OperatorEnv, resource_api: RunningApi
) -> None:
    env, api = operator_env, resource_api
    url = f"{api.url}/api/v1/tasks/llm"
    body = {"prompt": "once only", "system": "be brief", "max_retry": 2, "timeout_seconds": 30}
    headers = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    first = _accepted_id(httpx.post(url, json=body, headers=headers, timeout=10))
    again = httpx.post(url, json=body, headers=headers, timeout=10)
    assert _accepted_id(again) == first
    (obj,) = env.llmtasks(API_CREATED)
    assert first == f"llmtask-{obj['metadata']['uid']}"
    assert obj["spec"]["system"] == "be brief"
    assert obj["spec"]["maxRetries"] == 2 and obj["spec"]["timeoutSeconds"] == 30

    reused = httpx.post(url, json={**body, "prompt": "something else"}, headers=headers, timeout=10)
    assert reused.status_code == 422, reused.text
    for invalid in (
        {"model": "deepseek-chat"},  # no prompt nor messages
        {"prompt": "later", "delay_seconds": 5},  # an LLMTask cannot wait
        {"prompt": "tagged", "metadata": {"order": 7}},  # nor carry metadata to the callback
        {"prompt": "x", "callback_url": "http://169.254.169.254/latest"},  # SSRF rule
    ):
        refused = httpx.post(url, json=invalid, timeout=10)
        assert refused.status_code == 422, (invalid, refused.text)
        assert "detail" in refused.json()
    assert [o["metadata"]["uid"] for o in env.llmtasks(API_CREATED)] == [obj["metadata"]["uid"]]

    # An id this API never handed out is still a 404, not a crash.
    assert _get(api, f"llmtask-{uuid.uuid4()}").status_code == 404

    batch = httpx.post(
        f"{api.url}/api/v1/tasks/llm:batch",
        json={
            "tasks": [
                {"prompt": "b1"},
                {"prompt": "b2", "delay_seconds": 1},
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "yes?"},
                        {"role": "user", "content": "b3"},
                    ]
                },
            ]
        },
        timeout=10,
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["status"] == "enqueued" and results[0]["task_id"].startswith("llmtask-")
    assert results[1]["status"] == "error" and "resource mode" in results[1]["error"]
    assert results[2]["status"] == "enqueued"
    created = env.llmtasks(API_CREATED)
    assert len(created) == 3
    conversation = next(o for o in created if "messages" in o["spec"])
    assert [m["content"] for m in conversation["spec"]["messages"]] == ["hi", "yes?", "b3"]
    assert "prompt" not in conversation["spec"]
    assert _get(api, results[0]["task_id"]).json()["state"] == "pending"


def test_openapi_documents_the_resource_aware_get_once(resource_api: RunningApi) -> None:
    document = httpx.get(f"{resource_api.url}/openapi.json", timeout=10).json()
    operation = document["paths"]["/api/v1/tasks/{task_id}"]["get"]
    assert operation["operationId"].startswith("get_task_or_llmtask")
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert not any(op_id.startswith("get_task_api") for op_id in operation_ids)


def test_a_tenant_follows_and_cancels_its_llmtask_after_the_controller_enqueued_it(
    operator_env: OperatorEnv, start_api: Callable[..., RunningApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller carries the submitter's name onto the queue task, so the tenant (not only an
    admin) sees the task's live queue state and can steer it; another tenant gets 404."""
    from tests.api.helpers import bearer, key_entry

    env = operator_env
    monkeypatch.setenv("KUBECONFIG", str(env.kube.service_account_kubeconfig(NAMESPACE, API_SA)))
    keys = f"{key_entry('tenant-a', 'a', 'submit|read')},{key_entry('tenant-b', 'b', 'submit|read')}"
    api = start_api(api_resource_mode=True, api_resource_namespace=NAMESPACE, api_keys=keys)
    submitted = httpx.post(
        f"{api.url}/api/v1/tasks/llm",
        json={"prompt": "later"},
        headers=bearer("a"),
        timeout=10,
    )
    task_id = _accepted_id(submitted)
    controller = env.start_controller()  # no worker: the task stays pending on the queue
    wait_until(
        lambda: env.llmtasks(API_CREATED)[0].get("status", {}).get("phase") == "Queued",
        30,
        lambda: f"LLMTask Queued; controller log:\n{controller.log()}",
    )
    url = f"{api.url}/api/v1/tasks/{task_id}"
    mine = httpx.get(url, headers=bearer("a"), timeout=10)
    assert mine.status_code == 200 and mine.json()["type"] == "llm:chat", mine.text  # the queue's view
    assert httpx.get(url, headers=bearer("b"), timeout=10).status_code == 404
    assert httpx.post(f"{url}/cancel", headers=bearer("b"), timeout=10).status_code == 404
    cancelled = httpx.post(f"{url}/cancel", headers=bearer("a"), timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "archived", cancelled.text
