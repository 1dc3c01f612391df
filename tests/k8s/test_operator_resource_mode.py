"""The API's resource mode building blocks, as the API's ServiceAccount: create an LLMTask, get the
task id back, and find the controller running the task under exactly that id."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sytq.k8s_resources import build_llmtask, create_llmtask, kube_api_client
from tests.harness.operator_fixtures import NAMESPACE, OperatorEnv, wait_until


async def submit_as_api(**kwargs: object) -> str:
    api = await kube_api_client()
    try:
        return await create_llmtask(api, build_llmtask(namespace=NAMESPACE, **kwargs))  # type: ignore[arg-type]
    finally:
        await api.close()


def test_created_llmtask_runs_under_the_returned_task_id(
    operator_env: OperatorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    controller = env.start_controller()
    api_kubeconfig = env.kube.service_account_kubeconfig(NAMESPACE, "syt-queue-api")
    monkeypatch.setenv("KUBECONFIG", str(api_kubeconfig))

    task_id = asyncio.run(submit_as_api(model="deepseek-chat", prompt="from the API", labels={"via": "api"}))

    def finished() -> dict[str, object] | None:
        items = env.llmtasks("via=api")
        return items[0] if items and items[0].get("status", {}).get("phase") == "Succeeded" else None

    obj = wait_until(finished, 30, lambda: controller.log())
    assert obj["metadata"]["name"].startswith("llmtask-")  # generateName
    assert obj["status"]["taskId"] == task_id == f"llmtask-{obj['metadata']['uid']}"


def test_invalid_llmtask_from_the_api_gets_the_apiservers_message(
    operator_manifests: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.harness.kube import KubeControlPlane

    assert isinstance(operator_manifests, KubeControlPlane)
    kubeconfig = operator_manifests.service_account_kubeconfig(NAMESPACE, "syt-queue-api")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(ApiException) as caught:
        asyncio.run(submit_as_api(model="deepseek-chat", prompt="x", callback_url="ftp://nope"))
    assert caught.value.status == 422
    assert "spec.callbackUrl" in str(caught.value.body)
