"""The one settings object every SYT Queue service reads.

Values come from the environment (prefix ``SYTQ_``; ``DEEPSEEK_API_KEY`` without it) and,
optionally, a YAML file named by ``SYTQ_CONFIG``. The environment wins over the file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sytq.http1.proxy import DIRECT, parse_proxy
from sytq.tasks import MAX_PAYLOAD_BYTES

DEFAULT_LLM_BASE_URL = "https://api.deepseek.com"
PLACEHOLDER = "REPLACE-ME"  # what manifests/21-secret.yaml holds until edited


class ConfigError(ValueError):
    """Settings that cannot be used; the message says which and why."""


QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def check_queue_name(name: str) -> str:
    """``name`` if it is a valid queue name, else a ConfigError naming it."""
    if not _QUEUE_NAME.fullmatch(name):
        raise ConfigError(f"queue name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return name


def parse_queue_weights(spec: str) -> dict[str, int]:
    """Parse ``critical=6,default=3,low=1`` into ``{"critical": 6, ...}``."""
    weights: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError(f"queue entry {part!r} has no name")
        check_queue_name(name)
        try:
            value = int(weight) if sep else 1
        except ValueError as exc:
            raise ConfigError(f"queue {name!r}: weight {weight!r} is not an integer") from exc
        if value < 1:
            raise ConfigError(f"queue {name!r}: weight must be >= 1, got {value}")
        weights[name] = value
    if not weights:
        raise ConfigError("SYTQ_QUEUES names no queue")
    return weights


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by SYTQ_CONFIG; keys are field names (lower case)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = os.environ.get("SYTQ_CONFIG")
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"SYTQ_CONFIG={path}: cannot read: {exc}") from exc
            except yaml.YAMLError as exc:
                raise ConfigError(f"SYTQ_CONFIG={path}: not valid YAML: {exc}") from exc
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"SYTQ_CONFIG={path}: top level must be a mapping")
            self._data = self._translated(path, loaded)

    def _translated(self, path: str, loaded: dict[Any, Any]) -> dict[str, Any]:
        """Our keys as they are; the Go original's config.yaml mapped onto them (sytq.go_config)."""
        from sytq.go_config import checked_translation, looks_like_go_config

        if not looks_like_go_config(loaded):
            return {str(k).lower(): v for k, v in loaded.items()}
        try:
            translation = checked_translation(loaded, self.settings_cls.model_fields)
        except ConfigError as exc:
            raise ConfigError(f"SYTQ_CONFIG={path} (the Go original's format): {exc}") from exc
        return translation.settings

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        known = set(self.settings_cls.model_fields)
        unknown = sorted(set(self._data) - known)
        if unknown:
            raise ConfigError(f"SYTQ_CONFIG: unknown settings {', '.join(unknown)}")
        return dict(self._data)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYTQ_", extra="ignore", populate_by_name=True)

    # --- connections -------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix://, redis+sentinel://host:26379,…/<master>/<db>"
        " or redis+cluster://host:port,…); unset = embedded Valkey",
    )
    redis_wait_replicas: int = Field(
        default=0, ge=0, description="API submits are answered only once this many replicas hold them (WAIT)"
    )
    redis_wait_timeout_ms: int = Field(default=1000, ge=1, description="How long a submit waits for replicas")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite file")
    record_database_url: str | None = Field(
        default=None, description="Where llm:process record tables live; defaults to database_url"
    )
    data_dir: Path = Field(default=Path("var"), description="Local state for embedded defaults")

    # --- LLM provider --------------------------------------------------------------------
    deepseek_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DEEPSEEK_API_KEY", "deepseek_api_key")
    )
    llm_base_url: str = DEFAULT_LLM_BASE_URL
    llm_default_model: str = "deepseek-chat"
    llm_connect_timeout: float = 10.0
    llm_read_timeout: float = 660.0  # Deepseek holds slow requests open for up to 10 minutes
    llm_max_in_flight: int = Field(default=0, ge=0, description="Cluster-wide cap; 0 = unlimited")
    llm_requests_per_minute: int = Field(default=0, ge=0)
    llm_tokens_per_minute: int = Field(default=0, ge=0)
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    llm_retry_base_seconds: float = Field(default=10.0, gt=0, description="First retry delay; doubles")
    llm_retry_max_seconds: float = Field(default=600.0, gt=0)
    llm_retry_linear: bool = Field(
        default=False,
        description="Retry n waits n x the base delay (the Go original: base 60, n from 0); false: doubling",
    )
    llm_stream: bool = Field(default=False, description="Use SSE streaming for provider calls")
    llm_proxy: str | None = Field(
        default=None,
        description="Forward proxy for provider calls: http://[user:pass@]host:port, 'direct' for none; "
        "unset = HTTPS_PROXY / HTTP_PROXY / ALL_PROXY from the environment (NO_PROXY applies to both)",
    )
    database_outage_wait_seconds: float = Field(
        default=120.0, ge=0, description="How long a task waits for a lost database before retrying"
    )

    # --- queue / worker --------------------------------------------------------------------
    queues: str = "default=1"
    strict_priority: bool = False
    worker_concurrency: int = Field(
        default=100, ge=1, le=100_000, description="Provider calls in flight per worker process"
    )
    worker_prefetch: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="Tasks held beyond the calls in flight (default: as many as the concurrency)",
    )
    shutdown_timeout: float = Field(default=8.0, ge=0)
    task_max_retry: int = Field(default=25, ge=0)
    task_timeout_seconds: int = Field(default=900, ge=1)
    publish_task_events: bool = True
    reconcile_interval_seconds: float = Field(
        default=30.0, ge=0, description="How often the worker fleet's reconciler runs; 0 = never"
    )
    reconcile_grace_seconds: float = Field(
        default=60.0, ge=0, description="Age before an unfinished row or a pending callback is looked at"
    )

    # --- llm:process record mode -----------------------------------------------------------
    record_tables: str = "valuation_records"
    record_status_processing: str = "处理中"
    record_status_done: str = "已完成"
    record_status_failed: str = "失败"
    record_max_tokens: int = Field(default=2000, ge=1, description="max_tokens of record-mode LLM calls")
    record_failed_status_final_only: bool = Field(
        default=False,
        description="Write the failed status only when the task gives up (status stays processing "
        "while retries remain); false: after every failed attempt, as the Go original",
    )

    # --- callbacks ---------------------------------------------------------------------------
    callback_secret: SecretStr | None = Field(
        default=None, description="HMAC key for callback signatures; required by the worker"
    )
    callback_unsigned: bool = Field(
        default=False, description="Let a worker without SYTQ_CALLBACK_SECRET send unsigned callbacks"
    )
    callback_allow_nets: str = ""
    callback_max_attempts: int = Field(default=10, ge=1)
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    callback_retry_base_seconds: float = Field(default=5.0, gt=0, description="First retry delay; doubles")
    callback_queue: str = Field(
        default="callbacks", min_length=1, max_length=128, description="Queue of callback:deliver tasks"
    )
    callback_concurrency: int = Field(
        default=20, ge=1, le=10_000, description="Callbacks in flight per worker, apart from the LLM slots"
    )
    callback_proxy: str | None = Field(
        default=None,
        description="Forward proxy for callbacks (a CONNECT tunnel to the address the SSRF guard vetted); "
        "unset = direct, the *_PROXY environment is not used for callbacks",
    )

    # --- HTTP API --------------------------------------------------------------------------------
    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1)
    api_keys: str = Field(
        default="", description="Comma-separated name:sha256hex:scope|scope entries (SHA-256 of the key)"
    )
    basic_auth_users: str = Field(
        default="",
        description="HTTP Basic users: comma-separated name:sha256hex:scope|scope (SHA-256 of the password)",
    )
    basic_auth_realm: str = Field(
        default="Authorization Required",
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",  # it goes into a response header
        description="Realm of the Basic challenge",
    )
    auth_disabled: bool = Field(
        default=False, description="Run the API with no authentication (only for trials on loopback)"
    )
    id_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for idempotency-derived task ids; default derived from the callback secret",
    )
    dynamic_queues: bool = Field(
        default=False, description="Accept submits to queues not named in SYTQ_QUEUES"
    )
    api_rate_limit_per_minute: int = Field(default=0, ge=0, description="Per key; 0 = unlimited")
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=MAX_PAYLOAD_BYTES)
    api_max_prompt_chars: int = Field(default=200_000, ge=1)
    api_max_batch: int = Field(default=1000, ge=1)
    api_resource_mode: bool = Field(default=False, description="Submit creates LLMTask resources")
    api_resource_namespace: str = "default"
    task_retention_seconds: int = Field(
        default=86_400, ge=0, description="How long finished tasks (and their results) stay on the queue"
    )

    # --- Kubernetes controller (sytq controller) -------------------------------------------
    controller_namespaces: str = Field(default="", description="Comma-separated; empty = cluster-wide")
    controller_resync_seconds: float = Field(default=10.0, gt=0, le=3600)
    controller_scale_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    controller_peering: str = Field(default="syt-queue", description="kopf peering name; empty = standalone")
    controller_priority: int = Field(default=0, ge=0, description="kopf peering priority; 0 = random")
    controller_result_retention_seconds: int = Field(default=86_400, ge=60)
    controller_max_patches_in_flight: int = Field(default=32, ge=1, le=1000)
    # What an LLMWorkerPool may put into the worker pods it asks for (comma-separated names; empty
    # = nothing): whoever may create a pool must not gain the controller's rights to run any image,
    # as any ServiceAccount, with any Secret. The chart and manifests fill these in.
    controller_pool_images: str = Field(default="", description="Allowed images; a trailing * = prefix")
    controller_pool_service_accounts: str = Field(
        default="", description="Allowed worker ServiceAccounts (a pool without one runs as 'default')"
    )
    controller_pool_secrets: str = Field(default="", description="Secrets a pool may reference")
    controller_pool_config_maps: str = Field(default="", description="ConfigMaps a pool may reference")
    controller_pool_env: str = Field(default="", description="Names a pool's extra env may set")
    # The operator's CA for a Redis with TLS, mounted into every pool's worker pods (the chart's
    # redisTLS.caSecret); not a pool field, so a pool author cannot mount another Secret this way.
    controller_pool_redis_ca_secret: str = Field(
        default="", description="Secret with the Redis CA bundle for worker pods; empty = none"
    )
    controller_pool_redis_ca_key: str = Field(default="ca.crt", min_length=1, description="Its key")

    # --- observability -------------------------------------------------------------------------
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = no metrics listener")
    metrics_go_compat: bool = Field(
        default=False, description="Also serve the Go original's syt_go_queue_* metrics on /metrics"
    )
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: str) -> str:
        parse_queue_weights(value)
        return value

    @field_validator("callback_secret", "id_secret", "api_keys", "basic_auth_users")
    @classmethod
    def _no_placeholder(cls, value: Any) -> Any:
        # manifests/21-secret.yaml ships placeholders: applied unedited, every process refuses to start.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and PLACEHOLDER in text:
            raise ValueError(f"still holds the template placeholder {PLACEHOLDER}: set a real value")
        return value

    @field_validator("llm_proxy", "callback_proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in (DIRECT, ""):
            parse_proxy(value)  # ValueError says what is wrong
        return value

    @model_validator(mode="after")
    def _callbacks_have_their_own_queue(self) -> Settings:
        if self.callback_queue in self.queue_weights:
            raise ValueError(
                f"SYTQ_CALLBACK_QUEUE {self.callback_queue!r} is also in SYTQ_QUEUES: callbacks have a queue "
                "of their own, so that slow receivers never take the slots of LLM calls"
            )
        return self

    @model_validator(mode="after")
    def _no_wait_on_a_cluster(self) -> Settings:
        if self.redis_wait_replicas and (self.redis_url or "").partition("://")[0].endswith("+cluster"):
            raise ValueError(
                "SYTQ_REDIS_WAIT_REPLICAS is not supported on a Redis Cluster: WAIT acts on one node, while a"
                " submit may write to several masters"
            )
        return self

    @property
    def queue_weights(self) -> dict[str, int]:
        return parse_queue_weights(self.queues)

    @property
    def effective_worker_prefetch(self) -> int:
        """Extra task slots: a finished call's slot is refilled from a task already held while the
        finished one is still being stored and acknowledged, so the provider never idles on that."""
        if self.worker_prefetch is not None:
            return self.worker_prefetch
        # As many extra slots as call slots came closest to the ideal rate (bench/results/notes.md):
        # storing and acknowledging a wave of answers takes a while, and the held tasks keep every
        # call slot busy meanwhile.
        return self.worker_concurrency

    def check_callback_signing(self) -> None:
        """A worker signs every callback, or was explicitly told it may not (SYTQ_CALLBACK_UNSIGNED)."""
        signed = self.callback_secret is not None and bool(self.callback_secret.get_secret_value())
        if not signed and not self.callback_unsigned:
            raise ConfigError(
                "SYTQ_CALLBACK_SECRET is empty: callbacks could not be signed. Set it to a long random"
                " string (receivers verify X-SYTQ-Signature with it), or set SYTQ_CALLBACK_UNSIGNED=true"
                " to send unsigned callbacks"
            )

    @property
    def effective_id_secret(self) -> bytes | None:
        """The key of idempotency-derived task ids: SYTQ_ID_SECRET, else one derived from the callback
        secret (a separate derivation, so the signing key itself never leaves the HMAC); None if neither."""
        if self.id_secret is not None and self.id_secret.get_secret_value():
            return self.id_secret.get_secret_value().encode()
        if self.callback_secret is not None and self.callback_secret.get_secret_value():
            secret = self.callback_secret.get_secret_value().encode()
            return hmac.new(secret, b"sytq task id secret", hashlib.sha256).digest()
        return None

    @property
    def record_table_allowlist(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.record_tables.split(",") if t.strip())

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sytq.db').resolve()}"

    @property
    def effective_record_database_url(self) -> str:
        return self.record_database_url or self.effective_database_url

    @property
    def uses_stub_llm(self) -> bool:
        return self.deepseek_api_key is None and self.llm_base_url == DEFAULT_LLM_BASE_URL

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls), file_secret_settings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
