"""Refuse to connect to non-public addresses (server-side request forgery protection).

A feed URL comes from users, so without a check anyone could make the server fetch from its own
loopback interface, the cloud metadata service or the LAN. Checking the host name before the
request is not enough: DNS may answer differently at connect time (rebinding). So the check lives
in the network backend of httpcore: it resolves the name once, keeps only allowed addresses, and
connects to exactly the address it checked. TLS still verifies the certificate against the host
name because httpcore takes the SNI name from the URL, not from the connected address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpcore
import trio

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddressError(Exception):
    """The host resolves only to addresses the policy refuses."""


class ResolveError(Exception):
    """The host name could not be resolved."""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which destinations may be fetched: public addresses, plus an explicit allow-list."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_all: bool = False
    # Single (address, port) services opened without opening their whole host, such as a
    # sample-feed server on loopback.
    allow_endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def from_strings(cls, entries: Iterable[str], *, allow_all: bool = False) -> AddressPolicy:
        """Build from config strings: each a host name, an address or a CIDR network."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), allow_all)

    def host_allowed(self, host: str) -> bool:
        return self.allow_all or host.lower().rstrip(".") in self.allow_hosts

    def address_allowed(self, address: IPAddress) -> bool:
        if self.allow_all:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allow_networks):
            return True
        return is_public(address)

    def endpoint_allowed(self, address: IPAddress, port: int) -> bool:
        return (str(address), port) in self.allow_endpoints

    def refuses_literal(self, host: str, port: int) -> bool:
        """True for a numeric host (any form) the policy refuses: known before any request,
        so a subscription to ``http://0177.0.0.1/`` is refused as the address it is."""
        address = literal_address(host)
        if address is None or self.host_allowed(host):
            return False
        return not (self.address_allowed(address) or self.endpoint_allowed(address, port))


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only.

    An IPv6 address that carries an IPv4 one -- mapped, 6to4 (RFC 3056), Teredo (RFC 4380) or
    NAT64 (RFC 6052) -- is public only if the IPv4 address inside is: ``2002:7f00:1::`` is
    loopback in disguise.
    """
    if not _plainly_public(address):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(_plainly_public(inner) for inner in _embedded_ipv4(address))
    return True


def _plainly_public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    inner: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        inner.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.extend(address.teredo)
    if address in _NAT64:
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return inner


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as a number stands for, in every form resolvers accept.

    Besides dotted quads and IPv6, the C resolver reads octal (``0177.0.0.1``), hex
    (``0x7f.1``), zero-padded (``127.000.000.001``), short (``127.1``) and integer
    (``2130706433``) forms: all loopback. None for a host name.
    """
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses of ``host`` (an IP literal resolves to itself), in resolver order."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise ResolveError(f"cannot resolve {host}: {exc}") from exc
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(slots=True)
class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that only connects to addresses the policy allows."""

    policy: AddressPolicy
    inner: httpcore.AsyncNetworkBackend = field(default_factory=httpcore.TrioBackend)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with trio.fail_after(float("inf") if timeout is None else timeout):
                addresses = await resolve(host, port)
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        if not self.policy.host_allowed(host):
            addresses = [
                a for a in addresses
                if self.policy.address_allowed(a) or self.policy.endpoint_allowed(a, port)
            ]
            if not addresses:
                raise BlockedAddressError(f"{host} resolves to no public address")
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)
