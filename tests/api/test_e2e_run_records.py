"""The README's record-mode example under ``sytq run`` (what ``make run`` starts), run as printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api.test_e2e_run_php import local_system  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_record_example() -> list[str]:
    """The commands of the README's record-mode block (comment lines dropped)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"demo `valuation_records` table.*?```sh\n(.*?)```", text, re.S)
    assert block, "README lost its record-mode example"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line and line[0] != "#"]


def test_readme_record_example_runs_under_sytq_run(
    local_system: tuple[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    api_url, run_log = local_system
    assert "Record mode demo: table valuation_records" in run_log.read_text()
    submit, show = readme_record_example()
    assert submit.startswith("curl ") and show == "sytq records get valuation_records 1"
    env = {
        **os.environ,
        "SYTQ_DATA_DIR": str(tmp_path / "var"),  # what local_system gave `sytq run`
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command.replace("http://127.0.0.1:8080", api_url)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    enqueued = shell(submit)
    assert enqueued.returncode == 0, enqueued.stderr
    answer = json.loads(enqueued.stdout)
    assert answer["code"] == 200 and answer["data"]["status"] == "enqueued"

    deadline = time.monotonic() + 60
    while True:
        shown = shell(show)
        assert shown.returncode == 0, shown.stderr
        row = json.loads(shown.stdout)
        if row["status"] == "已完成":
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    assert row["id"] == 1 and row["report"].startswith("stub answer")
    assert row["current_task_node"] == 1 and row["failed_times"] == 0

    missing = shell("sytq records get valuation_records 424242")
    assert missing.returncode == 1 and "no row with id 424242" in missing.stderr
