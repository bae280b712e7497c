"""EventStream keeps count of what a poll could not keep (no root: a fake ring)."""

from __future__ import annotations

from pingkiller import abi
from pingkiller.bpf import RecordBatch
from pingkiller.events import EventStream


class _FakeRing:
    def __init__(self, batches: list[RecordBatch]) -> None:
        self.batches = batches

    def poll(self, timeout: float | None = None) -> RecordBatch:
        return self.batches.pop(0)


def _record() -> bytes:
    """One all-zero event as the ring-buffer copy lays it out: [u32 size][4 pad][data]."""
    body = bytes(abi.EVENT.size)
    padded = body + bytes(-len(body) % 8)
    return len(body).to_bytes(4, "little") + bytes(4) + padded


def test_poll_counts_the_records_the_copy_lost():
    stream = EventStream.__new__(EventStream)
    stream._ring = _FakeRing([RecordBatch(_record(), 1, dropped=3),  # type: ignore[assignment]
                              RecordBatch(b"", 0, dropped=2)])
    stream.received = stream.lost = 0
    assert len(stream.poll(0)) == 1
    assert stream.poll(0) == []
    assert (stream.received, stream.lost) == (1, 5)


def test_feed_summary_counts_copy_losses_with_the_kernels():
    from pingkiller.events import EventFeed

    stream = EventStream.__new__(EventStream)
    stream._ring = _FakeRing([RecordBatch(_record(), 1, dropped=3)])  # type: ignore[assignment]
    stream.received = stream.lost = 0
    kernel = iter([(10, 20), (12, 21)])  # (suppressed, lost) before and after
    feed = EventFeed(stream, lambda: next(kernel), count=1)
    assert [len(batch) for batch in feed] == [1]
    summary = feed.summary()
    assert (summary.received, summary.suppressed, summary.lost) == (1, 2, 1 + 3)
