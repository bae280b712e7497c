"""Facts about network interfaces that decide whether pingkiller may attach there.

The index of a name (and back), whether the device's frames start with an Ethernet
header, and whether another tool's XDP program already holds it.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import sys

from pingkiller import hooks, pins
from pingkiller.abi import Hook
from pingkiller.bpf import BpfError, Program
from pingkiller.errors import AlreadyAttached, ForeignProgram, InterfaceNotFound, InvalidInput
from pingkiller.pins import Point

_SIOCGIFHWADDR = 0x8927
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772


def interface_index(ifname: str) -> int:
    """The ifindex of ``ifname`` in this network namespace."""
    pins.validate_ifname(ifname)
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


def pinned_program_ids(like: Point) -> dict[int, Point]:
    """Program id -> point of every pinned pingkiller link on the hook (and direction)
    of ``like``."""
    held = {}
    for point in pins.listed():
        if (point.hook, point.direction) != (like.hook, like.direction):
            continue
        try:
            with hooks.open_link(point, pins.directory(point)) as link:
                held[link.info().prog_id] = point
        except (BpfError, ValueError):
            continue
    return held


def check_ours_elsewhere(point: Point, ifindex: int, running: list[int] | None = None) -> None:
    """Raise AlreadyAttached when ``point``'s hook runs (``running``: the programs there,
    when the caller has them) a pingkiller program pinned under another name (the
    interface was renamed): a second one would judge every ping twice."""
    if running is None:
        running = hooks.running_programs(point, ifindex)
    for prog_id, other in pinned_program_ids(point).items():
        if prog_id in running and other != point:
            raise AlreadyAttached(
                f"{point.ifname} already carries pingkiller's attachment pinned as "
                f"{other.ifname!r} (the interface was renamed): `pingkiller detach "
                f"{other.options}` first"
            )


def check_foreign(ifname: str, ifindex: int) -> None:
    """Raise unless ``ifname`` carries no XDP program: AlreadyAttached when it is
    pingkiller's own (pinned under another name: the interface was renamed),
    ForeignProgram when another tool's, which pingkiller leaves alone."""
    point = Point(ifname, Hook.XDP)
    attached = hooks.running_programs(point, ifindex)
    if not attached:
        return
    prog_id = attached[0]
    check_ours_elsewhere(point, ifindex, attached)
    try:
        with Program.from_id(prog_id) as program:
            name = program.info().name
    except BpfError:
        name = "?"
    raise ForeignProgram(
        f"{ifname} already carries XDP program id {prog_id} ({name!r}) that pingkiller did "
        f"not attach; it is left alone: run beside it with `pingkiller attach {ifname} "
        f"--hook tc`, or remove it with the tool that loaded it "
        f"(`ip link set dev {ifname} xdp off`) and try again"
    )
