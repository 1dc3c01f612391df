"""Fixtures for tests against a real Kubernetes control plane (etcd + kube-apiserver).

``kube`` is one control plane for the whole session; ``kube_namespace`` is a fresh namespace per
test. If the binaries cannot be built (hack/k8s/build.sh) the fixture errors: these tests never
skip. There is no kubelet/scheduler/controller-manager: see docs/testing-kubernetes.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.harness.kube import KubeControlPlane


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeControlPlane]:
    plane = KubeControlPlane()
    try:
        plane.start()
    except BaseException:
        plane.stop()
        raise
    yield plane
    plane.stop()


@pytest.fixture
def kube_namespace(kube: KubeControlPlane) -> Iterator[str]:
    """A new namespace, deleted after the test.

    Without kube-controller-manager a deleted namespace stays ``Terminating`` (its objects are not
    purged), so names are unique per test and deletion does not wait.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.create_namespace(name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
