"""CLI commands that talk to a running API over HTTP: submit, tasks, queues."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"
FINISHED_STATES = frozenset({"completed", "succeeded", "failed", "archived"})
BATCH_SIZE = 200


class CommandError(Exception):
    """A failure reported as one line on stderr with a non-zero exit."""


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise CommandError(f"{method} {path}: HTTP {response.status_code}: {_detail(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise CommandError(f"{method} {path}: the answer is not JSON") from exc


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail", body.get("message", body)) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []) if p != 'body')}: {e.get('msg')}" for e in detail
        )
    return str(detail)


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.api_url, args.api_key)


# --- submit ---------------------------------------------------------------------------------


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.file:
        return _submit_file(client, Path(args.file))
    if not args.prompt:
        raise CommandError("give a prompt or --file prompts.jsonl")
    body: dict[str, Any] = {"prompt": args.prompt}
    if args.model:
        body["model"] = args.model
    if args.callback_url:
        body["callback_url"] = args.callback_url
    if args.queue:
        body["queue"] = args.queue
    task_id = str(client.call("POST", "/api/v1/tasks/llm", body)["task_id"])
    if not args.wait:
        print(task_id)
        return 0
    print(task_id, file=sys.stderr)
    return _wait_and_print(client, task_id, args.timeout)


def _wait_and_print(client: ApiClient, task_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        view = client.call("GET", f"/api/v1/tasks/{task_id}")
        if view.get("state") in FINISHED_STATES and (view.get("result") or view.get("error")):
            break
        if time.monotonic() > deadline:
            raise CommandError(f"task {task_id} is still {view.get('state')} after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    result = view.get("result") or {}
    if result.get("content") is not None and view.get("status") != "failed":
        print(result["content"])
        return 0
    raise CommandError(f"task {task_id} {view.get('state')}: {view.get('error') or 'no result'}")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CommandError(f"{path}:{number}: not JSON: {exc}") from exc
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            raise CommandError(f"{path}:{number}: expected an object or a string")
        yield number, item


def _submit_file(client: ApiClient, path: Path) -> int:
    items = list(_read_jsonl(path))
    failed = 0
    progress = _Progress(len(items))
    for start in range(0, len(items), BATCH_SIZE):
        chunk = items[start : start + BATCH_SIZE]
        answer = client.call("POST", "/api/v1/tasks/llm:batch", {"tasks": [item for _, item in chunk]})
        for result in answer["results"]:
            line = chunk[result["index"]][0]
            if result["status"] == "enqueued":
                print(f"{line}\t{result['task_id']}")
            else:
                failed += 1
                print(f"{line}\terror\t{result['error']}")
        progress.advance(len(chunk))
    progress.done()
    print(f"submitted {len(items) - failed}, failed {failed}", file=sys.stderr)
    return 1 if failed else 0


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.count = 0
        self.started = time.monotonic()

    def advance(self, n: int) -> None:
        self.count += n
        width = 30
        filled = int(width * self.count / self.total)
        rate = self.count / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} {rate:,.0f}/s"
        )
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


# --- tasks / queues --------------------------------------------------------------------------


def _cmd_tasks(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "ls":
        params: dict[str, Any] = {"state": args.state, "queue": args.queue, "limit": args.limit}
        page = client.call("GET", "/api/v1/tasks", params=params)
        rows = [
            [
                t["task_id"],
                t.get("type") or "",
                t["state"],
                str(t.get("attempts", 0)),
                (t.get("error") or "")[:60],
            ]
            for t in page["tasks"]
        ]
        print(format_table(["TASK-ID", "TYPE", "STATE", "ATTEMPTS", "ERROR"], rows))
        return 0
    if not args.task_id:
        raise CommandError(f"tasks {args.action} needs a task id")
    if args.action == "get":
        view = client.call("GET", f"/api/v1/tasks/{args.task_id}")
    else:
        view = client.call("POST", f"/api/v1/tasks/{args.task_id}/{args.action}")
    print(json.dumps(view, indent=2, ensure_ascii=False))
    return 0


def _cmd_queues(args: argparse.Namespace) -> int:
    queues = _client(args).call("GET", "/api/v1/queues")["queues"]
    columns = [
        "queue",
        "pending",
        "active",
        "scheduled",
        "retry",
        "archived",
        "completed",
        "processed_today",
        "failed_today",
    ]
    rows = [
        [str(q[c]) for c in columns] + ["paused" if q["paused"] else "", f"{q['latency_seconds']:.1f}s"]
        for q in queues
    ]
    headers = [c.upper().replace("_", "-") for c in columns] + ["PAUSED", "LATENCY"]
    print(format_table(headers, rows) if rows else "no queues yet")
    return 0


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        default=os.environ.get("SYTQ_API_URL", DEFAULT_API_URL),
        help=f"default SYTQ_API_URL or {DEFAULT_API_URL}",
    )
    parser.add_argument("--api-key", default=os.environ.get("SYTQ_API_KEY"), help="default SYTQ_API_KEY")


def add_client_commands(sub: Any) -> None:
    submit = sub.add_parser("submit", help="submit a prompt (or a JSONL file of tasks) to the API")
    submit.add_argument("prompt", nargs="?", help="the prompt text")
    submit.add_argument("--file", help="JSONL: one task object (or prompt string) per line")
    submit.add_argument("--wait", action="store_true", help="wait and print the answer")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds to --wait (default 600)")
    submit.add_argument("--model")
    submit.add_argument("--callback-url")
    submit.add_argument("--queue")
    _add_connection_options(submit)
    submit.set_defaults(handler=_cmd_submit)

    tasks = sub.add_parser("tasks", help="list, show, cancel or retry tasks")
    tasks.add_argument("action", choices=["ls", "get", "cancel", "retry"])
    tasks.add_argument("task_id", nargs="?")
    tasks.add_argument(
        "--state",
        default="pending",
        choices=["pending", "active", "scheduled", "retry", "archived", "completed"],
    )
    tasks.add_argument("--queue", default="default")
    tasks.add_argument("--limit", type=int, default=50)
    _add_connection_options(tasks)
    tasks.set_defaults(handler=_cmd_tasks)

    queues = sub.add_parser("queues", help="queue statistics as a table")
    _add_connection_options(queues)
    queues.set_defaults(handler=_cmd_queues)
