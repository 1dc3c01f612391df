"""Fixtures for tests on a real Redis Cluster: the deployment (once per session) and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sytq.redis_connect import connect
from tests.harness.redis_cluster import RedisClusterDeployment


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisClusterDeployment]:
    deployment = RedisClusterDeployment(masters=3, replicas=1)
    yield deployment
    deployment.close()


@pytest.fixture
async def cluster_client(cluster: RedisClusterDeployment) -> AsyncIterator[aioredis.Redis]:
    client = connect(cluster.url, socket_connect_timeout=1.0, socket_timeout=2.0)
    yield client
    await client.aclose()
