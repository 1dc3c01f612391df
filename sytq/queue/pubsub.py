"""Redis pub/sub subscription that outlives connection losses: the one ``subscribe()`` of the product.

On a Redis Cluster a PUBLISH reaches every node, so the subscription is made on one node picked at
random (and another one after a loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisError

from sytq.redis_connect import is_cluster

log = logging.getLogger(__name__)
RESUBSCRIBE_DELAY_SECONDS = 1.0


async def subscribe(
    redis: aioredis.Redis,
    channel: str,
    on_message: Callable[[bytes], None],
    *,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Run until cancelled, handing every message on ``channel`` to ``on_message``. After a lost
    connection it subscribes again; messages sent in between are lost, so ``on_subscribed`` (called
    once Redis confirmed each subscribe) is where a listener catches up."""
    while True:
        node = None
        if is_cluster(redis):
            node = await _any_node(redis)
            if node is None:
                log.warning("no node of the Redis Cluster answers; subscribing to %s again soon", channel)
                await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
                continue
        pubsub = (node or redis).pubsub()
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "message":
                    on_message(message["data"])
                elif kind == "subscribe" and on_subscribed is not None:
                    on_subscribed()  # Redis confirmed it (a refused subscribe raises from listen)
        except (RedisError, OSError) as exc:
            log.warning(
                "subscription to %s lost (%s); subscribing again in %.0fs",
                channel,
                exc,
                RESUBSCRIBE_DELAY_SECONDS,
            )
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if node is not None:
                with contextlib.suppress(Exception):
                    await node.aclose()


async def _any_node(cluster: aioredis.Redis) -> aioredis.Redis | None:
    """A plain client to one node of the cluster (None when the cluster cannot be reached now)."""
    assert isinstance(cluster, RedisCluster)
    try:
        await cluster.initialize()
    except (RedisError, OSError):
        return None
    node = random.choice(cluster.get_nodes())
    pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    return aioredis.Redis(connection_pool=pool)
