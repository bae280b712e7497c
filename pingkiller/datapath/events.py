"""Per-packet events from the ring buffer, decoded a batch at a time
(:class:`~pingkiller.model.events.Event`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from pingkiller import abi
from pingkiller.bpf import Map, RecordBatch, RingBuffer
from pingkiller.model.events import Event, EventSummary, WallClock


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
