"""Run every benchmark: ``python -m bench [--quick] [--only NAME ...]``.

Each ``bench/bench_<name>.py`` is run as its own process (so one benchmark's event loop, Redis
server and memory never colour another's), writes ``bench/results/<name>.json`` and ``.md``;
this runner then joins the markdown sections into ``bench/results/SUMMARY.md``.

A ``--quick`` run is a smoke run: its files are moved to ``bench/results/quick/`` and the full
results it overwrote are put back, so a quick run never replaces the numbers we report.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_DIR = RESULTS_DIR / "quick"


def _keep_full_results(name: str) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in RESULTS_DIR.glob(f"{name}.*") if p.is_file()}


def _move_quick_results(name: str, saved: dict[Path, bytes]) -> None:
    """Move what a quick run wrote into quick/ and restore the full results it replaced."""
    QUICK_DIR.mkdir(parents=True, exist_ok=True)
    for path in RESULTS_DIR.glob(f"{name}.*"):
        if path.is_file():
            shutil.move(path, QUICK_DIR / path.name)
    for path, data in saved.items():
        path.write_bytes(data)


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (default: all)")
    args = parser.parse_args(argv)

    names = args.only or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(discover())}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    sections: list[str] = [
        "# Benchmark results\n",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}{' (quick)' if args.quick else ''}\n",
    ]
    for name in names:
        print(f"== bench {name}", flush=True)
        cmd = [sys.executable, "-m", f"bench.bench_{name}", *(["--quick"] if args.quick else [])]
        saved = _keep_full_results(name) if args.quick else {}
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=BENCH_DIR.parent, check=False)
        took = time.monotonic() - started
        if args.quick:
            _move_quick_results(name, saved)
        if proc.returncode != 0:
            failures.append(name)
            sections.append(f"## {name}\n\nFAILED (exit {proc.returncode}) after {took:.0f}s\n")
            continue
        md = (QUICK_DIR if args.quick else RESULTS_DIR) / f"{name}.md"
        sections.append(md.read_text(encoding="utf-8") if md.exists() else f"## {name}\n\n(no table)\n")
    out_dir = QUICK_DIR if args.quick else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "SUMMARY.md").write_text("\n".join(sections), encoding="utf-8")
    print(f"results in {out_dir}", flush=True)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
