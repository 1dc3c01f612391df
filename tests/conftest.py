"""Session-wide fixtures: real servers started on loopback ports for the whole run.

Fixture modules owned by each part of the suite are listed in ``pytest_plugins``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.harness.services import MariaDBServer, RedisServer, managed

pytest_plugins: list[str] = [
    "tests.harness.api_fixtures",
    "tests.harness.queue_fixtures",
    "tests.harness.llm_fixtures",
    "tests.harness.operator_fixtures",
    "tests.harness.image_fixtures",
    "tests.harness.cluster_fixtures",
    "tests.harness.kube_cluster_fixtures",
]


# Tests under these directories need the Go-built programs or a container build: marked by place,
# so `make unit` (-m "not slow and not k8s and not interop and not image and not cluster") leaves
# them out.
_MARKER_BY_DIRECTORY = {"k8s": "k8s", "interop": "interop", "image": "image", "cluster": "cluster"}
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(_TESTS).parts
        marker = _MARKER_BY_DIRECTORY.get(parts[0]) if len(parts) > 1 else None
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = managed(RedisServer)
    assert isinstance(server, RedisServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    server = managed(MariaDBServer)
    assert isinstance(server, MariaDBServer)
    yield server
    server.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on a freshly flushed database: every test starts from an empty Redis."""
    if not redis_server.running:
        redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()
