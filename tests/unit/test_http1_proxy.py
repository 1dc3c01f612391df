"""Outbound proxies: the *_PROXY environment and NO_PROXY, and real traffic through Debian's
tinyproxy on loopback (absolute-form http, CONNECT tunnels with TLS inside, refusals)."""

from __future__ import annotations

import pytest
import uvloop
from pydantic import ValidationError

from sytq.callbacks import deliver_callback
from sytq.http1 import Proxy, bypasses_proxy, parse_proxy, proxy_for
from sytq.llm import LLMClient, LLMRetryableError
from sytq.settings import Settings
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import CallbackReceiver, StubLLMProcess
from tests.harness.proxy_fixtures import TinyProxy, TLSStubLLM, tinyproxy, tls_stub
from tests.harness.services import free_port

__all__ = ["tinyproxy", "tls_stub"]  # module-scoped fixtures used below
USER = [{"role": "user", "content": "through the proxy"}]
BODY = {"task_id": "t1", "status": "succeeded", "result": None, "usage": None, "error": None, "metadata": {}}


# --- which proxy, from settings and environment ----------------------------------------------------


def test_environment_picks_the_proxy_by_the_targets_scheme() -> None:
    env = {"HTTPS_PROXY": "http://secure:3128", "http_proxy": "http://plain:8080", "HTTP_PROXY": "http://x:1"}
    assert proxy_for("https://api.deepseek.com/v1", None, env) == Proxy("secure", 3128, None)
    assert proxy_for("http://llm.internal/v1", None, env) == Proxy("plain", 8080, None)  # lower case first
    everything = {"ALL_PROXY": "proxy:3128"}
    assert proxy_for("https://api.deepseek.com", None, everything) == Proxy("proxy", 3128, None)
    assert proxy_for("https://api.deepseek.com", None, {}) is None


def test_explicit_setting_wins_and_direct_ignores_the_environment() -> None:
    env, url, explicit = (
        {"HTTPS_PROXY": "http://from-env:3128"},
        "https://api.deepseek.com",
        "http://explicit:8888",
    )
    assert proxy_for(url, explicit, env) == Proxy("explicit", 8888, None)
    assert proxy_for(url, "direct", env) is None
    assert proxy_for(url, explicit, env | {"NO_PROXY": "deepseek.com"}) is None


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("api.deepseek.com", 443, "deepseek.com", True),
        ("api.deepseek.com", 443, ".deepseek.com", True),
        ("deepseek.com", 443, ".deepseek.com", True),
        ("notdeepseek.com", 443, "deepseek.com", False),
        ("anything", 80, "*", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("11.1.2.3", 80, "10.0.0.0/8, example.com", False),
        ("::1", 80, "::1", True),
        ("::1", 80, "[::1]:80", True),
        ("llm.internal", 8080, "llm.internal:8080", True),
        ("llm.internal", 443, "llm.internal:8080", False),
        ("llm.internal", 443, " , ", False),
    ],
)
def test_no_proxy_entries(host: str, port: int, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_proxy_urls_are_checked_and_credentials_become_basic_auth() -> None:
    assert parse_proxy("http://us%40r:p%3Ass@proxy:3128").authorization == "Basic dXNAcjpwOnNz"  # us@r:p:ss
    assert parse_proxy("proxy.internal:3128") == Proxy("proxy.internal", 3128, None)
    with pytest.raises(ValueError, match="only http:// proxies"):
        parse_proxy("socks5://proxy:1080")
    with pytest.raises(ValidationError, match="only http:// proxies"):
        Settings(llm_proxy="https://proxy:3128")
    with pytest.raises(ValidationError, match="callbacks have a queue of their own"):
        Settings(queues="default=1,callbacks=1")


# --- real traffic through tinyproxy --------------------------------------------------------------


async def test_http_provider_calls_go_through_the_proxy_in_absolute_form(
    tinyproxy: TinyProxy, stub_llm: StubLLMProcess
) -> None:
    client = LLMClient(stub_llm.url, "key", proxy=parse_proxy(tinyproxy.url))
    try:
        result = await client.chat("deepseek-chat", USER)
    finally:
        await client.aclose()
    assert result.content == deterministic_content("deepseek-chat", "through the proxy")
    assert f"POST {stub_llm.url}/chat/completions" in tinyproxy.log()


@pytest.mark.parametrize("stream", [False, True])
async def test_https_provider_calls_tunnel_with_connect_and_check_the_certificate(
    tinyproxy: TinyProxy, tls_stub: TLSStubLLM, stream: bool
) -> None:
    proxy, trust = parse_proxy(tinyproxy.url), tls_stub.client_context()
    client = LLMClient(tls_stub.url, "key", proxy=proxy, ssl_context=trust, stream=stream)
    try:
        result = await client.chat("deepseek-chat", USER)
        again = await client.chat("deepseek-chat", USER)  # the tunnel is kept alive and reused
    finally:
        await client.aclose()
    assert result.content == again.content == deterministic_content("deepseek-chat", "through the proxy")
    assert f"CONNECT localhost:{tls_stub.port}" in tinyproxy.log()
    untrusted = LLMClient(tls_stub.url, "key", proxy=parse_proxy(tinyproxy.url))  # the system's CAs only
    try:
        with pytest.raises(LLMRetryableError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.chat("deepseek-chat", USER)
    finally:
        await untrusted.aclose()


async def test_no_proxy_bypasses_a_dead_proxy_and_without_it_the_error_names_the_proxy(
    stub_llm: StubLLMProcess,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"HTTP_PROXY": dead, "NO_PROXY": "localhost,127.0.0.1"}
    bypassing = LLMClient(stub_llm.url, "key", proxy=proxy_for(stub_llm.url, None, env))
    through_dead = LLMClient(stub_llm.url, "key", proxy=proxy_for(stub_llm.url, None, {"HTTP_PROXY": dead}))
    try:
        assert (await bypassing.chat("deepseek-chat", USER)).content
        with pytest.raises(LLMRetryableError, match=f"connect to proxy {dead} failed") as caught:
            await through_dead.chat("deepseek-chat", USER)
        assert caught.value.reason == "connection"
    finally:
        await bypassing.aclose()
        await through_dead.aclose()


async def test_a_proxy_that_refuses_the_connect_is_a_clear_retryable_error(tls_stub: TLSStubLLM) -> None:
    strict = TinyProxy(connect_ports=[443])  # CONNECT only to port 443
    strict.start()
    proxy, trust = parse_proxy(strict.url), tls_stub.client_context()
    client = LLMClient(tls_stub.url, "key", proxy=proxy, ssl_context=trust)
    try:
        with pytest.raises(LLMRetryableError) as caught:
            await client.chat("deepseek-chat", USER)
        message = str(caught.value)
        refused = f"provider connection failed: proxy {strict.url} refused CONNECT localhost:{tls_stub.port}"
        assert refused in message
        assert caught.value.reason == "connection" and "403" in message
    finally:
        await client.aclose()
        strict.close()


async def test_callbacks_tunnel_to_the_vetted_address_through_their_own_proxy(
    tinyproxy: TinyProxy, callback_receiver: CallbackReceiver
) -> None:
    url = f"http://localhost:{callback_receiver.port}/hook"
    result = await deliver_callback(
        "t1",
        url,
        BODY,
        secret="k",
        allow_nets="127.0.0.0/8,::1/128",
        timeout_seconds=5,
        proxy=parse_proxy(tinyproxy.url),
    )
    assert result.status_code == 200
    [got] = callback_receiver.received
    assert got.headers["Host"] == f"localhost:{callback_receiver.port}"
    # The proxy was asked for the address the guard vetted, not the name (it cannot resolve again).
    assert f"CONNECT 127.0.0.1:{callback_receiver.port}" in tinyproxy.log()


def test_tunnels_work_on_uvloop_as_in_the_worker(tinyproxy: TinyProxy, tls_stub: TLSStubLLM) -> None:
    """uvloop has its own transports (set_protocol, start_tls): the worker's loop, checked here."""

    async def call(stream: bool) -> str:
        proxy, trust = parse_proxy(tinyproxy.url), tls_stub.client_context()
        client = LLMClient(tls_stub.url, "key", proxy=proxy, ssl_context=trust, stream=stream)
        try:
            return (await client.chat("deepseek-chat", USER)).content
        finally:
            await client.aclose()

    expected = deterministic_content("deepseek-chat", "through the proxy")
    assert uvloop.run(call(False)) == uvloop.run(call(True)) == expected
