"""Sentinel over TLS (``rediss+sentinel://``): Sentinels and data nodes listen with TLS only.

The data nodes admit only an ACL user, the Sentinels only clients with their own password
(``sentinel_password``); the pipeline runs across one failover of the master.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio.sentinel import MasterNotFoundError

from sytq.redis_connect import connect, parse_sentinel_url
from sytq.settings import ConfigError
from sytq.storage import TaskStore
from tests.api.helpers import key_entry
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.queue_fixtures import wait_until
from tests.harness.redis_tls import Security
from tests.harness.sentinel import SentinelDeployment

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

API_KEY = "sentinel-tls-test-key"


@pytest.fixture(scope="module")
def secure_sentinels() -> Iterator[SentinelDeployment]:
    deployment = SentinelDeployment(Security.create())
    yield deployment
    deployment.close()


def test_tls_options_apply_to_the_master_and_the_sentinels_unless_overridden() -> None:
    both = parse_sentinel_url("rediss+sentinel://u:p@h:26379/m?ssl_ca_certs=/ca.pem&sentinel_password=sp")
    assert both.tls == {"ssl_ca_certs": "/ca.pem"}
    assert both.sentinel_kwargs == {"password": "sp", "ssl": True, "ssl_ca_certs": "/ca.pem"}
    plain = parse_sentinel_url("rediss+sentinel://h/m?ssl_ca_certs=/ca.pem&sentinel_ssl=false")
    assert (plain.ssl, plain.tls, plain.sentinel_kwargs) == (True, {"ssl_ca_certs": "/ca.pem"}, {})
    own = parse_sentinel_url(
        "rediss+sentinel://h/m?ssl_ca_certs=/ca.pem&sentinel_ssl_ca_certs=/s.pem&sentinel_ssl_check_hostname=yes"
    )
    assert own.sentinel_kwargs == {"ssl": True, "ssl_ca_certs": "/s.pem", "ssl_check_hostname": True}


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://h/m?ssl_ca_certs=/ca.pem", "unknown Sentinel URL parameter"),
        ("rediss+sentinel://h/m?ssl_cert_reqs=maybe", "none, optional or required"),
        ("rediss+sentinel://h/m?sentinel_ssl=perhaps", "sentinel_ssl is true or false"),
        ("rediss+sentinel://h/m?sentinel_ssl_check_hostname=perhaps", "ssl_check_hostname is true or false"),
    ],
)
def test_bad_tls_options_of_a_sentinel_url_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        connect(url)


async def test_sentinels_with_a_password_refuse_a_client_without_it(
    secure_sentinels: SentinelDeployment,
) -> None:
    without = secure_sentinels.url.partition("&sentinel_password=")[0]
    refused = connect(without, socket_connect_timeout=2.0, socket_timeout=2.0)
    admitted = connect(secure_sentinels.url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        with pytest.raises(MasterNotFoundError, match=r"No master found.*Authentication required"):
            await refused.ping()
        assert await admitted.ping()
    finally:
        await refused.aclose()
        await admitted.aclose()


async def test_pipeline_over_tls_sentinels_carries_on_through_a_failover(
    secure_sentinels: SentinelDeployment,
    pipeline_env: PipelineEnv,
    stub_llm: StubLLMProcess,
    start_api: Callable[..., Any],
) -> None:
    url = secure_sentinels.url
    assert url.startswith("rediss+sentinel://app:")
    settings = pipeline_env.settings.model_copy(update={"redis_url": url})
    api = start_api(
        redis_url=url,
        api_keys=key_entry("php", API_KEY, "submit|read"),
        redis_wait_replicas=1,
        redis_wait_timeout_ms=500,
    )
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    tag = uuid.uuid4().hex[:12]
    statuses: list[int] = []
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as http:

            async def submit(n: int) -> bool:
                answer = await http.post("/api/v1/tasks/llm", json={"prompt": f"sentinel tls {tag} <{n}>"})
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    acknowledged.append(answer.json()["task_id"])
                else:
                    assert answer.headers.get("retry-after"), answer.text
                return answer.status_code == 200

            for n in range(5):
                assert await submit(n)
            before = [await wait_final(store, task_id, within=60) for task_id in acknowledged]
            assert {r.status for r in before} == {"succeeded"}

            old = secure_sentinels.master_port()
            secure_sentinels.server_on(old).kill()
            await asyncio.to_thread(secure_sentinels.wait_failover, old)
            for n in range(5, 10):
                await wait_until(
                    lambda n=n: submit(n), within=60, interval=0.1, what="a submit after failover"
                )

        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        assert len(acknowledged) == 10
        after = [await wait_final(store, task_id, within=60) for task_id in acknowledged[5:]]
        assert {r.status for r in after} == {"succeeded"}
        assert secure_sentinels.master_port() != old
        assert worker.proc.poll() is None  # the same worker process carried on
    finally:
        assert worker.stop() == 0
        await store.close()
        secure_sentinels.restore()
