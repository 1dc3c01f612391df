"""One way for every process to open Redis: a single server, a Sentinel deployment or a Cluster, from one URL.

``redis://`` / ``rediss://`` / ``unix://`` name one server (redis-py's own URL rules, ACL user and
password included; with ``rediss://`` the TLS options TLS_PARAMETERS, checked here). ``redis+sentinel://``
(``rediss+sentinel://`` for TLS to the master and the Sentinels) names a Sentinel deployment::

    redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/<db>][?sentinel_password=…]

The user and password are the master's; Sentinels that require their own credentials take
``sentinel_username`` / ``sentinel_password`` query parameters. TLS options apply to the master and
the Sentinels alike; ``sentinel_ssl=false`` keeps the Sentinels in plain text and ``sentinel_ssl_*``
overrides an option for the Sentinels only. The client asks the Sentinels for
the current master on every new connection, so after a failover it reconnects to the new master
by itself; a connection to a demoted master is dropped on its first READONLY answer.

``redis+cluster://`` (``rediss+cluster://`` for TLS) names a Redis Cluster by some of its nodes::

    redis+cluster://[user:password@]host1:6379,host2:6379[/]
    rediss+cluster://[user:password@]host1:6379,…[/?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required]

redis-py's RedisCluster learns the rest of the cluster from them and follows slot moves and
failovers itself. It is returned typed as ``Redis`` (it has the same command methods); the few places
that must treat it differently ask ``is_cluster()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from sytq.settings import ConfigError

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DEFAULT_SENTINEL_PORT = 26379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
TLS_PARAMETERS = (
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)
DEFAULT_CLUSTER_PORT = 6379


@dataclass(frozen=True)
class SentinelTarget:
    """A master as named by the Sentinels that watch it."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    tls: dict[str, Any] = field(default_factory=dict)  # redis-py's ssl_* options, for the master
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)  # for the Sentinels


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise ConfigError(f"not a Sentinel URL (redis+sentinel://…): {redact(url)}")
    netloc = parts.netloc.rpartition("@")[2]
    sentinels = tuple(_host_port(item, url) for item in netloc.split(",") if item)
    if not sentinels:
        raise ConfigError(f"a Sentinel URL needs at least one host:port: {redact(url)}")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigError(f"a Sentinel URL's path is /<master-name>[/<db>]: {redact(url)}")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ConfigError(f"the database in a Sentinel URL is a number, not {path[1]!r}")
        db = int(path[1])
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ssl = SENTINEL_SCHEMES[parts.scheme]
    sentinel_only = {"sentinel_username", "sentinel_password", "sentinel_ssl"}
    sentinel_only |= {f"sentinel_{name}" for name in TLS_PARAMETERS}
    unknown = set(query) - sentinel_only - (set(TLS_PARAMETERS) if ssl else set())
    if unknown:
        allowed = f"; rediss+sentinel:// also takes {', '.join(TLS_PARAMETERS)}" if ssl else ""
        raise ConfigError(f"unknown Sentinel URL parameter(s): {', '.join(sorted(unknown))}{allowed}")
    tls = _tls_options({k: v for k, v in query.items() if k in TLS_PARAMETERS}, url)
    own = {k.removeprefix("sentinel_"): v for k, v in query.items() if k.startswith("sentinel_")}
    sentinel_kwargs: dict[str, Any] = {k: v for k, v in own.items() if k in ("username", "password")}
    # Sentinels of a TLS deployment speak TLS too (with the master's options) unless told otherwise.
    if _flag(own.get("ssl", "true" if ssl else "false"), "sentinel_ssl", url):
        sentinel_kwargs |= {"ssl": True, **tls}
        sentinel_kwargs |= _tls_options({k: v for k, v in own.items() if k in TLS_PARAMETERS}, url)
    return SentinelTarget(
        sentinels=sentinels,
        master=path[0],
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=ssl,
        tls=tls if ssl else {},
        sentinel_kwargs=sentinel_kwargs,
    )


@dataclass(frozen=True)
class ClusterTarget:
    """A Redis Cluster as named by some of its nodes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    tls: dict[str, Any] = field(default_factory=dict)  # redis-py's ssl_* options


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def is_cluster(client: object) -> bool:
    """Whether ``client`` (from ``connect``) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def parse_cluster_url(url: str) -> ClusterTarget:
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ConfigError(f"not a Cluster URL (redis+cluster://…): {redact(url)}")
    netloc = parts.netloc.rpartition("@")[2]
    nodes = tuple(_host_port(item, url, DEFAULT_CLUSTER_PORT) for item in netloc.split(",") if item)
    if not nodes:
        raise ConfigError(f"a Cluster URL needs at least one host:port: {redact(url)}")
    if parts.path.strip("/"):
        raise ConfigError(f"a Cluster has only database 0; no path after the hosts: {redact(url)}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ssl = CLUSTER_SCHEMES[parts.scheme]
    unknown = set(query) - set(TLS_PARAMETERS) if ssl else set(query)
    if unknown:
        allowed = f"; rediss+cluster:// takes {', '.join(TLS_PARAMETERS)}" if ssl else ""
        raise ConfigError(f"unknown Cluster URL parameter(s): {', '.join(sorted(unknown))}{allowed}")
    return ClusterTarget(
        nodes=nodes,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=ssl,
        tls=_tls_options(query, url),
    )


def check_server_url(url: str) -> None:
    """Refuse TLS options a one-server URL cannot use; the rest of it is redis-py's to read."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if k.startswith("ssl")}
    if not query:
        return
    if parts.scheme != "rediss":
        raise ConfigError(f"TLS options ({', '.join(sorted(query))}) need a rediss:// URL: {redact(url)}")
    unknown = set(query) - set(TLS_PARAMETERS)
    if unknown:
        allowed = ", ".join(TLS_PARAMETERS)
        raise ConfigError(f"unknown TLS parameter: {', '.join(sorted(unknown))}; rediss:// takes {allowed}")
    _tls_options(query, url)


def _tls_options(query: dict[str, str], url: str) -> dict[str, Any]:
    """redis-py's ssl_* keyword arguments from URL parameters, their values checked."""
    tls: dict[str, Any] = dict(query)
    if "ssl_check_hostname" in tls:
        tls["ssl_check_hostname"] = _flag(tls["ssl_check_hostname"], "ssl_check_hostname", url)
    if tls.get("ssl_cert_reqs", "required") not in ("none", "optional", "required"):
        raise ConfigError(f"ssl_cert_reqs is none, optional or required: {redact(url)}")
    return tls


def _flag(value: str, name: str, url: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} is true or false, not {value!r}: {redact(url)}")


def _host_port(item: str, url: str, default_port: int = DEFAULT_SENTINEL_PORT) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"bad address {item!r} in {redact(url)}")
    return host, int(port) if port else default_port


def redact(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master discovery with a pool that waits for a free connection instead of raising."""


def connect(
    url: str, *, max_connections: int | None = None, wait_for_connection: float | None = None, **options: Any
) -> aioredis.Redis:
    """A client for ``url``. ``max_connections`` with ``wait_for_connection`` gives a pool whose
    callers wait (up to that many seconds) for a free connection rather than failing. On a Cluster
    ``max_connections`` caps each node's pool, except with ``wait_for_connection``: redis-py's
    cluster pools cannot wait, so there connections are not capped rather than refused."""
    blocking = max_connections is not None and wait_for_connection is not None
    if is_cluster_url(url):
        if max_connections is not None and not blocking:
            options["max_connections"] = max_connections  # per node
        return _cluster_client(parse_cluster_url(url), options)
    if is_sentinel_url(url):
        return _sentinel_client(parse_sentinel_url(url), max_connections, wait_for_connection, options)
    check_server_url(url)
    if blocking:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=wait_for_connection, **options
        )
        return aioredis.Redis(connection_pool=pool)
    if max_connections is not None:
        options["max_connections"] = max_connections
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


def _sentinel_client(
    target: SentinelTarget,
    max_connections: int | None,
    wait_for_connection: float | None,
    options: dict[str, Any],
) -> aioredis.Redis:
    timeouts = {k: v for k, v in options.items() if k in ("socket_connect_timeout", "socket_timeout")}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        # The Sentinels are asked on every new connection: they must answer fast or be skipped.
        sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 1.0, **target.sentinel_kwargs},
        **timeouts,
    )
    kwargs: dict[str, Any] = {
        **options,
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        **target.tls,
    }
    pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
        if wait_for_connection is not None:
            kwargs["timeout"] = wait_for_connection
            pool_class = _BlockingSentinelPool
    client: aioredis.Redis = sentinel.master_for(
        target.master, redis_class=aioredis.Redis, connection_pool_class=pool_class, **kwargs
    )
    return client


class _ReconnectingClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return list(await super().execute(raise_on_error, allow_redirections))
        except AttributeError as exc:
            # redis-py 5.3 reads the client's default node, which a concurrent call that lost its node
            # has just reset while the client reconnects: that is a lost connection, not a bug of ours.
            raise RedisConnectionError(f"the Redis Cluster client is reconnecting ({exc})") from exc


class _RedisCluster(RedisCluster):
    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        super().pipeline(transaction, shard_hint)  # its refusals of transaction / shard_hint
        return _ReconnectingClusterPipeline(self)  # type: ignore[abstract]  # redis-py types it abstract


def _cluster_client(target: ClusterTarget, options: dict[str, Any]) -> aioredis.Redis:
    client = _RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **target.tls,
        **options,
    )
    # Same command methods as Redis; callers that need the difference ask is_cluster().
    return cast(aioredis.Redis, client)
