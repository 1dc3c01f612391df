"""The test control plane behaves like a cluster's API: CRDs, validation, RBAC, and helm."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.harness.kube import KubeControlPlane

GROUP = "harness.sytq.dev"

CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}}
  versions:
    - name: v1
      served: true
      storage: true
      additionalPrinterColumns:
        - name: Size
          type: integer
          jsonPath: .spec.size
        - name: Color
          type: string
          jsonPath: .spec.color
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {{type: integer, minimum: 1, maximum: 10}}
                color: {{type: string, enum: [red, green, blue]}}
"""


def _widget(name: str, size: int, color: str) -> str:
    return f"""
apiVersion: {GROUP}/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
  color: {color}
"""


def _wait_established(kube: KubeControlPlane, crd: str, timeout: float = 30.0) -> None:
    kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", f"--timeout={int(timeout)}s")
    # discovery of the new resource can lag the condition a little
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kube.kubectl("get", "widgets", "-A", check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("widgets never became served")


def test_crd_printer_columns_and_schema_validation(
    kube: KubeControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    kube.apply(CRD)
    _wait_established(kube, f"widgets.{GROUP}")

    manifest = tmp_path / "widget.yaml"
    manifest.write_text(_widget("small", 3, "green"))
    out = kube.kubectl("apply", "-n", kube_namespace, "-f", str(manifest)).stdout
    assert out.strip() == f"widget.{GROUP}/small created"

    table = kube.kubectl("get", "widgets", "-n", kube_namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "COLOR"]  # custom columns replace AGE
    assert table[1].split()[:3] == ["small", "3", "green"]
    assert len(table) == 2
    # the short name works too, and the stored object is what we sent
    obj = kube.get_json("wdg", "small", "-n", kube_namespace)
    assert obj["spec"] == {"size": 3, "color": "green"}

    bad = tmp_path / "bad.yaml"
    bad.write_text(_widget("big", 11, "purple"))
    result = kube.kubectl("apply", "-n", kube_namespace, "-f", str(bad), check=False)
    assert result.returncode != 0
    # the apiserver's OpenAPI validation (enum + maximum), as kubectl shows it
    # The apiserver lists the field errors in no fixed order: compare them as a set.
    header, *causes = result.stderr.splitlines()
    assert header == 'The Widget "big" is invalid: '
    assert sorted(causes) == [
        '* spec.color: Unsupported value: "purple": supported values: "red", "green", "blue"',
        "* spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
    ]
    missing = kube.kubectl("get", "widget", "big", "-n", kube_namespace, check=False)
    assert missing.returncode == 1
    assert f'widgets.{GROUP} "big" not found' in missing.stderr


def test_service_account_rbac(kube: KubeControlPlane, kube_namespace: str) -> None:
    ns = kube_namespace
    kube.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "configmap-reader", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader-binding", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "configmap-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "existing", "namespace": ns},
                "data": {"k": "v"},
            },
        ]
    )
    sa = kube.service_account_kubeconfig(ns, "reader")
    user = f"system:serviceaccount:{ns}:reader"

    # the token is a real TokenRequest token: the apiserver knows who we are
    whoami = json.loads(kube.kubectl("auth", "whoami", "-o", "json", kubeconfig=sa).stdout)
    assert whoami["status"]["userInfo"]["username"] == user
    assert f"system:serviceaccounts:{ns}" in whoami["status"]["userInfo"]["groups"]

    listed = kube.kubectl("get", "configmaps", "-o", "name", kubeconfig=sa)
    assert listed.stdout.split() == ["configmap/existing"]
    got = kube.get_json("configmap", "existing", kubeconfig=sa)
    assert got["data"] == {"k": "v"}

    created = kube.kubectl("create", "configmap", "nope", "--from-literal=a=b", kubeconfig=sa, check=False)
    assert created.returncode == 1
    assert created.stderr.strip() == (
        f'error: failed to create configmap: configmaps is forbidden: User "{user}" cannot create '
        f'resource "configmaps" in API group "" in the namespace "{ns}"'
    )

    secrets = kube.kubectl("get", "secrets", kubeconfig=sa, check=False)
    assert secrets.returncode == 1
    assert secrets.stderr.strip() == (
        f'Error from server (Forbidden): secrets is forbidden: User "{user}" cannot list '
        f'resource "secrets" in API group "" in the namespace "{ns}"'
    )

    # the Role is namespaced: other namespaces stay closed
    other = kube.kubectl("get", "configmaps", "-n", "default", kubeconfig=sa, check=False)
    assert other.returncode == 1
    assert 'cannot list resource "configmaps" in API group "" in the namespace "default"' in other.stderr

    # and the admin can still see what the reader could not create
    assert kube.kubectl("get", "configmap", "nope", "-n", ns, check=False).returncode == 1


def test_helm_version_and_template(kube: KubeControlPlane, tmp_path: Path) -> None:
    version = kube.helm("version", "--short").stdout.strip()
    assert version.startswith("v3."), version

    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: '1.2.3'\n")
    (chart / "values.yaml").write_text("greeting: hi\nreplicas: 2\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-cfg\n"
        "  namespace: {{ .Release.Namespace }}\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  replicas: {{ .Values.replicas | quote }}\n"
        "  app: {{ .Chart.AppVersion | quote }}\n"
    )
    out = kube.helm(
        "template", "rel", str(chart), "--namespace", "space", "--set", "greeting=hello world"
    ).stdout
    assert out == (
        "---\n"
        "# Source: hello/templates/configmap.yaml\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: rel-cfg\n"
        "  namespace: space\n"
        "data:\n"
        '  greeting: "hello world"\n'
        '  replicas: "2"\n'
        '  app: "1.2.3"\n'
    )
