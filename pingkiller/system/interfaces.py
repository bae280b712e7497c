"""Facts about network interfaces that decide whether pingkiller may attach there.

The index of a name (and back), whether the device's frames start with an Ethernet
header, and whether another tool's XDP program already holds it.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import sys

from pingkiller.model.errors import InterfaceNotFound, InvalidInput
from pingkiller.model.point import validate_ifname

_SIOCGIFHWADDR = 0x8927
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772


def interface_index(ifname: str) -> int:
    """The ifindex of ``ifname`` in this network namespace."""
    validate_ifname(ifname)
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise InterfaceNotFound(
            f"interface {ifname!r} not found: list interfaces with `ip link`"
        ) from None


def interface_name(ifindex: int) -> str | None:
    """The name of interface ``ifindex`` in this network namespace, None if there is none."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None


_SO_NETNS_COOKIE = 71


def netns_cookie() -> int:
    """The cookie of this process's network namespace (unique while the system runs,
    never reused), or 0 where the kernel cannot tell (before 5.14)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8)
    except OSError:
        return 0
    return int.from_bytes(raw, sys.byteorder)


def check_ethernet(ifname: str) -> None:
    """Refuse devices whose frames do not start with an Ethernet header (tun, wireguard,
    ipip, gre, ppp...): the program would parse them as Ethernet and every ping would pass.
    """
    request = struct.pack("16sH14s", ifname.encode(), 0, b"")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, request)
    except OSError:
        return  # cannot tell; the kernel decides
    (link_type,) = struct.unpack_from("H", reply, 16)
    if link_type not in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK):
        raise InvalidInput(
            f"{ifname} is not an Ethernet device (link type {link_type}): pingkiller parses "
            "Ethernet frames, so it would pass every ping there; attach it to an Ethernet "
            "interface (e.g. the one carrying this tunnel)"
        )
