"""The operator's pure parts: status mapping, scaling decisions, LLMTask <-> payload translation."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.deployment import REDIS_CA_DIR, RedisCaSecret, build_deployment, queues_setting
from controller.pools import redis_ca_of
from controller.scaling import PoolLimits, Stabilizer, recommend
from controller.status import attempts_of, changed_fields, parse_result, preview, status_from_task
from sytq.k8s_resources import build_llmtask, payload_from_spec, task_id_for_uid
from sytq.queue import TaskInfo, TaskState
from sytq.tasks import ChatMessage, LLMParameters

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def info(state: TaskState, retried: int = 0, **kw: Any) -> TaskInfo:
    fields: dict[str, Any] = {
        "id": "llmtask-u",
        "queue": "default",
        "type": "llm:chat",
        "payload": b"{}",
        "state": state,
        "max_retry": 3,
        "retried": retried,
        "last_error": "",
        "last_failed_at": None,
        "timeout": 0,
        "deadline": None,
        "next_process_at": None,
        "completed_at": None,
        "retention": 0,
        "result": None,
    }
    fields.update(kw)
    return TaskInfo(**fields)


def status(task: TaskInfo, current: dict[str, Any] | None = None) -> dict[str, Any]:
    return status_from_task(
        current or {}, task, task_id="llmtask-u", result_ref="/api/v1/tasks/llmtask-u", now=NOW
    )


@pytest.mark.parametrize(
    ("state", "retried", "phase", "attempts"),
    [
        (TaskState.PENDING, 0, "Queued", 0),
        (TaskState.ACTIVE, 0, "Running", 1),
        (TaskState.RETRY, 1, "Running", 1),
        (TaskState.ACTIVE, 1, "Running", 2),
        (TaskState.COMPLETED, 2, "Succeeded", 3),
        (TaskState.ARCHIVED, 3, "Failed", 4),
    ],
)
def test_queue_state_maps_to_phase_and_attempts(
    state: TaskState, retried: int, phase: str, attempts: int
) -> None:
    got = status(info(state, retried, last_error="boom" if state == TaskState.ARCHIVED else ""))
    assert (got["phase"], got["attempts"]) == (phase, attempts)
    assert attempts_of(info(state, retried)) == attempts


def test_success_carries_usage_preview_and_no_error() -> None:
    result = json.dumps(
        {
            "content_preview": "é" * 2000,
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            "finish_reason": "stop",
        }
    ).encode()
    done = info(TaskState.COMPLETED, 1, result=result, last_error="first try failed", completed_at=NOW)
    got = status(done, {"startTime": "2026-01-01T00:00:00Z"})
    assert got["usage"] == {"promptTokens": 3, "completionTokens": 4, "totalTokens": 7}
    assert len(got["resultPreview"].encode()) <= 1024 and got["resultPreview"] == "é" * 512
    assert "error" not in got and got["completionTime"] == "2026-01-02T03:04:05Z"
    assert got["startTime"] == "2026-01-01T00:00:00Z"  # kept, not moved
    assert got["conditions"][0]["type"] == "Complete"


def test_failure_reports_error_and_backoff_condition() -> None:
    got = status(info(TaskState.ARCHIVED, 2, last_error="HTTP 500 from provider", last_failed_at=NOW))
    assert got["phase"] == "Failed" and got["error"] == "HTTP 500 from provider"
    assert got["conditions"][0]["reason"] == "BackoffLimitExceeded"


def test_condition_time_moves_only_on_a_flip() -> None:
    first = status(info(TaskState.ACTIVE))
    later = status_from_task(
        first, info(TaskState.ACTIVE), task_id="llmtask-u", result_ref="r", now=NOW + timedelta(hours=1)
    )
    assert later["conditions"] == first["conditions"]
    assert changed_fields(first, later) == {}


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b'{"usage": "x"}', b""])
def test_odd_results_never_break_the_mirror(raw: bytes) -> None:
    parse_result(raw)


@given(st.text(max_size=3000), st.integers(min_value=1, max_value=2048))
def test_preview_is_a_utf8_prefix_within_the_limit(text: str, limit: int) -> None:
    cut = preview(text, limit)
    assert len(cut.encode()) <= limit and text.startswith(cut)


@given(st.integers(0, 100_000), st.integers(0, 5), st.integers(1, 50), st.integers(1, 500))
def test_recommendation_stays_within_limits(workload: int, low: int, span: int, target: int) -> None:
    limits = PoolLimits(low, low + span, target, 60)
    got = recommend(workload, limits)
    assert limits.min_replicas <= got <= limits.max_replicas
    if workload and low + span >= -(-workload // target):
        assert got * target >= workload  # enough replicas for the backlog


def test_stabilizer_scales_up_at_once_and_down_only_after_the_window() -> None:
    stab = Stabilizer()
    assert stab.decide(5, current=1, now=0, window=30) == 5
    assert stab.decide(0, current=5, now=10, window=30) == 5  # within the window
    assert stab.decide(0, current=5, now=41, window=30) == 0  # the 5 has aged out
    fresh = Stabilizer()  # e.g. after a controller restart: the current size counts as recent
    assert fresh.decide(0, current=3, now=100, window=30) == 3


def test_llmtask_round_trips_to_the_worker_payload() -> None:
    obj = build_llmtask(
        namespace="ns",
        model="deepseek-chat",
        messages=[ChatMessage(role="user", content="hi")],
        system="be brief",
        parameters=LLMParameters(temperature=0.5, max_tokens=10),
        callback_url="https://example.com/cb",
        queue="low",
        max_retries=2,
        name="t1",
    )
    # created with the finalizer, which saves the controller a write before it enqueues
    assert obj["metadata"] == {"namespace": "ns", "name": "t1", "finalizers": ["llm.syt.io/finalizer"]}
    payload = payload_from_spec(obj["spec"], namespace="ns", name="t1", default_model="x")
    assert [m.role for m in payload.messages] == ["system", "user"]
    assert payload.parameters.max_tokens == 10 and payload.resource == "ns/t1"
    assert build_llmtask(namespace="ns", model="m", prompt="p")["metadata"]["generateName"] == "llmtask-"
    assert task_id_for_uid("abc") == "llmtask-abc"
    with pytest.raises(ValueError, match="exactly one"):
        build_llmtask(namespace="ns", model="m")
    with pytest.raises(ValueError, match="DNS-1123"):
        build_llmtask(namespace="ns", model="m", prompt="p", name="Bad_Name")


def test_worker_deployment_wires_queues_secrets_and_hardening() -> None:
    spec = {
        "image": "img:1",
        "queues": [{"name": "a", "weight": 3}, {"name": "b"}],
        "concurrency": 4,
        "secrets": {"redisUrl": {"name": "s", "key": "r"}},
        "env": [{"name": "X", "value": "1"}],
    }
    dep = build_deployment("pool", "ns", spec, replicas=2)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert queues_setting(spec["queues"]) == "a=3,b=1" == env["SYTQ_QUEUES"]["value"]
    assert env["SYTQ_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "r"}
    assert "DEEPSEEK_API_KEY" not in env and env["X"]["value"] == "1"
    assert dep["spec"]["replicas"] == 2 and container["securityContext"]["readOnlyRootFilesystem"] is True


def test_worker_pods_wait_for_calls_in_flight_within_their_grace_period_and_have_probes() -> None:
    default = build_deployment("pool", "ns", {"image": "img:1"}, replicas=1)["spec"]["template"]["spec"]
    slow = build_deployment(
        "pool", "ns", {"image": "img:1", "terminationGracePeriodSeconds": 900}, replicas=1
    )["spec"]["template"]["spec"]
    for pod, grace in ((default, 120), (slow, 900)):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert pod["terminationGracePeriodSeconds"] == grace
        # the wait for calls in flight ends before Kubernetes kills the pod, leaving time to store outcomes
        assert int(env["SYTQ_SHUTDOWN_TIMEOUT"]) == grace - 15
    container = default["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # a pool's own env still wins (the last duplicate name is the one Kubernetes uses)
    custom = build_deployment(
        "pool", "ns", {"image": "i", "env": [{"name": "SYTQ_SHUTDOWN_TIMEOUT", "value": "30"}]}, replicas=1
    )
    names = [e["name"] for e in custom["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("SYTQ_SHUTDOWN_TIMEOUT") == 2 and names[-1] == "SYTQ_SHUTDOWN_TIMEOUT"


def test_worker_pods_mount_the_operators_redis_ca_only_when_configured() -> None:
    from sytq.settings import Settings

    spec = {"image": "img:1"}
    plain = build_deployment("pool", "ns", spec, replicas=1)["spec"]["template"]["spec"]
    assert [v["name"] for v in plain["volumes"]] == ["tmp"]
    assert [m["name"] for m in plain["containers"][0]["volumeMounts"]] == ["tmp"]
    assert redis_ca_of(Settings(controller_pool_redis_ca_secret="")) is None

    ca = redis_ca_of(
        Settings(controller_pool_redis_ca_secret="redis-ca", controller_pool_redis_ca_key="ca.pem")
    )
    assert ca == RedisCaSecret("redis-ca", "ca.pem")
    pod = build_deployment("pool", "ns", spec, replicas=1, redis_ca=ca)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "redis-ca")
    assert volume["secret"] == {"secretName": "redis-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "redis-ca")
    assert mount == {"name": "redis-ca", "mountPath": REDIS_CA_DIR, "readOnly": True}


async def test_waiting_for_a_patch_slot_gives_way_to_news_without_leaking_slots() -> None:
    import asyncio

    from controller.llmtasks import _acquire_unless

    slots, wake = asyncio.Semaphore(1), asyncio.Event()
    assert await _acquire_unless(slots, wake)  # free: taken at once
    waiter = asyncio.create_task(_acquire_unless(slots, wake))
    await asyncio.sleep(0.01)
    wake.set()  # news while waiting: give up
    assert await waiter is False
    slots.release()
    wake.clear()
    assert await _acquire_unless(slots, wake)  # the slot was not leaked
    slots.release()
    assert not slots.locked()


def test_llmtasks_get_no_kopf_essence_but_pools_do() -> None:
    import kopf

    from controller.main import kopf_settings

    storage = kopf_settings().persistence.diffbase_storage
    version = "llm.syt.io/v1alpha1"
    task = kopf.Body({"apiVersion": version, "kind": "LLMTask", "spec": {"prompt": "p"}})
    pool = kopf.Body({"apiVersion": version, "kind": "LLMWorkerPool", "spec": {"maxReplicas": 3}})
    assert storage.build(body=task) == {}  # never stored, so never compared: not built either
    assert storage.build(body=pool)["spec"] == {"maxReplicas": 3}
    key = "llm.syt.io/last-handled-configuration"
    stored = {"metadata": {"annotations": {key: '{"spec": {"maxReplicas": 2}}'}}}
    assert storage.fetch(body=kopf.Body({**task, **stored})) is None
    assert storage.fetch(body=kopf.Body({**pool, **stored})) == {"spec": {"maxReplicas": 2}}


def test_rfc3339_is_utc_to_the_second() -> None:
    from controller.status import rfc3339

    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    two_hours_east = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 1, 4, 5, tzinfo=two_hours_east)) == "2026-01-01T23:04:05Z"


async def test_kube_client_skips_per_request_proxy_lookups_unless_a_proxy_is_set(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sytq.k8s_resources import kube_api_client

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)
    api = await kube_api_client()
    assert api.rest_client.pool_manager.trust_env is False
    await api.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    api = await kube_api_client()
    assert api.rest_client.pool_manager.trust_env is True  # the proxy variables are honoured
    await api.close()


async def test_connection_warmer_opens_a_stage_at_a_time() -> None:
    import asyncio

    from controller import warmup

    touched: list[int] = []
    gate = asyncio.Event()

    async def touch() -> None:
        touched.append(1)
        await gate.wait()

    warmer = warmup.ConnectionWarmer(touch, most=64)

    async def settle() -> int:
        gate.set()
        await asyncio.sleep(0.01)
        gate.clear()
        count = len(touched)
        touched.clear()
        return count

    warmer.ahead_of(15)
    assert await settle() == 0  # not a burst
    warmer.ahead_of(16)
    await asyncio.sleep(0)
    warmer.ahead_of(40)  # the first stage is still opening: wait for it
    assert await settle() == 16
    warmer.ahead_of(31)
    assert await settle() == 0  # stage 16 is done
    warmer.ahead_of(40)
    assert await settle() == 32
    warmer.ahead_of(1000)
    assert await settle() == 64  # never more than the final patch lane
    warmer.ahead_of(1000)
    assert await settle() == 0
    warmer._stage_at -= warmup.STAGE_MEMORY_SECONDS + 1  # sustained load: warm again now and then
    warmer.ahead_of(1000)
    assert await settle() == 64
    warmer.ahead_of(3)  # the burst is over
    warmer.ahead_of(20)  # the next one starts from the first stage
    assert await settle() == 16
    await warmer.close()
