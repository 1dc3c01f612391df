"""The Go original's config.yaml mapped onto our settings (sytq.go_config) and ``sytq config convert``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sytq.go_config import go_duration_seconds, mysql_url, redis_url, translate_go_config
from sytq.settings import ConfigError, Settings

ORIGINAL = Path(__file__).resolve().parents[1] / "data" / "go_original_config.yaml"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_originals_own_file_translates() -> None:
    translation = translate_go_config(yaml.safe_load(ORIGINAL.read_text()))
    assert translation.unmapped == []
    assert translation.settings == {
        "api_port": 8080,
        "redis_url": "redis://localhost:6390/0",
        "database_url": "mysql+pymysql://root:password@localhost:3306/syt_queue?charset=utf8mb4",
        "deepseek_api_key": "your_api_key",
        "llm_base_url": "https://api.deepseek.com/v1",
        "llm_read_timeout": 30.0,
        "llm_default_model": "deepseek-chat",
        "record_max_tokens": 2000,
        "llm_breaker_reset_seconds": 120.0,
        "worker_concurrency": 10,
        "log_level": "INFO",
        "log_json": False,
        "basic_auth_users": f"admin:{_sha('admin123')}:submit|read,api:{_sha('api123')}:submit|read",
    }
    noted = {note.split(" is not used")[0] for note in translation.notes}
    assert noted == {
        "app.name",
        "app.mode",
        "mysql.max_idle_conns",
        "mysql.max_open_conns",
        "deepseek.circuit_breaker.enabled",
        "deepseek.circuit_breaker.max_requests",
        "deepseek.circuit_breaker.interval",
        "deepseek.circuit_breaker.fail_threshold",
        "queue.retry",
        "queue.retention",
        "auth.realm",
    }


@pytest.mark.parametrize(
    ("dsn", "url"),
    [
        (
            "root:password@tcp(localhost:3306)/syt_queue?charset=utf8mb4&parseTime=True&loc=Local",
            "mysql+pymysql://root:password@localhost:3306/syt_queue?charset=utf8mb4",
        ),
        ("u:p@ss:w@rd@tcp(db)/x", "mysql+pymysql://u:p%40ss%3Aw%40rd@db:3306/x"),
        (
            "u@unix(/run/mysqld.sock)/db?timeout=1m30s&readTimeout=500ms",
            "mysql+pymysql://u@/db?unix_socket=/run/mysqld.sock&connect_timeout=90&read_timeout=1",
        ),
        ("/db", "mysql+pymysql://127.0.0.1:3306/db"),
        ("tcp([::1]:3307)/d?charset=utf8mb4,utf8", "mysql+pymysql://[::1]:3307/d?charset=utf8mb4"),
    ],
)
def test_go_mysql_dsn(dsn: str, url: str) -> None:
    assert mysql_url(dsn) == url


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("root@tcp(h:1)", "no '/'"),
        ("root@tcp(h:1)/db?tls=true", "'tls' cannot be mapped"),
        ("root@pipe(x)/db", "protocol 'pipe'"),
    ],
)
def test_go_mysql_dsn_refused(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        mysql_url(dsn)


def test_redis_and_durations() -> None:
    assert redis_url("r:6379", "p@ss word", 2) == "redis://:p%40ss%20word@r:6379/2"
    assert go_duration_seconds("1h2m3.5s", "k") == 3723.5
    assert go_duration_seconds("250ms", "k") == 0.25
    assert go_duration_seconds(30_000_000_000, "k") == 30.0  # viper reads a bare integer as nanoseconds
    for bad in ("30", "1x", "", "s"):
        with pytest.raises(ConfigError, match="not a Go duration"):
            go_duration_seconds(bad, "deepseek.timeout")


def test_settings_read_the_original_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "app: {name: x, mode: production, port: 9090}\n"
        "redis: {addr: 'cache:6390', password: pw, db: 3}\n"
        "queue: {concurrency: 7, retry: 3, retention: 24h}\n"
        "auth: {enabled: false, realm: r, users: {}}\n"
        "callback_allow_nets: 10.0.0.0/8\n"  # our own keys may sit beside its sections
    )
    monkeypatch.setenv("SYTQ_CONFIG", str(config))
    monkeypatch.delenv("SYTQ_API_PORT", raising=False)
    monkeypatch.setenv("SYTQ_WORKER_CONCURRENCY", "12")  # the environment still wins
    settings = Settings()
    assert (settings.api_port, settings.redis_url) == (9090, "redis://:pw@cache:6390/3")
    assert (settings.worker_concurrency, settings.callback_allow_nets) == (12, "10.0.0.0/8")
    assert settings.auth_disabled is True


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("redis: {addr: 'r:1', pool_size: 5}\n", "cannot map redis.pool_size"),
        (
            "deepseek: {circuit_breaker: {tripwire: 1}}\napp: {port: 1, colour: red}\n",
            "cannot map app.colour, deepseek.circuit_breaker.tripwire",
        ),
        ("app: {port: eighty}\n", "app.port: 'eighty' is not an integer"),
        ("deepseek: {timeout: 30}\nredis: []\n", "redis: expected a mapping"),
        ("logger: {level: loud}\n", "logger.level: 'loud' is not one of"),
        ("auth: {enabled: true}\n", "auth.users: expected a mapping"),
        ("auth: {enabled: true, users: {'a:b': x}}\n", "user name 'a:b'"),
    ],
)
def test_unmappable_keys_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    monkeypatch.setenv("SYTQ_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert f"SYTQ_CONFIG={config} (the Go original's format)" in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.slow
def test_convert_command_writes_a_file_our_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sytq.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "sytq_cli", "config", "convert", str(ORIGINAL), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    assert "#   queue.retry is not used" in text and "#   auth.realm is not used" in text
    converted = yaml.safe_load(text)
    assert converted == translate_go_config(yaml.safe_load(ORIGINAL.read_text())).settings
    monkeypatch.setenv("SYTQ_CONFIG", str(out))
    settings = Settings()
    assert settings.redis_url == "redis://localhost:6390/0" and settings.record_max_tokens == 2000
    assert settings.basic_auth_users.startswith(f"admin:{_sha('admin123')}:submit|read,")
    refused = subprocess.run(
        [sys.executable, "-m", "sytq_cli", "config", "convert", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not the Go original's config" in refused.stderr
