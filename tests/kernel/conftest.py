"""Kernel-tier fixtures: the real XDP program, loaded once, reset before every test.

``dp`` is a :class:`Datapath`: it writes config and rules straight through the ABI, runs
frames with BPF_PROG_RUN and reports what one run changed (return code, counter deltas,
ring-buffer events), so each test can check all three.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fuzz
import pytest

from pingkiller import abi, datapath
from pingkiller import bpf as bpflib
from pingkiller.events import Event, decode
from pingkiller.rules import PREFIX_TRIES, RULE_MAPS

STATE_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, "event_budget")

# What every test starts from: pings pass, every packet makes an event, no rate limit.
BASE_CONFIG = abi.Config(events=abi.EventsMode.ALL, event_rate=0)


@dataclass(frozen=True)
class Outcome:
    """What one BPF_PROG_RUN did."""

    retval: int
    counters: dict[int, tuple[int, int]]  # slot -> (packets, bytes) added, non-zero only
    events: list[Event]
    started_ns: int
    ended_ns: int

    @property
    def reasons(self) -> dict[abi.Reason, tuple[int, int]]:
        return {abi.Reason(s): v for s, v in self.counters.items() if s < abi.REASON_COUNT}

    def verify(self, frame: Any, reason: abi.Reason, *, event: bool = True) -> None:
        """Check return code, reason counter (packets and bytes) and the event against
        ``frame`` (a frames.Frame: its bytes and what the parser should learn)."""
        expected_retval = bpflib.XDP_DROP if reason.dropped else bpflib.XDP_PASS
        assert self.retval == expected_retval, (
            f"retval {self.retval}, expected {expected_retval} for {reason.name}; "
            f"counters {self.reasons}"
        )
        expected = {int(reason): (1, len(frame.data))}
        if event:
            expected[abi.CounterSlot.EVENTS_SENT] = (1, 0)
        assert self.counters == expected
        if not event:
            assert self.events == []
            return
        assert len(self.events) == 1, self.events
        ev = self.events[0]
        parsed = frame.parsed
        icmp = parsed.icmp
        assert ev.verdict_code == expected_retval
        assert ev.reason == reason
        assert ev.length == len(frame.data)
        assert ev.family == parsed.family
        assert ev.protocol == parsed.protocol
        assert (ev.src_bytes, ev.dst_bytes) == (frame.src, frame.dst)
        assert (ev.icmp_type, ev.icmp_code, ev.icmp_id, ev.icmp_seq) == (
            (icmp.type, icmp.code, icmp.id, icmp.seq) if icmp else (0, 0, 0, 0)
        )
        assert ev.ifindex == LOOPBACK_IFINDEX  # BPF_PROG_RUN's default receive queue: lo
        assert self.started_ns <= ev.timestamp_ns <= self.ended_ns


LOOPBACK_IFINDEX = socket.if_nametoindex("lo")


class Datapath:
    """The loaded program with helpers to configure, run and observe it."""

    def __init__(self, obj: bpflib.Object) -> None:
        self.obj = obj
        self.program = obj.programs[abi.PROGRAM_NAME]
        self.ring = bpflib.RingBuffer(obj.maps[abi.EVENTS_MAP])

    def configure(self, **fields: Any) -> abi.Config:
        """Write BASE_CONFIG with ``fields`` replaced to the settings map. Without
        ``flags``, the lookup flag of every rule map that holds rules is set (as
        pingkiller.rules keeps them); with ``flags``, exactly those."""
        config = replace(BASE_CONFIG, **fields)
        if "flags" not in fields:
            for name, flag in fuzz.LOOKUP_FLAG_OF.items():
                if not self.obj.maps[name].is_empty():
                    config = replace(config, flags=config.flags | flag)
        self.obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = config.encode()
        return config

    def rule(self, network: str, action: abi.RuleAction) -> None:
        """Add one rule straight through the ABI, and switch its map's lookup on."""
        net = ipaddress.ip_network(network)
        fuzz.put_rule(self.obj.maps, net, action)
        settings = self.obj.maps[abi.SETTINGS_MAP]
        config = abi.Config.decode(settings[abi.u32_key(0)])
        flag = fuzz.LOOKUP_FLAG_OF[abi.rule_map_name(net)]
        settings[abi.u32_key(0)] = replace(config, flags=config.flags | flag).encode()

    def hits(self, network: str) -> int:
        net = ipaddress.ip_network(network)
        return abi.decode_rule(self.obj.maps[abi.rule_map_name(net)][abi.rule_key(net)])[1]

    def counter(self, slot: int) -> tuple[int, int]:
        packets, nbytes = self.obj.maps[abi.COUNTERS_MAP].sum(abi.u32_key(slot), abi.COUNTER.format)
        return packets, nbytes

    def counters(self) -> list[tuple[int, int]]:
        return [self.counter(slot) for slot in range(abi.COUNTER_COUNT)]

    def timing(self, slot: abi.TimingSlot) -> tuple[int, int]:
        count, total = self.obj.maps[abi.TIMING_MAP].sum(abi.u32_key(slot), abi.TIMING.format)
        return count, total

    def drain(self) -> list[Event]:
        return decode(self.ring.consume())

    def run(self, frame: Any, *, repeat: int = 1) -> Outcome:
        """Run ``frame`` (bytes or a frames.Frame) and report what changed."""
        data = frame if isinstance(frame, bytes | bytearray) else frame.data
        before = self.counters()
        started = time.monotonic_ns()
        result = self.program.test_run(bytes(data), repeat=repeat)
        ended = time.monotonic_ns()
        after = self.counters()
        deltas = {
            slot: (a[0] - b[0], a[1] - b[1])
            for slot, (b, a) in enumerate(zip(before, after, strict=True))
            if a != b
        }
        return Outcome(result.retval, deltas, self.drain(), started, ended)

    def reset(self) -> None:
        """Back to BASE_CONFIG, no rules, zeroed counters, timing and budget, empty ring."""
        for name in (*RULE_MAPS, *PREFIX_TRIES.values(), *STATE_MAPS):
            self.obj.maps[name].clear()
        self.configure()
        self.drain()


@pytest.fixture(scope="session")
def loaded_object() -> Iterator[bpflib.Object]:
    """The embedded pingkiller object, loaded once for the session."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_BPF, CAP_NET_ADMIN): run as root")
    with datapath.load(BASE_CONFIG) as obj:
        yield obj


@pytest.fixture(scope="session")
def _datapath(loaded_object: bpflib.Object) -> Iterator[Datapath]:
    harness = Datapath(loaded_object)
    try:
        yield harness
    finally:
        harness.ring.close()


@pytest.fixture
def dp(_datapath: Datapath) -> Datapath:
    """The loaded program, reset: BASE_CONFIG, no rules, zero counters, empty ring."""
    _datapath.reset()
    return _datapath


@pytest.fixture
def one_cpu() -> Iterator[int]:
    """Pin this thread to one CPU while the test runs (per-CPU state, e.g. the rate limit)."""
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.fixture
def bpffs_dir() -> Iterator[Path]:
    """A unique directory on bpffs, removed afterwards with whatever was pinned in it."""
    path = tempfile.mkdtemp(prefix="pktest-", dir="/sys/fs/bpf")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def path() -> Iterator[fuzz.DataPath]:
    """The real program with the oracle's harness (tests/fuzz.py), loaded once per module;
    every example resets what it uses."""
    with fuzz.DataPath() as loaded:
        yield loaded
