"""The provider's keep-alive HTTP/1.1 pool against the stub LLM over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from sytq.http1 import HTTP1Pool
from sytq.llm import LLMClient, LLMRetryableError
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import StubLLMProcess

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@pytest.fixture
def own_stub() -> Iterator[StubLLMProcess]:
    """A stub this module may restart without disturbing the shared one."""
    server = StubLLMProcess()
    server.start()
    yield server
    server.close()


def _body(prompt: str) -> bytes:
    return json.dumps({"model": "deepseek-chat", "messages": [{"role": "user", "content": prompt}]}).encode()


async def test_connections_are_kept_alive_and_reused(own_stub: StubLLMProcess) -> None:
    pool = HTTP1Pool(f"{own_stub.url}/chat/completions", HEADERS, connect_timeout=5)
    try:
        for round_ in range(3):
            responses = await asyncio.gather(*(pool.post(_body(f"p{round_}-{i}")) for i in range(4)))
            assert [r.status for r in responses] == [200] * 4
            assert len(pool._idle) == 4  # the same four connections, round after round
        content = json.loads(responses[0].body)["choices"][0]["message"]["content"]
        assert content == deterministic_content("deepseek-chat", "p2-0")
    finally:
        pool.close()


async def test_connection_closed_by_the_server_is_replaced_without_a_lost_or_double_call(
    own_stub: StubLLMProcess,
) -> None:
    client = LLMClient(own_stub.url, "key")
    try:
        await client.chat("deepseek-chat", [{"role": "user", "content": "before"}])
        own_stub.stop()  # closes the kept-alive connection
        own_stub.start()
        result = await client.chat("deepseek-chat", [{"role": "user", "content": "after"}])
        assert result.content == deterministic_content("deepseek-chat", "after")
        assert own_stub.stats()["by_prompt"] == {"after": 1}
    finally:
        await client.aclose()


async def test_error_status_keeps_the_body_message_and_retry_after(own_stub: StubLLMProcess) -> None:
    own_stub.configure([{"kind": "429", "retry_after": 7, "times": 1}])
    client = LLMClient(own_stub.url, "key")
    try:
        with pytest.raises(LLMRetryableError) as caught:
            await client.chat("deepseek-chat", [{"role": "user", "content": "x"}])
        assert getattr(caught.value, "retry_after", None) == 7
        assert "stub fault 429" in str(caught.value)
        # The connection that carried the 429 is still usable.
        result = await client.chat("deepseek-chat", [{"role": "user", "content": "y"}])
        assert result.content == deterministic_content("deepseek-chat", "y")
    finally:
        await client.aclose()
