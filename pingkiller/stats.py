"""Counters: packets and bytes per reason, event accounting, processing time, run time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from pingkiller import abi
from pingkiller.abi import Reason, TimingSlot
from pingkiller.bpf import BpfError, Map, Program, enable_run_time_stats

# The verdicts whose processing time is measured, by their word in output and JSON.
TIMED_VERDICTS = {TimingSlot.DROP: "drop", TimingSlot.PASS: "pass"}


@dataclass(frozen=True)
class Counter:
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Stats:
    """A snapshot of an attachment's counters (sums over CPUs unless per_cpu is asked for)."""

    reasons: dict[Reason, Counter]
    events_sent: int
    events_suppressed: int
    events_lost: int
    timing: dict[TimingSlot, tuple[int, int]]  # verdict -> (count, total ns)
    run_time_ns: int  # the kernel's BPF stats; 0 unless enabled
    run_count: int
    taken_at: float = field(default_factory=time.monotonic)
    per_cpu: list[dict[Reason, Counter]] | None = None

    @property
    def dropped(self) -> int:
        return sum(c.packets for r, c in self.reasons.items() if r.dropped)

    @property
    def passed(self) -> int:
        return sum(c.packets for r, c in self.reasons.items() if not r.dropped)

    @property
    def total(self) -> int:
        return self.dropped + self.passed

    def average_ns(self, verdict: TimingSlot) -> float | None:
        """Mean processing time of dropped (DROP) or passed (PASS) packets, if timed."""
        count, total_ns = self.timing.get(verdict, (0, 0))
        return total_ns / count if count else None

    @property
    def average_run_ns(self) -> float | None:
        """The kernel's mean run time of the program (needs BPF stats on)."""
        return self.run_time_ns / self.run_count if self.run_count else None

    def rates(self, earlier: Stats) -> dict[Reason, float]:
        """Packets per second per reason since ``earlier``."""
        elapsed = self.taken_at - earlier.taken_at
        if elapsed <= 0:
            return {reason: 0.0 for reason in self.reasons}
        return {
            reason: (counter.packets - earlier.reasons[reason].packets) / elapsed
            for reason, counter in self.reasons.items()
        }

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "packets": {r.label: c.packets for r, c in self.reasons.items()},
            "bytes": {r.label: c.bytes for r, c in self.reasons.items()},
            "dropped": self.dropped,
            "passed": self.passed,
            "events": {
                "sent": self.events_sent,
                "suppressed": self.events_suppressed,
                "lost": self.events_lost,
            },
            "average_ns": {word: self.average_ns(slot) for slot, word in TIMED_VERDICTS.items()},
            "kernel_run_time": {
                "run_time_ns": self.run_time_ns,
                "run_count": self.run_count,
                "average_ns": self.average_run_ns,
            },
        }
        if self.per_cpu is not None:
            data["per_cpu"] = [
                {r.label: {"packets": c.packets, "bytes": c.bytes} for r, c in cpu.items()}
                for cpu in self.per_cpu
            ]
        return data


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
    timing = {slot: timing_map.sum(abi.u32_key(slot), abi.TIMING.format) for slot in TIMED_VERDICTS}
    info = program.info() if program is not None else None

    def events(slot: abi.CounterSlot) -> int:
        return sum(c.packets for c in per_slot[slot])

    cpus = None
    if per_cpu:
        cpus = [
            {reason: per_slot[reason][cpu] for reason in Reason}
            for cpu in range(len(per_slot[0]))
        ]
    return Stats(
        reasons=reasons,
        events_sent=events(abi.CounterSlot.EVENTS_SENT),
        events_suppressed=events(abi.CounterSlot.EVENTS_SUPPRESSED),
        events_lost=events(abi.CounterSlot.EVENTS_LOST),
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
