"""Order of the cluster tests: the plain manifests' module runs before the Helm release is
installed, since both use namespace syt-queue and the same CRDs (the manifests' names are fixed)."""

from __future__ import annotations

import pytest

MANIFESTS_MODULE = "test_manifests.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    manifests = [item for item in items if item.path.name == MANIFESTS_MODULE]
    if not manifests:
        return
    rest = [item for item in items if item.path.name != MANIFESTS_MODULE]
    first_helm = next(
        (n for n, item in enumerate(rest) if "helm_release" in getattr(item, "fixturenames", ())), len(rest)
    )
    items[:] = rest[:first_helm] + manifests + rest[first_helm:]
