"""Counters: packets and bytes per reason, event accounting, processing time, run time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pingkiller.model.enums import Reason, TimingSlot


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
    # The limiter: sources remembered now, how many fit, how many were remembered since
    # attach (again after being forgotten, too), and how many could not be.
    buckets_used: int = 0
    buckets_size: int = 0
    buckets_made: int = 0
    buckets_failed: int = 0

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
