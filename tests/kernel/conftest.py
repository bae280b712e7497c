"""Kernel-tier fixtures: the real object, loaded once, reset before every test.

``dp`` is a :class:`Datapath`: it writes config and rules straight through the ABI, runs
frames with BPF_PROG_RUN and reports what one run changed (return code, counter deltas,
ring-buffer events), so each test can check all three.

Both ``dp`` and ``path`` run frames through the program of ``entry``: XDP, unless a module
parametrises it over every entry point (XDP and both tc programs), indirectly::

    pytestmark = pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fuzz
import pytest

from pingkiller import abi
from pingkiller import bpf as bpflib
from pingkiller.datapath import program as datapath
from pingkiller.datapath.events import decode
from pingkiller.datapath.rules import LOOKUP_FLAG_OF, PREFIX_TRIES, RULE_MAPS
from pingkiller.demo.sandbox import Peer, Sandbox
from pingkiller.model import enums
from pingkiller.model.events import Event

STATE_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, "event_budget", abi.LIMITS_MAP, abi.BUCKETS_MAP,
              abi.RATE_TOTAL_MAP)

# What every test starts from: pings pass, every packet makes an event, no rate limit.
BASE_CONFIG = abi.Config(events=enums.EventsMode.ALL, event_rate=0)


@dataclass(frozen=True)
class Outcome:
    """What one BPF_PROG_RUN did."""

    retval: int  # signed: a tc program's TCX_NEXT is -1
    counters: dict[int, tuple[int, int]]  # slot -> (packets, bytes) added, non-zero only
    events: list[Event]
    started_ns: int
    ended_ns: int
    entry: fuzz.Entry = fuzz.XDP

    @property
    def dropped(self) -> bool:
        """The program returned its drop code (XDP_DROP, or TC_ACT_SHOT for tc)."""
        return self.retval == self.entry.retval(bpflib.XDP_DROP)

    @property
    def reasons(self) -> dict[enums.Reason, tuple[int, int]]:
        return {enums.Reason(s): v for s, v in self.counters.items() if s < abi.REASON_COUNT}

    def verify(self, frame: Any, reason: enums.Reason, *, event: bool = True) -> None:
        """Check return code, reason counter (packets and bytes) and the event against
        ``frame`` (a frames.Frame: its bytes and what the parser should learn)."""
        verdict = bpflib.XDP_DROP if reason.dropped else bpflib.XDP_PASS
        expected_retval = self.entry.retval(verdict)
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
        assert ev.verdict_code == verdict  # XDP's codes, whatever the hook
        assert (ev.hook, ev.direction) == (self.entry.hook, self.entry.direction)
        assert ev.reason == reason
        assert ev.length == len(frame.data)
        assert ev.family == parsed.family
        assert ev.protocol == parsed.protocol
        assert (ev.src_bytes, ev.dst_bytes) == (frame.src, frame.dst)
        assert (ev.icmp_type, ev.icmp_code, ev.icmp_id, ev.icmp_seq) == (
            (icmp.type, icmp.code, icmp.id, icmp.seq) if icmp else (0, 0, 0, 0)
        )
        # BPF_PROG_RUN's default receive queue (XDP) or sk_buff device (tc): lo
        assert ev.ifindex == LOOPBACK_IFINDEX
        assert self.started_ns <= ev.timestamp_ns <= self.ended_ns


LOOPBACK_IFINDEX = socket.if_nametoindex("lo")


class Datapath:
    """The loaded object with helpers to configure, run (through one entry point) and
    observe it."""

    def __init__(self, obj: bpflib.Object) -> None:
        self._obj = obj
        # Rule maps that may hold entries; None: unknown (a test reached into obj). An
        # empty 1M-entry hash takes ~1 ms to find empty, so reset skips the clean ones.
        self._written: set[str] | None = None
        self.select(fuzz.XDP)
        self.ring = bpflib.RingBuffer(obj.maps[abi.EVENTS_MAP])

    @property
    def obj(self) -> bpflib.Object:
        """The loaded object; whatever a test writes through it, reset clears."""
        self._written = None
        return self._obj

    def select(self, entry: fuzz.Entry) -> None:
        """Run frames through ``entry``'s program from now on."""
        self.entry = entry
        self.program = self._obj.programs[entry.program]

    def configure(self, **fields: Any) -> abi.Config:
        """Write BASE_CONFIG with ``fields`` replaced to the settings map. Without
        ``flags``, the lookup flag of every rule map that holds rules is set (as
        pingkiller.rules keeps them); with ``flags``, exactly those."""
        config = replace(BASE_CONFIG, **fields)
        if "flags" not in fields:
            for name, flag in LOOKUP_FLAG_OF.items():
                if self._written is not None and name not in self._written:
                    continue
                if not self._obj.maps[name].is_empty():
                    config = replace(config, flags=config.flags | flag)
        self._obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = config.encode()
        return config

    def rule(self, network: str, action: enums.RuleAction) -> None:
        """Add one rule straight through the ABI, and switch its map's lookup on."""
        net = ipaddress.ip_network(network)
        name = abi.rule_map_name(net)
        if self._written is not None:
            self._written |= {name, PREFIX_TRIES.get(name, name)}
        fuzz.put_rule(self._obj.maps, net, action)
        settings = self._obj.maps[abi.SETTINGS_MAP]
        config = abi.Config.decode(settings[abi.u32_key(0)])
        flag = LOOKUP_FLAG_OF[abi.rule_map_name(net)]
        settings[abi.u32_key(0)] = replace(config, flags=config.flags | flag).encode()

    def hits(self, network: str) -> int:
        net = ipaddress.ip_network(network)
        return abi.decode_rule(self._obj.maps[abi.rule_map_name(net)][abi.rule_key(net)])[1]

    def counter(self, slot: int) -> tuple[int, int]:
        packets, nbytes = self._obj.maps[abi.COUNTERS_MAP].sum(abi.u32_key(slot), abi.COUNTER.format)
        return packets, nbytes

    def counters(self) -> list[tuple[int, int]]:
        return [self.counter(slot) for slot in range(abi.COUNTER_COUNT)]

    def timing(self, slot: enums.TimingSlot) -> tuple[int, int]:
        count, total = self._obj.maps[abi.TIMING_MAP].sum(abi.u32_key(slot), abi.TIMING.format)
        return count, total

    def drain(self) -> list[Event]:
        return decode(self.ring.consume())

    def run(self, frame: Any, *, repeat: int = 1) -> Outcome:
        """Run ``frame`` (bytes or a frames.Frame) and report what changed."""
        data = frame if isinstance(frame, bytes | bytearray) else frame.data
        if not fuzz.runnable(self.entry, bytes(data)):
            pytest.skip(f"BPF_PROG_RUN refuses this {len(data)}-byte frame for {self.entry}")
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
        return Outcome(fuzz.signed(result.retval), deltas, self.drain(), started, ended,
                       self.entry)

    def reset(self) -> None:
        """Back to BASE_CONFIG, no rules, zeroed counters, timing and budget, empty ring."""
        for name in (*RULE_MAPS, *PREFIX_TRIES.values()):
            if self._written is None or name in self._written:
                self._obj.maps[name].clear()
        for name in STATE_MAPS:
            self._obj.maps[name].clear()
        self._written = set()
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
def entry(request: pytest.FixtureRequest) -> fuzz.Entry:
    """The entry point ``dp`` and ``path`` run frames through: XDP unless parametrised."""
    chosen: fuzz.Entry = getattr(request, "param", fuzz.XDP)
    return chosen


@pytest.fixture
def dp(_datapath: Datapath, entry: fuzz.Entry) -> Datapath:
    """The loaded object, reset (BASE_CONFIG, no rules, zero counters, empty ring), running
    frames through ``entry``."""
    _datapath.reset()
    _datapath.select(entry)
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
def bpffs_dir(tmp_path: Path) -> Iterator[Path]:
    """A bpffs instance of the test's own (mount(2) on a temporary directory), unmounted
    afterwards with whatever was pinned in it: whether and how the machine mounted
    /sys/fs/bpf does not matter."""
    from pingkiller.store.bpffs import mount

    path = tmp_path / "bpffs"
    path.mkdir()
    mount(path)
    try:
        yield path
    finally:
        subprocess.run(["/usr/bin/umount", str(path)], check=True)


@pytest.fixture(scope="module")
def _fuzz_path() -> Iterator[fuzz.DataPath]:
    with fuzz.DataPath() as loaded:
        yield loaded


@pytest.fixture
def path(_fuzz_path: fuzz.DataPath, entry: fuzz.Entry) -> fuzz.DataPath:
    """The real object with the oracle's harness (tests/fuzz.py), loaded once per module,
    running frames through ``entry``; every example resets what it uses."""
    _fuzz_path.select(entry)
    return _fuzz_path


@pytest.fixture
def peer(sandbox: Sandbox) -> Peer:
    """A sandbox peer whose pings the host answers (nothing attached yet)."""
    made = sandbox.add_peer()
    assert made.ping(made.host_v4) == 1, "the sandbox itself does not answer pings"
    return made


@pytest.fixture
def loaded(elf: Path) -> Iterator[tuple[bpflib.Object, bpflib.Object]]:
    """Two loaded copies of the module's toy object (its ``elf`` fixture): each program
    twice, counters apart."""
    from tests.kernel.toys import loaded_twice

    with loaded_twice(elf) as pair:
        yield pair
