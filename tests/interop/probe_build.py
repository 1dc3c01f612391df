"""Build the Go test programs once per source content: `asynqprobe` (shared by the interop tests and
bench/), `ginpeer` (the gin side of the byte comparisons of the Go original's HTTP surface) and
`gomarshal` (Go's json.Marshal of the record-mode callback).

A binary is cached under ~/.cache/sytq/interop/<sha256 of its sources>/<name>, so only the first run
pays for `go build` (and, on a fresh machine, the Go module download).
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


GINPEER_DIR = MODULE_DIR / "ginpeer"
GINPEER_SOURCES = ("go.mod", "go.sum", "main.go", "types/types.go")


GOMARSHAL_SOURCES = ("go.mod", "gomarshal/main.go")


def source_digest(module_dir: Path = MODULE_DIR, sources: tuple[str, ...] = SOURCES) -> str:
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode())
        digest.update((module_dir / name).read_bytes())
    return digest.hexdigest()


def build_asynqprobe() -> Path:
    """Return the cached binary, building it first when the sources changed."""
    return build_go_program(MODULE_DIR, SOURCES, "asynqprobe")


def build_ginpeer() -> Path:
    return build_go_program(GINPEER_DIR, GINPEER_SOURCES, "ginpeer")


def build_gomarshal() -> Path:
    return build_go_program(MODULE_DIR, GOMARSHAL_SOURCES, "gomarshal")


def build_go_program(module_dir: Path, sources: tuple[str, ...], name: str) -> Path:
    """``go build`` of ``./<name>`` (or the module itself) into the cache, once per source content."""
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache_root / "sytq" / "interop" / source_digest(module_dir, sources) / name
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        raise ProbeBuildError(f"the Go toolchain is required to build the test program {name} (`make deps`)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent runs never see a half-written binary.
    workdir = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        package = f"./{name}" if (module_dir / name).is_dir() else "."
        proc = subprocess.run(
            [go, "build", "-o", str(workdir / name), package],
            cwd=module_dir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise ProbeBuildError(f"go build of {name} failed ({proc.returncode}):\n{proc.stderr}")
        os.replace(workdir / name, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target
