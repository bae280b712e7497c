"""1. Per-packet cost in the kernel: BPF_PROG_RUN ns/packet, medians of repeated runs."""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from common import BUILD, SRC_V4, Row, bpffs_dir, cpu, median_of, ping_frame, run, tcp_frame

from pingkiller import abi, datapath
from pingkiller.abi import DefaultAction, EventsMode, RuleAction
from pingkiller.bpf import Object, Program
from pingkiller.sandbox import Sandbox

REPEAT = 1_000_000
RUNS = 5
EXACT_RULES = 1_000_000
PREFIX_RULES = 10_000
BLOCK = abi.encode_rule(RuleAction.BLOCK)


def ns_per_packet(program: Program, frame: bytes, expect: int, repeat: int = REPEAT) -> float:
    def once() -> float:
        result = program.test_run(frame, repeat=repeat)
        if result.retval != expect:
            raise RuntimeError(f"{program.name} returned {result.retval}, expected {expect}")
        return float(result.duration_ns)

    program.test_run(frame, repeat=repeat // 10)  # warm up
    return median_of(RUNS, once)


def fill_exact(obj: Object, blocked: str) -> None:
    """EXACT_RULES /32 block rules, one of them ``blocked``; the rest from 100.64.0.0/10."""
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    keys = struct.pack(f">{EXACT_RULES - 1}I", *range(base, base + EXACT_RULES - 1))
    keys += ipaddress.IPv4Address(blocked).packed
    obj.maps[abi.RULES_V4_MAP].update_batch(keys, BLOCK * EXACT_RULES)


def fill_prefixes(obj: Object, blocked: str) -> None:
    """PREFIX_RULES prefixes of lengths /16../24, one /24 covering ``blocked``."""
    table = obj.maps[abi.PREFIXES_V4_MAP]
    target = ipaddress.IPv4Network(f"{blocked}/24", strict=False)
    for i in range(PREFIX_RULES - 1):
        length = 16 + i % 9
        network = int(ipaddress.IPv4Address("10.0.0.0")) + (i << 12)
        network &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        table.put(abi.prefix_key(length, struct.pack(">I", network)), BLOCK)
    table.put(abi.prefix_key(24, target.network_address.packed), BLOCK)


def configure(obj: Object, events: EventsMode, rate: int, flags: abi.ConfigFlag) -> None:
    config = abi.Config(DefaultAction.PASS, abi.IcmpSet.ECHO, events, rate, flags)
    obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = config.encode()


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


def measure(have_xdp_filter: bool) -> list[Row]:
    rows: list[Row] = []
    ping, tcp = ping_frame(), tcp_frame()
    unlisted = ping_frame(src="198.18.5.5", dst="198.18.5.6")
    prefix_ping = ping_frame(src="198.18.7.9", dst="198.18.5.6")
    results: dict[str, float] = {}
    with cpu(0), bpffs_dir("kc") as pins:
        with Object.from_file(BUILD / "null.bpf.o") as null:
            null.load()
            results["null"] = ns_per_packet(null.programs["null_drop"], ping, 1)
        with Object.from_file(BUILD / "blog.bpf.o") as blog:
            blog.load()
            blog.maps["rb"].pin(pins / "blog_rb")
            with drained(str(pins / "blog_rb")):
                # ~3 us per packet: 1e5 repetitions keep the run short
                results["blog"] = ns_per_packet(blog.programs["blog_ping"], ping, 1, REPEAT // 10)
        if have_xdp_filter:
            with xdp_filter_program(SRC_V4) as xdpf:
                results["xdp-filter"] = ns_per_packet(xdpf, ping, 1)

        with datapath.open_object() as exact:
            exact.load()
            fill_exact(exact, SRC_V4)
            exact.maps[abi.EVENTS_MAP].pin(pins / "exact_events")
            program = exact.programs[abi.PROGRAM_NAME]
            flags = abi.ConfigFlag(0)
            configure(exact, EventsMode.OFF, 0, flags)
            results["block exact, events off"] = ns_per_packet(program, ping, 1)
            results["unlisted ping, default pass, events off"] = ns_per_packet(program, unlisted, 2)
            results["tcp segment, events off"] = ns_per_packet(program, tcp, 2)
            configure(exact, EventsMode.DROPS, abi.DEFAULT_EVENT_RATE, flags)
            results["block exact, events on (rate 1000/s)"] = ns_per_packet(program, ping, 1)
            configure(exact, EventsMode.ALL, 0, flags)
            with drained(str(pins / "exact_events")):
                results["block exact, events on (unlimited, drained)"] = ns_per_packet(program, ping, 1)
                results["unlisted ping, events on (unlimited, drained)"] = ns_per_packet(program, unlisted, 2)
                results["tcp segment, events on (unlimited, drained)"] = ns_per_packet(program, tcp, 2)

        with datapath.open_object() as prefixes:
            prefixes.load()
            fill_prefixes(prefixes, "198.18.7.9")
            program = prefixes.programs[abi.PROGRAM_NAME]
            flags = abi.ConfigFlag.PREFIXES_V4
            configure(prefixes, EventsMode.OFF, 0, flags)
            results["block prefix (10k), events off"] = ns_per_packet(program, prefix_ping, 1)
            configure(prefixes, EventsMode.DROPS, abi.DEFAULT_EVENT_RATE, flags)
            results["block prefix (10k), events on (rate 1000/s)"] = ns_per_packet(
                program, prefix_ping, 1
            )

    null_ns = results["null"]
    xdpf_ns = results.get("xdp-filter")
    rows.append(Row("1 kernel", "null XDP_DROP (the limit)", null_ns, "ns/pkt", "null", 1.0))
    if xdpf_ns is not None:
        rows.append(Row("1 kernel", "xdp-filter, 1 deny rule", xdpf_ns, "ns/pkt", "null",
                        xdpf_ns / null_ns))
    rows.append(Row("1 kernel", "blog-style, forced wakeup per ping", results["blog"], "ns/pkt",
                    "null", results["blog"] / null_ns))
    for name, value in results.items():
        if name in ("null", "xdp-filter", "blog"):
            continue
        row = Row("1 kernel", f"pingkiller: {name}", value, "ns/pkt", "null", value / null_ns)
        if name.startswith("block") and "events off" in name:
            ok_null = value <= 3 * null_ns
            ok_xdpf = xdpf_ns is None or value <= xdpf_ns
            row.target = "<= 3x null, <= xdp-filter"
            row.met = ok_null and ok_xdpf
            if xdpf_ns is not None:
                row.note = f"{value / xdpf_ns:.2f}x xdp-filter"
        rows.append(row)
    return rows
