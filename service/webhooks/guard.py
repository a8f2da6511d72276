"""Where webhooks may be sent: public addresses only, unless ``WEBHOOK_ALLOWED_CIDRS`` allows a network.

A receiver's URL is chosen by a team lead, so without this guard a delivery could reach the
service's own network (loopback, private ranges, the cloud metadata address). The host is
resolved when the delivery is sent and every address it resolves to is checked; the request then
goes to that checked address (the name stays in ``Host`` and in TLS SNI and certificate checks),
so a DNS answer changing between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx2

from service.errors import Unprocessable

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
# IPv6 forms that carry an IPv4 address to the IPv4 world: NAT64 (RFC 6052), 6to4 is handled by ipaddress.
NAT64 = IPv6Network("64:ff9b::/96")
# A create or update does not wait longer than this for DNS; an unresolved name is checked again when sent.
CREATE_RESOLVE_SECONDS = 3.0


class Blocked(Exception):
    """The URL's host is, or resolves to, an address webhooks may not be sent to."""


@dataclass(frozen=True)
class Target:
    """Where to send: the URL with its host replaced by the checked address, and the name it stands for."""

    url: httpx2.URL
    host_header: str
    sni_hostname: str | None


def _embedded_v4(address: Address) -> IPv4Address | None:
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_blocked(address: Address, allowed: Sequence[Network]) -> bool:
    """True unless the address is public (or allowed): loopback, private, link-local, shared, unspecified,
    multicast and reserved ones are refused, in IPv4, IPv6 and IPv4-in-IPv6 forms."""
    forms = [address] + [v4 for v4 in [_embedded_v4(address)] if v4 is not None]
    if any(form in network for form in forms for network in allowed if form.version == network.version):
        return False
    return any(not form.is_global or form.is_multicast for form in forms)


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[Address]:
    """Every address the name resolves to (a literal address is itself); ``OSError`` when it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Scope ids (fe80::1%eth0) are dropped: the address itself decides.
    return list(dict.fromkeys(ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def _refuse(host: str, addresses: Sequence[Address], allowed: Sequence[Network]) -> None:
    blocked = ", ".join(str(a) for a in addresses if is_blocked(a, allowed))
    if blocked:
        where = f"{host} is" if _literal(host) is not None else f"{host} resolves to {blocked},"
        raise Blocked(
            f"{where} not a public address: webhooks are not sent there unless WEBHOOK_ALLOWED_CIDRS allows it"
        )


async def check_url(url: str, allowed: Sequence[Network]) -> None:
    """At create or update: refuse (422 on ``url``) a host that is, or now resolves to, a blocked address.

    A name that does not resolve yet is accepted: the check that counts is the one at send time.
    """
    parsed = httpx2.URL(url)
    host = parsed.raw_host.decode("ascii")
    try:
        addresses = await asyncio.wait_for(resolve(host, parsed.port or 443), CREATE_RESOLVE_SECONDS)
    except (OSError, TimeoutError):
        return
    try:
        _refuse(host, addresses, allowed)
    except Blocked as exc:
        raise Unprocessable(str(exc), field="url") from None


async def target(url: str, allowed: Sequence[Network]) -> Target:
    """Resolve the URL's host now and check every address; the request goes to the first one."""
    parsed = httpx2.URL(url)
    host = parsed.raw_host.decode("ascii")
    addresses = await resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    _refuse(host, addresses, allowed)
    return Target(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=host if parsed.scheme == "https" and _literal(host) is None else None,
    )
