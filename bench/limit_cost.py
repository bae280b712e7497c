"""1c. What a limited ping costs in the kernel, beside a blocked one, in one run.

BPF_PROG_RUN on CPU 0, timed as section 1 (bench/kernel_cost.py: the thread's CPU time
less the call's fixed cost, every run after a run of the null program, medians of 7
pairs). One object, one rule per family where a rule is asked for, events at their
defaults. Run alone as root: ``python3 bench/limit_cost.py``.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable

from common import BUILD, SRC_V4, SRC_V6, Row, cpu, ping_frame
from kernel_cost import FRAMES, REPEAT, RUNS, XDP_DROP, XDP_PASS, Bench, configure

from pingkiller import abi
from pingkiller.bpf import Object, Program
from pingkiller.datapath import program as datapath
from pingkiller.datapath.rules import RuleTable
from pingkiller.model.enums import DefaultAction, RuleAction
from pingkiller.model.limits import Limit, Rate
from pingkiller.model.policy import Policy

SECTION = "1c limit"
TARGET = 1.3  # a limited ping costs at most this many blocked pings (issue #24)
# Under its rate: a million a second in bursts of a million, its bucket refilled before
# each call (a call passes 5e5 pings, well within); over: an hour's ping, spent at once.
UNDER, OVER = Limit(Rate(1_000_000), 1_000_000), Limit.of("1/h", 1)
SPOOFED = 30_000  # frames from distinct sources for the churn rows
CHURN_BUCKETS = 4096  # a small buckets map: the churn rows evict from the 4097th source on


def _paired(bench: Bench, program: Program, frame: bytes, expect: int,
            before: Callable[[], None]) -> tuple[float, float]:
    """bench.paired, with ``before`` run ahead of every call of ``program``."""
    before()
    bench._cpu_ns(program, frame, expect, REPEAT // 10)  # warm up
    pairs = []
    for _ in range(RUNS):
        null = bench._cpu_ns(bench.null, frame, bench.null_verdict, REPEAT) / REPEAT
        before()
        pairs.append((null, bench._cpu_ns(program, frame, expect, REPEAT) / REPEAT))
    return (statistics.median(value for _, value in pairs),
            statistics.median(value / null for null, value in pairs))


def _refill(obj: Object) -> Callable[[], None]:
    return lambda: obj.maps[abi.BUCKETS_MAP].clear()


def _limit_rule(table: RuleTable, source: str, limit: Limit) -> None:
    table.set([ipaddress.ip_network(source)], RuleAction.LIMIT, limit=limit)


def _per_frame_ns(program: Program, frames: list[bytes]) -> float:
    """Mean ns a call of one run each (repeat 1), the call's own cost included."""
    start = time.thread_time_ns()
    for frame in frames:
        program.test_run(frame)
    return (time.thread_time_ns() - start) / len(frames)


def _spoofed_frames() -> list[bytes]:
    frame = bytearray(ping_frame())
    made = []
    for n in range(SPOOFED):
        struct.pack_into("!I", frame, 14 + 12, 0x0A000000 + n)  # 10.0.0.0/8, one each
        made.append(bytes(frame))
    return made


def measure() -> list[Row]:
    rows: list[Row] = []
    ping, ping6 = FRAMES["v4", "listed"], FRAMES["v6", "listed"]
    with cpu(0), Object.from_file(BUILD / "null.bpf.o") as null_obj:
        null_obj.load()
        bench = Bench(null_obj.programs["null_drop"])
        with datapath.open_object() as obj:
            obj.load()
            table = RuleTable(obj.maps)
            program = obj.programs[abi.PROGRAM_NAME]
            refill = _refill(obj)

            def add(what: str, value: tuple[float, float], blocked: tuple[float, float] | None,
                    note: str = "") -> None:
                if blocked is None:
                    rows.append(Row(SECTION, what, value[0], "ns/pkt", "null", value[1], note=note))
                    return
                ratio = value[1] / blocked[1]
                rows.append(Row(SECTION, what, value[0], "ns/pkt", "blocked", ratio,
                                f"<= {TARGET:g}x blocked", ratio <= TARGET,
                                note=f"{value[1]:.2f}x null" + (f"; {note}" if note else "")))

            table.set([ipaddress.ip_network(SRC_V4), ipaddress.ip_network(SRC_V6)],
                      RuleAction.BLOCK)
            configure(obj, Policy())
            blocked = _paired(bench, program, ping, XDP_DROP, lambda: None)
            blocked6 = _paired(bench, program, ping6, XDP_DROP, lambda: None)
            add("pingkiller v4 blocked, 1 rule (the reference)", blocked, None)
            add("pingkiller v6 blocked, 1 rule (the reference)", blocked6, None)
            table.set([ipaddress.ip_network(SRC_V4)], RuleAction.ALLOW)
            add("pingkiller v4 allowed, 1 rule", _paired(bench, program, ping, XDP_PASS,
                                                         lambda: None), None)
            table.remove([ipaddress.ip_network(SRC_V4), ipaddress.ip_network(SRC_V6)])

            for label, limit, expect, before in (("under its rate", UNDER, XDP_PASS, refill),
                                                 ("over its rate", OVER, XDP_DROP, lambda: None)):
                configure(obj, Policy(DefaultAction.LIMIT, limit=limit))
                refill()
                add(f"pingkiller v4 limited (--limit), {label}",
                    _paired(bench, program, ping, expect, before), blocked,
                    "a pass moves the bucket with a compare-and-swap" if expect == XDP_PASS
                    else "the bucket only read")
            refill()
            add("pingkiller v6 limited (--limit), over its rate",
                _paired(bench, program, ping6, XDP_DROP, lambda: None), blocked6)
            configure(obj, Policy())
            for label, limit, expect, before in (("under its rate", UNDER, XDP_PASS, refill),
                                                 ("over its rate", OVER, XDP_DROP, lambda: None)):
                _limit_rule(table, SRC_V4, limit)
                refill()
                add(f"pingkiller v4 limited by a rule, {label}",
                    _paired(bench, program, ping, expect, before), blocked,
                    "block beats limit: the destination is looked up too")
        rows += _churn(bench)
    rows += _cas_or_lock()
    return rows


def _flood_ns(program: Program, frame: bytes, cpus: list[int]) -> float:
    """ns a packet of ``program`` run on each of ``cpus`` at once (a thread pinned to
    each, RUNS calls of REPEAT): the median over threads and calls of their CPU time."""
    spent: list[float] = []
    start = threading.Barrier(len(cpus))

    def flood(cpu_index: int) -> None:
        os.sched_setaffinity(0, {cpu_index})  # this thread only
        for _ in range(RUNS):
            start.wait()
            began = time.thread_time_ns()
            program.test_run(frame, repeat=REPEAT)
            spent.append((time.thread_time_ns() - began) / REPEAT)

    threads = [threading.Thread(target=flood, args=(index,)) for index in cpus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statistics.median(spent)


def _cas_or_lock() -> list[Row]:
    """One source over its rate (10/s), flooding from 1 and from 2 CPUs at once: its bucket
    as pingkiller keeps it (compare-and-swap in an LRU hash: read only while over the
    rate) against the same bucket under a bpf_spin_lock (a plain hash: taken every ping)."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    rows: list[Row] = []
    ping = FRAMES["v4", "listed"]
    tick = abi.ns_per_tick()
    with Object.from_file(BUILD / "buckets.bpf.o") as obj:
        obj.load()
        obj.maps["bucket_rate"][abi.u32_key(0)] = struct.pack(
            "=QQII", Rate(10).interval_ns, tick, tick, 0)
        figures = {}
        for name in ("bucket_cas", "bucket_lock"):
            program = obj.programs[name]
            program.test_run(ping)  # its bucket, made
            for count in sorted({1, len(cpus)}):
                figures[name, count] = _flood_ns(program, ping, cpus[:count])
        for count in sorted({1, len(cpus)}):
            cas, lock = figures["bucket_cas", count], figures["bucket_lock", count]
            where = f"{count} CPU{'s' if count > 1 else ''} at once"
            rows.append(Row(SECTION, f"bucket by compare-and-swap (LRU hash), over its rate, "
                            f"{where}", cas, "ns/pkt", note="pingkiller's way, alone"))
            rows.append(Row(SECTION, f"bucket under bpf_spin_lock (hash), over its rate, {where}",
                            lock, "ns/pkt", "compare-and-swap", lock / cas,
                            note="the lock taken every ping: its cache line bounces between "
                                 "CPUs" if count > 1 else "the lock taken every ping"))
    return rows


def _churn(bench: Bench) -> list[Row]:
    """A flood from ever-new sources, one run a call (each frame another source), with and
    without --limit-total: what a frame adds over null's call in the same rounds."""
    rows: list[Row] = []
    frames = _spoofed_frames()
    for label, total in (("without a total", None),
                         ("with --limit-total 1000/s", Limit.of("1000/s"))):
        with datapath.open_object() as obj:
            obj.set_max_entries(abi.BUCKETS_MAP, CHURN_BUCKETS)
            obj.load()
            configure(obj, Policy(DefaultAction.LIMIT, limit=OVER, limit_total=total))
            program = obj.programs[abi.PROGRAM_NAME]
            rounds = [(_per_frame_ns(bench.null, frames), _per_frame_ns(program, frames))
                      for _ in range(3)]
            added = statistics.median(pk - null for null, pk in rounds)
            call = statistics.median(null for null, _ in rounds)
            counters = obj.maps[abi.COUNTERS_MAP]
            made = counters.sum(abi.u32_key(abi.CounterSlot.BUCKETS_NEW), abi.COUNTER.format)[0]
            held = len(obj.maps[abi.BUCKETS_MAP])
            rows.append(Row(SECTION, f"pingkiller, {SPOOFED // 1000}k spoofed sources a round, "
                            f"{label}: ns over null", added, "ns/pkt",
                            note=f"one run a call ({call / 1e3:.1f} us a call with null); "
                            f"{made} buckets made in 3 rounds, {held} of {CHURN_BUCKETS} held"))
    return rows


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (BPF)")
    start = time.monotonic()
    for row in measure():
        met = "" if row.met is None else ("met" if row.met else "NOT MET")
        print(f"{row.what:62} {row.value:8.1f} ns {row.ratio or 0:6.2f}x {row.reference:8} "
              f"{row.target:16} {met} {row.note}")
    print(f"{time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
