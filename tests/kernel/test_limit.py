"""The limit action in the data path, through BPF_PROG_RUN: precedence against every other
action, the bucket a ping is counted in, drop_rate events, the limit under a flood from
two CPUs at once, and what a flood from ever-new (spoofed) sources does to the buckets."""

from __future__ import annotations

import ipaddress
import os
import struct
import threading
import time
from collections.abc import Iterator

import fuzz
import pytest
from conftest import Datapath
from frames import V4_DST, V4_SRC, echo4, echo6

from pingkiller import abi
from pingkiller.bpf import Object
from pingkiller.datapath import program as datapath
from pingkiller.model import enums
from pingkiller.model.icmp import IcmpTypes
from pingkiller.model.limits import Limit
from pingkiller.store.records import write_settings

R = enums.Reason
A = enums.RuleAction
D = enums.DefaultAction
EMPTY = 1 << 62  # a bucket spent far beyond any clock: it passes nothing
HOURLY = Limit.of("1/h", 1)  # a fresh bucket passes one ping, then none for an hour
ENTRIES = pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str)
_KEY = abi.BUCKET_KEY  # struct pk_bucket_key


def bucket_key(limit_class: int, address: str) -> bytes:
    """struct pk_bucket_key of an address (IPv6 at /64, as the default prefix)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return _KEY.pack(limit_class, 4, ip.packed)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return _KEY.pack(limit_class, 4, mapped.packed)
    return _KEY.pack(limit_class, 6, ip.packed[:8])


def set_class(dp: Datapath, limit_class: int, limit: Limit) -> None:
    dp.obj.maps[abi.LIMITS_MAP][abi.u32_key(limit_class)] = abi.LIMIT.pack(*abi.encode_limit(limit))


def limit_rule(dp: Datapath, network: str, limit_class: int) -> None:
    set_class(dp, limit_class, HOURLY)
    dp.rule(network, A.LIMIT)
    net = ipaddress.ip_network(network)
    rules = dp.obj.maps[abi.rule_map_name(net)]
    rules[abi.rule_key(net)] = abi.encode_rule(A.LIMIT, limit=limit_class, cpus=rules.cpus)


def buckets(dp: Datapath) -> dict[bytes, int]:
    return {key: struct.unpack("=Q", value)[0]
            for key, value in dp.obj.maps[abi.BUCKETS_MAP].items_batch()}


# -- precedence

ACTIONS = (None, A.ALLOW, A.BLOCK, A.LIMIT)


def expected_reason(src: A | None, dst: A | None, default: D, empty: bool,
                    out: bool) -> tuple[R, int | None]:
    """Block on either address, then limit on either (the peer's first: the source, or at
    tc egress the destination), then allow on either, then the default. Returns the
    reason and the class of the limit that judged (src rules are class 1, dst 2)."""
    rate = R.DROP_RATE if empty else R.PASS_RATE
    if A.BLOCK in (src, dst):
        return R.DROP_BLOCK, None
    sides = ((dst, 2), (src, 1)) if out else ((src, 1), (dst, 2))
    for action, limit_class in sides:
        if action is A.LIMIT:
            return rate, limit_class
    if A.ALLOW in (src, dst):
        return R.PASS_ALLOW, None
    if default is D.LIMIT:
        return rate, 0
    return (R.DROP_DEFAULT if default is D.DROP else R.PASS_DEFAULT), None


@ENTRIES
@pytest.mark.parametrize("empty", [False, True], ids=["fresh", "empty"])
@pytest.mark.parametrize("default", list(D), ids=lambda d: d.name.lower())
@pytest.mark.parametrize("dst", ACTIONS, ids=lambda a: f"dst-{a.name.lower() if a else 'none'}")
@pytest.mark.parametrize("src", ACTIONS, ids=lambda a: f"src-{a.name.lower() if a else 'none'}")
def test_precedence_of_every_action_against_every_other(
    dp: Datapath, src: A | None, dst: A | None, default: D, empty: bool
) -> None:
    out = dp.entry.direction is enums.Direction.OUT
    reason, limit_class = expected_reason(src, dst, default, empty, out)
    dp.configure(default_action=default, limit=HOURLY if default is D.LIMIT else None)
    for address, action, own_class in ((V4_SRC, src, 1), (V4_DST, dst, 2)):
        if action is A.LIMIT:
            limit_rule(dp, f"{address}/32", own_class)
        elif action is not None:
            dp.rule(f"{address}/32", action)
    peer = V4_DST if out else V4_SRC
    if empty and limit_class is not None:
        dp.obj.maps[abi.BUCKETS_MAP][bucket_key(limit_class, peer)] = struct.pack("=Q", EMPTY)

    frame = echo4(src=V4_SRC, dst=V4_DST)
    outcome = dp.run(frame)

    assert outcome.reasons == {reason: (1, len(frame.data))}
    assert outcome.dropped == reason.dropped
    made = limit_class is not None and not empty
    assert outcome.counters.get(abi.CounterSlot.BUCKETS_NEW, (0, 0)) == ((1, 0) if made else (0, 0))
    assert outcome.events[0].reason == reason
    if limit_class is not None:
        assert bucket_key(limit_class, peer) in buckets(dp)
    if limit_class:  # a rule's limit: the rule counts the ping it decided
        limited = V4_DST if (dst is A.LIMIT and (out or src is not A.LIMIT)) else V4_SRC
        assert dp.hits(f"{limited}/32") == 1
    if limit_class is None:
        assert buckets(dp) == {}


# -- which bucket


def test_a_bucket_passes_its_burst_then_drops_until_it_refills(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=Limit.of("1/h", 3))
    frame = echo4()
    seen = [dp.run(frame).reasons for _ in range(5)]
    assert [next(iter(reasons)) for reasons in seen] == [R.PASS_RATE] * 3 + [R.DROP_RATE] * 2
    (tat,) = buckets(dp).values()
    assert tat > 0
    # A bucket that was full an interval ago holds a ping again.
    dp.obj.maps[abi.BUCKETS_MAP][bucket_key(0, V4_SRC)] = struct.pack("=Q", 0)
    assert dp.run(frame).reasons == {R.PASS_RATE: (1, len(frame.data))}


def test_sources_have_buckets_of_their_own(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY)
    first, second = echo4(src="198.18.0.10"), echo4(src="198.18.0.11")
    assert R.PASS_RATE in dp.run(first).reasons
    assert R.DROP_RATE in dp.run(first).reasons
    assert R.PASS_RATE in dp.run(second).reasons
    assert set(buckets(dp)) == {bucket_key(0, "198.18.0.10"), bucket_key(0, "198.18.0.11")}


def test_two_addresses_of_a_64_share_a_bucket_and_128_parts_them(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY)
    assert R.PASS_RATE in dp.run(echo6(src="fd00:1:2:3::10")).reasons
    assert R.DROP_RATE in dp.run(echo6(src="fd00:1:2:3:ffff::20")).reasons
    assert R.PASS_RATE in dp.run(echo6(src="fd00:1:2:4::10")).reasons
    assert len(buckets(dp)) == 2

    dp.obj.maps[abi.BUCKETS_MAP].clear()
    dp.configure(default_action=D.LIMIT, limit=HOURLY, limit_prefix6=128)
    assert R.PASS_RATE in dp.run(echo6(src="fd00:1:2:3::10")).reasons
    assert R.PASS_RATE in dp.run(echo6(src="fd00:1:2:3::11")).reasons
    key = _KEY.pack(0, 6, ipaddress.ip_address("fd00:1:2:3::11").packed)
    assert key in buckets(dp)


def test_a_mapped_source_shares_its_ipv4_bucket(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY)
    assert R.PASS_RATE in dp.run(echo4(src="198.18.0.9")).reasons
    assert R.DROP_RATE in dp.run(echo6(src="::ffff:198.18.0.9")).reasons
    assert set(buckets(dp)) == {bucket_key(0, "198.18.0.9")}


@pytest.mark.parametrize("entry", [fuzz.TC_OUT], indirect=True, ids=str)
def test_at_tc_egress_the_destination_is_limited(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY)
    assert R.PASS_RATE in dp.run(echo4(src=V4_SRC, dst="198.18.0.20")).reasons
    assert R.DROP_RATE in dp.run(echo4(src="198.18.0.99", dst="198.18.0.20")).reasons
    assert R.PASS_RATE in dp.run(echo4(src=V4_SRC, dst="198.18.0.21")).reasons
    assert set(buckets(dp)) == {bucket_key(0, "198.18.0.20"), bucket_key(0, "198.18.0.21")}


def test_non_pings_are_never_limited(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY, flags=abi.ConfigFlag.ALL_PROTOCOLS)
    limit_rule(dp, f"{V4_SRC}/32", 1)
    for _ in range(3):
        assert dp.run(echo4(3)).reasons == {R.PASS_NOT_PING: (1, len(echo4(3).data))}
    assert buckets(dp) == {}


def test_a_class_without_a_rate_passes(dp: Datapath) -> None:
    # A rule naming a class user space has not written (all zeros): no limit, pass.
    dp.rule(f"{V4_SRC}/32", A.LIMIT)
    net = ipaddress.ip_network(f"{V4_SRC}/32")
    rules = dp.obj.maps[abi.rule_map_name(net)]
    rules[abi.rule_key(net)] = abi.encode_rule(A.LIMIT, limit=7, cpus=rules.cpus)
    for _ in range(3):
        assert R.PASS_RATE in dp.run(echo4()).reasons
    assert buckets(dp) == {}


# -- the total


def test_the_total_is_checked_before_a_bucket_is_made(dp: Datapath) -> None:
    dp.configure(default_action=D.LIMIT, limit=Limit.of("1/h", 5), total=Limit.of("1/h", 2))
    reasons = [next(iter(dp.run(echo4(src=f"198.18.1.{i}")).reasons)) for i in range(4)]
    assert reasons == [R.PASS_RATE, R.PASS_RATE, R.DROP_RATE_TOTAL, R.DROP_RATE_TOTAL]
    assert len(buckets(dp)) == 2  # no bucket for a ping the total refused
    # A known source within its own rate is still held to the total.
    assert R.DROP_RATE_TOTAL in dp.run(echo4(src="198.18.1.0")).reasons
    assert dp.counter(abi.CounterSlot.BUCKETS_NEW) == (2, 0)


# -- ICMP types


def test_a_listed_type_is_judged_as_a_ping_and_others_pass(dp: Datapath) -> None:
    dp.configure(default_action=D.DROP, icmp=IcmpTypes.parse("echo-request,timestamp"))
    for icmp_type, reason in ((8, R.DROP_DEFAULT), (13, R.DROP_DEFAULT), (14, R.DROP_DEFAULT),
                              (0, R.PASS_NOT_PING), (3, R.PASS_NOT_PING)):
        frame = echo4(icmp_type)
        assert dp.run(frame).reasons == {reason: (1, len(frame.data))}, icmp_type
    frame = echo6(128)
    assert dp.run(frame).reasons == {R.DROP_DEFAULT: (1, len(frame.data))}
    assert R.PASS_NOT_PING in dp.run(echo6(129)).reasons


def test_neighbour_discovery_passes_even_with_every_bit_set(dp: Datapath) -> None:
    # User space never sets ND's bits; the program does not read them either.
    dp.configure(default_action=D.DROP)
    raw = bytearray(dp.obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)])
    raw[24:88] = b"\xff" * 64
    dp.obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = bytes(raw)
    for icmp_type in range(133, 138):
        assert R.PASS_NOT_PING in dp.run(echo6(icmp_type)).reasons, icmp_type
    assert R.DROP_DEFAULT in dp.run(echo6(1)).reasons


# -- events


def test_drop_rate_sends_an_event_under_its_budget(dp: Datapath, one_cpu: int) -> None:
    dp.configure(default_action=D.LIMIT, limit=HOURLY, events=enums.EventsMode.DROPS,
                 event_rate=5)
    frame = echo4()
    first = dp.run(frame)
    assert first.reasons == {R.PASS_RATE: (1, len(frame.data))} and first.events == []
    dropped = [dp.run(frame) for _ in range(20)]
    dropped[0].verify(frame, R.DROP_RATE)
    assert sum(len(outcome.events) for outcome in dropped) == 5
    assert dp.counter(abi.CounterSlot.EVENTS_SUPPRESSED)[0] == 15
    assert dp.counter(R.DROP_RATE)[0] == 20


# -- floods


def _flood_on_each_cpu(program: object, frame: bytes, seconds: float) -> tuple[float, int]:
    """Run ``frame`` on every allowed CPU at once (a thread pinned to each), for
    ``seconds``; returns the wall time from the first run's start to the last one's end
    and the number of CPUs."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    spans: list[tuple[int, int]] = []
    start = threading.Barrier(len(cpus))

    def flood(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only
        start.wait()
        begun = time.monotonic_ns()
        while time.monotonic_ns() - begun < seconds * 1e9:
            program.test_run(frame, repeat=20_000)  # type: ignore[attr-defined]
        spans.append((begun, time.monotonic_ns()))

    threads = [threading.Thread(target=flood, args=(cpu,)) for cpu in cpus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (max(end for _, end in spans) - min(begin for begin, _ in spans)) / 1e9, len(cpus)


def _per_cpu(dp: Datapath, slot: int) -> list[int]:
    counters = dp.obj.maps[abi.COUNTERS_MAP]
    raw = counters[abi.u32_key(slot)]
    return [abi.COUNTER.unpack(value)[0] for value in counters.split_per_cpu(raw)]


@pytest.mark.parametrize(("rate", "burst"), [(1000, 1000), (100_000, 1000)])
def test_a_flood_from_two_cpus_is_held_to_the_limit(dp: Datapath, rate: int, burst: int) -> None:
    """Every pass moves the one bucket on with a compare-and-swap: over T seconds at most
    burst + rate * T pass, and a tick of the jiffies clock (a racy update would pass up to
    twice as many at 100,000/s). Fewer may pass where the machine leaves the flood gaps:
    a busy machine deschedules the threads, so only a gross shortfall fails."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    dp.configure(default_action=D.LIMIT, limit=Limit.of(f"{rate}/s", burst),
                 events=enums.EventsMode.OFF)
    elapsed, _ = _flood_on_each_cpu(dp.program, echo4().data, 1.0)
    passed = dp.counter(R.PASS_RATE)[0]
    tick = 1 / abi.jiffies_per_second()
    assert passed <= burst + rate * (elapsed + tick) + 1
    assert passed >= (burst + rate * elapsed) / 4
    drops = _per_cpu(dp, R.DROP_RATE)
    assert sum(1 for count in drops if count) >= 2, f"both CPUs must have flooded: {drops}"


@pytest.fixture
def small_buckets() -> Iterator[Object]:
    """An object of its own whose buckets map holds 4096 sources."""
    obj = datapath.open_object()
    obj.set_max_entries(abi.BUCKETS_MAP, 4096)
    obj.load()
    try:
        yield obj
    finally:
        obj.close()


def _spoofed(count: int) -> Iterator[bytes]:
    """Ping frames from ``count`` distinct sources (198.18.0.0/15 and up), patched in place."""
    frame = bytearray(echo4(src="10.0.0.0").data)
    for n in range(count):
        struct.pack_into("!I", frame, 14 + 12, 0xC6120000 + n)
        yield bytes(frame)


def test_a_flood_of_new_sources_keeps_the_buckets_at_their_bound(small_buckets: Object) -> None:
    # Without a total every new source gets a fresh bucket: the flood is not limited at
    # all (docs/security.md says so), but the map stays at its size, the oldest forgotten.
    write_settings(small_buckets.maps, abi.Config(D.LIMIT, limit=HOURLY))
    program = small_buckets.programs[abi.PROGRAM_NAME]
    for frame in _spoofed(20_000):
        assert program.test_run(frame).retval == 2  # XDP_PASS
    held = sum(1 for _ in small_buckets.maps[abi.BUCKETS_MAP].items_batch())
    assert 4096 - 2 * 128 * len(os.sched_getaffinity(0)) <= held <= 4096
    counters = small_buckets.maps[abi.COUNTERS_MAP]
    made = counters.sum(abi.u32_key(abi.CounterSlot.BUCKETS_NEW), abi.COUNTER.format)[0]
    passed = counters.sum(abi.u32_key(R.PASS_RATE), abi.COUNTER.format)[0]
    assert made == passed == 20_000


def test_the_total_bounds_the_buckets_a_flood_makes(small_buckets: Object) -> None:
    write_settings(small_buckets.maps, abi.Config(D.LIMIT, limit=HOURLY,
                                                  total=Limit.of("200/s", 200)))
    program = small_buckets.programs[abi.PROGRAM_NAME]
    real = echo4(src="192.0.2.1").data
    assert program.test_run(real).retval == 2
    assert program.test_run(real).retval == 1  # its bucket is spent
    started = time.monotonic()
    for frame in _spoofed(20_000):
        program.test_run(frame)
    elapsed = time.monotonic() - started
    counters = small_buckets.maps[abi.COUNTERS_MAP]

    def count(slot: int) -> int:
        return int(counters.sum(abi.u32_key(slot), abi.COUNTER.format)[0])

    made, passed = count(abi.CounterSlot.BUCKETS_NEW), count(R.PASS_RATE)
    assert made == passed <= 1 + 200 + 200 * (elapsed + 1 / abi.jiffies_per_second()) + 1
    assert count(R.DROP_RATE_TOTAL) == 20_000 - (made - 1)
    # The real source's bucket was not pushed out: it is still spent.
    assert program.test_run(real).retval == 1
    assert count(R.DROP_RATE) == 2

