"""1. Per-packet cost in the kernel: BPF_PROG_RUN ns/packet, each run paired with the null program.

The matrix of issue #14: pingkiller at its defaults (events on drops, the default rate) and
with events off; 1, 100k and 1M rules; a blocked, an unlisted and an allowed ping; IPv4 and
IPv6. Every run of a program is preceded by a run of the null program on the same CPU, and
a ratio is the median of those per-pair ratios, so a change of machine load between cells
hits a cell and its reference alike. Section 1b (issue #15) runs the tc entry point
pingkill_tc_in against a null tc program beside the XDP one against null XDP. Run alone as
root: ``python3 bench/kernel_cost.py`` (section 1b: ``--tc``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from common import (
    BUILD,
    DST_V4,
    DST_V6,
    SRC_V4,
    SRC_V6,
    Row,
    bpffs_dir,
    cpu,
    ping6_frame,
    ping_frame,
    run,
    tcp_frame,
)

from pingkiller import abi
from pingkiller.bpf import Object, Program
from pingkiller.datapath import program as datapath
from pingkiller.datapath.rules import RuleTable
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.enums import EventsMode, RuleAction
from pingkiller.model.policy import Policy
from pingkiller.store.records import read_flags, write_settings

SECTION = "1 kernel"
REPEAT = 500_000
RUNS = 7
RULE_COUNTS = (1, 100_000, 1_000_000)
PREFIX_RULES = 10_000
CASES = ("blocked", "unlisted", "allowed")
MODES = ("defaults", "events off")
# Targets of issue #14 (ratios to null), by case; the blocked one for these rule counts only.
BLOCKED_TARGET, BLOCKED_TARGET_RULES = 2.5, (1, 100_000)
UNLISTED_TARGET = 3.0

FRAMES = {
    ("v4", "listed"): ping_frame(SRC_V4, DST_V4),
    ("v4", "unlisted"): ping_frame("198.18.5.5", "198.18.5.6"),
    ("v6", "listed"): ping6_frame(SRC_V6, DST_V6),
    ("v6", "unlisted"): ping6_frame("fd00:706b:fffe::5", "fd00:706b:fffe::6"),
}
XDP_DROP, XDP_PASS = 1, 2


def rules_label(count: int) -> str:
    return {1: "1 rule", 100_000: "100k rules", 1_000_000: "1M rules"}.get(count, f"{count} rules")


class Bench:
    """Times programs with BPF_PROG_RUN, each run right after a run of the null program.

    The kernel's own duration is a whole number of ns per packet, too coarse for a ~10 ns
    null program (up to 10% off); the thread's CPU time of the call, less the call's fixed
    cost (measured with repeat=1), is not. CPU time leaves out time the thread was
    preempted, as the kernel's timer does; it includes interrupts, as that timer does too.
    """

    def __init__(self, null: Program, null_verdict: int = XDP_DROP) -> None:
        self.null = null
        self.null_verdict = null_verdict  # what the null program returns
        self.fixed_ns = 0.0
        self.fixed_ns = statistics.median(
            self._cpu_ns(null, FRAMES["v4", "listed"], null_verdict, 1) for _ in range(9))

    def _cpu_ns(self, program: Program, frame: bytes, expect: int, repeat: int) -> float:
        start = time.thread_time_ns()
        result = program.test_run(frame, repeat=repeat)
        spent = time.thread_time_ns() - start
        if result.retval != expect & 0xFFFFFFFF:  # a __u32: a tc program's TCX_NEXT is -1
            raise RuntimeError(f"{program.name} returned {result.retval}, expected {expect}")
        return spent - self.fixed_ns

    def ns_per_packet(self, program: Program, frame: bytes, expect: int) -> float:
        return self._cpu_ns(program, frame, expect, REPEAT) / REPEAT

    def pair(self, program: Program, frame: bytes, expect: int,
             repeat: int = REPEAT) -> tuple[float, float]:
        """One pair: (null ns/packet, ``program``'s ns/packet), the null program first."""
        null = self._cpu_ns(self.null, frame, self.null_verdict, repeat) / repeat
        return null, self._cpu_ns(program, frame, expect, repeat) / repeat

    def paired(self, program: Program, frame: bytes, expect: int,
               repeat: int = REPEAT) -> tuple[float, float, float]:
        """(median ns/packet, median ratio to null of RUNS pairs, median null ns)."""
        self._cpu_ns(program, frame, expect, repeat // 10)  # warm up
        nulls, values = zip(*(self.pair(program, frame, expect, repeat) for _ in range(RUNS)),
                            strict=True)
        ratio = statistics.median(v / n for v, n in zip(values, nulls, strict=True))
        return statistics.median(values), ratio, statistics.median(nulls)


def filler_v4(count: int) -> list[bytes]:
    """``count`` /32 keys from 100.64.0.0/10 (none of them a test address)."""
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    blob = struct.pack(f">{count}I", *range(base, base + count))
    return [blob[i:i + 4] for i in range(0, len(blob), 4)]


def filler_v6(count: int) -> list[bytes]:
    """``count`` /128 keys from fd00:0:1::/64 (none of them a test address)."""
    prefix = ipaddress.IPv6Address("fd00:0:1::").packed[:8]
    return [prefix + i.to_bytes(8, "big") for i in range(1, count + 1)]


def configure(obj: Object, policy: Policy) -> None:
    """``policy``'s config, keeping the flags the rule table set (which maps hold rules)."""
    policy_flags = abi.ConfigFlag.ALL_PROTOCOLS | abi.ConfigFlag.TIMING
    write_settings(obj.maps, abi.Config.of(policy, read_flags(obj.maps) & ~policy_flags))


def policy_of(mode: str) -> Policy:
    return Policy() if mode == "defaults" else replace(Policy(), events=EventsMode.OFF)


@contextmanager
def drained(ring_pin: str) -> Iterator[None]:
    """A C consumer (ring_buffer__poll) empties the ring while the block runs."""
    consumer = subprocess.Popen(
        [str(BUILD / "rbconsume"), ring_pin, "0", "600000"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert consumer.stdout is not None
        consumer.stdout.readline()  # "ready"
        yield
    finally:
        consumer.terminate()
        consumer.wait()


@contextmanager
def xdp_filter_program(blocked: str) -> Iterator[Program]:
    """xdp-filter (xdp-tools) on a sandbox veth, denying ``blocked`` as source."""
    with Sandbox(tag=f"kc{os.getpid() % 10000}") as box:
        peer = box.add_peer()
        env = dict(os.environ, LIBXDP_SKIP_DISPATCHER="1")
        run(["xdp-filter", "load", "-m", "skb", "-f", "ipv4", peer.host_ifname], env=env)
        try:
            run(["xdp-filter", "ip", blocked, "-m", "src"])
            out = run(["ip", "-j", "link", "show", peer.host_ifname]).stdout
            prog_id = json.loads(out)[0]["xdp"]["prog"]["id"]
            program = Program.from_id(prog_id)
            try:
                yield program
            finally:
                program.close()
        finally:
            subprocess.run(["xdp-filter", "unload", peer.host_ifname], capture_output=True)


def matrix(bench: Bench, rule_count: int) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(mode, family, case) -> (ns, ratio) for one object holding ``rule_count`` rules of
    each family: the test source's rule (block, or allow for the allowed case) and fillers."""
    results: dict[tuple[str, str, str], tuple[float, float]] = {}
    test_keys = {abi.RULES_V4_MAP: [ipaddress.IPv4Address(SRC_V4).packed],
                 abi.RULES_V6_MAP: [ipaddress.IPv6Address(SRC_V6).packed]}
    with datapath.open_object() as obj:
        obj.load()
        table = RuleTable(obj.maps)
        table.set_keys({abi.RULES_V4_MAP: filler_v4(rule_count - 1),
                        abi.RULES_V6_MAP: filler_v6(rule_count - 1)}, RuleAction.BLOCK)
        program = obj.programs[abi.PROGRAM_NAME]
        for mode in MODES:
            configure(obj, policy_of(mode))
            for action, cases in ((RuleAction.BLOCK, ("blocked", "unlisted")),
                                  (RuleAction.ALLOW, ("allowed",))):
                table.set_keys(test_keys, action)
                for family in ("v4", "v6"):
                    for case in cases:
                        frame = FRAMES[family, "unlisted" if case == "unlisted" else "listed"]
                        expect = XDP_DROP if case == "blocked" else XDP_PASS
                        ns, ratio, _ = bench.paired(program, frame, expect)
                        results[mode, family, case] = (ns, ratio)
    return results


def target_of(mode: str, case: str, rule_count: int) -> float | None:
    if mode != "defaults":
        return None
    if case == "blocked" and rule_count in BLOCKED_TARGET_RULES:
        return BLOCKED_TARGET
    if case == "unlisted":
        return UNLISTED_TARGET
    return None


def measure(have_xdp_filter: bool) -> list[Row]:
    ping = FRAMES["v4", "listed"]
    rows: list[Row] = []

    def add(what: str, value: tuple[float, float, float] | tuple[float, float],
            target: float | None = None, note: str = "") -> None:
        ns, ratio = value[0], value[1]
        row = Row(SECTION, what, ns, "ns/pkt", "null", ratio, note=note)
        if target is not None:
            row.target = f"<= {target:g}x null"
            row.met = ratio <= target
        rows.append(row)

    with cpu(0), bpffs_dir("kc") as pins, Object.from_file(BUILD / "null.bpf.o") as null_obj:
        null_obj.load()
        bench = Bench(null_obj.programs["null_drop"])
        first = bench.paired(bench.null, ping, XDP_DROP)
        add("null XDP_DROP (the reference)", first,
            note=f"call overhead {bench.fixed_ns / 1e3:.0f} us subtracted")
        add("null + per-CPU drop counter", bench.paired(null_obj.programs["null_drop_count"],
                                                         ping, XDP_DROP))
        null_obj.maps["floor_sources"][ipaddress.IPv4Address(SRC_V4).packed] = bytes(8)
        add("floor: Ethernet+IPv4 check, 1 hash lookup, counter", bench.paired(
            null_obj.programs["floor_lookup"], ping, XDP_DROP))
        if have_xdp_filter:
            with xdp_filter_program(SRC_V4) as xdpf:
                add("xdp-filter, 1 deny rule", bench.paired(xdpf, ping, XDP_DROP))
        with Object.from_file(BUILD / "blog.bpf.o") as blog:
            blog.load()
            blog.maps["rb"].pin(pins / "blog_rb")
            with drained(str(pins / "blog_rb")):
                # ~1-3 us per packet: 1e5 repetitions keep the run short
                add("blog-style, forced wakeup per ping", bench.paired(
                    blog.programs["blog_ping"], ping, XDP_DROP, REPEAT // 10))

        for rule_count in RULE_COUNTS:
            try:
                cells = matrix(bench, rule_count)
            except Exception as err:  # e.g. the table cannot hold them: the rest still runs
                rows.append(Row(SECTION, f"pingkiller, {rules_label(rule_count)}", 0.0, "",
                                note=f"not measured: {err}"))
                continue
            for mode in MODES:
                for family in ("v4", "v6"):
                    for case in CASES:
                        add(f"pingkiller {family} {case}, {rules_label(rule_count)}, {mode}",
                            cells[mode, family, case], target_of(mode, case, rule_count))

        # Context: a non-ping, events unlimited (drained), a prefix rule.
        with datapath.open_object() as obj:
            obj.load()
            table = RuleTable(obj.maps)
            table.set(
                [ipaddress.ip_network(SRC_V4), ipaddress.ip_network(SRC_V6)], RuleAction.BLOCK)
            program = obj.programs[abi.PROGRAM_NAME]
            configure(obj, Policy())
            add("pingkiller tcp segment, 1 rule, defaults",
                bench.paired(program, tcp_frame(), XDP_PASS))
            obj.maps[abi.EVENTS_MAP].pin(pins / "events")
            configure(obj, replace(Policy(), events=EventsMode.ALL, event_rate=0))
            with drained(str(pins / "events")):
                add("pingkiller v4 blocked, 1 rule, every packet an event (unlimited, drained)",
                    bench.paired(program, ping, XDP_DROP))
        with datapath.open_object() as obj:
            obj.load()
            table = RuleTable(obj.maps)
            table.set_keys({abi.PREFIXES_V4_MAP: prefix_keys("198.18.7.9")}, RuleAction.BLOCK)
            configure(obj, Policy())
            add(f"pingkiller v4 blocked by 1 of {PREFIX_RULES // 1000}k prefixes, defaults",
                bench.paired(obj.programs[abi.PROGRAM_NAME],
                             ping_frame("198.18.7.9", "198.18.5.6"), XDP_DROP))
    return rows


TC_SECTION = "1b tc"
# Section 1b's cells (issue #15): (label, frame, whether the source's block rule drops it).
TC_CELLS = (
    ("v4 blocked", FRAMES["v4", "listed"], True),
    ("v4 unlisted", FRAMES["v4", "unlisted"], False),
    ("v6 blocked", FRAMES["v6", "listed"], True),
    ("v6 unlisted", FRAMES["v6", "unlisted"], False),
    ("tcp segment", tcp_frame(), False),
)


def side_by_side(xdp: Bench, xdp_program: Program, tc: Bench, tc_program: Program,
                 frame: bytes, drops: bool) -> tuple[tuple[float, float], tuple[float, float], float]:
    """((XDP ns, XDP / null XDP), (tc ns, tc / null tc), tc ns / XDP ns): RUNS rounds of
    null XDP, XDP, null tc, tc on one frame, medians of the per-round figures."""
    xdp_expect = XDP_DROP if drops else XDP_PASS
    tc_expect = abi.TC_ACT_SHOT if drops else abi.TCX_NEXT
    xdp._cpu_ns(xdp_program, frame, xdp_expect, REPEAT // 10)  # warm up
    tc._cpu_ns(tc_program, frame, tc_expect, REPEAT // 10)
    rounds = [(xdp.pair(xdp_program, frame, xdp_expect), tc.pair(tc_program, frame, tc_expect))
              for _ in range(RUNS)]

    def median(figure: Callable[[tuple[float, float], tuple[float, float]], float]) -> float:
        return statistics.median(figure(x, t) for x, t in rounds)

    return ((median(lambda x, t: x[1]), median(lambda x, t: x[1] / x[0])),
            (median(lambda x, t: t[1]), median(lambda x, t: t[1] / t[0])),
            median(lambda x, t: t[1] / x[1]))


def measure_tc() -> list[Row]:
    """Section 1b: pingkill_tc_in against a null tc program, beside the XDP entry point
    against null XDP, on the same frames in the same rounds (1 rule per family, defaults)."""
    rows: list[Row] = []
    ping = FRAMES["v4", "listed"]
    with cpu(0), Object.from_file(BUILD / "null.bpf.o") as null_obj:
        null_obj.load()
        xdp = Bench(null_obj.programs["null_drop"])
        tc = Bench(null_obj.programs["null_tc"], abi.TCX_NEXT)
        pairs = [(xdp.ns_per_packet(xdp.null, ping, XDP_DROP),
                  tc.ns_per_packet(tc.null, ping, abi.TCX_NEXT)) for _ in range(RUNS)]
        rows.append(Row(
            TC_SECTION, "null tc (TCX_NEXT, the tc reference)",
            statistics.median(t for _, t in pairs), "ns/pkt", "null XDP",
            statistics.median(t / x for x, t in pairs),
            note=f"call overhead {tc.fixed_ns / 1e3:.0f} us subtracted "
                 f"(XDP: {xdp.fixed_ns / 1e3:.0f} us)"))
        with datapath.open_object() as obj:
            obj.load()
            RuleTable(obj.maps).set(
                [ipaddress.ip_network(SRC_V4), ipaddress.ip_network(SRC_V6)], RuleAction.BLOCK)
            configure(obj, Policy())
            xdp_program = obj.programs[abi.PROGRAM_NAME]
            tc_program = obj.programs[abi.TC_IN_PROGRAM_NAME]
            for label, frame, drops in TC_CELLS:
                (xdp_ns, xdp_ratio), (tc_ns, tc_ratio), tc_to_xdp = side_by_side(
                    xdp, xdp_program, tc, tc_program, frame, drops)
                what = f"{label}, 1 rule, defaults"
                rows.append(Row(TC_SECTION, f"pingkiller XDP {what}", xdp_ns, "ns/pkt",
                                "null XDP", xdp_ratio))
                rows.append(Row(TC_SECTION, f"pingkill_tc_in {what}", tc_ns, "ns/pkt", "null tc",
                                tc_ratio, note=f"XDP's ratio {xdp_ratio:.2f}x null XDP (row "
                                f"above); tc / XDP {tc_to_xdp:.2f}x in ns"))
    return rows


def prefix_keys(blocked: str) -> list[bytes]:
    """PREFIX_RULES prefixes of lengths /16../24 from 10.0.0.0/8, one /24 covering ``blocked``."""
    keys = []
    for i in range(PREFIX_RULES - 1):
        length = 16 + i % 9
        network = int(ipaddress.IPv4Address("10.0.0.0")) + (i << 12)
        network &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        keys.append(abi.prefix_key(length, struct.pack(">I", network)))
    target = ipaddress.IPv4Network(f"{blocked}/24", strict=False)
    keys.append(abi.prefix_key(24, target.network_address.packed))
    return list(dict.fromkeys(keys))


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (BPF)")
    start = time.monotonic()
    rows = measure_tc() if sys.argv[1:] == ["--tc"] else measure(shutil.which("xdp-filter") is not None)
    for row in rows:
        met = "" if row.met is None else ("met" if row.met else "NOT MET")
        print(f"{row.what:75} {row.value:8.1f} ns {row.ratio or 0:6.2f}x null "
              f"{row.target:14} {met} {row.note}")
    print(f"{time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
