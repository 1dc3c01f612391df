"""The controller's /healthz, /readyz and /metrics (status-mirroring lag, patches, Events,
mirrors), scraped from a controller running as its ServiceAccount (real apiserver and Redis), and
its connection warm-up."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.operator_fixtures import OperatorEnv, llmtask_body, wait_until
from tests.harness.services import free_port


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return reply.status, reply.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_controller_exports_status_lag_patches_events_and_mirrors(operator_env: OperatorEnv) -> None:
    env = operator_env
    env.start_stub()
    env.start_worker()
    port = free_port()
    controller = env.start_controller(SYTQ_METRICS_PORT=str(port))
    wait_until(lambda: _answers(port), 30, lambda: f"controller /healthz; log:\n{controller.log()}")
    assert scrape(port, "/readyz") == (200, "ready\n")
    names = [f"metered-{i}" for i in range(5)]
    env.kube.apply([llmtask_body(name, prompt=f"count me {name}") for name in names], kubeconfig=None)

    def succeeded() -> int:
        mine = [o for o in env.llmtasks() if o["metadata"]["name"] in names]
        return sum(o.get("status", {}).get("phase") == "Succeeded" for o in mine)

    wait_until(lambda: succeeded() == len(names), 60, lambda: f"all Succeeded; log:\n{controller.log()}")

    def posted() -> float:
        return samples(scrape(port)[1]).get(("sytq_controller_events_total", (("outcome", "posted"),)), 0.0)

    wait_until(lambda: posted() >= len(names), 30, lambda: f"Events posted; log:\n{controller.log()}")
    found = samples(scrape(port)[1])
    lag_count = found[("sytq_controller_status_lag_seconds_count", (("phase", "Succeeded"),))]
    # every task finished after its mirror started listening, so each Succeeded patch follows an event
    assert lag_count == len(names)
    assert found[("sytq_controller_status_lag_seconds_sum", (("phase", "Succeeded"),))] > 0
    assert found[("sytq_controller_status_patches_total", (("outcome", "ok"),))] >= len(names)
    assert found.get(("sytq_controller_status_patches_total", (("outcome", "error"),)), 0.0) == 0
    assert found[("sytq_controller_mirrors", ())] == 0  # all finished: nothing left to mirror
    assert found[("sytq_controller_event_backlog", ())] == 0


def _answers(port: int) -> bool:
    try:
        return scrape(port, "/healthz") == (200, "ok\n")
    except OSError:
        return False


async def test_warming_leaves_open_connections_for_the_controller(
    operator_env: OperatorEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /version is allowed to the controller's ServiceAccount and each concurrent one leaves a
    connection in the pool the status patches use."""
    from controller.context import touch_apiserver
    from controller.warmup import ConnectionWarmer
    from sytq.k8s_resources import kube_api_client

    monkeypatch.setenv("KUBECONFIG", str(operator_env.controller_kubeconfig))
    api = await kube_api_client(64)
    try:
        await touch_apiserver(api)  # raises on a refusal
        warmer = ConnectionWarmer(lambda: touch_apiserver(api), most=32)
        warmer.ahead_of(40)
        assert warmer._running is not None
        await warmer._running
        connector = api.rest_client.pool_manager.connector
        idle = sum(len(conns) for conns in connector._conns.values())  # aiohttp's own bookkeeping
        assert idle >= 32
    finally:
        await api.close()
