"""abi.py's layouts are checked field by field against the C the extension was built from."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

import cffi
import pytest

from pingkiller import abi
from pingkiller._datapath import ffi
from pingkiller.model import enums
from pingkiller.model.enums import DefaultAction, EventsMode, IcmpSet
from pingkiller.model.limits import Limit
from pingkiller.model.policy import Policy

EVENT = abi.EVENT_LAYOUT


def _with_field(layout: abi.Layout, name: str, code: str) -> abi.Layout:
    fields = tuple((n, code if n == name else c) for n, c in layout.fields)
    return dataclasses.replace(layout, fields=fields)


def test_every_shared_struct_has_a_layout():
    # Every struct pingkiller.h declares (cffi lists them from the cdef).
    shared = {layout.ctype for layout in abi.LAYOUTS}
    assert shared == {f"struct {name}" for name in ffi.list_types()[1]}
    assert len(shared) == 10


@pytest.mark.parametrize("layout", abi.LAYOUTS, ids=lambda layout: layout.ctype)
def test_layouts_match_the_c(layout):
    assert abi.layout_problems(layout, ffi) == []
    assert layout.format.startswith("=")  # native order: these are kernel memory
    c_fields = ffi.typeof(layout.ctype).fields
    assert [name for name, _ in layout.fields] == [name for name, _ in c_fields]
    offsets = layout.offsets()
    for name, field in c_fields:
        assert offsets[name] == (ffi.offsetof(layout.ctype, name), ffi.sizeof(field.type))


@pytest.mark.parametrize("layout", abi.LAYOUTS, ids=lambda layout: layout.ctype)
def test_no_implicit_padding(layout):
    # Every byte of the C struct belongs to a named field.
    fields = ffi.typeof(layout.ctype).fields
    covered = sum(ffi.sizeof(field.type) for _, field in fields)
    assert covered == ffi.sizeof(layout.ctype)


def test_an_offset_wrong_at_the_same_size_is_caught():
    # icmp_id one byte, pad one byte longer: same 64 bytes, so a size check passes;
    # icmp_seq and pad now sit one byte early.
    wrong = _with_field(_with_field(EVENT, "icmp_id", "B"), "pad", "5x")
    assert wrong.struct.size == ffi.sizeof("struct pk_event")
    problems = abi.layout_problems(wrong, ffi)
    assert any("pk_event.icmp_seq" in p and "offset 56" in p and "at 55" in p for p in problems)
    with pytest.raises(abi.AbiMismatchError, match=r"pk_event\.icmp_seq"):
        abi.check_layouts((wrong,), ffi)
    assert issubclass(abi.AbiMismatchError, ImportError)  # raised at import


def test_swapped_fields_are_caught():
    fields = list(abi.RULE_LAYOUT.fields)
    fields[0], fields[2] = fields[2], fields[0]  # hits first, action last
    wrong = dataclasses.replace(abi.RULE_LAYOUT, fields=tuple(fields))
    assert wrong.struct.size == ffi.sizeof("struct pk_rule")
    with pytest.raises(abi.AbiMismatchError, match="pk_rule has fields"):
        abi.check_layouts((wrong,), ffi)


def test_a_missing_field_is_caught():
    wrong = dataclasses.replace(EVENT, fields=EVENT.fields[:-1])  # pad dropped
    with pytest.raises(abi.AbiMismatchError, match="pk_event has fields"):
        abi.check_layouts((wrong,), ffi)


def test_compiler_padding_in_the_c_is_caught():
    # Like the first struct pk_event: a __u16 pad and implicit tail padding (2 bytes
    # here). The Python layout of 64 bytes matches its size; the field check does not.
    old = cffi.FFI()
    old.cdef("""
        struct pk_event {
            uint64_t timestamp_ns; uint32_t ifindex; uint32_t length;
            uint8_t src[16]; uint8_t dst[16];
            uint8_t verdict, reason, family, protocol, icmp_type, icmp_code;
            uint16_t icmp_id, icmp_seq;
            uint8_t hook, direction;
            uint16_t pad;
        };
    """)
    assert old.sizeof("struct pk_event") == EVENT.struct.size
    with pytest.raises(abi.AbiMismatchError, match=r"pk_event\.pad is 2 bytes at offset 60"):
        abi.check_layouts((EVENT,), old)


def test_padding_packs_as_zeros():
    assert abi.encode_rule(enums.RuleAction.BLOCK, 5) == struct.pack("=IIQ", 2, 0, 5)
    assert abi.decode_rule(abi.encode_rule(enums.RuleAction.ALLOW, 9)) == (enums.RuleAction.ALLOW, 9)


def test_rules_are_written_to_every_cpu_and_their_hits_summed():
    # A per-CPU rule map's value: the action in every CPU's copy, the hits in the first.
    value = abi.encode_rule(enums.RuleAction.BLOCK, 7, cpus=3)
    assert value == struct.pack("=IIQ", 2, 0, 7) + struct.pack("=IIQ", 2, 0, 0) * 2
    per_cpu = b"".join(struct.pack("=IIQ", 1, 0, hits) for hits in (4, 0, 30, 8))
    assert abi.decode_rule(per_cpu) == (enums.RuleAction.ALLOW, 42)


def test_the_event_window_is_the_kernels_hz():
    # One second in jiffies: the coarse clocks tick once a jiffy (CONFIG_HZ is 100..1000).
    (window,) = struct.unpack_from("=I", abi.Config().encode(), 20)
    assert window == abi.jiffies_per_second()
    assert window in (100, 250, 300, 1000)
    config = abi.Config(enums.DefaultAction.DROP, enums.IcmpSet.ALL, enums.EventsMode.PINGS, 5,
                        abi.ConfigFlag.TIMING)
    assert abi.Config.decode(config.encode()) == config


def test_prefix_keys_round_trip():
    for text in ("198.18.0.0/15", "fd00::/8"):
        net = ipaddress.ip_network(text)
        key = abi.rule_key(net)
        assert len(key) == ffi.sizeof(f"struct pk_prefix_v{net.version}")
        assert abi.network_from_key(abi.rule_map_name(net), key) == net


def test_counter_slots_follow_the_reasons():
    assert abi.CounterSlot.EVENTS_SENT == abi.REASON_COUNT
    assert [int(slot) for slot in abi.CounterSlot] == list(range(abi.REASON_COUNT, abi.COUNTER_COUNT))


# What the pinned state's ABI is made of: kern/pingkiller.h (comments and blank space
# dropped) and the map definitions of kern/pingkiller.bpf.c. When this test fails,
# the ABI changed: bump abi.ABI_VERSION (and ADOPTABLE_ABI_VERSIONS, if the maps of
# older versions no longer fit: then pingkiller.migrate converts them), then record the
# new fingerprint here. 3: per-CPU rule maps, prefix tries, the event window in jiffies.
# 4: an event's hook and direction (two bytes of its padding), for the tc programs.
# 5: the limit action and ICMP types as a set.
ABI_FINGERPRINTS = {2: "43e316cae844d073", 3: "6bc5938419173651", 4: "c4c6c71818b4f647",
                    5: "83150c279df8dcb1"}


def _abi_text() -> str:
    import re
    from pathlib import Path

    kern = Path(__file__).resolve().parents[3] / "kern"
    header = (kern / "pingkiller.h").read_text()
    maps = re.findall(r"struct \{[^}]*\} \w+ SEC\(\"\.maps\"\);",
                      (kern / "pingkiller.bpf.c").read_text())
    text = header + "\n".join(maps)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return " ".join(text.split())


def test_the_abi_version_names_the_abi():
    import hashlib

    fingerprint = hashlib.sha256(_abi_text().encode()).hexdigest()[:16]
    assert ABI_FINGERPRINTS.get(abi.ABI_VERSION) == fingerprint, (
        f"kern/pingkiller.h or the maps changed (fingerprint {fingerprint}): bump "
        "abi.ABI_VERSION and record the fingerprint in ABI_FINGERPRINTS"
    )
    assert abi.ABI_VERSION in abi.ADOPTABLE_ABI_VERSIONS


def test_older_versions_are_converted_not_adopted():
    # ABI 5 grew the settings and the counters: every older version is converted.
    assert abi.ABI_VERSION == 5
    assert {5} == abi.ADOPTABLE_ABI_VERSIONS
    assert {1, 2, 3, 4} == abi.MIGRATABLE_ABI_VERSIONS
    assert not abi.ADOPTABLE_ABI_VERSIONS & abi.MIGRATABLE_ABI_VERSIONS


def test_abi_3_events_read_as_xdp_in():
    # Where ABI 3 had zeroed padding, ABI 4 has hook and direction: zeros mean xdp, in.
    offsets = EVENT.offsets()
    assert offsets["hook"] == (58, 1) and offsets["direction"] == (59, 1)
    assert offsets["pad"] == (60, 4) and EVENT.struct.size == 64
    assert enums.Hook(0) is enums.Hook.XDP and enums.Direction(0) is enums.Direction.IN
    assert [h.label for h in enums.Hook] == ["xdp", "tc"]
    assert [d.label for d in enums.Direction] == ["in", "out"]


def test_program_names_fit_the_kernel():
    # BPF_OBJ_NAME_LEN is 16 with the NUL: a longer name shows cut in bpftool and prog info.
    names = [abi.PROGRAM_NAME, *abi.TC_PROGRAM_NAMES.values()]
    assert len(set(names)) == 3 and all(len(name) <= 15 for name in names)
    assert abi.TC_PROGRAM_NAMES[enums.Direction.IN] == abi.TC_IN_PROGRAM_NAME
    assert abi.TC_PROGRAM_NAMES[enums.Direction.OUT] == abi.TC_OUT_PROGRAM_NAME


def test_a_policy_round_trips_through_the_settings_record() -> None:
    policy = Policy(DefaultAction.DROP, IcmpSet.ALL, True, EventsMode.PINGS, 5, True)
    config = abi.Config.of(policy, abi.ConfigFlag.PREFIXES_V4)
    assert config.flags & abi.ConfigFlag.PREFIXES_V4
    assert abi.Config.decode(config.encode()) == config
    assert config.policy() == policy
    limited = Policy(DefaultAction.LIMIT, "echo,timestamp,icmpv6:1", limit=Limit.of("600/min", 3),
                     limit_total=Limit.of("7/h"), limit_prefix6=48)
    config = abi.Config.of(limited)
    assert abi.Config.decode(config.encode()) == config
    assert config.policy(4096) == dataclasses.replace(limited, limit_buckets=4096)


def test_the_settings_are_what_the_program_reads() -> None:
    # Offsets of kern/pingkiller.h; the first 24 bytes are ABI 4's record, meaning the same.
    policy = Policy(DefaultAction.LIMIT, "echo-request,timestamp,icmpv6:200",
                    limit=Limit.of("4/s", 10), limit_total=Limit.of("2/min"), limit_prefix6=60)
    raw = abi.Config.of(policy).encode()
    assert len(raw) == ffi.sizeof("struct pk_config") == 160
    assert struct.unpack_from("=II", raw) == (2, int(IcmpSet.LIST))
    icmp_v4, icmp_v6 = struct.unpack_from("=8I", raw, 24), struct.unpack_from("=8I", raw, 56)
    assert icmp_v4 == (1 << 8 | 1 << 13 | 1 << 14, 0, 0, 0, 0, 0, 0, 0)  # timestamp: 13, 14
    assert icmp_v6 == (0, 0, 0, 0, 1 << 0, 0, 1 << 8, 0)  # 128 and 200
    assert raw[88:104] == bytes.fromhex("ffffffffffffff f0 0000000000000000".replace(" ", ""))
    tick = struct.unpack_from("=I", raw, 104)[0]
    assert tick * abi.jiffies_per_second() == 10**9
    assert struct.unpack_from("=I", raw, 108) == (60,)
    # 4/s: a ping each 250 ms, 9 more at once; 2/min: one each 30 s, in bursts of 1 (the
    # default under 1/s) with a tick of slack.
    assert struct.unpack_from("=QQII", raw, 112) == (250_000_000, 9 * 250_000_000, 10, 4)
    assert struct.unpack_from("=QQII", raw, 136) == (30 * 10**9, tick, 1, 2)
    flags = struct.unpack_from("=I", raw, 16)[0]
    assert flags & abi.ConfigFlag.LIMIT_TOTAL


def test_settings_of_abi_4_convert_to_the_same_policy() -> None:
    # ABI 1 to 4 pinned 24 bytes: default, icmp set, events, event rate, flags, window.
    old = struct.pack("=IIIIII", 1, 1, 2, 7, int(abi.ConfigFlag.TIMING | abi.ConfigFlag.EXACT_V4),
                      250)
    config = abi.Config.decode_v4(old)
    assert config.policy() == Policy(DefaultAction.DROP, IcmpSet.ECHO_REQUEST,
                                      events=EventsMode.PINGS, event_rate=7, timing=True)
    assert config.flags & abi.ConfigFlag.EXACT_V4
    assert config.encode()[:16] == old[:16]


def test_a_burst_of_one_still_has_a_tick_of_tolerance() -> None:
    # Pings a tick apart reach the program at the same jiffy: less than a tick of
    # tolerance would hold any rate to one a tick.
    raw = abi.Config.of(Policy(DefaultAction.LIMIT, limit=Limit.of("1000/s", 1))).encode()
    interval, tolerance, burst, count = struct.unpack_from("=QQII", raw, 112)
    assert (interval, burst, count) == (1_000_000, 1, 1000)
    assert tolerance == round(10**9 / abi.jiffies_per_second())


def test_the_model_enums_are_the_headers() -> None:
    assert abi.enum_problems() == []

    class Fake:
        PK_HOOK_XDP, PK_HOOK_TC, PK_HOOK_NEW = 0, 7, 2

    assert abi.enum_problems(Fake())[0].startswith("Hook has ['TC', 'XDP'], pingkiller.h")
