"""API keys: ``Authorization: Bearer <key>`` checked against configured SHA-256 hashes.

Keys are configured as ``name:sha256hex:scope|scope`` entries (``SYTQ_API_KEYS``), so the
server never holds a plaintext key. ``admin`` implies every other scope.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from sytq.settings import ConfigError

Scope = Literal["submit", "read", "admin"]
SCOPES: frozenset[str] = frozenset({"submit", "read", "admin"})


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: bytes
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes


# The identity used when auth is disabled (no keys configured).
ANONYMOUS = ApiKey(name="anonymous", sha256=b"", scopes=frozenset({"admin"}))


def parse_api_keys(spec: str) -> tuple[ApiKey, ...]:
    """Parse ``name:sha256hex:scope|scope,...``; a clear ConfigError for any bad entry."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ConfigError(f"SYTQ_API_KEYS entry {entry.split(':')[0]!r}: expected name:sha256hex:scopes")
        name, digest, scope_spec = (p.strip() for p in parts)
        if not name:
            raise ConfigError("SYTQ_API_KEYS: an entry has an empty name")
        try:
            raw = bytes.fromhex(digest)
        except ValueError as exc:
            raise ConfigError(f"SYTQ_API_KEYS {name!r}: hash is not hex") from exc
        if len(raw) != 32:
            raise ConfigError(f"SYTQ_API_KEYS {name!r}: hash must be 64 hex digits (SHA-256)")
        scopes = frozenset(s.strip() for s in scope_spec.split("|") if s.strip())
        unknown = scopes - SCOPES
        if unknown or not scopes:
            raise ConfigError(
                f"SYTQ_API_KEYS {name!r}: scopes must be among {sorted(SCOPES)}, got {scope_spec!r}"
            )
        if any(k.name == name for k in keys):
            raise ConfigError(f"SYTQ_API_KEYS: duplicate key name {name!r}")
        keys.append(ApiKey(name=name, sha256=raw, scopes=scopes))
    return tuple(keys)


def hash_key(plaintext: str) -> str:
    """The hex SHA-256 to put in SYTQ_API_KEYS for a plaintext key."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def match_key(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The key whose hash matches, comparing against every key in constant time."""
    digest = hashlib.sha256(presented.encode("utf-8")).digest()
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    return found
