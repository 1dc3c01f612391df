"""What an LLMWorkerPool may put into its worker pods: the operator's allow-lists, field by field.

The controller creates the worker Deployment with its own rights, so without these lists anyone
allowed to create a pool could run any image, as any ServiceAccount, with any Secret of the
namespace. The same rules are enforced at admission by the ValidatingAdmissionPolicy shipped in
manifests/ and the chart (CEL over the same settings); this is the check that holds when that
policy is absent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sytq.settings import Settings

# Pod annotations in Kubernetes' own domains change how the pod runs (e.g. an AppArmor profile).
RESERVED_ANNOTATION_DOMAINS = ("kubernetes.io", "k8s.io")
# A pod without serviceAccountName runs as this one.
IMPLICIT_SERVICE_ACCOUNT = "default"


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class PoolPolicy:
    images: tuple[str, ...]  # exact names, or prefixes ending in "*"
    service_accounts: frozenset[str]
    secrets: frozenset[str]
    config_maps: frozenset[str]
    env_names: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolPolicy:
        return cls(
            images=comma_list(settings.controller_pool_images),
            service_accounts=frozenset(comma_list(settings.controller_pool_service_accounts)),
            secrets=frozenset(comma_list(settings.controller_pool_secrets)),
            config_maps=frozenset(comma_list(settings.controller_pool_config_maps)),
            env_names=frozenset(comma_list(settings.controller_pool_env)),
        )

    def allows_image(self, image: str) -> bool:
        return any(image.startswith(p[:-1]) if p.endswith("*") else image == p for p in self.images)


def _refused(field: str, value: object, what: str, setting: str) -> str:
    return f"{field}: {value!r} is not {what} (operator setting SYTQ_CONTROLLER_POOL_{setting})"


# Where a Secret or ConfigMap is named inside one entry of spec.env / spec.envFrom.
_ENV_REFS = (("valueFrom", "secretKeyRef", "Secret"), ("valueFrom", "configMapKeyRef", "ConfigMap"))
_ENV_FROM_REFS = (("", "secretRef", "Secret"), ("", "configMapRef", "ConfigMap"))


def _ref_violations(
    field: str, entries: list[Any], refs: tuple[tuple[str, str, str], ...], policy: PoolPolicy
) -> Iterator[str]:
    allowed = {"Secret": (policy.secrets, "SECRETS"), "ConfigMap": (policy.config_maps, "CONFIG_MAPS")}
    for index, entry in enumerate(entries):
        entry = entry if isinstance(entry, Mapping) else {}
        for outer, ref_field, kind in refs:
            holder = (entry.get(outer) or {}) if outer else entry
            name = (holder.get(ref_field) or {}).get("name")
            names, setting = allowed[kind]
            if name is not None and name not in names:
                path = ".".join(p for p in (f"{field}[{index}]", outer, ref_field, "name") if p)
                yield _refused(path, name, f"an allowed {kind}", setting)


def reserved_annotation(key: str) -> bool:
    domain, slash, _ = key.rpartition("/")
    return bool(slash) and any(domain == d or domain.endswith("." + d) for d in RESERVED_ANNOTATION_DOMAINS)


def violations(spec: Mapping[str, Any], policy: PoolPolicy) -> list[str]:
    """Every field of the pool's spec the policy refuses, each named by its path."""
    found: list[str] = []
    image = spec.get("image")
    if not isinstance(image, str) or not policy.allows_image(image):
        found.append(_refused("spec.image", image, "an allowed image", "IMAGES"))
    account = spec.get("serviceAccountName") or IMPLICIT_SERVICE_ACCOUNT
    if account not in policy.service_accounts:
        found.append(
            _refused("spec.serviceAccountName", account, "an allowed ServiceAccount", "SERVICE_ACCOUNTS")
        )
    for key, ref in (spec.get("secrets") or {}).items():
        name = ref.get("name") if isinstance(ref, Mapping) else None
        if name not in policy.secrets:
            found.append(_refused(f"spec.secrets.{key}.name", name, "an allowed Secret", "SECRETS"))
    env = list(spec.get("env") or [])
    for index, entry in enumerate(env):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if name not in policy.env_names:
            found.append(_refused(f"spec.env[{index}].name", name, "an allowed extra variable", "ENV"))
    found.extend(_ref_violations("spec.env", env, _ENV_REFS, policy))
    found.extend(_ref_violations("spec.envFrom", list(spec.get("envFrom") or []), _ENV_FROM_REFS, policy))
    for key in spec.get("podAnnotations") or {}:
        if reserved_annotation(str(key)):
            found.append(f"spec.podAnnotations: {key!r} is in a Kubernetes-reserved domain")
    return found
