"""Addresses and prefixes, parsed with :mod:`ipaddress` and normalised one way whatever
they come as: text, or an ``ipaddress`` address, network or interface object. An
IPv4-mapped IPv6 address (``::ffff:192.0.2.7``) is the IPv4 address, in every form."""

from __future__ import annotations

import ipaddress

from pingkiller.model.errors import InvalidAddress
from pingkiller.model.untrusted import quote

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# What a rule may be given as: text, or any ipaddress object
NetworkLike = str | Network | Address | ipaddress.IPv4Interface | ipaddress.IPv6Interface

_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_LONGEST_NETWORK = 64  # ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128 is 49
_OBJECTS = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
            ipaddress.IPv6Network)


def parse_network(value: NetworkLike) -> Network:
    """An address or prefix as a network (an address is a /32 or /128); an IPv4-mapped
    IPv6 one becomes IPv4. An ``ipaddress`` object is read as its text, so it is the same
    rule as the string it prints as (an interface object with host bits is refused, as
    its text would be).

    Raises InvalidAddress naming the problem, e.g. host bits set in a prefix; it quotes
    the text sanitized and cut short (:func:`pingkiller.model.untrusted.quote`).
    """
    if isinstance(value, _OBJECTS):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidAddress(f"{type(value).__name__} {quote(repr(value))} is not an address or "
                             "prefix: give a string or an ipaddress object")
    cleaned = value.strip()
    if not cleaned:
        raise InvalidAddress("empty address: give an IPv4/IPv6 address or prefix, e.g. 192.0.2.7")
    if "%" in cleaned and len(cleaned) <= _LONGEST_NETWORK:
        raise InvalidAddress(
            f"{quote(cleaned)} has a zone id: rules match addresses on every interface, drop the %zone"
        )
    try:
        if len(cleaned) > _LONGEST_NETWORK:
            raise ValueError("too long")
        network = ipaddress.ip_network(cleaned, strict=True)
    except ValueError as err:
        if "host bits set" in str(err):
            loose = ipaddress.ip_network(cleaned, strict=False)
            raise InvalidAddress(
                f"{quote(cleaned)} has host bits set: did you mean {loose} (or the address alone)?"
            ) from None
        raise InvalidAddress(
            f"{quote(cleaned)} is not an IPv4/IPv6 address or prefix "
            "(e.g. 192.168.1.78, 10.0.0.0/8, 2001:db8::/32)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_V4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_networks(values: object) -> list[Network]:
    """Parse many (any iterable of what :func:`parse_network` takes, not a lone string);
    the first bad one raises."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidAddress(f"{quote(repr(values))} is not a list of addresses: give a list, "
                             "e.g. ['192.0.2.7']")
    return [parse_network(value) for value in values]


def format_network(network: Network) -> str:
    """``192.0.2.7`` for a host, ``10.0.0.0/8`` for a prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def is_exact(network: Network) -> bool:
    """A host rule (/32, /128), not a prefix."""
    return network.prefixlen == network.max_prefixlen
