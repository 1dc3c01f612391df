"""SYTQ_API_KEYS / SYTQ_BASIC_AUTH_USERS parsing and the refusal of an API without any."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from api.auth import (
    MAX_VERIFIED_HEADERS,
    basic_credentials,
    hash_key,
    load_identities,
    match_basic,
    match_key,
    parse_api_keys,
    parse_basic_users,
)
from api.security import authenticate
from sytq.settings import ConfigError, Settings
from tests.harness.services import env_without_settings


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
        (f"a:{hash_key('x')}:read,a:{hash_key('y')}:read", "duplicate name"),
    ],
)
def test_bad_entries_are_named(spec: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_api_keys(spec)


def test_basic_users_match_name_and_password() -> None:
    users = parse_basic_users(f"php:{hash_key('pw:with:colons')}:submit|read,ops:{hash_key('o')}:admin")
    header = "Basic " + base64.b64encode(b"php:pw:with:colons").decode()
    credentials = basic_credentials(header)
    assert credentials == ("php", "pw:with:colons")
    php = match_basic(users, *credentials)
    assert php is not None and php.name == "php" and not php.is_admin
    assert match_basic(users, "ops", "pw:with:colons") is None  # another user's password
    assert match_basic(users, "php", "wrong") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert basic_credentials("Bearer abc") is None


def test_an_api_without_keys_refuses_to_start_unless_auth_is_disabled_explicitly() -> None:
    with pytest.raises(ConfigError, match="SYTQ_AUTH_DISABLED=true"):
        load_identities(Settings(api_keys="", basic_auth_users=""))
    open_api = load_identities(Settings(auth_disabled=True))
    assert open_api.disabled
    only_basic = load_identities(Settings(basic_auth_users=f"php:{hash_key('p')}:submit"))
    assert not only_basic.disabled and [u.name for u in only_basic.basic_users] == ["php"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"auth_disabled": True, "api_keys": f"a:{hash_key('x')}:read"}, "contradicts"),
        ({"api_keys": f"a:{hash_key('x')}:read", "basic_users": f"a:{hash_key('y')}:read"}, "both name"),
    ],
)
def test_contradictory_auth_settings_are_refused(values: dict[str, object], complaint: str) -> None:
    settings = {("basic_auth_users" if k == "basic_users" else k): v for k, v in values.items()}
    with pytest.raises(ConfigError, match=complaint):
        load_identities(Settings(**settings))  # type: ignore[arg-type]


@pytest.mark.slow  # starts the command in a subprocess
def test_sytq_api_without_keys_exits_with_one_clear_line() -> None:
    import subprocess
    import sys

    env = env_without_settings()
    run = subprocess.run(
        [sys.executable, "-m", "sytq_cli", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "no API keys: set SYTQ_API_KEYS" in run.stderr and "Traceback" not in run.stderr


def test_matched_authorization_values_are_remembered_and_bounded() -> None:
    settings = Settings(
        api_keys=f"ops:{hash_key('k1')}:admin", basic_auth_users=f"php:{hash_key('pw')}:submit"
    )
    state = SimpleNamespace(settings=settings, identities=load_identities(settings))
    identities = state.identities
    basic = "Basic " + base64.b64encode(b"php:pw").decode()
    first = authenticate(state, basic)  # type: ignore[arg-type]
    assert first.name == "php" and identities.verified == {basic: first}
    assert authenticate(state, basic) is first  # type: ignore[arg-type]
    wrong = "Basic " + base64.b64encode(b"php:nope").decode()
    other_user = "Basic " + base64.b64encode(b"ops:pw").decode()
    for refused in (wrong, other_user, "Bearer nope"):
        with pytest.raises(HTTPException) as caught:
            authenticate(state, refused)  # type: ignore[arg-type]
        assert caught.value.status_code == 401
    assert list(identities.verified) == [basic]  # a value that did not match is never remembered
    for n in range(MAX_VERIFIED_HEADERS + 5):
        identities.remember(f"Bearer fake-{n}", first)
    assert len(identities.verified) <= MAX_VERIFIED_HEADERS
    assert authenticate(state, "Bearer k1").name == "ops"  # type: ignore[arg-type]
