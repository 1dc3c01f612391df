"""A real Redis Cluster on loopback: six Debian redis-server nodes, three masters and three replicas.

Created with ``redis-cli --cluster create … --cluster-replicas 1``, as an operator would. A master
that stops answering is declared failed after NODE_TIMEOUT_MS, so a failover test is quick.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis

from tests.harness.redis_tls import Security
from tests.harness.services import RedisServer, _find_binary, free_port

NODE_TIMEOUT_MS = 1000
SLOTS = 16384


class ClusterNode(RedisServer):
    """A redis-server in cluster mode; its cluster bus gets its own free port (not port + 10000,
    which may be taken or beyond 65535). With ``security`` it listens with TLS only, on ``port``."""

    def __init__(self, security: Security | None = None) -> None:
        super().__init__()
        self.bus_port = free_port()
        self.security = security

    def _command(self) -> list[str]:
        tls_port = ["--tls-port", str(self.port)] if self.security else []
        return [
            *super()._command(),
            *(self.security.server_args() if self.security else []),
            *tls_port,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.workdir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(self.bus_port),
            # A replica of a dead master takes over at once, however stale it may look.
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def client(self) -> redis.Redis:
        extra = self.security.client_kwargs() if self.security else {}
        return redis.Redis(port=self.port, socket_timeout=2.0, **extra)


class RedisClusterDeployment:
    """``masters`` masters with ``replicas`` replicas each; ``url`` is the redis+cluster:// URL."""

    def __init__(self, masters: int = 3, replicas: int = 1, security: Security | None = None) -> None:
        self.security = security
        self.nodes = [ClusterNode(security) for _ in range(masters * (1 + replicas))]
        for node in self.nodes:
            node.start()
        if masters >= 3:
            self._create(replicas)
        else:
            self._create_by_hand(masters)
        self.wait_ready()

    def _create(self, replicas: int) -> None:
        hosts = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [_find_binary("redis-cli"), *(self.security.cli_args() if self.security else []),
             "--cluster", "create", *hosts, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def _create_by_hand(self, masters: int) -> None:
        """redis-cli refuses fewer than three masters: slots are split and nodes joined by hand."""
        first = self.nodes[0]
        ids = [_node_id(node) for node in self.nodes]
        for i, node in enumerate(self.nodes[:masters]):
            with node.client() as client:
                first_slot, end = i * SLOTS // masters, (i + 1) * SLOTS // masters
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first_slot, end - 1)
        for node in self.nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        for i, node in enumerate(self.nodes[masters:]):
            master_id = ids[i % masters]
            _until(lambda n=node, m=master_id: m in _cluster_nodes(n), "a replica did not meet its master")
            with node.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", master_id)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.running_nodes())
        if self.security is None:
            return f"redis+cluster://{hosts}"
        s = self.security
        return f"rediss+cluster://{s.user}:{quote(s.password, safe='')}@{hosts}/?ssl_ca_certs={s.ca}"

    def running_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running]

    def masters(self) -> list[ClusterNode]:
        """Running nodes that serve slots as masters now."""
        found = []
        for node in self.running_nodes():
            try:
                mine = next(line for line in _cluster_nodes(node).splitlines() if "myself" in line).split()
            except (redis.RedisError, StopIteration):
                continue
            if "master" in mine[2] and len(mine) > 8:  # fields past the 8th are its slot ranges
                found.append(node)
        return found

    def master_of(self, key: str) -> ClusterNode:
        """The node that serves ``key``'s slot now."""
        for node in self.masters():
            with node.client() as client:
                try:
                    client.execute_command("EXISTS", key)  # MOVED when another master serves the slot
                    return node
                except redis.ResponseError:
                    continue
        raise RuntimeError(f"no master serves {key!r}")

    def queues_on_every_master(self, prefix: str) -> list[str]:
        """One queue name per master: the hash tags (``{<queue>}``) fall into each master's slots."""
        by_master: dict[int, str] = {}
        n = 0
        while len(by_master) < len(self.masters()):
            name = f"{prefix}{n}"
            by_master.setdefault(self.master_of(f"asynq:{{{name}}}:pending").port, name)
            n += 1
        return sorted(by_master.values())

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running node reports the cluster ok, all slots covered, every replica synced."""
        _until(self._settled, "the cluster did not settle", timeout)

    def _settled(self) -> bool:
        for node in self.running_nodes():
            try:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    if "cluster_state:ok" not in info or f"cluster_slots_ok:{SLOTS}" not in info:
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
            except redis.RedisError:
                return False
        return True

    def kill_master(self, master: ClusterNode, timeout: float = 60.0) -> ClusterNode:
        """kill -9 ``master``; returns its replica once that serves the slots and the cluster is ok."""
        replicas = [n for n in self.running_nodes() if n is not master and _replica_of(n) == master.port]
        if not replicas:
            raise RuntimeError(f"master on port {master.port} has no replica")
        master.kill()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in replicas:
                if node in self.masters():
                    self.wait_ready(max(1.0, deadline - time.monotonic()))
                    return node
            time.sleep(0.05)
        raise TimeoutError(f"no replica took over from port {master.port}")

    def restore(self) -> None:
        """Restart a killed node (it rejoins as a replica) so the next test finds six nodes."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_ready()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def workdirs(self) -> list[Path]:
        return [n.workdir for n in self.nodes]


def _node_id(node: ClusterNode) -> str:
    with node.client() as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def _cluster_nodes(node: ClusterNode) -> str:
    with node.client() as client:
        return str(client.execute_command("CLUSTER", "NODES").decode())


def _replica_of(node: ClusterNode) -> int | None:
    with node.client() as client:
        info = client.info("replication")
    return int(info["master_port"]) if info["role"] == "slave" else None


def _until(check: Callable[[], bool], message: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(message)
