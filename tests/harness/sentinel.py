"""A real Redis Sentinel deployment on loopback: one master, two replicas, three Sentinels.

Debian's ``redis-server`` binary runs both roles (``--sentinel`` for the Sentinels). Failover is
tuned to be quick (master declared down after 1 s without answers), as a test needs. With a
``Security`` every server and Sentinel listens with TLS only and the data nodes admit only its ACL user.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from tests.harness.redis_tls import Security
from tests.harness.services import RedisServer, _find_binary, _ServerProcess

MASTER_NAME = "sytq-master"
SENTINEL_PASSWORD = "watch/pw"  # what secured Sentinels require of clients and of each other
DOWN_AFTER_MS = 1000


class ReplicatedRedis(RedisServer):
    """A redis-server that starts as a replica of ``master_port`` (as the master when it is None).

    Full syncs start at once (the default waits 5 s for more replicas to share one)."""

    def __init__(self, master_port: int | None = None, security: Security | None = None) -> None:
        super().__init__()
        self.master_port = master_port
        self.security = security

    def _command(self) -> list[str]:
        cmd = [*super()._command(), "--repl-diskless-sync-delay", "0"]
        if self.security:
            cmd += [*self.security.server_args(), "--tls-port", str(self.port)]
        return cmd if self.master_port is None else [*cmd, "--replicaof", "127.0.0.1", str(self.master_port)]


class SentinelProcess(_ServerProcess):
    """One Sentinel watching ``master_port`` under MASTER_NAME (quorum 2)."""

    def __init__(self, master_port: int, security: Security | None = None) -> None:
        super().__init__("sentinel")
        self.master_port = master_port
        self.security = security
        self.config = self.workdir / "sentinel.conf"

    def _command(self) -> list[str]:
        # Sentinel rewrites its config file as it learns the topology: written once, then kept.
        if not self.config.exists():
            self.config.write_text(
                (self._tls_config() if self.security else f"port {self.port}\n") + "bind 127.0.0.1\n"
                f"dir {self.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
        return [_find_binary("redis-server"), str(self.config), "--sentinel"]

    def _tls_config(self) -> str:
        """TLS only, to clients, to the servers and to the other Sentinels; the servers' ACL user; a
        password of the Sentinels' own."""
        s = self.security
        assert s is not None
        return (
            f"port 0\ntls-port {self.port}\ntls-cert-file {s.cert}\ntls-key-file {s.key}\n"
            f"tls-ca-cert-file {s.ca}\ntls-auth-clients no\ntls-replication yes\n"
            f"sentinel auth-user {MASTER_NAME} {s.user}\nsentinel auth-pass {MASTER_NAME} {s.password}\n"
            f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
        )


class SentinelDeployment:
    """Master + two replicas + three Sentinels; ``url`` is the redis+sentinel:// URL for them."""

    def __init__(self, security: Security | None = None) -> None:
        self.security = security
        self.master = ReplicatedRedis(security=security)
        self.master.start()
        self.replicas = [ReplicatedRedis(self.master.port, security) for _ in range(2)]
        for replica in self.replicas:
            replica.start()
        self.sentinels = [SentinelProcess(self.master.port, security) for _ in range(3)]
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_ready()

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        if self.security is None:
            return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"
        s = self.security
        auth = f"{s.user}:{quote(s.password, safe='')}@"
        query = f"ssl_ca_certs={s.ca}&sentinel_password={quote(SENTINEL_PASSWORD, safe='')}"
        return f"rediss+sentinel://{auth}{hosts}/{MASTER_NAME}/0?{query}"

    def _client(self, port: int, sentinel: bool = False) -> redis.Redis:
        """A plain client of one server or Sentinel (TLS and the ACL user when secured)."""
        extra: dict[str, Any] = self.security.client_kwargs() if self.security else {}
        if sentinel and self.security:  # the Sentinels have only a password of their own
            extra = {k: v for k, v in extra.items() if k != "username"} | {"password": SENTINEL_PASSWORD}
        return redis.Redis(port=port, socket_timeout=1.0, **extra)

    def master_port(self) -> int:
        """The master as the Sentinels see it now."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = self._client(sentinel.port, sentinel=True)
            try:
                _, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(port)
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError("no Sentinel answers")

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the master has both replicas online and every Sentinel knows all of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._replicas_online() == 2 and all(self._sentinel_sees_all(s) for s in self.sentinels):
                return
            time.sleep(0.1)
        raise TimeoutError("the Sentinel deployment did not settle")

    def wait_failover(self, old_port: int, timeout: float = 60.0) -> int:
        """Until the Sentinels name a master other than ``old_port`` and it accepts writes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.master_port()
            except RuntimeError:
                port = old_port
            if port != old_port:
                client = self._client(port)
                try:
                    if client.info("replication")["role"] == "master":
                        return port
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            time.sleep(0.1)
        raise TimeoutError(f"no failover away from port {old_port}")

    def _replicas_online(self) -> int:
        """Replicas of the current master whose initial sync is done (link up)."""
        master, online = self.master_port(), 0
        for server in self.servers:
            if server.port == master or not server.running:
                continue
            client = self._client(server.port)
            try:
                info = client.info("replication")
                if info.get("master_port") == master and info.get("master_link_status") == "up":
                    online += 1
            except redis.RedisError:
                pass
            finally:
                client.close()
        return online

    def _sentinel_sees_all(self, sentinel: SentinelProcess) -> bool:
        client = self._client(sentinel.port, sentinel=True)
        try:
            master = client.sentinel_master(MASTER_NAME)
            return int(master["num-slaves"]) == 2 and int(master["num-other-sentinels"]) == 2
        except redis.RedisError:
            return False
        finally:
            client.close()

    def restore(self) -> None:
        """Restart whatever was killed (it rejoins as a replica) so the next test finds three servers."""
        for server in self.servers:
            if not server.running:
                with contextlib.suppress(Exception):
                    server.start()
        self.wait_ready()

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.close()

    def workdirs(self) -> list[Path]:
        return [p.workdir for p in [*self.sentinels, *self.servers]]
