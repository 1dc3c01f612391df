"""Outbound-proxy fixtures: Debian's tinyproxy on loopback, and the stub LLM served over TLS
(a certificate for 127.0.0.1/localhost from a test CA) for CONNECT tunnels."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kube import _write_pki
from tests.harness.services import _ServerProcess


class TinyProxy(_ServerProcess):
    """tinyproxy in the foreground; ``connect_ports`` limits CONNECT (None: any port)."""

    def __init__(self, connect_ports: list[int] | None = None) -> None:
        super().__init__("tinyproxy")
        self.connect_ports = connect_ports

    def _command(self) -> list[str]:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "MaxClients 200",
            "LogLevel Connect",
            f'LogFile "{self.workdir / "access.log"}"',
            "Allow 127.0.0.1",
            *(f"ConnectPort {port}" for port in self.connect_ports or []),
        ]
        config = self.workdir / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        return ["tinyproxy", "-d", "-c", str(config)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


class TLSStubLLM(_ServerProcess):
    """The stub LLM app on uvicorn with TLS; ``client_context()`` trusts its test CA."""

    def __init__(self) -> None:
        super().__init__("tls-stub")
        self.pki = self.workdir / "pki"
        _write_pki(self.pki)

    def _command(self) -> list[str]:
        script = (
            "import uvicorn; from sytq_cli.stub_llm import StubConfig, create_app; "
            f"uvicorn.run(create_app(StubConfig.from_strings('0', '')), host='127.0.0.1', port={self.port}, "
            f"log_level='warning', ssl_certfile={str(self.pki / 'apiserver.crt')!r}, "
            f"ssl_keyfile={str(self.pki / 'apiserver.key')!r})"
        )
        return [sys.executable, "-c", script]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(Path(self.pki / "ca.crt")))


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[TinyProxy]:
    proxy = TinyProxy()
    proxy.start()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def tls_stub() -> Iterator[TLSStubLLM]:
    stub = TLSStubLLM()
    stub.start()
    yield stub
    stub.close()
