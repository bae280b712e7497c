"""Pull-style BPF ring-buffer consumer: poll() returns a batch copied out in C."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import BpfError, check, error_from_errno
from pingkiller.bpf.maps import Map

if TYPE_CHECKING:
    from pingkiller.bpf._libbpf import CData

_HEADER = struct.Struct("=I4x")  # the record header as pk_rb_collect writes it, native order


class RecordBatch(Sequence[bytes]):
    """Records from one poll, stored back to back as [u32 size][4 pad][data, 8-aligned].

    ``marked``: how many of the first records started before the ring's mark
    (:meth:`RingBuffer.mark`), e.g. were buffered before the reader started.
    """

    def __init__(self, raw: bytes, count: int, dropped: int = 0, marked: int = 0) -> None:
        self.raw = raw
        self.record_count = count
        self.dropped = dropped  # records the copy could not keep (out of memory)
        self.marked = marked
        self._offsets: list[int] | None = None

    def _index(self) -> list[int]:
        if self._offsets is None:
            offsets, at = [], 0
            for _ in range(self.record_count):
                offsets.append(at)
                (size,) = _HEADER.unpack_from(self.raw, at)
                at += 8 + ((size + 7) & ~7)
            self._offsets = offsets
        return self._offsets

    def __len__(self) -> int:
        return self.record_count

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.record_count))]
        at = self._index()[index]
        (size,) = _HEADER.unpack_from(self.raw, at)
        return self.raw[at + 8 : at + 8 + size]

    def unpack(self, record: struct.Struct) -> Iterator[tuple[Any, ...]]:
        """Decode fixed-size records in bulk; every record must be ``record.size`` bytes.

        The check and the decoding run in C: each 4-byte size header is compared column
        by column, then one ``iter_unpack`` walks the whole batch.
        """
        if self.record_count == 0:
            return iter(())
        padded = (record.size + 7) & ~7
        stride = 8 + padded
        header = _HEADER.pack(record.size)
        if len(self.raw) != self.record_count * stride or any(
            self.raw[column::stride] != header[column : column + 1] * self.record_count
            for column in range(8)
        ):
            raise ValueError(f"records are not all {record.size} bytes")
        fmt = record.format
        order, body = (fmt[0], fmt[1:]) if fmt[:1] in ("<", ">", "=", "!", "@") else ("@", fmt)
        return struct.Struct(f"{order}8x{body}{padded - record.size}x").iter_unpack(self.raw)


class RingBuffer:
    """Consumer of a BPF_MAP_TYPE_RINGBUF map. ``fileno()`` is pollable for selectors/asyncio.

    A ring has one read (consumer) position, shared by every reader of the map. A new
    consumer starts where the last one stopped: :meth:`skip` moves past what is buffered
    now, :meth:`mark` tells what was buffered apart from what comes later, and a ``limit``
    on :meth:`poll` or :meth:`consume` leaves the records after it in the ring.
    """

    def __init__(self, ring: Map) -> None:
        if ring.info.type != lib.BPF_MAP_TYPE_RINGBUF:
            raise ValueError(f"map {ring.name!r} is not a ring buffer")
        self._map = ring
        self._batch = ffi.new("struct pk_rb_batch *")
        handle = lib.pk_ring_buffer_new(ring.fd, self._batch)
        if handle == ffi.NULL:
            raise error_from_errno(ffi.errno or errno.EINVAL, "opening ring buffer", ring.name)
        self._rb: CData | None = handle

    def _take(self) -> RecordBatch:
        batch = self._batch
        raw = bytes(ffi.buffer(batch.data, batch.used)) if batch.used else b""
        taken = RecordBatch(raw, batch.count, batch.dropped, min(batch.marked, batch.count))
        batch.used = batch.count = batch.dropped = batch.marked = 0
        return taken

    @staticmethod
    def _limit(limit: int | None) -> int:
        if limit is None:
            return 0
        if limit < 0:
            raise ValueError(f"limit must be at least 0, not {limit}")
        return limit

    def _handle(self) -> CData:
        if self._rb is None:
            raise BpfError(errno.EBADF, "using ring buffer", "the ring buffer is closed")
        return self._rb

    def poll(self, timeout: float | None = None, limit: int | None = None) -> RecordBatch:
        """Wait up to ``timeout`` seconds (None: forever) and return what arrived: at most
        ``limit`` records (None: all), the rest stay in the ring for the next poll or reader.

        An interrupted wait (EINTR) returns what was collected so far; Python then
        raises KeyboardInterrupt or runs the signal handler as usual.
        """
        handle = self._handle()
        self._batch.limit = self._limit(limit)
        if limit == 0:
            return self._take()
        timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
        result = lib.pk_ring_buffer_poll(handle, self._batch, timeout_ms)
        if result < 0 and result != -errno.EINTR:
            check(result, "polling ring buffer")
        return self._take()

    def consume(self, limit: int | None = None) -> RecordBatch:
        """Take what is in the ring now, without waiting: at most ``limit`` records (None:
        all), the rest stay in the ring."""
        handle = self._handle()
        self._batch.limit = self._limit(limit)
        if limit == 0:
            return self._take()
        check(lib.pk_ring_buffer_consume(handle, self._batch), "consuming ring buffer")
        return self._take()

    def pending(self) -> int:
        """Bytes buffered in the ring now, not read yet (8-byte record headers and padding
        included; records reserved but not yet submitted too)."""
        self._handle()
        return max(0, int(lib.pk_rb_producer_pos(self._batch) - lib.pk_rb_consumer_pos(self._batch)))

    def skip(self) -> int:
        """Move the read position past everything buffered now, which is then never read
        (by this or any other reader of the map); the bytes skipped, as :meth:`pending`."""
        self._handle()
        return int(lib.pk_rb_skip(self._batch))

    def mark(self) -> int:
        """From now on, count in each batch's ``marked`` the records buffered before this
        call (they come first). Returns how many bytes that is, as :meth:`pending`."""
        self._handle()
        self._batch.mark = lib.pk_rb_producer_pos(self._batch)
        return max(0, int(self._batch.mark - lib.pk_rb_consumer_pos(self._batch)))

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records arrive."""
        return int(lib.ring_buffer__epoll_fd(self._handle()))

    def close(self) -> None:
        if self._rb is not None:
            lib.ring_buffer__free(self._rb)
            self._rb = None
            lib.pk_rb_batch_free(self._batch)

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_rb", None) is not None and lib is not None:  # not at interpreter exit
            self.close()
