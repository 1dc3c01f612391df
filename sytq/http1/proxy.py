"""Forward-proxy settings: an explicit proxy URL or the usual HTTPS_PROXY / HTTP_PROXY / NO_PROXY
environment, and which targets bypass the proxy."""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DIRECT = "direct"  # an explicit setting meaning: no proxy, whatever the environment says


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # Proxy-Authorization value (Basic) from the URL's user:password

    @property
    def url(self) -> str:
        """Without credentials: for messages and logs."""
        literal = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{literal}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """``http://[user:password@]host[:port]``; raises ValueError with the reason."""
    text = url.strip()
    if "://" not in text:  # "proxy.internal:3128", as curl accepts it
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"proxy {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme != "http":
        raise ValueError(
            f"proxy {url!r}: only http:// proxies are supported (https targets tunnel with CONNECT)"
        )
    if not parts.hostname:
        raise ValueError(f"proxy {url!r} has no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return Proxy(parts.hostname, port, authorization)


def _environment(environ: Mapping[str, str], name: str) -> str:
    # The lower-case name first, as curl and Python's urllib read them.
    return environ.get(name.lower()) or environ.get(name.upper()) or ""


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY names ``host``: ``*``; a domain (``example.com`` and ``.example.com`` both
    match it and its subdomains); an IP address or CIDR; any of these with ``:port``."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` / ``[v6]:port`` into both; bare IPv6 addresses and CIDRs keep their colons."""
    if entry.startswith("["):
        literal, _, rest = entry[1:].partition("]")
        return literal, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


def proxy_for(target_url: str, setting: str | None, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy to reach ``target_url`` through, or None for a direct connection.

    ``setting``: None reads the environment (HTTPS_PROXY for https targets, HTTP_PROXY for http,
    ALL_PROXY for both); ``"direct"`` means none; otherwise a proxy URL. NO_PROXY applies to both."""
    env = os.environ if environ is None else environ
    if setting is not None and setting.strip().lower() in (DIRECT, ""):
        return None
    parts = urlsplit(target_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if bypasses_proxy(host, port, _environment(env, "no_proxy")):
        return None
    if setting is not None:
        return parse_proxy(setting)
    chosen = _environment(env, f"{parts.scheme}_proxy") or _environment(env, "all_proxy")
    return parse_proxy(chosen) if chosen else None
