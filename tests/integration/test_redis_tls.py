"""One Redis server over TLS (``rediss://``) with an ACL user: a real redis-server listening with TLS only.

The whole pipeline runs over it; a wrong CA, a wrong password and each ``ssl_cert_reqs`` /
``ssl_check_hostname`` choice documented in docs/redis.md behave as documented.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import exceptions as redis_errors

from sytq.redis_connect import connect
from sytq.settings import ConfigError
from sytq.storage import TaskStore
from tests.api.helpers import key_entry
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.redis_tls import Security, TlsRedisServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

API_KEY = "tls-test-key"


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(Security.create())
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_ca() -> Security:
    """A second CA that did not sign the server's certificate."""
    return Security.create()


async def test_pipeline_submit_to_stored_result_over_tls_with_an_acl_user(
    tls_redis: TlsRedisServer,
    pipeline_env: PipelineEnv,
    stub_llm: StubLLMProcess,
    start_api: Callable[..., Any],
) -> None:
    url = f"{tls_redis.url}&ssl_cert_reqs=required&ssl_check_hostname=true"
    assert url.startswith("rediss://app:")
    settings = pipeline_env.settings.model_copy(update={"redis_url": url})
    api = start_api(redis_url=url, api_keys=key_entry("php", API_KEY, "submit|read"))
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    tag = uuid.uuid4().hex[:12]
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as http:
            prompts = [f"tls {tag} <{n}>" for n in range(5)]
            answers = [await http.post("/api/v1/tasks/llm", json={"prompt": p}) for p in prompts]
            assert [a.status_code for a in answers] == [200] * 5, answers[0].text
            records = [await wait_final(store, a.json()["task_id"], within=60) for a in answers]
            assert {r.status for r in records} == {"succeeded"}
            view = (await http.get(f"/api/v1/tasks/{records[0].task_id}")).json()
            assert view["result"]["content"] == records[0].content
        assert sum(n for prompt, n in stub_llm.stats()["by_prompt"].items() if tag in prompt) == 5
        with tls_redis.client() as direct:
            users = {c["user"] for c in direct.client_list()}
        assert users == {"app"}  # the default user is off: every connection is the ACL user's
    finally:
        assert worker.stop() == 0
        await store.close()


async def test_a_wrong_ca_is_refused_at_once_with_a_certificate_error(
    tls_redis: TlsRedisServer, other_ca: Security, start_api: Callable[..., Any]
) -> None:
    wrong = tls_redis.security.url(tls_redis.port, ca=other_ca.ca)
    client = connect(wrong, socket_connect_timeout=5.0, socket_timeout=5.0)
    started = time.monotonic()
    try:
        with pytest.raises(redis_errors.ConnectionError, match="certificate verify failed"):
            await client.ping()
    finally:
        await client.aclose()
    assert time.monotonic() - started < 5.0  # refused in the handshake, not after a timeout
    api = start_api(redis_url=wrong, api_keys=key_entry("php", API_KEY, "submit|read"))
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        answer = await http.post("/api/v1/tasks/llm", json={"prompt": "never queued"}, timeout=10)
    assert answer.status_code == 503
    assert answer.headers["retry-after"]


async def test_a_wrong_password_is_refused(tls_redis: TlsRedisServer) -> None:
    client = connect(tls_redis.url.replace("s3cret", "wrong"), socket_connect_timeout=5.0)
    try:
        with pytest.raises(redis_errors.AuthenticationError, match="invalid username-password"):
            await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("query", "host", "works"),
    [
        ("ssl_cert_reqs=required", "127.0.0.1", True),
        ("ssl_cert_reqs=required&ssl_check_hostname=true", "127.0.0.1", True),
        ("ssl_cert_reqs=required&ssl_check_hostname=true", "localhost", False),  # not in the certificate
        ("ssl_cert_reqs=required&ssl_check_hostname=false", "localhost", True),
        ("ssl_cert_reqs=required&other_ca", "127.0.0.1", False),
        ("ssl_cert_reqs=optional&other_ca", "127.0.0.1", False),  # a certificate shown is still checked
        ("ssl_cert_reqs=none&other_ca", "127.0.0.1", True),  # no verification at all
        ("ssl_cert_reqs=required&no_ca", "127.0.0.1", False),  # the system's CAs do not know ours
    ],
)
async def test_ssl_cert_reqs_and_hostname_checks_behave_as_documented(
    tls_redis: TlsRedisServer, other_ca: Security, query: str, host: str, works: bool
) -> None:
    security = tls_redis.security
    params = [p for p in query.split("&") if p not in ("other_ca", "no_ca")]
    if "no_ca" not in query:
        params.append(f"ssl_ca_certs={other_ca.ca if 'other_ca' in query else security.ca}")
    url = f"rediss://{security.user}:s3cret%2Fpw@{host}:{tls_redis.port}/0?{'&'.join(params)}"
    client = connect(url, socket_connect_timeout=5.0, socket_timeout=5.0)
    try:
        if works:
            assert await client.ping()
        else:
            with pytest.raises(redis_errors.ConnectionError, match="certificate verify failed"):
                await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://:pw@h:6379/0?ssl_ca_certs=/ca.pem", "need a rediss:// URL"),
        ("rediss://:pw@h:6379/0?ssl_cert_reqs=maybe", "none, optional or required"),
        ("rediss://:pw@h:6379/0?ssl_check_hostname=perhaps", "true or false"),
        ("rediss://:pw@h:6379/0?ssl_ciphers=ALL", "unknown TLS parameter"),
    ],
)
def test_bad_tls_options_of_a_server_url_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        connect(url)
    assert ":pw@" not in str(caught.value)
