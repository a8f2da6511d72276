"""The webhook SSRF guard: which addresses are refused, what the allowlist allows, where a request is sent."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

import httpx2
import pytest

from service.webhooks.guard import Blocked, is_blocked, target

BLOCKED = {
    "loopback": ["127.0.0.1", "127.255.0.9", "::1"],
    "private": ["10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1"],
    "link-local": ["169.254.169.254", "169.254.0.1", "fe80::1"],
    "unspecified": ["0.0.0.0", "::"],
    "multicast": ["224.0.0.1", "239.255.255.250", "ff02::1"],
    "shared (CGNAT)": ["100.64.0.1", "100.127.255.254"],
    "IPv4-mapped": ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:100.64.0.1"],
    "IPv4 in NAT64 and 6to4": ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a00:1::1"],
}


@pytest.mark.parametrize(
    "address", [a for addresses in BLOCKED.values() for a in addresses], ids=lambda address: address
)
def test_every_non_public_class_is_refused(address: str) -> None:
    assert is_blocked(ip_address(address), []) is True


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert is_blocked(ip_address(address), []) is False


def test_the_allowlist_allows_its_networks_only_in_every_form() -> None:
    allowed = [IPv4Network("10.20.0.0/16"), IPv6Network("fd00:1::/64")]
    assert [
        is_blocked(ip_address(a), allowed)
        for a in ("10.20.3.4", "::ffff:10.20.3.4", "fd00:1::5", "10.21.0.1", "fd00:2::5", "127.0.0.1")
    ] == [False, False, False, True, True, True]


async def test_a_request_goes_to_the_checked_address_with_the_name_in_host_and_sni() -> None:
    found = await target("https://localhost:8443/hook?x=1", [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")])
    assert found.url.host in ("127.0.0.1", "::1")
    assert (found.url.scheme, found.url.port, found.url.raw_path) == ("https", 8443, b"/hook?x=1")
    assert (found.host_header, found.sni_hostname) == ("localhost:8443", "localhost")
    literal = await target("http://8.8.8.8/hook", [])
    assert (literal.url, literal.host_header, literal.sni_hostname) == (
        httpx2.URL("http://8.8.8.8/hook"),
        "8.8.8.8",
        None,
    )


async def test_a_name_resolving_to_a_blocked_address_is_refused_when_sent() -> None:
    with pytest.raises(Blocked, match=r"^localhost resolves to .*127\.0\.0\.1.*, not a public address"):
        await target("http://localhost:9/hook", [])
    with pytest.raises(Blocked, match=r"^169\.254\.169\.254 is not a public address"):
        await target("http://169.254.169.254/latest/meta-data/", [])
