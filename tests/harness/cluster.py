"""A real single-node Kubernetes cluster for tests: the control plane of ``kube.py`` plus
kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy and CoreDNS.

Pods really run (runc containers on a CNI bridge), Services really route (kube-proxy's iptables
rules) and resolve (CoreDNS), Deployments roll, probes gate readiness, owner references are
garbage-collected. Binaries come from ``hack/k8s/build.sh --node``; containerd, runc, the CNI
plugins and iptables from Debian (hack/install-test-deps.sh). No registry is reachable: images are
imported into containerd (``import_image``) and pods use ``imagePullPolicy: Never/IfNotPresent``.

The machine is changed while the cluster runs, and put back by ``stop()``: a bridge ``sytq0`` with
the host address 10.244.0.1 (pods 10.244.0.0/24; kube-apiserver, CoreDNS and the tests' Redis and
MariaDB listen there for the pods), kube-proxy's and the CNI plugins' iptables chains, pod network
namespaces, mounts and cgroups, ``net.ipv4.ip_forward`` and the kernel settings the kubelet sets.
One cluster at a time per machine (a lock file); a cluster left by a killed run is swept away by
the next one. Needs root. See docs/testing-kubernetes.md.

For humans: ``python -m tests.harness.cluster`` starts one and prints ``export KUBECONFIG=...``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.cluster_host import (
    BRIDGE,
    LOCK_FILE,
    SYSCTLS_TO_RESTORE,
    WORKDIR_PREFIX,
    cleanup_machine,
    kill_pod_processes,
    read_sysctl,
    run,
    sweep_leftovers,
    write_sysctl,
)
from tests.harness.kube import (
    ADMIN_USER,
    REPO_ROOT,
    SERVICE_CIDR,
    KubeControlPlane,
    _Child,
    serve_until_interrupted,
)
from tests.harness.operator_fixtures import wait_until
from tests.harness.services import free_port

BUILD_SCRIPT = REPO_ROOT / "hack" / "k8s" / "build.sh"
NODE_NAME = "sytq-node"
POD_CIDR = "10.244.0.0/24"
HOST_IP = "10.244.0.1"  # the host on the pods' bridge: apiserver, DNS, the tests' Redis/MariaDB
KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/sytq-pause:1"
CNI_BIN_DIR = "/usr/lib/cni"


def build_node_binaries(timeout: float = 3600.0) -> Path:
    """Run hack/k8s/build.sh --node (instant when the cache is warm) and return its bin dir."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--node"],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{BUILD_SCRIPT} --node failed with exit code {proc.returncode}")
    return Path(lines[-1])


class KubeCluster(KubeControlPlane):
    """etcd, kube-apiserver (on the bridge address), kube-controller-manager, kube-scheduler,
    containerd, kubelet, kube-proxy and CoreDNS; one node named ``sytq-node``."""

    def __init__(self, bin_dir: str | Path | None = None) -> None:
        env_bin = os.environ.get("SYTQ_K8S_BIN")
        super().__init__(
            bin_dir=bin_dir or env_bin or build_node_binaries(),
            workdir=tempfile.mkdtemp(prefix=WORKDIR_PREFIX),
            bind_address=HOST_IP,
        )
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self._component_tokens = {
            name: secrets.token_hex(24)
            for name in ("node", "controller-manager", "scheduler", "proxy", "dns")
        }
        self._lock_fd: int | None = None
        self._saved_sysctls: dict[str, str] = {}
        self.containerd_socket = self.workdir / "containerd" / "containerd.sock"
        self.dns_ready_port = 0

    # -- public API ---------------------------------------------------------------------------

    def start(self, timeout: float = 240.0) -> KubeCluster:
        if self._started:
            return self
        t0 = time.monotonic()
        self._take_machine_lock(timeout)
        try:
            sweep_leftovers()
            self._prepare_host()
            super().start(timeout)  # runs _start_processes below
            self._wait_node_ready(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self._teardown()
        finally:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
            shutil.rmtree(self.workdir, ignore_errors=True)

    def ctr(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this cluster's containerd, in the CRI's ``k8s.io`` namespace."""
        return run(
            "ctr",
            f"--address={self.containerd_socket}",
            "--namespace=k8s.io",
            *args,
            timeout=timeout,
            check=check,
        )

    def import_image(self, archive: str | Path) -> None:
        """Import a docker-archive or OCI archive into containerd, where the kubelet finds it."""
        self.ctr("images", "import", str(archive))

    def wait_for(self, what: str, predicate: Any, timeout: float = 120.0, interval: float = 0.5) -> Any:
        """Poll ``predicate()`` until it returns something truthy; fail with ``what``, the pods,
        events and the node components' logs."""
        # the message's end survives wait_until's truncation: what was awaited comes last
        return wait_until(predicate, timeout, lambda: f"{self.describe()}\nwaiting for: {what}", interval)

    def describe(self) -> str:
        """The kubelet's last log lines, recent events and the pods (for failure messages)."""
        parts = [f"--- kubelet ---\n{self.logs().get('kubelet', '')[-1200:]}"]
        for args, chars in (
            (("get", "events", "-A", "--sort-by=.lastTimestamp"), 1500),
            (("get", "pods", "-A", "-o", "wide"), 2000),
        ):
            proc = self.kubectl(*args, check=False)
            parts.append(f"--- kubectl {' '.join(args)} ---\n{proc.stdout[-chars:]}{proc.stderr[-300:]}")
        return "\n".join(parts)

    # -- hooks of KubeControlPlane ------------------------------------------------------------

    def _serving_ips(self) -> tuple[str, ...]:
        return (HOST_IP, KUBERNETES_SERVICE_IP)

    def _extra_tokens(self) -> list[str]:
        tokens = self._component_tokens
        return [
            f'{tokens["node"]},system:node:{NODE_NAME},node,"system:nodes"',
            f"{tokens['controller-manager']},system:kube-controller-manager,kcm",
            f"{tokens['scheduler']},system:kube-scheduler,scheduler",
            f"{tokens['proxy']},system:kube-proxy,proxy",
            f"{tokens['dns']},sytq:coredns,coredns",
        ]

    def _authorization_mode(self) -> str:
        return "Node,RBAC"

    def _apiserver_extra_flags(self) -> list[str]:
        pki = self.workdir / "pki"
        return [
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            # the node's name does not resolve here
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _start_processes(self, bin_dir: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        _write_client_cert(
            self.workdir / "pki", "kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        )
        super()._start_processes(bin_dir, timeout)
        self._write_kubeconfig(self.kubeconfig, user=ADMIN_USER, token=self.admin_token, namespace="default")
        self._write_component_kubeconfigs()
        self._start_containerd(deadline)
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns(deadline)

    # -- machine ------------------------------------------------------------------------------

    def _take_machine_lock(self, timeout: float) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(f"another test cluster holds {LOCK_FILE}") from None
                time.sleep(1.0)
        self._lock_fd = fd

    def _prepare_host(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the test cluster needs root (containerd, kubelet, iptables, a bridge)")
        for tool in ("containerd", "runc", "ctr", "iptables", "ip"):
            if shutil.which(tool) is None:
                raise RuntimeError(
                    f"{tool} is not installed; run `make test-deps` (hack/install-test-deps.sh)"
                )
        if not Path(CNI_BIN_DIR, "bridge").exists():
            raise RuntimeError(f"no CNI plugins in {CNI_BIN_DIR}; run `make test-deps`")
        for name in SYSCTLS_TO_RESTORE:
            value = read_sysctl(name)
            if value is not None:
                self._saved_sysctls[name] = value
        (self.workdir / "sysctls.json").write_text(json.dumps(self._saved_sysctls))
        write_sysctl("net/ipv4/ip_forward", "1")
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
        # The bridge exists before any pod, so the apiserver can listen on its address from the start;
        # the CNI bridge plugin adopts it.
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_IP}/{ipaddress.ip_network(POD_CIDR).prefixlen}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")

    def _teardown(self) -> None:
        # The node's components, then every container at once (SIGKILL to the pods' cgroups: the
        # pods of a test cluster need no graceful end, and one signal is much faster than the CRI
        # stopping them one by one), then containerd and the control plane, then the machine.
        for child in self._children:
            if child.name not in ("etcd", "kube-apiserver", "containerd"):
                child.stop()
        kill_pod_processes()
        super().stop()
        cleanup_machine(self.workdir, self._saved_sysctls, self.bin_dir)

    # -- components ---------------------------------------------------------------------------

    def _kubeconfig_for(self, name: str, user: str, token: str) -> Path:
        path = self.workdir / "kubeconfigs" / f"{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_kubeconfig(path, user=user, token=token, namespace="default")
        return path

    def _write_component_kubeconfigs(self) -> None:
        tokens = self._component_tokens
        self._kubeconfig_for("kubelet", f"system:node:{NODE_NAME}", tokens["node"])
        self._kubeconfig_for(
            "controller-manager", "system:kube-controller-manager", tokens["controller-manager"]
        )
        self._kubeconfig_for("scheduler", "system:kube-scheduler", tokens["scheduler"])
        self._kubeconfig_for("proxy", "system:kube-proxy", tokens["proxy"])
        self._kubeconfig_for("coredns", "sytq:coredns", tokens["dns"])

    def _spawn(self, name: str, argv: list[str]) -> _Child:
        child = _Child(name, argv, self.workdir / "logs" / f"{name}.log")
        self._children.append(child)
        return child

    def _start_containerd(self, deadline: float) -> None:
        base = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-sytq.conflist").write_text(json.dumps(_cni_config(self.workdir / "cni" / "ipam")))
        config = base / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(_containerd_config(base, cni_conf, self.containerd_socket))
        child = self._spawn("containerd", ["containerd", f"--config={config}", "--log-level=warn"])
        while not self.containerd_socket.exists() or self.ctr("version", check=False).returncode != 0:
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start\n{child.log_tail()}")
            time.sleep(0.1)
        self.import_image(self.bin_dir.parent / "images" / "pause.tar")

    def _spawn_control_loop(self, name: str, kubeconfig_name: str, *flags: str) -> None:
        """kube-controller-manager or kube-scheduler: one instance, serving on a loopback port."""
        kubeconfig = self.workdir / "kubeconfigs" / f"{kubeconfig_name}.kubeconfig"
        self._spawn(
            name,
            [
                str(self.bin_dir / name),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
                *flags,
            ],
        )

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self._spawn_control_loop(
            "kube-controller-manager",
            "controller-manager",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=sytq",
            # a node silent for 20 s is NotReady (default 50 s): tests of lost nodes stay short
            "--node-monitor-grace-period=20s",
        )

    def _start_scheduler(self) -> None:
        self._spawn_control_loop("kube-scheduler", "scheduler")

    def _start_kubelet(self) -> None:
        root = self.workdir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": HOST_IP,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.workdir / "pki" / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",  # cgroups v1 here, and no systemd
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [HOST_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "staticPodPath": "",
            "serializeImagePulls": False,
            # Every image is imported by hand and the disk is shared: never evict, never collect images.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
        }
        config_path = root / "config.json"
        config_path.write_text(json.dumps(config))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={self.workdir / 'kubeconfigs' / 'kubelet.kubeconfig'}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={HOST_IP}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.workdir / "kubeconfigs" / "proxy.kubeconfig")},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # NodePorts on the bridge only, never on the machine's own network
            "nodePortAddresses": [f"{HOST_IP}/32"],
            # root here cannot raise conntrack limits; leave the kernel's
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            # no route_localnet change on the host
            "iptables": {"localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy.json"
        path.write_text(json.dumps(config))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={path}", "--v=1"])

    def _start_coredns(self, deadline: float) -> None:
        # read access for the kubernetes plugin
        self.apply(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "sytq:coredns"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["services", "pods", "namespaces"],
                            "verbs": ["list", "watch"],
                        },
                        {
                            "apiGroups": ["discovery.k8s.io"],
                            "resources": ["endpointslices"],
                            "verbs": ["list", "watch"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "sytq:coredns"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "sytq:coredns",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sytq:coredns"}
                    ],
                },
            ]
        )
        self.dns_ready_port = free_port()
        kubeconfig = self.workdir / "kubeconfigs" / "coredns.kubeconfig"
        corefile = self.workdir / "Corefile"
        corefile.write_text(
            f""".:53 {{
    bind {HOST_IP}
    errors
    health 127.0.0.1:{free_port()}
    ready 127.0.0.1:{self.dns_ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} sytq-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
    loadbalance
}}
"""
        )
        child = self._spawn("coredns", [str(self.bin_dir / "coredns"), f"-conf={corefile}"])
        self._wait_http(child, f"http://127.0.0.1:{self.dns_ready_port}/ready", lambda body: True, deadline)

    def _wait_node_ready(self, deadline: float) -> None:
        def ready() -> bool:
            for child in self._children:
                if not child.alive():
                    raise RuntimeError(
                        f"{child.name} exited with {child.proc.returncode}\n{child.log_tail()}"
                    )
            proc = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if proc.returncode != 0:
                return False
            node = json.loads(proc.stdout)
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
            if conditions.get("Ready") != "True" or "node.kubernetes.io/not-ready" in taints:
                return False
            # the controller-manager's ServiceAccount controller has run: pods can be created
            sa = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            return sa.returncode == 0

        self.wait_for("the node to be Ready", ready, timeout=max(1.0, deadline - time.monotonic()))


# --- configuration files --------------------------------------------------------------------------


def _cni_config(ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "sytq",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # pods only talk to each other and to this host
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": HOST_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _containerd_config(base: Path, cni_conf: Path, socket: Path) -> str:
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: the kubelet's negative oom_score_adj would fail every sandbox
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
"""


def _write_client_cert(pki: Path, name: str, common_name: str, organization: str) -> None:
    """A client certificate signed by the control plane's CA (pki/ca.crt, pki/ca.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (pki / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = pki / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run a single-node test Kubernetes cluster until Ctrl-C.")
    parser.add_argument("--bin-dir", help="dir with the binaries (default: hack/k8s/build.sh --node)")
    args = parser.parse_args(argv)
    cluster = KubeCluster(bin_dir=args.bin_dir)
    return serve_until_interrupted(
        cluster,
        lambda: [
            f"cluster up at {cluster.server} in {cluster.startup_seconds:.1f}s (node {NODE_NAME})",
            f"containerd: ctr --address={cluster.containerd_socket} --namespace=k8s.io ...",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
