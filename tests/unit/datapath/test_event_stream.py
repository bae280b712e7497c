"""EventStream keeps count of what a poll could not keep, EventFeed takes exactly its count,
and events carry wall-clock time (no root: a fake ring)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from pingkiller import abi
from pingkiller.bpf import RecordBatch
from pingkiller.cli import schemas
from pingkiller.datapath.events import EventFeed, EventStream
from pingkiller.model.events import Event, WallClock


class _FakeRing:
    def __init__(self, batches: list[RecordBatch]) -> None:
        self.batches = batches

    def poll(self, timeout: float | None = None, limit: int | None = None) -> RecordBatch:
        self.limits.append(limit)
        return self.batches.pop(0)

    limits: list[int | None]


def _stream(batches: list[RecordBatch], *, backlog: bool = False) -> EventStream:
    stream = EventStream.__new__(EventStream)
    ring = _FakeRing(batches)
    ring.limits = []
    stream._ring = ring  # type: ignore[assignment]
    stream.received = stream.lost = 0
    stream.backlog = backlog
    stream.clock = WallClock()
    return stream


def _record() -> bytes:
    """One all-zero event as the ring-buffer copy lays it out: [u32 size][4 pad][data]."""
    body = bytes(abi.EVENT.size)
    padded = body + bytes(-len(body) % 8)
    return len(body).to_bytes(4, "little") + bytes(4) + padded


def test_poll_counts_the_records_the_copy_lost():
    stream = _stream([RecordBatch(_record(), 1, dropped=3), RecordBatch(b"", 0, dropped=2)])
    assert len(stream.poll(0)) == 1
    assert stream.poll(0) == []
    assert (stream.received, stream.lost) == (1, 5)


def test_feed_summary_counts_copy_losses_with_the_kernels():
    stream = _stream([RecordBatch(_record(), 1, dropped=3)])
    kernel = iter([(10, 20), (12, 21)])  # (suppressed, lost) before and after
    feed = EventFeed(stream, lambda: next(kernel), count=1)
    assert [len(batch) for batch in feed] == [1]
    summary = feed.summary()
    assert (summary.received, summary.suppressed, summary.lost) == (1, 2, 1 + 3)


def test_feed_asks_the_ring_for_no_more_than_its_count():
    """The limit goes to the ring (the rest stay there), not a slice of what was read."""
    stream = _stream([RecordBatch(_record() * 2, 2), RecordBatch(_record(), 1)])
    feed = EventFeed(stream, lambda: (0, 0), count=3)
    assert [len(batch) for batch in feed] == [2, 1]
    assert stream._ring.limits == [3, 1]  # type: ignore[attr-defined]


def test_backlog_is_counted_only_by_a_stream_that_reads_it():
    marked = RecordBatch(_record() * 3, 3, marked=2)
    batch = _stream([marked], backlog=True).poll(0)
    assert (len(batch), batch.backlog) == (3, 2)
    assert [batch.is_backlog(i) for i in range(3)] == [True, True, False]
    assert _stream([RecordBatch(_record(), 1, marked=1)]).poll(0).backlog == 0


def test_timestamps_become_wall_clock_time():
    clock = WallClock()
    at = int(datetime(2026, 12, 1, 13, 55, 2, tzinfo=UTC).timestamp()) * 10**9 + 123_456_789
    clock.offset_ns = at - 5_000_000_000
    event = Event._make(next(RecordBatch(_record(), 1).unpack(abi.EVENT)))._replace(
        timestamp_ns=5_000_000_000)
    assert clock.iso(event.timestamp_ns) == "2026-12-01T13:55:02.123456Z"
    data = schemas.event(event, clock, backlog=True)
    assert list(data)[:3] == ["time", "backlog", "timestamp_ns"]
    assert (data["time"], data["backlog"], data["timestamp_ns"]) == (
        "2026-12-01T13:55:02.123456Z", True, 5_000_000_000)
    assert schemas.event(event, clock)["backlog"] is False
    line = event.line(clock, backlog=True)
    assert re.fullmatch(r"\d\d:\d\d:02\.123456 backlog \? > \? non-ip: pass \(pass_not_ping\)", line), line
    assert event.line(clock).endswith(":02.123456 " + event.describe())


def test_a_clock_made_now_puts_a_fresh_event_at_now():
    now = time.monotonic_ns()
    wall = WallClock().wall_ns(now)
    assert abs(wall - time.time_ns()) < 1_000_000_000
