"""TLS and an ACL user for the test suite's Redis servers: a throw-away CA and certificate (openssl)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from tests.harness.services import RedisServer, _find_binary


@dataclass(frozen=True)
class Security:
    """TLS everywhere (clients, cluster bus, replication) and an ACL user instead of the default user."""

    user: str
    password: str
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, user: str = "app", password: str = "s3cret/pw") -> Security:
        """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
        where = Path(tempfile.mkdtemp(prefix="sytq-tls-"))
        ca, cert, key = where / "ca.crt", where / "node.crt", where / "node.key"

        def openssl(*args: str) -> None:
            subprocess.run([_find_binary("openssl"), *args], check=True, capture_output=True, timeout=60)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sytq-test-ca",
                "-keyout", str(where / "ca.key"), "-out", str(ca))  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", str(key), "-out", str(where / "node.csr"))  # fmt: skip
        (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(where / "node.csr"), "-CA", str(ca),
                "-CAkey", str(where / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(where / "san.ext"), "-out", str(cert))  # fmt: skip
        return cls(user, password, ca, cert, key)

    def server_args(self) -> list[str]:
        return [
            "--port", "0", "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca), "--tls-cluster", "yes", "--tls-replication", "yes",
            "--tls-auth-clients", "no",
            "--user", "default", "off",
            "--user", self.user, "on", f">{self.password}", "~*", "&*", "+@all",
            "--masteruser", self.user, "--masterauth", self.password,
        ]  # fmt: skip

    def cli_args(self) -> list[str]:
        return ["--tls", "--cacert", str(self.ca), "--user", self.user, "--pass", self.password]

    def client_kwargs(self) -> dict[str, Any]:
        return {"username": self.user, "password": self.password, "ssl": True, "ssl_ca_certs": str(self.ca)}

    def url(self, port: int, scheme: str = "rediss", ca: Path | None = None) -> str:
        """A URL for one server on ``port`` as this ACL user, verifying against ``ca`` (ours by default)."""
        auth = f"{self.user}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}127.0.0.1:{port}/0?ssl_ca_certs={ca or self.ca}"


class TlsRedisServer(RedisServer):
    """A redis-server that accepts clients only over TLS (on ``port``) and only as ``security.user``."""

    def __init__(self, security: Security) -> None:
        super().__init__()
        self.security = security

    @property
    def url(self) -> str:
        return self.security.url(self.port)

    def _command(self) -> list[str]:
        return [*super()._command(), *self.security.server_args(), "--tls-port", str(self.port)]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2.0, **self.security.client_kwargs())
