"""``sytq config convert``: the Go original's config.yaml written as our YAML settings file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from sytq.go_config import checked_translation, looks_like_go_config
from sytq.settings import ConfigError, Settings


def convert(source: Path) -> str:
    """Our YAML for the original's file at ``source``; the keys that changed nothing, as comments."""
    try:
        loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict) or not looks_like_go_config(loaded):
        raise ConfigError(
            f"{source}: not the Go original's config (no app/redis/mysql/deepseek/queue/auth section)"
        )
    try:
        translation = checked_translation(loaded, Settings.model_fields)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    lines = [
        f"# SYT Queue settings converted from {source} (the Go original's config.yaml).",
        "# Use it with SYTQ_CONFIG=<this file>; the environment (SYTQ_*, DEEPSEEK_API_KEY) wins over it.",
        "# Better kept in the environment than here: deepseek_api_key, and set SYTQ_CALLBACK_SECRET there.",
    ]
    if translation.notes:
        lines.append("#")
        lines.append("# Not carried over:")
        lines += [f"#   {note}" for note in translation.notes]
    body: dict[str, Any] = translation.settings
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def _cmd_convert(args: argparse.Namespace) -> int:
    text = convert(Path(args.source))
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    # The file holds password hashes and maybe the provider key: readable by its owner only.
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def add_config_commands(sub: Any) -> None:
    config = sub.add_parser("config", help="settings files")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    convert_cmd = actions.add_parser(
        "convert", help="write the Go original's config.yaml as a SYTQ_CONFIG file (stdout or -o FILE)"
    )
    convert_cmd.add_argument("source", help="the original's config.yaml")
    convert_cmd.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    convert_cmd.set_defaults(handler=_cmd_convert)
