"""The machine side of the test cluster (tests/harness/cluster.py): the pods' bridge, kernel
settings, and undoing everything a cluster leaves on the machine (containers' shims, network
namespaces, mounts, iptables chains, cgroups), also for clusters of runs killed without teardown."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

BRIDGE = "sytq0"
NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/lock/sytq-cluster.lock")
WORKDIR_PREFIX = "sytq-cluster-"
# Kernel settings the kubelet (and pod networking) change; saved at start, restored at stop.
SYSCTLS_TO_RESTORE = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        (Path("/proc/sys") / name).write_text(value)


def _mountpoints_under(prefix: Path) -> list[str]:
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(prefix) or point.startswith(f"{prefix}/"):
                points.append(point)
    return points


def _unmount_all_under(prefix: Path) -> None:
    for point in sorted(_mountpoints_under(prefix), key=len, reverse=True):
        run("umount", "--lazy", point, check=False)


def _kill_shims(workdir: Path) -> None:
    """containerd's shims outlive it (they re-parent to init); ours name our socket or state dir."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmdline and str(workdir) in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def _remove_iptables_chains() -> None:
    """Every KUBE-* and CNI-* chain (kube-proxy's, the kubelet's, the CNI plugins') and the jumps to them."""
    ours = re.compile(r"^(KUBE-|CNI-)")
    for table in ("filter", "nat", "mangle"):
        rules = run("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines()
        chains = [line.split()[1] for line in rules if line.startswith("-N ") and ours.match(line.split()[1])]
        for line in rules:
            parts = shlex.split(line)  # keeps quoted --comment values whole
            if parts[:1] == ["-A"] and not ours.match(parts[1]) and any(ours.match(p) for p in parts[2:]):
                run("iptables", "-w", "-t", table, "-D", *parts[1:], check=False)
        for chain in chains:
            run("iptables", "-w", "-t", table, "-F", chain, check=False)
        for chain in chains:
            run("iptables", "-w", "-t", table, "-X", chain, check=False)


def _kubepods_cgroups() -> list[Path]:
    """Every cgroup under ``kubepods`` in every v1 controller, deepest first (os.walk skips the
    ones removed while it walks)."""
    dirs: list[Path] = []
    for controller in CGROUP_ROOT.iterdir():
        for parent, _, _ in os.walk(controller / "kubepods", topdown=False):
            dirs.append(Path(parent))
    return dirs


def kill_pod_processes(timeout: float = 30.0) -> None:
    """SIGKILL every process in the kubelet's pod cgroups and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids: set[int] = set()
        for cgroup in _kubepods_cgroups():
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_kubepods_cgroups() -> None:
    for cgroup in _kubepods_cgroups():
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def cleanup_machine(workdir: Path, sysctls: dict[str, str], bin_dir: Path | None = None) -> None:
    """Undo what a cluster did to the machine (call with the machine lock held, components stopped)."""
    kill_pod_processes()
    _kill_shims(workdir)
    for netns in NETNS_DIR.glob("cni-*"):
        run("umount", "--lazy", str(netns), check=False)
        with contextlib.suppress(OSError):
            netns.unlink()
    _unmount_all_under(workdir)
    if bin_dir is not None and (bin_dir / "kube-proxy").exists():
        run(str(bin_dir / "kube-proxy"), "--cleanup", check=False, timeout=60)
    _remove_iptables_chains()
    run("ip", "link", "delete", BRIDGE, check=False)
    _remove_kubepods_cgroups()
    for name, value in sysctls.items():
        write_sysctl(name, value)


def _owner_alive(workdir: Path) -> bool:
    try:
        os.kill(int((workdir / "owner.pid").read_text()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        # no owner file yet: a cluster being created this very moment, unless the dir is old
        return time.time() - workdir.stat().st_mtime < 60
    return True


def sweep_leftovers() -> None:
    """Undo clusters of runs that died without their teardown (call with the machine lock held)."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        if _owner_alive(workdir):
            continue  # a live process's cluster: waiting for the lock, or our own
        try:
            sysctls = json.loads((workdir / "sysctls.json").read_text())
        except (OSError, ValueError):
            sysctls = {}
        cleanup_machine(workdir, sysctls)
        shutil.rmtree(workdir, ignore_errors=True)
    # a bridge without a live owner (the sweep above found none holding the lock)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        cleanup_machine(Path("/nonexistent-sytq-cluster"), {})
