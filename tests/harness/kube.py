"""A real Kubernetes control plane for tests: etcd + kube-apiserver, driven with kubectl and helm.

The binaries come from ``hack/k8s/build.sh`` (built from Go modules into a cache outside the repo).
There is no kubelet, scheduler or controller-manager: API objects are stored, validated and
authorised exactly as in a cluster, but no pod ever runs and no controller acts on anything
(namespaces stay ``Terminating``, owner references are not garbage-collected). Tests assert on
API objects. See docs/testing-kubernetes.md.

Usage::

    with KubeControlPlane() as kube:
        kube.kubectl("get", "namespaces")

For humans: ``python -m tests.harness.kube`` starts one and prints ``export KUBECONFIG=...``.

Every child runs in its own process group and is asked to die with the process that started it
(PR_SET_PDEATHSIG); ``stop()`` also runs at exit and on SIGTERM, so an interrupted run leaves no
etcd or kube-apiserver behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tests.harness.services import die_with_parent, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "k8s" / "build.sh"

ADMIN_USER = "sytq-admin"
SERVICE_CIDR = "10.0.0.0/24"


class KubeCommandError(subprocess.CalledProcessError):
    """A kubectl/helm command failed; unlike CalledProcessError its message shows stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def build_binaries(timeout: float = 3600.0) -> Path:
    """Run hack/k8s/build.sh (instant when the cache is warm) and return its bin dir."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=None,  # progress goes straight to the terminal / CI log
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    bin_dir = Path(lines[-1])
    for name in ("etcd", "kube-apiserver", "kubectl", "helm"):
        if not os.access(bin_dir / name, os.X_OK):
            raise RuntimeError(f"{BUILD_SCRIPT} did not produce {bin_dir / name}")
    return bin_dir


# --- certificates ---------------------------------------------------------------------------------


def _write_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost (and ``extra_ips``) and a service-account
    key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sytq-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = ec.generate_private_key(ec.SECP256R1())

    pki.mkdir(parents=True, exist_ok=True)
    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(pem_key(ca_key))
    (pki / "apiserver.crt").write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(pem_key(srv_key))
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for name in ("ca.key", "apiserver.key", "sa.key"):
        (pki / name).chmod(0o600)


# --- processes ------------------------------------------------------------------------------------


class _Child:
    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                close_fds=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


_LIVE: weakref.WeakSet[KubeControlPlane] = weakref.WeakSet()
_HOOKS_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def _stop_all() -> None:
    for plane in list(_LIVE):
        with contextlib.suppress(Exception):
            plane.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    # behave as an unhandled SIGTERM would: die by the signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_hooks() -> None:
    global _HOOKS_INSTALLED
    with _HOOKS_LOCK:
        if _HOOKS_INSTALLED:
            return
        _HOOKS_INSTALLED = True
        atexit.register(_stop_all)
        # only take SIGTERM over if nobody else has (signal handlers need the main thread)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            signal.signal(signal.SIGTERM, _on_sigterm)


# --- the control plane ----------------------------------------------------------------------------


class KubeControlPlane:
    """etcd + kube-apiserver on free loopback ports, with an admin kubeconfig.

    ``bin_dir`` defaults to the output of hack/k8s/build.sh (or ``$SYTQ_K8S_BIN``).
    """

    def __init__(
        self,
        bin_dir: str | Path | None = None,
        workdir: str | Path | None = None,
        profiling: bool = False,
        audit_policy: dict[str, Any] | None = None,
        bind_address: str = "127.0.0.1",
    ) -> None:
        # where kube-apiserver listens and what it advertises (a cluster's pods need a non-loopback one)
        self.bind_address = bind_address
        self.profiling = profiling  # serve /debug/pprof (for benchmarks that profile the apiserver)
        # An audit.k8s.io/v1 Policy: the apiserver then logs matching requests (JSON lines, with
        # its own receive and completion timestamps) to ``audit_log``. For benchmarks.
        self.audit_policy = audit_policy
        env_bin = os.environ.get("SYTQ_K8S_BIN")
        self._bin_dir: Path | None = Path(bin_dir) if bin_dir else (Path(env_bin) if env_bin else None)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sytq-kube-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_workdir:
            _sweep_stale_workdirs()
            (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self._token = secrets.token_hex(24)
        self._children: list[_Child] = []
        self.port = 0
        self.etcd_port = 0
        self._started = False
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.audit_log = self.workdir / "logs" / "audit.jsonl"
        self.startup_seconds = 0.0

    # -- public API ---------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = build_binaries()
        return self._bin_dir

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def admin_token(self) -> str:
        return self._token

    @property
    def running(self) -> bool:
        return self._started and all(child.alive() for child in self._children)

    def start(self, timeout: float = 120.0) -> KubeControlPlane:
        if self._started:
            return self
        bin_dir = self.bin_dir  # may build (slow once), not counted in startup time
        t0 = time.monotonic()
        _install_exit_hooks()
        _LIVE.add(self)
        _write_pki(self.workdir / "pki", self._serving_ips())
        tokens = [f'{self._token},{ADMIN_USER},{ADMIN_USER},"system:masters"', *self._extra_tokens()]
        (self.workdir / "tokens.csv").write_text("".join(f"{line}\n" for line in tokens))
        last_error: Exception | None = None
        for _attempt in range(3):  # a free port may be taken between probing and binding
            try:
                self._start_processes(bin_dir, timeout)
                break
            except _PortClash as exc:
                last_error = exc
                self._stop_children()
        else:
            raise RuntimeError(f"could not start the control plane: {last_error}")
        self._write_kubeconfig(self.kubeconfig, user=ADMIN_USER, token=self._token, namespace="default")
        self._started = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self._stop_children()
        self._started = False
        _LIVE.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kubectl(
        self,
        *args: str,
        kubeconfig: str | Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (as admin unless another kubeconfig is given)."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return self._run(cmd, check=check, input=input, timeout=timeout)

    def helm(
        self,
        *args: str,
        kubeconfig: str | Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm with its cache/config/data dirs inside the work dir and this kubeconfig."""
        env = {
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }
        cmd = [str(self.bin_dir / "helm"), *args]
        return self._run(cmd, check=check, input=input, timeout=timeout, env=env)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], **kwargs: Any) -> str:
        """``kubectl apply -f -`` of a YAML string or of objects (sent as JSON); returns stdout."""
        if not isinstance(manifest, str):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", input=manifest, **kwargs).stdout

    def get_json(self, *args: str, kubeconfig: str | Path | None = None) -> Any:
        """``kubectl get ... -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def service_account_kubeconfig(self, namespace: str, name: str, duration: str = "1h") -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name`` (created if missing).

        The token comes from the TokenRequest API (``kubectl create token``).
        """
        self.apply(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
        )
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout
        token = token.strip()
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_kubeconfig(
            path, user=f"system:serviceaccount:{namespace}:{name}", token=token, namespace=namespace
        )
        return path

    def logs(self) -> dict[str, str]:
        """The last lines of each component's log (for failure messages)."""
        return {child.name: child.log_tail() for child in self._children}

    # -- hooks for a full cluster (tests/harness/cluster.py) -----------------------------------

    def _serving_ips(self) -> tuple[str, ...]:
        """IP addresses the apiserver's certificate names besides 127.0.0.1."""
        return () if self.bind_address == "127.0.0.1" else (self.bind_address,)

    def _extra_tokens(self) -> list[str]:
        """More lines of the static token file (token,user,uid,"group,...")."""
        return []

    def _authorization_mode(self) -> str:
        return "RBAC"

    def _apiserver_extra_flags(self) -> list[str]:
        return []

    # -- internals ----------------------------------------------------------------------------

    def _run(
        self,
        cmd: list[str],
        *,
        check: bool,
        input: str | None,
        timeout: float,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env["KUBECACHEDIR"] = str(self.workdir / "kubectl-cache")
        full_env.pop("KUBECONFIG", None)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
        )
        if check and proc.returncode != 0:
            raise KubeCommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def _audit_flags(self) -> list[str]:
        if self.audit_policy is None:
            return []
        policy = self.workdir / "audit-policy.json"
        policy.write_text(json.dumps(self.audit_policy))
        # batch mode: requests never wait for the log file
        log = f"--audit-log-path={self.audit_log}"
        return [f"--audit-policy-file={policy}", log, "--audit-log-mode=batch"]

    def _start_processes(self, bin_dir: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)

        self.etcd_port, peer_port = free_port(), free_port()
        etcd_data = self.workdir / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer_port}"
        etcd = _Child(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=sytq-test",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sytq-test={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # test data only
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        self._children.append(etcd)
        self._wait_http(etcd, f"{client_url}/health", lambda body: '"health":"true"' in body, deadline)

        self.port = free_port()
        pki = self.workdir / "pki"
        apiserver = _Child(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={client_url}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--authorization-mode={self._authorization_mode()}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                f"--profiling={'true' if self.profiling else 'false'}",
                "--v=1",
                *self._audit_flags(),
                *self._apiserver_extra_flags(),
            ],
            logs / "kube-apiserver.log",
        )
        self._children.append(apiserver)
        self._wait_http(apiserver, f"{self.server}/readyz", lambda body: body.strip() == "ok", deadline)

    def _wait_http(self, child: _Child, url: str, ok: Any, deadline: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if url.startswith("https") else None
        last = ""
        while time.monotonic() < deadline:
            if not child.alive():
                tail = child.log_tail()
                if "address already in use" in tail:
                    raise _PortClash(f"{child.name}: address already in use")
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode} before it was ready\n"
                    f"--- {child.log_path} ---\n{tail}"
                )
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}"})
            try:
                with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                    body = resp.read().decode(errors="replace")
                    if resp.status == 200 and ok(body):
                        return
                    last = body
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except (OSError, ssl.SSLError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(
            f"{child.name} not ready at {url}; last answer: {last[-2000:]}\n"
            f"--- {child.log_path} ---\n{child.log_tail()}"
        )

    def _stop_children(self) -> None:
        # apiserver first, then etcd
        for child in reversed(self._children):
            with contextlib.suppress(Exception):
                child.stop()
        self._children.clear()

    def _write_kubeconfig(self, path: Path, *, user: str, token: str, namespace: str) -> None:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sytq-test",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sytq-test",
                    "context": {"cluster": "sytq-test", "user": user, "namespace": namespace},
                }
            ],
            "current-context": "sytq-test",
            "preferences": {},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)


def _sweep_stale_workdirs() -> None:
    """Remove work dirs left by processes killed with SIGKILL (their children died with them)."""
    for pid_file in Path(tempfile.gettempdir()).glob("sytq-kube-*/owner.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(pid_file.parent, ignore_errors=True)
        except (OSError, ValueError):
            continue


class _PortClash(RuntimeError):
    pass


def serve_until_interrupted(plane: KubeControlPlane, describe: Callable[[], list[str]]) -> int:
    """Start ``plane``, print ``describe()`` and ``export KUBECONFIG=...``, run until Ctrl-C/SIGTERM
    or until a component dies (then exit 1 with its log), and stop it."""
    stop = threading.Event()

    def _quit(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _quit)
    signal.signal(signal.SIGINT, _quit)
    try:
        plane.start()
        for line in describe():
            print(line)
        print(f"kubeconfig: {plane.kubeconfig}")
        print(f"binaries:   {plane.bin_dir}")
        print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH")
        print("Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            if not plane.running:
                print("a component died:", file=sys.stderr)
                for name, tail in plane.logs().items():
                    print(f"--- {name} ---\n{tail}", file=sys.stderr)
                return 1
        return 0
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run a test Kubernetes control plane until Ctrl-C.")
    parser.add_argument("--bin-dir", help="dir with etcd, kube-apiserver, kubectl, helm (default: build.sh)")
    args = parser.parse_args(argv)
    plane = KubeControlPlane(bin_dir=args.bin_dir)
    return serve_until_interrupted(
        plane, lambda: [f"control plane up at {plane.server} in {plane.startup_seconds:.1f}s"]
    )


if __name__ == "__main__":
    sys.exit(main())
