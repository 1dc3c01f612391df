"""The operator from the container image on the real apiserver: `sytq controller` and `sytq worker`
run from the image built out of the Dockerfile (tests/harness/image_fixtures.py), the controller as
its ServiceAccount with the manifests' Role, and the example LLMTask ends Succeeded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.harness.image_fixtures import ImageContainer
from tests.harness.operator_fixtures import NAMESPACE, OperatorEnv, wait_until
from tests.harness.services import free_port, wait_for_port

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "llmtask.yaml"

# Builds the image when this is the first test of the session that needs it (minutes when cold).
pytestmark = pytest.mark.timeout(1200)


def test_controller_and_worker_from_the_image_run_the_example_llmtask(
    operator_env: OperatorEnv, container: ImageContainer
) -> None:
    env = operator_env
    container.copy_in(env.controller_kubeconfig, "/tmp/controller.kubeconfig")
    llm_port = free_port()
    stub = container.start("stub-llm", "stub-llm", "--port", str(llm_port))
    wait_for_port(llm_port, timeout=60, proc=stub.proc)
    worker = container.start(
        "worker",
        "worker",
        env={
            "SYTQ_REDIS_URL": env.redis_url,
            "SYTQ_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}",
            "SYTQ_PUBLISH_TASK_EVENTS": "true",
            "SYTQ_CALLBACK_SECRET": "image-test-secret",
        },
    )
    controller = container.start(
        "controller",
        "controller",
        env={
            "KUBECONFIG": "/tmp/controller.kubeconfig",
            "SYTQ_REDIS_URL": env.redis_url,
            "SYTQ_CONTROLLER_NAMESPACES": NAMESPACE,
            "SYTQ_CONTROLLER_PEERING": NAMESPACE,
            "SYTQ_CONTROLLER_RESYNC_SECONDS": "2",
        },
    )
    env.kubectl("apply", "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]

    def logs() -> str:
        return f"--- controller:\n{controller.log()}\n--- worker:\n{worker.log()}"

    wait_until(lambda: env.llmtask(name).get("status", {}).get("phase") == "Succeeded", 60, logs)
    status = env.llmtask(name)["status"]
    assert status["attempts"] == 1
    assert status["usage"]["totalTokens"] > 0
    assert status["resultPreview"]
    assert controller.proc.poll() is None and worker.proc.poll() is None, logs()
