"""SYTQ_API_KEYS parsing: good entries work, every bad one fails with a message naming it."""

from __future__ import annotations

import pytest

from api.auth import hash_key, match_key, parse_api_keys
from sytq.settings import ConfigError


def test_parse_and_match() -> None:
    keys = parse_api_keys(f" php:{hash_key('k1')}:submit|read , ops:{hash_key('k2')}:admin ,")
    assert [(k.name, sorted(k.scopes)) for k in keys] == [("php", ["read", "submit"]), ("ops", ["admin"])]
    php = match_key(keys, "k1")
    ops = match_key(keys, "k2")
    assert php is not None and php.allows("submit") and not php.allows("admin")
    assert ops is not None and ops.allows("read") and ops.allows("submit")
    assert match_key(keys, "k3") is None
    assert parse_api_keys("") == ()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("lonely", "expected name:sha256hex:scopes"),
        (f":{hash_key('x')}:read", "empty name"),
        ("a:zz:read", "not hex"),
        ("a:abcd:read", "64 hex digits"),
        (f"a:{hash_key('x')}:write", "scopes must be among"),
        (f"a:{hash_key('x')}:", "scopes must be among"),
        (f"a:{hash_key('x')}:read,a:{hash_key('y')}:read", "duplicate key name"),
    ],
)
def test_bad_entries_are_named(spec: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_api_keys(spec)
