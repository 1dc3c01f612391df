"""Build the Go `asynqprobe` binary once per source content; shared by the interop tests and bench/.

The binary is cached under ~/.cache/sytq/interop/<sha256 of go.mod+go.sum+main.go>/asynqprobe, so
only the first run pays for `go build` (and, on a fresh machine, the Go module download).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
SOURCES = ("go.mod", "go.sum", "asynqprobe/main.go")


class ProbeBuildError(RuntimeError):
    """The Go toolchain is missing or `go build` failed."""


def source_digest() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode())
        digest.update((MODULE_DIR / name).read_bytes())
    return digest.hexdigest()


def build_asynqprobe() -> Path:
    """Return the cached binary, building it first when the sources changed."""
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache_root / "sytq" / "interop" / source_digest() / "asynqprobe"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        raise ProbeBuildError(
            "the Go toolchain is required to build tests/interop/asynqprobe (`make test-deps`)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent runs never see a half-written binary.
    workdir = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        proc = subprocess.run(
            [go, "build", "-o", str(workdir / "asynqprobe"), "./asynqprobe"],
            cwd=MODULE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise ProbeBuildError(f"go build of asynqprobe failed ({proc.returncode}):\n{proc.stderr}")
        os.replace(workdir / "asynqprobe", target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target
