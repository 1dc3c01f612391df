"""The Go original's ``config.yaml`` read as our settings: each of its keys mapped, or named in an error.

The original's file has sections ``app``, ``redis``, ``mysql``, ``deepseek``, ``queue``,
``logger`` and ``auth``; a SYTQ_CONFIG file with any of them as a mapping is read as one.
Keys that had no effect in the original, or that have no counterpart here, are accepted and
listed in ``GoTranslation.notes`` (``sytq config convert`` writes them as comments).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from sytq.settings import ConfigError

GO_SECTIONS = frozenset({"app", "redis", "mysql", "deepseek", "queue", "logger", "auth"})
# What the original's users could do: submit and read (it had no other routes).
BASIC_USER_SCOPES = "submit|read"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}


def looks_like_go_config(data: dict[str, Any]) -> bool:
    """True when the file has at least one of the original's sections as a mapping."""
    return any(isinstance(data.get(name), dict) for name in GO_SECTIONS)


@dataclass
class GoTranslation:
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # accepted keys that change nothing here
    unmapped: list[str] = field(default_factory=list)  # keys we do not know: an error


def go_duration_seconds(value: object, key: str) -> float:
    """A Go ``time.Duration`` as viper read it: ``"1m30s"``, or a bare integer of nanoseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not a duration")
    if isinstance(value, int):
        return value / 1e9
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, at = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != at:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        at = match.end()
    if not body or at != len(body):
        raise ConfigError(f"{key}: {value!r} is not a Go duration (like 30s, 2m, 1h30m)")
    return sign * total


def _text(value: object, key: str) -> str:
    if isinstance(value, dict | list):
        raise ConfigError(f"{key}: expected a single value, got {type(value).__name__}")
    return "" if value is None else str(value)


def _int(value: object, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ConfigError(f"{key}: {value!r} is not an integer")


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "t", "yes", "on"):
        return True
    if text in ("false", "0", "f", "no", "off", ""):
        return False
    raise ConfigError(f"{key}: {value!r} is not true or false")


def redis_url(addr: str, password: str, db: int) -> str:
    """``redis.addr/password/db`` as a redis:// URL."""
    if not addr or ":" not in addr:
        raise ConfigError(f"redis.addr: {addr!r} must be host:port")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{addr}/{db}"


# go-sql-driver/mysql DSN parameters: what each becomes in a mysql+pymysql URL (None: no meaning here).
_DSN_PARAMS: dict[str, str | None] = {
    "charset": "charset",
    "collation": "collation",
    "parseTime": None,  # how Go scans DATETIME columns
    "loc": None,  # the time zone Go decodes DATETIME in
    "timeout": "connect_timeout",
    "readTimeout": "read_timeout",
    "writeTimeout": "write_timeout",
}


def mysql_url(dsn: str) -> str:
    """A Go MySQL DSN (``user:pw@tcp(host:port)/db?charset=utf8mb4&parseTime=True&loc=Local``) as
    a SQLAlchemy ``mysql+pymysql://`` URL."""
    slash = dsn.rfind("/")
    if slash < 0:
        raise ConfigError(f"mysql.dsn: {dsn!r} has no '/' before the database name")
    head, tail = dsn[:slash], dsn[slash + 1 :]
    at = head.rfind("@")
    credentials, target = (head[:at], head[at + 1 :]) if at >= 0 else ("", head)
    user, _, password = credentials.partition(":")
    protocol, _, address = target.partition("(")
    protocol = protocol or "tcp"
    if address and not address.endswith(")"):
        raise ConfigError(f"mysql.dsn: address {target!r} must be written protocol(address)")
    address = address[:-1]
    database, _, params_text = tail.partition("?")
    query: list[tuple[str, str]] = []
    for pair in filter(None, params_text.split("&")):
        name, _, value = pair.partition("=")
        if name not in _DSN_PARAMS:
            raise ConfigError(
                f"mysql.dsn: parameter {name!r} cannot be mapped; set SYTQ_DATABASE_URL "
                "(mysql+pymysql://…) yourself"
            )
        target_name = _DSN_PARAMS[name]
        if target_name is None:
            continue
        value = unquote(value)
        if name == "charset":
            value = value.split(",")[0]  # the driver tried each in turn; the first is the usual one
        elif name.endswith("imeout"):
            value = str(max(1, round(go_duration_seconds(value, f"mysql.dsn {name}"))))
        query.append((target_name, value))
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    auth = auth + "@" if auth else ""
    if protocol == "tcp":
        host = address or "127.0.0.1:3306"
        location = host if ":" in host.rsplit("]", 1)[-1] else f"{host}:3306"
    elif protocol == "unix":
        location = ""
        query.insert(0, ("unix_socket", address or "/tmp/mysql.sock"))
    else:
        raise ConfigError(f"mysql.dsn: protocol {protocol!r} cannot be mapped (tcp or unix)")
    suffix = "?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in query) if query else ""
    return f"mysql+pymysql://{auth}{location}/{unquote(database)}{suffix}"


def _llm_base_url(url: str) -> str:
    # The original POSTed to base_url as it was, so a working file names the full endpoint; we
    # append /chat/completions ourselves.
    url = url.rstrip("/")
    return url.removesuffix("/chat/completions")


def _basic_users(users: object) -> str:
    if not isinstance(users, dict) or not users:
        raise ConfigError("auth.users: expected a mapping of user: password when auth.enabled is true")
    entries = []
    for name, password in users.items():
        user = str(name)
        if not user or any(c in user for c in ":,|") or user != user.strip():
            raise ConfigError(f"auth.users: user name {user!r} cannot contain ':', ',', '|' or edge spaces")
        digest = hashlib.sha256(_text(password, f"auth.users.{user}").encode()).hexdigest()
        entries.append(f"{user}:{digest}:{BASIC_USER_SCOPES}")
    return ",".join(entries)


class _Reader:
    """Walks one section, recording which keys were read, so the rest can be named."""

    def __init__(self, translation: GoTranslation, section: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{section}: expected a mapping, got {type(data).__name__}")
        self.translation = translation
        self.section = section
        self.data = {str(k).lower(): v for k, v in data.items()}  # viper's keys are case-insensitive
        self.seen: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: object = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def key(self, key: str) -> str:
        return f"{self.section}.{key}"

    def put(self, out: dict[str, Any], key: str, setting: str, convert: Callable[[Any, str], Any]) -> None:
        """``out[setting]`` from ``key`` when the file has it."""
        if self.has(key):
            out[setting] = convert(self.get(key), self.key(key))

    def note(self, key: str, why: str) -> None:
        if self.has(key):
            self.get(key)
            self.translation.notes.append(f"{self.key(key)} is not used: {why}")

    def finish(self) -> None:
        self.translation.unmapped += [self.key(k) for k in sorted(set(self.data) - self.seen)]


def _app(r: _Reader, out: dict[str, Any]) -> None:
    r.put(out, "port", "api_port", _int)
    r.note("name", "only shown in the original's log")
    r.note("mode", "gin's debug/release mode has no counterpart")


def _redis(r: _Reader, out: dict[str, Any]) -> None:
    password = _text(r.get("password", ""), r.key("password"))
    db = _int(r.get("db", 0), r.key("db"))
    out["redis_url"] = redis_url(_text(r.get("addr", ""), r.key("addr")), password, db)


def _mysql(r: _Reader, out: dict[str, Any]) -> None:
    r.put(out, "dsn", "database_url", lambda value, key: mysql_url(_text(value, key)))
    for pool in ("max_idle_conns", "max_open_conns"):
        r.note(pool, "connection pools are sized by each process")


def _deepseek(r: _Reader, out: dict[str, Any]) -> None:
    r.put(out, "api_key", "deepseek_api_key", _text)
    r.put(out, "base_url", "llm_base_url", lambda value, key: _llm_base_url(_text(value, key)))
    r.put(out, "timeout", "llm_read_timeout", go_duration_seconds)
    r.put(out, "model", "llm_default_model", _text)
    r.put(out, "max_tokens", "record_max_tokens", _int)
    if r.has("circuit_breaker"):
        breaker = _Reader(r.translation, r.key("circuit_breaker"), r.get("circuit_breaker"))
        breaker.put(out, "timeout", "llm_breaker_reset_seconds", go_duration_seconds)
        why = "our breaker opens after llm_breaker_failures transient failures in a row"
        for name in ("enabled", "max_requests", "interval", "fail_threshold"):
            breaker.note(name, why)
        breaker.finish()


def _queue(r: _Reader, out: dict[str, Any]) -> None:
    r.put(out, "concurrency", "worker_concurrency", _int)
    r.note("retry", "the original never applied it: its tasks got asynq's default of 25 retries, as here")
    r.note("retention", "the original never applied it: its finished tasks were deleted at once, as here")


def _log_level(value: object, key: str) -> str:
    level = _text(value, key).lower()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"{key}: {level!r} is not one of debug, info, warn, error")
    return _LOG_LEVELS[level]


def _logger(r: _Reader, out: dict[str, Any]) -> None:
    r.put(out, "level", "log_level", _log_level)
    r.put(out, "development", "log_json", lambda value, key: not _bool(value, key))


def _auth(r: _Reader, out: dict[str, Any]) -> None:
    enabled = _bool(r.get("enabled", False), r.key("enabled"))
    users = r.get("users")
    if enabled:
        out["basic_auth_users"] = _basic_users(users)
    else:
        out["auth_disabled"] = True  # the file switched authentication off on purpose
    r.note("realm", 'gin.BasicAuth never sent it (its challenge said realm="Authorization Required")')


_SECTIONS = {
    "app": _app,
    "redis": _redis,
    "mysql": _mysql,
    "deepseek": _deepseek,
    "queue": _queue,
    "logger": _logger,
    "auth": _auth,
}


def translate_go_config(data: dict[str, Any]) -> GoTranslation:
    """Our settings for the original's file. Top-level keys that are not its sections are taken as
    our own settings and win over the translated ones."""
    translation = GoTranslation()
    ours: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).lower()
        section = _SECTIONS.get(key)
        if section is None:
            ours[key] = value
            continue
        reader = _Reader(translation, key, value)
        section(reader, translation.settings)
        reader.finish()
    translation.settings.update(ours)
    translation.unmapped.sort()
    return translation


def checked_translation(data: dict[str, Any], known_settings: Collection[str]) -> GoTranslation:
    """``translate_go_config``, refusing keys it cannot map and settings this version lacks."""
    translation = translate_go_config(data)
    if translation.unmapped:
        raise ConfigError(
            f"cannot map {', '.join(translation.unmapped)}; docs/configuration.md lists the keys that map"
        )
    missing = sorted(set(translation.settings) - set(known_settings))
    if missing:
        raise ConfigError(f"unknown settings {', '.join(missing)}")
    return translation
