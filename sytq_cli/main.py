"""``sytq``: one command for every SYT Queue process and for talking to a running API.

This launcher layer sits above the services and imports them directly (import-linter keeps the
core and the services from importing it back).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import pydantic

from sytq.settings import ConfigError, get_settings
from sytq_cli.client import CommandError, add_client_commands
from sytq_cli.config_cmd import add_config_commands
from sytq_cli.records_cmd import add_records_commands


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.auth import load_identities
    from sytq_cli.api_workers import ApiWorkers, WorkersFailed
    from sytq_cli.direct_http import DirectSubmitProtocol

    settings = get_settings()
    load_identities(settings)  # no keys and no SYTQ_AUTH_DISABLED: refuse here, in one clear line
    options: dict[str, Any] = {
        "app": "api.app:create_asgi_app",
        "factory": True,
        "http": DirectSubmitProtocol,
        "host": args.host or settings.api_host,
        "port": args.port or settings.api_port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "proxy_headers": False,  # nothing here reads the client address: no X-Forwarded-* scan per request
    }
    workers = args.workers or settings.api_workers
    if workers == 1:
        uvicorn.run(**options)
        return 0
    uvicorn.Config(**options)  # sets up logging as each worker does
    try:
        return ApiWorkers(options, workers).run()
    except (WorkersFailed, OSError) as exc:
        print(f"sytq: {exc}", file=sys.stderr)
        return 1


def _cmd_worker(_: argparse.Namespace) -> int:
    from worker.main import main as worker_main

    worker_main()
    return 0


def _cmd_controller(_: argparse.Namespace) -> int:
    from controller.main import main as controller_main

    controller_main()
    return 0


def _cmd_stub_llm(args: argparse.Namespace) -> int:
    from sytq_cli import stub_llm

    stub_llm.serve(args.host, args.port, latency=args.latency, faults=args.faults)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from sytq_cli.run import run_all

    return run_all(port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sytq", description="SYT Queue: a Kubernetes-native queue for LLM calls"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", default=None, help="default SYTQ_API_HOST")
    api.add_argument("--port", type=int, default=None, help="default SYTQ_API_PORT (8080)")
    api.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (SYTQ_API_WORKERS)")
    api.set_defaults(handler=_cmd_api)

    sub.add_parser("worker", help="run a worker process").set_defaults(handler=_cmd_worker)
    sub.add_parser("controller", help="run the Kubernetes operator").set_defaults(handler=_cmd_controller)

    stub = sub.add_parser("stub-llm", help="serve the OpenAI-compatible stub LLM")
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, required=True)
    stub.add_argument("--latency", default="0", help="seconds, or a distribution spec (see docs/pipeline.md)")
    stub.add_argument("--faults", default="", help="injected faults (see docs/pipeline.md)")
    stub.set_defaults(handler=_cmd_stub_llm)

    run = sub.add_parser(
        "run", help="the whole system locally: API + worker (+ embedded Redis, SQLite, stub LLM)"
    )
    run.add_argument("--port", type=int, default=None, help="API port (default SYTQ_API_PORT)")
    run.set_defaults(handler=_cmd_run)

    add_client_commands(sub)
    add_records_commands(sub)
    add_config_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except (CommandError, ConfigError) as exc:
        print(f"sytq: {exc}", file=sys.stderr)
        code = 2 if isinstance(exc, ConfigError) else 1
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"sytq: invalid settings: {problems}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
