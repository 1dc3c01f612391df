from __future__ import annotations

from pathlib import Path

import pytest

from sytq.settings import ConfigError, Settings, parse_queue_weights
from tests.harness.services import env_without_settings


def test_queue_weights_parse() -> None:
    assert parse_queue_weights("critical=6,default=3,low=1") == {"critical": 6, "default": 3, "low": 1}
    assert parse_queue_weights("default") == {"default": 1}


@pytest.mark.parametrize("spec", ["", "a=0", "a=x", "=3"])
def test_queue_weights_reject_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_queue_weights(spec)


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("worker_concurrency: 7\napi_port: 9000\n")
    monkeypatch.setenv("SYTQ_CONFIG", str(cfg))
    monkeypatch.setenv("SYTQ_API_PORT", "9100")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    s = Settings()
    assert s.worker_concurrency == 7
    assert s.api_port == 9100
    assert s.deepseek_api_key is not None and s.deepseek_api_key.get_secret_value() == "sk-test"
    assert not s.uses_stub_llm


def test_unknown_yaml_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("wrker_concurrency: 7\n")
    monkeypatch.setenv("SYTQ_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="wrker_concurrency"):
        Settings()


def test_defaults_fall_back_to_sqlite_and_stub(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SYTQ_DATABASE_URL", "DEEPSEEK_API_KEY", "SYTQ_CONFIG", "SYTQ_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.uses_stub_llm
    assert s.queue_weights == {"default": 1}


@pytest.mark.parametrize("spec", ["a/b=1", "default=1,x y=2", f"{'q' * 65}=1"])
def test_queue_names_in_sytq_queues_are_validated(spec: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        Settings(queues=spec)


def test_a_worker_needs_a_callback_secret_unless_unsigned_is_explicit() -> None:
    with pytest.raises(ConfigError, match="SYTQ_CALLBACK_UNSIGNED=true"):
        Settings().check_callback_signing()
    Settings(callback_unsigned=True).check_callback_signing()
    Settings(callback_secret="s").check_callback_signing()


def test_the_id_secret_is_its_own_setting_or_derived_from_the_callback_secret() -> None:
    assert Settings().effective_id_secret is None
    assert Settings(id_secret="i", callback_secret="c").effective_id_secret == b"i"
    derived = Settings(callback_secret="c").effective_id_secret
    assert (
        derived is not None
        and derived != b"c"
        and derived == Settings(callback_secret="c").effective_id_secret
    )


def test_a_realm_with_control_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="basic_auth_realm"):
        Settings(basic_auth_realm="a\r\nSet-Cookie: x")


@pytest.mark.slow  # starts the command in a subprocess
def test_sytq_worker_without_a_callback_secret_exits_with_one_clear_line() -> None:
    import subprocess
    import sys

    env = env_without_settings()
    env["SYTQ_REDIS_URL"] = "redis://127.0.0.1:1/0"  # never reached: the check comes first
    run = subprocess.run(
        [sys.executable, "-m", "sytq_cli", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stderr
    assert "SYTQ_CALLBACK_SECRET is empty" in run.stderr and "Traceback" not in run.stderr
