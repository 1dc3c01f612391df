"""Who is calling: API keys (``Authorization: Bearer <key>``) and HTTP Basic users.

Both are configured as ``name:sha256hex:scope|scope`` entries (``SYTQ_API_KEYS`` hashes the key,
``SYTQ_BASIC_AUTH_USERS`` the password), so its configuration holds no plaintext secret. ``admin``
implies every other scope. The name is the tenant: tasks are owned by the name that submitted them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Literal

from sytq.settings import ConfigError, Settings

log = logging.getLogger("sytq.api")

Scope = Literal["submit", "read", "admin"]
MAX_VERIFIED_HEADERS = 1024
SCOPES: frozenset[str] = frozenset({"submit", "read", "admin"})


@dataclass(frozen=True)
class ApiKey:
    """One caller identity: an API key or a Basic-auth user."""

    name: str
    sha256: bytes
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


# The identity of every caller when SYTQ_AUTH_DISABLED=true.
ANONYMOUS = ApiKey(name="anonymous", sha256=b"", scopes=frozenset({"admin"}))


@dataclass(frozen=True)
class Identities:
    """Every configured caller; ``disabled`` = no authentication at all (an explicit setting)."""

    keys: tuple[ApiKey, ...]
    basic_users: tuple[ApiKey, ...]
    disabled: bool = False
    # Authorization values that matched, and whom: a repeat skips decoding, hashing and comparing
    # (a PHP app sends the same header with every request). Only matches are kept, so a wrong
    # secret is always checked in full; bounded so that many callers cannot grow it.
    verified: dict[str, ApiKey] = field(default_factory=dict, compare=False, repr=False)

    def remember(self, authorization: str, key: ApiKey) -> None:
        if len(self.verified) >= MAX_VERIFIED_HEADERS:
            self.verified.clear()
        self.verified[authorization] = key


def _parse_entries(spec: str, setting: str, what: str) -> tuple[ApiKey, ...]:
    """Parse ``name:sha256hex:scope|scope,...``; a clear ConfigError for any bad entry."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ConfigError(f"{setting} entry {entry.split(':')[0]!r}: expected name:sha256hex:scopes")
        name, digest, scope_spec = (p.strip() for p in parts)
        if not name:
            raise ConfigError(f"{setting}: an entry has an empty name")
        try:
            raw = bytes.fromhex(digest)
        except ValueError as exc:
            raise ConfigError(f"{setting} {name!r}: hash is not hex") from exc
        if len(raw) != 32:
            raise ConfigError(f"{setting} {name!r}: hash must be 64 hex digits (SHA-256 of the {what})")
        scopes = frozenset(s.strip() for s in scope_spec.split("|") if s.strip())
        unknown = scopes - SCOPES
        if unknown or not scopes:
            raise ConfigError(
                f"{setting} {name!r}: scopes must be among {sorted(SCOPES)}, got {scope_spec!r}"
            )
        if any(k.name == name for k in keys):
            raise ConfigError(f"{setting}: duplicate name {name!r}")
        keys.append(ApiKey(name=name, sha256=raw, scopes=scopes))
    return tuple(keys)


def parse_api_keys(spec: str) -> tuple[ApiKey, ...]:
    return _parse_entries(spec, "SYTQ_API_KEYS", "key")


def parse_basic_users(spec: str) -> tuple[ApiKey, ...]:
    return _parse_entries(spec, "SYTQ_BASIC_AUTH_USERS", "password")


def load_identities(settings: Settings) -> Identities:
    """The configured callers. No keys and no users is refused unless SYTQ_AUTH_DISABLED=true:
    an API must never be open by accident."""
    keys = parse_api_keys(settings.api_keys)
    users = parse_basic_users(settings.basic_auth_users)
    clash = {k.name for k in keys} & {u.name for u in users}
    if clash:
        # One name would be one tenant reachable by two secrets; refuse rather than guess.
        raise ConfigError(f"SYTQ_API_KEYS and SYTQ_BASIC_AUTH_USERS both name {sorted(clash)}")
    if settings.auth_disabled:
        if keys or users:
            raise ConfigError(
                "SYTQ_AUTH_DISABLED=true contradicts the configured SYTQ_API_KEYS / SYTQ_BASIC_AUTH_USERS"
            )
        log.warning(
            "SYTQ_AUTH_DISABLED=true: AUTHENTICATION IS OFF. Anyone who can reach this port may submit, read"
            " and cancel every task. Use it only on loopback."
        )
        return Identities((), (), disabled=True)
    if not keys and not users:
        raise ConfigError(
            "no API keys: set SYTQ_API_KEYS (name:sha256hex:scope|scope) or SYTQ_BASIC_AUTH_USERS, "
            "or SYTQ_AUTH_DISABLED=true to run without authentication (trials on loopback only)"
        )
    return Identities(keys, users)


def hash_key(plaintext: str) -> str:
    """The hex SHA-256 to put in SYTQ_API_KEYS (or SYTQ_BASIC_AUTH_USERS) for a plaintext secret."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def match_key(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The key whose hash matches, comparing against every key in constant time."""
    digest = hashlib.sha256(presented.encode("utf-8")).digest()
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    return found


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic <base64>`` value, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def match_basic(users: tuple[ApiKey, ...], user: str, password: str) -> ApiKey | None:
    """The user whose name and password both match; every entry is compared in constant time."""
    name = user.encode("utf-8")
    digest = hashlib.sha256(password.encode("utf-8")).digest()
    found: ApiKey | None = None
    for candidate in users:
        name_ok = hmac.compare_digest(candidate.name.encode("utf-8"), name)
        if hmac.compare_digest(candidate.sha256, digest) and name_ok:
            found = candidate
    return found
