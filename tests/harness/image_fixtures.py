"""The container image, built from the repository's Dockerfile without Docker.

``hack/image/build.sh`` builds it with buildah (chroot isolation, no daemon) on a private image
store, FROM a local stand-in for python:3.11-slim-bookworm (Docker Hub is out of reach here).
Containers run with ``buildah run`` on the host network, so a service in the container reaches
the suite's Redis on loopback and the test reaches the service. If buildah, debootstrap or root
are missing the fixture errors (hack/install-test-deps.sh installs them): these tests never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kube import REPO_ROOT
from tests.harness.services import die_with_parent

HACK_IMAGE = REPO_ROOT / "hack" / "image"
BUILDAH = HACK_IMAGE / "buildah"
BUILDAH_STORE = Path(os.environ.get("SYTQ_IMAGE_CACHE", Path.home() / ".cache/sytq/image")) / "storage"
TAG_PREFIX = "localhost/syt-queue:test-"
CONTAINER_PREFIX = "sytq-test-"


def buildah(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BUILDAH), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@dataclass
class Service:
    """A long-running process inside the container (its log is kept for failure messages)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 15.0) -> None:
        # buildah stays the parent of the containerised process and takes it down with it
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)


@dataclass
class ImageContainer:
    """A working container of the image; commands run as the image's configured user."""

    name: str
    config: dict[str, Any]
    logdir: Path
    services: list[Service] = field(default_factory=list)

    def _argv(self, argv: Sequence[str], env: dict[str, str] | None) -> list[str]:
        envs = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return [str(BUILDAH), "run", "--isolation=chroot", "--network=host", *envs, self.name, "--", *argv]

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(argv, env), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def copy_in(self, source: Path, dest: str) -> None:
        """Copy a host file into the container, owned by the image's user."""
        buildah("copy", "--chown", self.config["User"], self.name, str(source), dest)

    def entrypoint(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """What `docker run IMAGE args...` runs: the image's ENTRYPOINT followed by the args."""
        return self.run(*self.config["Entrypoint"], *args, env=env)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Service:
        """Start ENTRYPOINT + args in the background."""
        log_path = self.logdir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                self._argv([*self.config["Entrypoint"], *args], env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        service = Service(name, proc, log_path)
        self.services.append(service)
        return service

    def stop_services(self) -> None:
        while self.services:
            self.services.pop().stop()


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def _remove_leftovers_of_killed_runs() -> None:
    """Containers and tags of test runs that died before their teardown (named after their pid)."""
    if not BUILDAH_STORE.exists():
        return
    for name in buildah("containers", "--format", "{{.ContainerName}}").stdout.split():
        if name.startswith(CONTAINER_PREFIX) and not _pid_alive(name.removeprefix(CONTAINER_PREFIX)):
            buildah("rm", name, check=False)
    for ref in buildah("images", "--format", "{{.Name}}:{{.Tag}}").stdout.split():
        if ref.startswith(TAG_PREFIX) and not _pid_alive(ref.removeprefix(TAG_PREFIX)):
            buildah("rmi", ref, check=False)


@pytest.fixture(scope="session")
def sytq_image() -> Iterator[str]:
    """The image tag (one per test run; its layers stay in the store as the next build's cache)."""
    _remove_leftovers_of_killed_runs()
    tag = f"{TAG_PREFIX}{os.getpid()}"
    build = subprocess.run(
        ["bash", str(HACK_IMAGE / "build.sh"), tag],
        capture_output=True,
        text=True,
        timeout=1500,
        stdin=subprocess.DEVNULL,
    )
    if build.returncode != 0:
        raise RuntimeError(f"hack/image/build.sh failed ({build.returncode}):\n{build.stderr[-5000:]}")
    yield tag
    buildah("rmi", tag, check=False)


@pytest.fixture(scope="session")
def image_config(sytq_image: str) -> dict[str, Any]:
    """The OCI image config (User, Entrypoint, Cmd, ExposedPorts, Env)."""
    info = json.loads(buildah("inspect", "--type", "image", sytq_image).stdout)
    config: dict[str, Any] = info["OCIv1"]["config"]
    return config


@pytest.fixture(scope="session")
def image_container(sytq_image: str, image_config: dict[str, Any]) -> Iterator[ImageContainer]:
    name = f"{CONTAINER_PREFIX}{os.getpid()}"
    buildah("rm", name, check=False)
    buildah("from", "--pull-never", "--name", name, sytq_image)
    with tempfile.TemporaryDirectory(prefix="sytq-image-") as logdir:
        container = ImageContainer(name, image_config, Path(logdir))
        try:
            yield container
        finally:
            container.stop_services()
            buildah("rm", name, check=False)


@pytest.fixture
def container(image_container: ImageContainer) -> Iterator[ImageContainer]:
    """The session's container; services a test starts are stopped after it."""
    yield image_container
    image_container.stop_services()
