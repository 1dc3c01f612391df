"""The chaos run's short form (under 3 minutes): kill -9 workers, restart Redis and MariaDB, hostile
callback receivers, under steady submits; every invariant holds (``python -m bench.chaos --short``)."""

from __future__ import annotations

import pytest

from bench.chaos import SHORT, Chaos

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`


async def test_chaos_short_form_keeps_every_invariant() -> None:
    report = await Chaos(SHORT).run()
    assert report.violations == []
    assert report.kills >= 3 and report.redis_restarts == 1 and report.mariadb_restarts == 1
    assert report.accepted >= 100 and report.accepted == report.succeeded + report.failed
    assert report.llm_calls >= report.succeeded and report.callbacks_good > 0
