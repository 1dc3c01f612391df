"""Chaos run: ``python -m bench.chaos [--short]``, bounded in time and count, on loopback only.

The API, two workers, the stub LLM (latency and 5xx/429 faults), MariaDB and Redis (append-only
file, fsync always, as a production Redis that must not lose accepted tasks) take steady submits
while a driver kill -9s workers (a fresh one replaces each), restarts Redis and MariaDB, and
callbacks go to a good receiver, one that always answers 500 and one that drips its answer slower
than the callback deadline. Then submits stop and the run waits for everything to settle.

Invariants checked at the end (each breach is a violation; the run fails with any):
- every accepted task has exactly one row, in a final state (succeeded or failed), and no callback
  is left pending;
- LLM calls per task never exceed the attempts its row records, nor the attempt policy;
- each callback reaches the live receiver at least once and no receiver gets more POSTs for a task
  than the callback attempt policy allows.
Writes ``bench/results/chaos.md`` (and ``chaos.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from sytq.settings import Settings
from sytq.storage import TaskStore, upgrade
from tests.harness.hostile_receivers import HostileReceiver
from tests.harness.llm_fixtures import CallbackReceiver, StubLLMProcess, WorkerProcess, settings_env
from tests.harness.services import MariaDBServer, RedisServer, free_port, wait_for_port
from worker.reconciler import GONE

RESULTS = Path(__file__).resolve().parent / "results"
RECEIVERS = ("none", "good", "failing", "slow")
RECONCILED_ERRORS = ("task archived without a stored outcome", GONE)
GAVE_UP = "callback given up"


@dataclass(frozen=True)
class ChaosPlan:
    seconds: float = 300.0  # of submits
    rate: float = 10.0  # submits per second
    kill_every: float = 15.0  # a worker kill -9 (and a fresh worker) this often
    redis_restart_at: tuple[float, ...] = (60.0, 180.0)  # seconds into the submits
    mariadb_restart_at: tuple[float, ...] = (120.0, 240.0)
    settle_seconds: float = 180.0  # most time to wait for every task and callback to end
    max_retry: int = 4
    callback_attempts: int = 3


SHORT = ChaosPlan(
    seconds=45.0,
    rate=6.0,
    kill_every=12.0,
    redis_restart_at=(15.0,),
    mariadb_restart_at=(30.0,),
    settle_seconds=75.0,
)


@dataclass
class ChaosReport:
    plan: dict[str, Any]
    submitted: int = 0
    accepted: int = 0
    refused: int = 0  # answered 4xx/5xx or not at all (during restarts): never accepted, never counted
    succeeded: int = 0
    failed: int = 0
    kills: int = 0
    redis_restarts: int = 0
    mariadb_restarts: int = 0
    llm_calls: int = 0
    callbacks_good: int = 0
    callbacks_failing: int = 0
    duplicate_good_callbacks: int = 0
    finished_by_reconciler: int = 0  # tasks whose run ended without a stored outcome
    callbacks_given_up_by_reconciler: int = 0  # callback tasks archived while the row said pending
    settle_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


class PersistentRedis(RedisServer):
    """Redis with its append-only file fsynced on every write: a restart keeps accepted tasks."""

    def _command(self) -> list[str]:
        command = super()._command()
        at = command.index("--appendonly")
        command[at + 1] = "yes"
        return [*command, "--appendfsync", "always"]


class ApiProcess:
    """``sytq api`` in a child process on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        env = settings_env(settings) | {"SYTQ_API_PORT": str(self.port), "SYTQ_API_HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sytq_cli", "api"],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=60.0, proc=self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@dataclass
class Accepted:
    task_id: str
    prompt: str
    receiver: str


class Chaos:
    def __init__(self, plan: ChaosPlan) -> None:
        self.plan = plan
        self.report = ChaosReport(plan=asdict(plan))
        self.run_tag = uuid.uuid4().hex[:8]
        self.accepted: list[Accepted] = []

    async def run(self) -> ChaosReport:
        redis, mariadb = PersistentRedis(), MariaDBServer()
        stub = StubLLMProcess(latency="0.05-0.4")
        good, failing = CallbackReceiver(), CallbackReceiver()
        failing.status = 500
        slow = HostileReceiver("drip", interval=0.5)
        started: list[Any] = []
        workers: list[WorkerProcess] = []
        try:
            for server in (redis, mariadb, stub):
                server.start()
                started.append(server)
            for receiver in (good, failing):
                receiver.up()
            stub.configure(faults="500:0.05,429:0.03", latency="0.05-0.4")
            settings = self._settings(redis, mariadb, stub)
            await asyncio.to_thread(upgrade, settings.effective_database_url)
            workers = [WorkerProcess(settings), WorkerProcess(settings)]
            api = ApiProcess(settings)
            try:
                urls = {
                    "none": None,
                    "good": good.url + "/hook",
                    "failing": failing.url + "/hook",
                    "slow": slow.url,
                }
                driver = asyncio.create_task(self._drive(workers, settings, redis, mariadb))
                await self._submit(api.url, urls)
                await driver
                store = TaskStore.from_url(settings.effective_database_url, retry_for_seconds=30)
                try:
                    await self._settle(store)
                    await self._check(store, stub, good, failing)
                finally:
                    await store.close()
            finally:
                api.stop()
        finally:
            for worker in workers:
                worker.kill()
            good.down()
            failing.down()
            slow.close()
            for server in reversed(started):
                server.close()
        return self.report

    def _settings(self, redis: RedisServer, mariadb: MariaDBServer, stub: StubLLMProcess) -> Settings:
        plan = self.plan
        # Short retry delays and deadlines: the run settles within a minute of its last submit.
        fast_retries: dict[str, Any] = {
            "llm_retry_base_seconds": 0.3,
            "llm_retry_max_seconds": 2.0,
            "llm_read_timeout": 5.0,
            "callback_retry_base_seconds": 0.3,
            "callback_timeout_seconds": 1.0,
            "reconcile_interval_seconds": 1.0,
            "reconcile_grace_seconds": 3.0,
        }
        return Settings(
            redis_url=redis.url,
            database_url=mariadb.create_database(f"chaos_{self.run_tag}"),
            llm_base_url=stub.url,
            deepseek_api_key=SecretStr("chaos-key"),
            callback_secret=SecretStr("chaos-secret"),
            callback_allow_nets="127.0.0.0/8",
            task_max_retry=plan.max_retry,
            callback_max_attempts=plan.callback_attempts,
            llm_breaker_failures=1000,  # the stub's faults must not open the breaker for everyone
            worker_concurrency=50,
            database_outage_wait_seconds=30.0,
            auth_disabled=True,
            log_level="WARNING",
            **fast_retries,
        )

    async def _submit(self, api_url: str, urls: dict[str, str | None]) -> None:
        interval = 1.0 / self.plan.rate
        end = time.monotonic() + self.plan.seconds
        async with httpx.AsyncClient(timeout=10.0) as http:
            index = 0
            while time.monotonic() < end:
                kind = RECEIVERS[index % len(RECEIVERS)]
                prompt = f"chaos {self.run_tag} <{index}>"
                body: dict[str, Any] = {"prompt": prompt, "metadata": {"i": index}}
                if urls[kind] is not None:
                    body["callback_url"] = urls[kind]
                self.report.submitted += 1
                try:
                    answer = await http.post(f"{api_url}/api/v1/tasks/llm", json=body)
                    if answer.status_code == 200:
                        self.accepted.append(Accepted(answer.json()["task_id"], prompt, kind))
                    else:
                        self.report.refused += 1
                except httpx.HTTPError:
                    self.report.refused += 1
                index += 1
                await asyncio.sleep(interval)
        self.report.accepted = len(self.accepted)

    async def _drive(
        self, workers: list[WorkerProcess], settings: Settings, redis: RedisServer, mariadb: MariaDBServer
    ) -> None:
        start = time.monotonic()
        events: list[tuple[float, str]] = [(t, "redis") for t in self.plan.redis_restart_at]
        events += [(t, "mariadb") for t in self.plan.mariadb_restart_at]
        kill_at = self.plan.kill_every
        while kill_at < self.plan.seconds:
            events.append((kill_at, "kill"))
            kill_at += self.plan.kill_every
        for at, event in sorted(events):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if event == "kill":
                victim = workers.pop(0)
                await asyncio.to_thread(victim.kill)
                workers.append(WorkerProcess(settings))
                self.report.kills += 1
            elif event == "redis":
                await asyncio.to_thread(_restart, redis, 2.0)
                self.report.redis_restarts += 1
            else:
                await asyncio.to_thread(_restart, mariadb, 3.0)
                self.report.mariadb_restarts += 1

    async def _settle(self, store: TaskStore) -> None:
        """Wait until every accepted task's row is final and no callback is pending."""
        start = time.monotonic()
        deadline = start + self.plan.settle_seconds
        waiting = [a.task_id for a in self.accepted]
        while waiting and time.monotonic() < deadline:
            records = await asyncio.gather(*(store.get(task_id) for task_id in waiting))
            waiting = [
                task_id
                for task_id, record in zip(waiting, records, strict=True)
                if record is None or not record.finished or record.callback_status == "pending"
            ]
            if waiting:
                await asyncio.sleep(1.0)
        self.report.settle_seconds = round(time.monotonic() - start, 1)

    async def _check(
        self, store: TaskStore, stub: StubLLMProcess, good: CallbackReceiver, failing: CallbackReceiver
    ) -> None:
        report, plan = self.report, self.plan
        calls = await asyncio.to_thread(lambda: stub.stats()["by_prompt"])
        good_posts = Counter(c.headers.get("Idempotency-Key") for c in good.received)
        failing_posts = Counter(c.headers.get("Idempotency-Key") for c in failing.received)
        for task in self.accepted:
            record = await store.get(task.task_id)
            where = f"task {task.task_id} ({task.receiver})"
            if record is None:
                report.violations.append(f"{where}: accepted but no row")
                continue
            if not record.finished:
                report.violations.append(f"{where}: row left {record.status}")
                continue
            report.succeeded += record.status == "succeeded"
            report.failed += record.status == "failed"
            report.finished_by_reconciler += (record.error or "").startswith(RECONCILED_ERRORS)
            report.callbacks_given_up_by_reconciler += (record.callback_error or "").startswith(GAVE_UP)
            made = sum(n for prompt, n in calls.items() if task.prompt in prompt)
            report.llm_calls += made
            if made > max(record.attempts, 0) or made > plan.max_retry + 1:
                report.violations.append(f"{where}: {made} LLM calls for {record.attempts} attempts")
            if task.receiver != "none" and record.callback_status not in ("delivered", "failed", None):
                report.violations.append(f"{where}: callback left {record.callback_status}")
            if task.receiver == "good":
                posts = good_posts[task.task_id]
                report.callbacks_good += posts
                report.duplicate_good_callbacks += max(0, posts - 1)
                if posts < 1 or record.callback_status != "delivered":
                    report.violations.append(f"{where}: callback {record.callback_status}, {posts} POSTs")
                if posts > plan.callback_attempts:
                    report.violations.append(f"{where}: {posts} POSTs to the good receiver")
            if task.receiver == "failing":
                posts = failing_posts[task.task_id]
                report.callbacks_failing += posts
                if posts > plan.callback_attempts:
                    report.violations.append(f"{where}: {posts} POSTs to the failing receiver")


def _restart(server: RedisServer | MariaDBServer, down_for: float) -> None:
    server.stop()
    time.sleep(down_for)  # the outage the services must ride out
    server.start()


def write_results(report: ChaosReport, name: str = "chaos") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    rows = [
        (
            "tasks submitted / accepted / refused during outages",
            f"{report.submitted} / {report.accepted} / {report.refused}",
        ),
        ("accepted tasks succeeded / failed", f"{report.succeeded} / {report.failed}"),
        (
            "worker kill -9 / Redis restarts / MariaDB restarts",
            f"{report.kills} / {report.redis_restarts} / {report.mariadb_restarts}",
        ),
        ("LLM calls (all accepted tasks)", str(report.llm_calls)),
        (
            "POSTs to the good receiver (duplicates)",
            f"{report.callbacks_good} ({report.duplicate_good_callbacks})",
        ),
        ("POSTs to the failing receiver", str(report.callbacks_failing)),
        (
            "finished by the reconciler: tasks / callbacks given up",
            f"{report.finished_by_reconciler} / {report.callbacks_given_up_by_reconciler}",
        ),
        ("seconds to settle after the last submit", str(report.settle_seconds)),
        ("violations", str(len(report.violations))),
    ]
    plan = report.plan
    lines = [
        "# Chaos run",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; `python -m bench.chaos"
        f"{' --short' if plan['seconds'] < ChaosPlan.seconds else ''}`: {plan['seconds']:g} s of submits at "
        f"{plan['rate']:g}/s, a worker kill -9 every {plan['kill_every']:g} s, Redis restarted at "
        f"{list(plan['redis_restart_at'])} s, MariaDB at {list(plan['mariadb_restart_at'])} s; callbacks "
        "to a good, an always-500 and a dripping (slower than the deadline) receiver, or none.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
    ]
    if report.violations:
        lines += ["## Violations", "", *(f"- {v}" for v in report.violations[:100]), ""]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI form: under 3 minutes")
    args = parser.parse_args(argv)
    report = asyncio.run(Chaos(SHORT if args.short else ChaosPlan()).run())
    path = write_results(report)
    print(path.read_text())
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
