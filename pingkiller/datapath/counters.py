"""Reading an attachment's counters: packets and bytes per reason, event accounting,
processing time, and the kernel's run time of its program."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager

from pingkiller import abi
from pingkiller.bpf import BpfError, Map, Program, enable_run_time_stats
from pingkiller.model.enums import Reason
from pingkiller.model.stats import Counter, Stats
from pingkiller.model.words import TIMING_SLOTS


def _per_cpu_counters(counters: Map, raw: bytes) -> list[Counter]:
    return [Counter(*abi.COUNTER.unpack(value)) for value in counters.split_per_cpu(raw)]


def read_stats(maps: Mapping[str, Map], program: Program | None, *, per_cpu: bool = False) -> Stats:
    """Read every counter of one pingkiller instance."""
    counters = maps[abi.COUNTERS_MAP]
    # One batch read of the whole per-CPU array rather than a lookup per slot.
    slots = {abi.U32_KEY.unpack(key)[0]: raw for key, raw in counters.items_batch()}
    per_slot = {slot: _per_cpu_counters(counters, slots[slot]) for slot in range(abi.COUNTER_COUNT)}
    reasons = {
        reason: Counter(
            sum(c.packets for c in per_slot[reason]), sum(c.bytes for c in per_slot[reason])
        )
        for reason in Reason
    }
    timing_map = maps[abi.TIMING_MAP]
    timing = {slot: timing_map.sum(abi.u32_key(slot), abi.TIMING.format) for slot in TIMING_SLOTS.members}
    info = program.info() if program is not None else None

    def total(slot: abi.CounterSlot) -> int:
        return sum(c.packets for c in per_slot[slot])

    cpus = None
    if per_cpu:
        cpus = [
            {reason: per_slot[reason][cpu] for reason in Reason}
            for cpu in range(len(per_slot[0]))
        ]
    buckets = maps.get(abi.BUCKETS_MAP)
    made = total(abi.CounterSlot.BUCKETS_NEW)
    return Stats(
        reasons=reasons,
        events_sent=total(abi.CounterSlot.EVENTS_SENT),
        events_suppressed=total(abi.CounterSlot.EVENTS_SUPPRESSED),
        events_lost=total(abi.CounterSlot.EVENTS_LOST),
        # Only the program makes buckets, and it counts each: none made, none to count (a
        # walk of the whole map spared every status, stats and scrape that limits nothing).
        buckets_used=len(buckets) if buckets is not None and made else 0,
        buckets_size=buckets.info.max_entries if buckets is not None else 0,
        buckets_made=made,
        buckets_failed=total(abi.CounterSlot.BUCKETS_FAILED),
        timing={slot: (int(v[0]), int(v[1])) for slot, v in timing.items()},
        run_time_ns=info.run_time_ns if info else 0,
        run_count=info.run_count if info else 0,
        per_cpu=cpus,
    )


@contextmanager
def run_time_stats(*, required: bool = False) -> Iterator[bool]:
    """Switch the kernel's BPF run-time stats on (``kernel.bpf_stats_enabled``) for the
    ``with`` block; yields whether they are on. Where the kernel refuses, ``required``
    raises its BpfError, else the block runs without them (``Stats.run_count`` stays 0).

    They cost a little per packet, and are off again when the last holder lets go.
    """
    try:
        switch = enable_run_time_stats()
    except BpfError:
        if required:
            raise
        yield False
        return
    with switch:
        yield True


def watch(read: Callable[[], Stats], interval: float
          ) -> Generator[tuple[Stats, dict[Reason, float]], None, None]:
    """``read()`` every ``interval`` seconds, with the rates (packets per second, by
    reason) since the read before, run-time stats on meanwhile where the kernel allows."""
    with run_time_stats():
        earlier = read()
        while True:
            time.sleep(interval)
            current = read()
            yield current, current.rates(earlier)
            earlier = current
