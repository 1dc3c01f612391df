"""``sytq run``'s local defaults: no keys → auth off on loopback only; no callback secret → one
generated into the data directory, owner-only, and kept for the next run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sytq.settings import Settings
from sytq_cli.run import LOOPBACK, callback_secret_file, secure_local_defaults
from tests.api.helpers import key_entry


def test_without_keys_auth_is_off_and_the_api_listens_on_loopback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env: dict[str, str] = {}
    host = secure_local_defaults(Settings(data_dir=tmp_path, api_host="0.0.0.0"), env)
    assert host == LOOPBACK == "127.0.0.1"
    assert env["SYTQ_AUTH_DISABLED"] == "true"
    banner = capsys.readouterr().err
    assert "AUTHENTICATION IS OFF" in banner and "127.0.0.1 ONLY" in banner


def test_with_keys_auth_stays_on_and_an_explicit_host_is_used(tmp_path: Path) -> None:
    keyed = Settings(data_dir=tmp_path, api_keys=key_entry("k", "secret", "admin"), callback_secret="s")
    env: dict[str, str] = {}
    assert secure_local_defaults(keyed, env) == LOOPBACK  # keys alone: still loopback
    assert "SYTQ_AUTH_DISABLED" not in env and "SYTQ_CALLBACK_SECRET" not in env
    exposed = keyed.model_copy(update={"api_host": "0.0.0.0"})
    exposed.model_fields_set.add("api_host")
    assert secure_local_defaults(exposed, {}) == "0.0.0.0"


def test_a_callback_secret_is_generated_once_owner_only_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env: dict[str, str] = {}
    secure_local_defaults(Settings(data_dir=tmp_path), env)
    secret = env["SYTQ_CALLBACK_SECRET"]
    path = tmp_path / "callback-secret"
    assert len(secret) >= 32 and path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret in capsys.readouterr().err  # printed, so a local receiver can be set up with it
    assert callback_secret_file(tmp_path) == (secret, False)
    Settings(callback_secret=secret).check_callback_signing()
