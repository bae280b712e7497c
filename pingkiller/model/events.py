"""Per-packet events as values: what the program reported of one packet, when that was
in wall-clock time, and what a reader received, suppressed and lost."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from pingkiller.model.enums import Direction, Hook, Reason

if TYPE_CHECKING:
    from datetime import datetime

VERDICT_DROP = 1  # an event's verdict code for a drop: XDP_DROP, whatever the hook

_ICMP_NAMES = {
    4: {0: "echo-reply", 3: "unreachable", 5: "redirect", 8: "echo-request", 11: "time-exceeded"},
    6: {
        1: "unreachable", 2: "packet-too-big", 3: "time-exceeded", 128: "echo-request",
        129: "echo-reply", 133: "router-solicit", 134: "router-advert", 135: "neighbor-solicit",
        136: "neighbor-advert", 137: "redirect",
    },
}
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_ECHO_TYPES = {False: (0, 8), True: (128, 129)}  # by "is IPv6"


def _address(family: int, raw: bytes) -> str:
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == 6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


class WallClock:
    """An event's ``timestamp_ns`` (``bpf_ktime_get_ns()``: CLOCK_MONOTONIC, nanoseconds
    since boot, suspend excluded) as wall-clock time, by one offset taken when it is made."""

    def __init__(self) -> None:
        self.offset_ns = time.time_ns() - time.monotonic_ns()

    def wall_ns(self, timestamp_ns: int) -> int:
        """Nanoseconds since the Unix epoch."""
        return self.offset_ns + timestamp_ns

    def datetime(self, timestamp_ns: int) -> datetime:
        """An aware datetime in UTC (microseconds)."""
        from datetime import UTC, datetime, timedelta  # here: most commands show no event

        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + timedelta(microseconds=self.wall_ns(timestamp_ns) // 1000)  # exact

    def iso(self, timestamp_ns: int) -> str:
        """ISO 8601 in UTC with microseconds: ``2026-12-01T13:55:02.123456Z``."""
        return self.datetime(timestamp_ns).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def local_time(self, timestamp_ns: int) -> str:
        """The local time of day with microseconds, as tcpdump prints it: ``13:55:02.123456``."""
        return self.datetime(timestamp_ns).astimezone().strftime("%H:%M:%S.%f")


class Event(NamedTuple):
    """One packet the program reported, field for field as ``struct pk_event``.

    A NamedTuple, not a frozen dataclass: it is as immutable and typed, and a whole
    ring-buffer batch becomes events in C (struct.iter_unpack + _make), which keeps a
    Python consumer close to a C one under a flood. Addresses and names are decoded
    when read.
    """

    timestamp_ns: int
    ifindex: int
    length: int
    src_bytes: bytes  # network order; IPv4 in the first 4 bytes
    dst_bytes: bytes
    verdict_code: int  # XDP_DROP or XDP_PASS, whatever the hook
    reason_code: int
    family: int  # 4, 6, or 0 when the IP header was not parsed
    protocol: int
    icmp_type: int
    icmp_code: int
    icmp_id: int
    icmp_seq: int
    hook_code: int  # abi.Hook: which program judged the packet
    direction_code: int  # abi.Direction: which way it went

    @property
    def hook(self) -> Hook:
        return Hook(self.hook_code)

    @property
    def direction(self) -> Direction:
        return Direction(self.direction_code)

    @property
    def where(self) -> str:
        """``tc in`` or ``tc out`` for a tc program's event; empty for XDP's (always in),
        whose lines stay as they were before there was a tc program."""
        if self.hook_code == Hook.XDP and self.direction_code == Direction.IN:
            return ""
        return f"{self.hook.label} {self.direction.label}"

    @property
    def dropped(self) -> bool:
        return bool(self.verdict_code == VERDICT_DROP)

    @property
    def verdict(self) -> str:
        return "drop" if self.dropped else "pass"

    @property
    def reason(self) -> Reason:
        return Reason(self.reason_code)

    @property
    def src(self) -> str:
        return _address(self.family, self.src_bytes)

    @property
    def dst(self) -> str:
        return _address(self.family, self.dst_bytes)

    @property
    def is_icmp(self) -> bool:
        return self.protocol in (1, 58)

    @property
    def is_echo(self) -> bool:
        """An echo request or reply: the only ICMP messages whose id/seq mean something."""
        return self.is_icmp and self.icmp_type in _ECHO_TYPES[self.family == 6]

    @property
    def kind(self) -> str:
        """``echo-request``, ``tcp``, ``icmp type 13``... for display."""
        if self.is_icmp:
            name = _ICMP_NAMES.get(self.family, {}).get(self.icmp_type)
            return name or f"icmp type {self.icmp_type}"
        return _PROTOCOLS.get(self.protocol, f"proto {self.protocol}" if self.family else "non-ip")

    def describe(self) -> str:
        """One line: ``198.18.1.2 > 198.18.1.1 echo-request id 7 seq 1: drop (drop_block)``;
        a tc program's event starts with :attr:`where` (``tc out 198.18.1.1 > ...``)."""
        text = f"{self.src or '?'} > {self.dst or '?'} {self.kind}"
        if self.where:
            text = f"{self.where} {text}"
        if self.is_echo:
            text += f" id {self.icmp_id} seq {self.icmp_seq}"
        return f"{text}: {self.verdict} ({self.reason.label})"

    def line(self, clock: WallClock | None = None, *, backlog: bool = False) -> str:
        """``13:55:02.123456 198.18.1.2 > 198.18.1.1 echo-request id 7 seq 1: drop
        (drop_block)``: the local time by ``clock`` (default: one made now), then
        ``backlog`` if it was buffered before the reader started, then :meth:`describe`."""
        when = (clock or WallClock()).local_time(self.timestamp_ns)
        return f"{when} {'backlog ' if backlog else ''}{self.describe()}"


@dataclass(frozen=True)
class EventSummary:
    """What a :class:`EventFeed` saw: events received, and meanwhile suppressed by the rate
    limit or lost: the ring was full (the kernel's counter) or a record could not be
    copied out of it (no memory: :attr:`EventStream.lost`)."""

    received: int
    suppressed: int
    lost: int
