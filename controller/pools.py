"""LLMWorkerPool: own a worker Deployment and size it from the depth of the pool's queues."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from redis.exceptions import RedisError

from controller.context import ControllerContext
from controller.deployment import (
    RedisCaSecret,
    build_deployment,
    deployment_name,
    pool_queue_names,
)
from controller.kopf_registry import spawn_without_finalizer
from controller.pool_policy import PoolPolicy, violations
from controller.scaling import PoolLimits, Stabilizer, recommend
from controller.status import condition, rfc3339
from sytq.k8s_resources import GROUP, LLMWORKERPOOL_PLURAL, VERSION
from sytq.queue import QueueError
from sytq.queue.models import QueueNotFoundError
from sytq.settings import Settings, get_settings

SCALE_INTERVAL_SECONDS = get_settings().controller_scale_interval_seconds
POLICY_VIOLATION = "PolicyViolation"


def redis_ca_of(settings: Settings) -> RedisCaSecret | None:
    name = settings.controller_pool_redis_ca_secret
    return RedisCaSecret(name, settings.controller_pool_redis_ca_key) if name else None


def limits_of(spec: kopf.Spec) -> PoolLimits:
    return PoolLimits(
        min_replicas=int(spec.get("minReplicas", 0)),
        max_replicas=int(spec.get("maxReplicas", 10)),
        target_backlog_per_replica=int(spec.get("targetBacklogPerReplica", 20)),
        stabilization_seconds=float(spec.get("scaleDownStabilizationSeconds", 300)),
    )


async def ensure_deployment(ctx: ControllerContext, body: kopf.Body, logger: kopf.Logger) -> int:
    """Create the pool's Deployment, or bring its pod template up to date; returns its replicas."""
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    desired = build_deployment(
        name,
        namespace,
        body.spec,
        replicas=limits_of(body.spec).min_replicas,
        redis_ca=redis_ca_of(ctx.settings),
    )
    kopf.adopt(desired, owner=body)
    try:
        existing = await ctx.apps.read_namespaced_deployment(deployment_name(name), namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        try:
            await ctx.apps.create_namespaced_deployment(namespace, desired)  # type: ignore[arg-type]
        except ApiException as create_exc:
            if create_exc.status != 409:
                raise
            # Created a moment ago by the other handler of this pool (create vs. timer race).
            existing = await ctx.apps.read_namespaced_deployment(deployment_name(name), namespace)
            return int(existing.spec.replicas or 0)
        kopf.event(
            body,
            type="Normal",
            reason="DeploymentCreated",
            message=f"created Deployment {deployment_name(name)}",
        )
        logger.info("created Deployment %s", deployment_name(name))
        return int(desired["spec"]["replicas"])
    # Leave replicas alone: the autoscaler owns them. The pod template is replaced, not merged, so
    # env, envFrom or annotations dropped from the pool leave the pods too.
    await ctx.apps.patch_namespaced_deployment(
        deployment_name(name),
        namespace,
        {
            "metadata": {"labels": desired["metadata"]["labels"]},
            "spec": {"template": {**desired["spec"]["template"], "$patch": "replace"}},
        },
    )
    return int(existing.spec.replicas or 0)


def admitted(ctx: ControllerContext, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> bool:
    """Whether the operator's pool policy allows the spec. If not, the status says which fields are
    refused (condition Ready=False, reason PolicyViolation), an Event says it once per new verdict,
    and nothing is created, updated or scaled: a Deployment from an earlier spec keeps its template
    and size."""
    refused = violations(body.spec, PoolPolicy.from_settings(ctx.settings))
    if not refused:
        return True
    message = "; ".join(refused)[:2000]
    old = _previous_condition(body, "Ready")
    if old is None or (old.get("reason"), old.get("message")) != (POLICY_VIOLATION, message):
        kopf.event(body, type="Warning", reason=POLICY_VIOLATION, message=f"no worker Deployment: {message}")
        logger.warning("pool %s/%s refused: %s", body.metadata.namespace, body.metadata.name, message)
    _set_condition(patch, body, _condition("Ready", False, POLICY_VIOLATION, message, body))
    patch.status["observedGeneration"] = body.metadata.get("generation")
    return False


@kopf.on.create(GROUP, VERSION, LLMWORKERPOOL_PLURAL, id="deployment")
@kopf.on.resume(GROUP, VERSION, LLMWORKERPOOL_PLURAL, id="deployment")
@kopf.on.update(GROUP, VERSION, LLMWORKERPOOL_PLURAL, id="deployment", field="spec")
async def reconcile_pool_deployment(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    if admitted(memo["ctx"], body, patch, logger):
        await ensure_deployment(memo["ctx"], body, logger)
        _reconciled(patch, body)


async def _queue_load(ctx: ControllerContext, queues: list[str]) -> tuple[int, int]:
    """(pending, active) summed over the queues."""
    pending = active = 0
    for queue in queues:
        try:
            stats = await ctx.inspector.queue_stats(queue)
        except QueueNotFoundError:
            continue  # nothing was ever enqueued there (or Redis was emptied): no load
        pending += stats.pending
        active += stats.active
    return pending, active


@kopf.timer(
    GROUP,
    VERSION,
    LLMWORKERPOOL_PLURAL,
    id="autoscale",
    interval=SCALE_INTERVAL_SECONDS,
    backoff=SCALE_INTERVAL_SECONDS,
)
async def autoscale_pool(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    ctx: ControllerContext = memo["ctx"]
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    limits = limits_of(body.spec)
    if not admitted(ctx, body, patch, logger):
        return
    try:
        # Every worker also serves the callback queue: callbacks waiting keep a pool from zero.
        queues = [*pool_queue_names(body.spec), ctx.settings.callback_queue]
        pending, active = await _queue_load(ctx, list(dict.fromkeys(queues)))
    except (QueueError, RedisError, OSError) as exc:
        _set_condition(patch, body, _condition("QueueReachable", False, "RedisError", str(exc)[:500], body))
        raise kopf.TemporaryError(f"cannot read queue depth: {exc}", delay=SCALE_INTERVAL_SECONDS) from exc
    current = await ensure_deployment(ctx, body, logger)
    _reconciled(patch, body)
    recommendation = recommend(pending + active, limits)
    stabilizer: Stabilizer = memo.setdefault("stabilizer", Stabilizer())
    target = stabilizer.decide(recommendation, current, time.monotonic(), limits.stabilization_seconds)
    if target != current:
        await ctx.apps.patch_namespaced_deployment_scale(
            deployment_name(name), namespace, {"spec": {"replicas": target}}
        )
        reason = "ScaledUp" if target > current else "ScaledDown"
        message = f"{current} -> {target} replicas: {pending} pending, {active} active"
        kopf.event(body, type="Normal", reason=reason, message=message)
        logger.info("pool %s/%s %s", namespace, name, message)
        patch.status["lastScaleTime"] = rfc3339(datetime.now(UTC))
        patch.status["lastScaleReason"] = message
    patch.status["replicas"] = target
    patch.status["desiredReplicas"] = recommendation
    patch.status["queueDepth"] = pending
    patch.status["inFlight"] = active
    patch.status["deployment"] = deployment_name(name)
    patch.status["observedGeneration"] = body.metadata.get("generation")
    _set_condition(patch, body, _condition("QueueReachable", True, "Polled", "queue depth read", body))


# No kopf finalizer: the timer needs no cleanup, and the pool's Deployment goes with it by its owner
# reference. With one, a pool deleted together with the controller (helm uninstall) stayed forever.
spawn_without_finalizer(autoscale_pool)


def _condition(type_: str, ok: bool, reason: str, message: str, body: kopf.Body) -> dict[str, Any]:
    return condition(type_, ok, reason, message, now=datetime.now(UTC), previous=body.status)


def _reconciled(patch: kopf.Patch, body: kopf.Body) -> None:
    _set_condition(patch, body, _condition("Ready", True, "Reconciled", "worker Deployment reconciled", body))


def _previous_condition(body: kopf.Body, type_: str) -> dict[str, Any] | None:
    return next((c for c in body.status.get("conditions") or [] if c.get("type") == type_), None)


def _set_condition(patch: kopf.Patch, body: kopf.Body, entry: dict[str, Any]) -> None:
    """Replace one condition, keeping the others (a merge patch replaces the whole list)."""
    current = patch.status.get("conditions") or body.status.get("conditions") or []
    others = [dict(c) for c in current if c.get("type") != entry["type"]]
    patch.status["conditions"] = sorted([*others, entry], key=lambda c: str(c["type"]))
