"""kind-config.yaml against kind's v1alpha4 config API.

The schema below is written from kind's own types (sigs.k8s.io/kind pkg/apis/config/v1alpha4,
types.go): kind decodes the file strictly, so an unknown or misspelt field is an error there and
is one here too. The extra checks mirror kind's validation (one control plane at least, valid
and unique host ports)."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

KIND_CONFIG = Path(__file__).resolve().parents[2] / "kind-config.yaml"

_PORT = {"type": "integer", "minimum": -1, "maximum": 65535}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_PATCH_6902 = {
    "type": "object",
    "additionalProperties": False,
    "required": ["group", "version", "kind", "patch"],
    "properties": {k: {"type": "string"} for k in ("group", "version", "kind", "patch")},
}
KIND_V1ALPHA4_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string"},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "labels": _STR_MAP,
                    "extraMounts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "containerPath": {"type": "string"},
                                "hostPath": {"type": "string"},
                                "readOnly": {"type": "boolean"},
                                "selinuxRelabel": {"type": "boolean"},
                                "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
                            },
                        },
                    },
                    "extraPortMappings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "containerPort": _PORT,
                                "hostPort": _PORT,
                                "listenAddress": {"type": "string"},
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                            },
                        },
                    },
                    "gpus": {"type": "string"},
                    "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
                    "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
                },
            },
        },
        "networking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerPort": _PORT,
                "apiServerAddress": {"type": "string"},
                "podSubnet": {"type": "string"},
                "serviceSubnet": {"type": "string"},
                "disableDefaultCNI": {"type": "boolean"},
                "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
                "dnsSearch": {"type": "array", "items": {"type": "string"}},
            },
        },
        "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": _STR_MAP,
        "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
        "containerdConfigPatches": {"type": "array", "items": {"type": "string"}},
        "containerdConfigPatchesJSON6902": {"type": "array", "items": {"type": "string"}},
    },
}


def kind_config_errors(config: Any) -> list[str]:
    """Everything kind would refuse in this config (schema + kind's validation rules)."""
    errors = [e.message for e in jsonschema.Draft7Validator(KIND_V1ALPHA4_SCHEMA).iter_errors(config)]
    if errors:
        return errors
    nodes = config.get("nodes") or [{"role": "control-plane"}]
    if not any(n.get("role", "control-plane") == "control-plane" for n in nodes):
        errors.append("must have at least one control-plane node")
    for node in nodes:
        seen: set[tuple[str, int, str]] = set()
        for mapping in node.get("extraPortMappings") or []:
            address = mapping.get("listenAddress", "0.0.0.0")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                errors.append(f"invalid listenAddress {address!r}")
            key = (address, mapping.get("hostPort", 0), mapping.get("protocol", "TCP"))
            if key[1] > 0 and key in seen:
                errors.append(f"duplicate host port mapping {key}")
            seen.add(key)
    return errors


def test_kind_config_is_valid_and_has_the_promised_shape() -> None:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert kind_config_errors(config) == []
    roles = [n.get("role", "control-plane") for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    api_ports = [m for n in config["nodes"] for m in n.get("extraPortMappings", [])]
    assert api_ports == [
        {"containerPort": 30080, "hostPort": 8080, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["nodes"][0].update(rol="worker"), "Additional properties"),
        (lambda c: c.update(apiVersion="kind.x-k8s.io/v1alpha3"), "kind.x-k8s.io/v1alpha4"),
        (lambda c: c["nodes"][0].update(role="master"), "is not one of"),
        (lambda c: [n.update(role="worker") for n in c["nodes"]], "at least one control-plane"),
        (
            lambda c: c["nodes"][0]["extraPortMappings"].append(dict(c["nodes"][0]["extraPortMappings"][0])),
            "duplicate host port",
        ),
        (lambda c: c["nodes"][0]["extraPortMappings"][0].update(hostPort=70000), "is greater than"),
    ],
    ids=["typo", "old-api", "bad-role", "no-control-plane", "duplicate-port", "port-range"],
)
def test_the_checker_catches_what_kind_rejects(mutate: Any, expected: str) -> None:
    config = copy.deepcopy(yaml.safe_load(KIND_CONFIG.read_text()))
    mutate(config)
    assert any(expected in e for e in kind_config_errors(config)), kind_config_errors(config)
