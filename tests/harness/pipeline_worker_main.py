"""A ``sytq worker`` process for tests that kill it: settings from SYTQ_* env, a short lease so
another worker recovers the victim's tasks within seconds."""

from __future__ import annotations

import os

from sytq.log_setup import configure_logging
from sytq.settings import Settings
from tests.harness.llm_fixtures import fast_server_config
from worker.main import run_event_loop, run_worker


def main() -> None:
    settings = Settings()
    configure_logging("WARNING", json_lines=True)
    lease = float(os.environ.get("SYTQ_TEST_LEASE_SECONDS", "3"))
    # The event loop production uses (uvloop), so these tests cover it too.
    run_event_loop(run_worker(settings, fast_server_config(settings, lease_seconds=lease)))


if __name__ == "__main__":
    main()
