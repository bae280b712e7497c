"""Per-packet events from the ring buffer, decoded in bulk into frozen dataclasses."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from pingkiller import abi
from pingkiller.abi import Direction, Hook, Reason
from pingkiller.bpf import XDP_DROP, Map, RecordBatch, RingBuffer

if TYPE_CHECKING:
    from datetime import datetime

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
        return bool(self.verdict_code == XDP_DROP)

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

    def to_json(self, clock: WallClock | None = None, *, backlog: bool = False) -> dict[str, object]:
        """The object of ``pingkiller events --json`` (docs/cli.md): ``time`` by ``clock``
        (default: one made now), ``backlog`` as given (buffered before the reader started)."""
        clock = clock or WallClock()
        return {
            "time": clock.iso(self.timestamp_ns),
            "backlog": backlog,
            "timestamp_ns": self.timestamp_ns,
            "ifindex": self.ifindex,
            "length": self.length,
            "verdict": self.verdict,
            "reason": self.reason.label,
            "hook": self.hook.label,
            "direction": self.direction.label,
            "family": self.family,
            "protocol": self.protocol,
            "src": self.src,
            "dst": self.dst,
            "type": self.kind,
            "icmp_type": self.icmp_type,
            "icmp_code": self.icmp_code,
            "icmp_id": self.icmp_id,
            "icmp_seq": self.icmp_seq,
        }

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


def decode(batch: RecordBatch) -> list[Event]:
    """Events of one ring-buffer batch."""
    return list(map(Event._make, batch.unpack(abi.EVENT)))


# What one event takes in the ring: its 8-byte header and the event, 8-aligned.
_RING_RECORD = 8 + ((abi.EVENT.size + 7) & ~7)


class EventBatch(list[Event]):
    """The events of one poll, oldest first. The first ``backlog`` of them were buffered
    before the stream opened (only a stream opened with ``backlog=True`` reads those)."""

    def __init__(self, events: Iterable[Event] = (), backlog: int = 0) -> None:
        super().__init__(events)
        self.backlog = backlog

    def is_backlog(self, index: int) -> bool:
        """Whether the event at ``index`` was buffered before the stream opened."""
        return index < self.backlog


class EventStream:
    """Events as they happen; ``poll()`` for a batch, or iterate (blocks). Close when done.

    A stream starts from now: what the ring holds when it opens (events nobody read,
    possibly hours old) is skipped, never read, and counted in ``skipped``. With
    ``backlog=True`` it reads those first instead, ``buffered`` of them; each batch says
    how many of its first events they are (:attr:`EventBatch.backlog`). ``clock`` turns
    timestamps into wall-clock time. The ring has one read position for all its readers:
    what one stream skips or reads, no other reader sees.
    """

    def __init__(self, ring: Map, *, backlog: bool = False) -> None:
        self._ring = RingBuffer(ring)
        self.clock = WallClock()
        self.backlog = backlog
        # Counted by the room they took in the ring (every record is one event).
        if backlog:
            self.buffered, self.skipped = self._ring.mark() // _RING_RECORD, 0
        else:
            self.buffered, self.skipped = 0, self._ring.skip() // _RING_RECORD
        self.received = 0
        # Events that reached user space but could not be kept (the copy ran out of
        # memory); the kernel's own losses are the events_lost counters.
        self.lost = 0

    def poll(self, timeout: float | None = None, limit: int | None = None) -> EventBatch:
        """Wait up to ``timeout`` seconds (None: forever) for events, at most ``limit`` of
        them (None: all there are); the rest stay in the ring for the next poll or reader.
        ``lost`` grows by the records of this batch that could not be kept."""
        batch = self._ring.poll(timeout, limit)
        events = EventBatch(decode(batch), batch.marked if self.backlog else 0)
        self.received += len(events)
        self.lost += batch.dropped
        return events

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield from self.poll(None)

    def fileno(self) -> int:
        return self._ring.fileno()

    def close(self) -> None:
        self._ring.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class EventSummary:
    """What a :class:`EventFeed` saw: events received, and meanwhile suppressed by the rate
    limit or lost: the ring was full (the kernel's counter) or a record could not be
    copied out of it (no memory: :attr:`EventStream.lost`)."""

    received: int
    suppressed: int
    lost: int

    def to_json(self) -> dict[str, int]:
        return {"received": self.received, "suppressed": self.suppressed, "lost": self.lost}


class EventFeed:
    """An attachment's events in batches, until ``count`` events or ``timeout`` seconds
    (each None: no limit); obtain it with ``Attachment.follow_events()``.

    It reads from now on, or first what was buffered if its stream was opened with
    ``backlog=True`` (:class:`EventStream`). It takes exactly ``count`` events from the
    ring: those after them stay there for the next reader.

    Iterate for batches (:class:`EventBatch`; one may be empty: no event came within half a second);
    ``summary()`` counts what came and what the kernel suppressed or lost meanwhile.
    ``ended``, asked about once a second, returns the error that ends the feed (e.g. the
    attachment was detached), which iterating raises after the events left in the ring.
    A context manager: it closes the stream on exit.
    """

    POLL_SECONDS = 0.5
    CHECK_SECONDS = 1.0  # how often ``ended`` is asked

    def __init__(self, stream: EventStream, counters: Callable[[], tuple[int, int]], *,
                 count: int | None = None, timeout: float | None = None,
                 ended: Callable[[], BaseException | None] | None = None) -> None:
        self._stream = stream
        self._counters = counters  # (suppressed, lost) so far
        self._before = counters()
        self._count = count
        self._deadline = None if timeout is None else time.monotonic() + timeout
        # Asked about once a second (not per event): an error when the events stopped for
        # good (the attachment was detached), raised after what is left in the ring.
        self._ended = ended
        self.received = 0

    @property
    def stream(self) -> EventStream:
        """The stream it reads: ``clock``, ``skipped`` and ``buffered`` are there."""
        return self._stream

    def __iter__(self) -> Iterator[EventBatch]:
        next_check = time.monotonic() + self.CHECK_SECONDS
        while self._count is None or self.received < self._count:
            wait = self.POLL_SECONDS
            now = time.monotonic()
            if self._deadline is not None:
                wait = min(wait, self._deadline - now)
                if wait < 0:
                    return
            error = None
            if self._ended is not None and now >= next_check:
                next_check = now + self.CHECK_SECONDS
                error = self._ended()
                if error is not None:
                    wait = 0  # only what is left in the ring
            limit = None if self._count is None else self._count - self.received
            batch = self._stream.poll(wait, limit)
            self.received += len(batch)
            if batch or error is None:
                yield batch
            if error is not None:
                raise error

    def summary(self) -> EventSummary:
        suppressed, lost = self._counters()
        lost += self._stream.lost
        return EventSummary(self.received, suppressed - self._before[0], lost - self._before[1])

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> EventFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
