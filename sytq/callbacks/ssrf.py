"""SSRF guard for callback targets: only public addresses, unless an operator allowlists a network.

The check resolves the host name, so a name that points at loopback (``localhost``) or at a
metadata service is refused the same way as the literal address. Delivery calls it again for
every redirect hop, and connects to the addresses it vetted (no second lookup to rebind).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata endpoints that are not covered by the link-local rule.
_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
_ALLOWED_SCHEMES = ("http", "https")


class UnsafeCallbackURL(ValueError):
    """A callback URL we refuse to call; the message says why."""


class UnresolvableCallbackHost(UnsafeCallbackURL):
    """The host name does not resolve (now). Refused at submit (likely a typo); at delivery time
    it may be a passing DNS failure, so delivery retries it instead of giving up."""


def parse_allow_nets(allow_nets: str | Iterable[str | IPNetwork] | None) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, 10.1.0.0/16"`` (SYTQ_CALLBACK_ALLOW_NETS) or an iterable into networks."""
    if allow_nets is None:
        return ()
    items: Iterable[str | IPNetwork] = allow_nets.split(",") if isinstance(allow_nets, str) else allow_nets
    nets: list[IPNetwork] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            nets.append(item)
            continue
        text = item.strip()
        if not text:
            continue
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"SYTQ_CALLBACK_ALLOW_NETS: {text!r} is not a network (CIDR)") from exc
    return tuple(nets)


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), which decides where a
    connection really ends up; None when it carries none."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64_WELL_KNOWN:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _why_unsafe(address: IPAddress) -> str | None:
    """The reason an address must not be called, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:
            return "a Teredo tunnel address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, ipv4 = embedded
            reason = _why_unsafe(ipv4)
            return None if reason is None else f"{reason} ({kind} address embedding {ipv4})"
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    for flagged, reason in checks:
        if flagged:
            return reason
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableCallbackHost(f"callback_url host {host!r} does not resolve: {exc}") from exc
    # Strip an IPv6 zone ("fe80::1%eth0") before parsing.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_callback_url(
    url: str, allow_nets: str | Iterable[str | IPNetwork] | None = None
) -> list[IPAddress]:
    """Raise UnsafeCallbackURL unless every address ``url`` resolves to is public or allowlisted;
    return those vetted addresses (delivery connects to one of them, never looking the name up again).

    Blocking (does DNS); async callers run it with ``asyncio.to_thread``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackURL(f"callback_url {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in _ALLOWED_SCHEMES:
        raise UnsafeCallbackURL(f"callback_url must use http or https, got {parts.scheme or 'no'} scheme")
    host = parts.hostname
    if not host:
        raise UnsafeCallbackURL(f"callback_url {url!r} has no host")
    nets = parse_allow_nets(allow_nets)
    addresses = _resolve(host, port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise UnsafeCallbackURL(f"callback_url host {host!r} resolves to no address")
    for address in addresses:
        if any(address in net for net in nets):
            continue
        reason = _why_unsafe(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host!r} (resolves to {address})"
            raise UnsafeCallbackURL(
                f"callback_url host {shown} is {reason}; refused "
                "(operators can allow networks with SYTQ_CALLBACK_ALLOW_NETS)"
            )
    return addresses
