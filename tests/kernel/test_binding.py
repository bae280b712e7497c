"""The generic libbpf binding (pingkiller.bpf) against the real kernel.

Maps as mappings (hash, LPM, array, per-CPU), batch operations, ring buffers with
selectors, objects from bytes and files, verifier errors and libbpf's log.
"""

from __future__ import annotations

import errno
import logging
import selectors
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from frames import echo4

from pingkiller import abi
from pingkiller.bpf import (
    UPDATE_EXIST,
    UPDATE_NOEXIST,
    XDP_PASS,
    BatchError,
    BpfError,
    Map,
    Object,
    Program,
    RingBuffer,
    VerifierError,
)
from pingkiller.bpf._libbpf import lib
from pingkiller.bpf.maps import possible_cpus
from pingkiller.datapath import program as datapath
from pingkiller.model import enums

pytestmark = pytest.mark.root

OBJECT_PATH = Path(__file__).resolve().parents[2] / "build" / "bpf" / "pingkiller.bpf.o"
CPUS = possible_cpus()
# Values of the per-CPU hash rules_v4 (one copy a CPU) ...
BLOCK_RULE = abi.encode_rule(enums.RuleAction.BLOCK, cpus=CPUS)
ALLOW_RULE = abi.encode_rule(enums.RuleAction.ALLOW, cpus=CPUS)
# ... and of the LPM trie prefix_trie_v4 (8 bytes; pingkiller stores the key itself).
TRIE_A, TRIE_B = struct.pack("=Q", 0xA), struct.pack("=Q", 0xB)
PING = echo4().data


def v4_key(i: int) -> bytes:
    """Distinct /32 keys: 10.x.y.z in network order."""
    return struct.pack("!I", 0x0A000000 + i)


def v4_prefix(i: int, length: int = 24) -> bytes:
    return abi.prefix_key(length, struct.pack("!I", 0x0A000000 + (i << 8)))


@pytest.fixture
def obj(loaded_object: Object) -> Object:
    """The shared loaded object with empty rule maps and base settings."""
    for name in (abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP,
                 abi.PREFIX_TRIE_V4_MAP, abi.PREFIX_TRIE_V6_MAP):
        loaded_object.maps[name].clear()
    loaded_object.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = abi.Config().encode()
    return loaded_object


# Map basics


def test_map_info_matches_the_definitions(obj):
    rules = obj.maps[abi.RULES_V4_MAP].info
    assert (rules.type, rules.key_size, rules.value_size) == (lib.BPF_MAP_TYPE_PERCPU_HASH, 4, 16)
    assert rules.max_entries == abi.MAX_EXACT_RULES
    assert obj.maps[abi.RULES_V4_MAP].full_value_size == 16 * CPUS
    prefixes = obj.maps[abi.PREFIXES_V6_MAP].info
    assert (prefixes.type, prefixes.key_size) == (lib.BPF_MAP_TYPE_PERCPU_HASH, 20)
    assert prefixes.max_entries == abi.MAX_PREFIX_RULES
    trie = obj.maps[abi.PREFIX_TRIE_V6_MAP].info
    assert (trie.type, trie.key_size, trie.value_size) == (lib.BPF_MAP_TYPE_LPM_TRIE, 20, 20)
    assert trie.max_entries == abi.MAX_PREFIX_RULES
    assert obj.maps[abi.EVENTS_MAP].info.type == lib.BPF_MAP_TYPE_RINGBUF
    assert obj.maps[abi.COUNTERS_MAP].info.max_entries == abi.COUNTER_COUNT


def test_get_set_delete(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    key = v4_key(1)
    assert key not in rules
    assert rules.get(key) is None
    rules[key] = BLOCK_RULE
    assert key in rules
    assert rules[key] == BLOCK_RULE
    rules[key] = ALLOW_RULE
    assert abi.decode_rule(rules[key]) == (enums.RuleAction.ALLOW, 0)
    del rules[key]
    assert key not in rules
    with pytest.raises(KeyError):
        rules[key]
    with pytest.raises(KeyError):
        del rules[key]


def test_iterate_and_len(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    assert len(rules) == 0 and rules.is_empty() and list(rules) == []
    keys = {v4_key(i) for i in range(300)}
    for key in keys:
        rules[key] = BLOCK_RULE
    assert len(rules) == 300
    assert set(rules) == keys
    assert set(rules.keys()) == keys
    assert all(value == BLOCK_RULE for value in rules.values())
    assert not rules.is_empty()


def test_lpm_map_as_mapping(obj):
    prefixes = obj.maps[abi.PREFIX_TRIE_V4_MAP]
    prefixes[v4_prefix(1)] = TRIE_A
    prefixes[v4_prefix(1, 16)] = TRIE_B
    assert prefixes[v4_prefix(1)] == TRIE_A
    assert prefixes[v4_prefix(1, 16)] == TRIE_B
    assert len(prefixes) == 2
    del prefixes[v4_prefix(1)]
    assert set(prefixes) == {v4_prefix(1, 16)}
    with pytest.raises(KeyError):
        del prefixes[v4_prefix(1)]


def test_lpm_lookup_is_a_longest_prefix_match(obj):
    """Kernel semantics, kept by the binding: a lookup finds the longest covering prefix,
    so ``key in lpm_map`` can be true for a key that iteration does not list."""
    prefixes = obj.maps[abi.PREFIX_TRIE_V4_MAP]
    prefixes[v4_prefix(1, 16)] = TRIE_B
    assert prefixes[v4_prefix(1, 24)] == TRIE_B
    assert prefixes[abi.prefix_key(32, bytes([10, 0, 1, 77]))] == TRIE_B
    with pytest.raises(KeyError):
        prefixes[abi.prefix_key(32, bytes([10, 1, 0, 0]))]
    assert list(prefixes) == [v4_prefix(1, 16)]


def test_wrong_sizes_are_value_errors(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    with pytest.raises(ValueError, match="key is 5 bytes"):
        rules[b"12345"] = BLOCK_RULE
    with pytest.raises(ValueError, match="value is 3 bytes"):
        rules[v4_key(1)] = b"abc"
    with pytest.raises(ValueError):
        rules.get_raw(b"1")


def test_update_flags(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    with pytest.raises(BpfError) as missing:
        rules.put(v4_key(1), BLOCK_RULE, UPDATE_EXIST)
    assert missing.value.errno == errno.ENOENT
    rules.put(v4_key(1), BLOCK_RULE, UPDATE_NOEXIST)
    with pytest.raises(BpfError) as exists:
        rules.put(v4_key(1), ALLOW_RULE, UPDATE_NOEXIST)
    assert exists.value.errno == errno.EEXIST
    assert "updating map rules_v4" in str(exists.value)
    rules.put(v4_key(1), ALLOW_RULE, UPDATE_EXIST)
    assert rules[v4_key(1)] == ALLOW_RULE


def test_array_map(obj):
    settings = obj.maps[abi.SETTINGS_MAP]
    assert list(settings) == [abi.u32_key(0)]
    assert len(settings) == 1
    config = abi.Config(default_action=enums.DefaultAction.DROP, event_rate=5)
    settings[abi.u32_key(0)] = config.encode()
    assert abi.Config.decode(settings[abi.u32_key(0)]) == config
    with pytest.raises(BpfError) as err:
        del settings[abi.u32_key(0)]
    assert err.value.errno == errno.EINVAL
    with pytest.raises(KeyError):
        settings[abi.u32_key(1)]  # out of range reads as missing
    settings.clear()  # arrays are zeroed, not emptied
    assert settings[abi.u32_key(0)] == bytes(abi.CONFIG.size)


# Per-CPU maps


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total


def test_per_cpu_values_and_sum(obj):
    counters = obj.maps[abi.COUNTERS_MAP]
    cpus = counters.cpus
    assert cpus == _possible_cpus()
    assert counters.per_cpu_type and counters.value_stride == 16
    assert counters.full_value_size == 16 * cpus
    slot = abi.u32_key(abi.CounterSlot.EVENTS_LOST)
    values = [abi.COUNTER.pack(cpu + 1, 100 * (cpu + 1)) for cpu in range(cpus)]
    counters[slot] = b"".join(values)
    try:
        assert counters.per_cpu(slot) == values
        n = cpus * (cpus + 1) // 2
        assert counters.sum(slot, "=QQ") == (n, 100 * n)
        assert counters.sum(slot, "=Q") == (n,)
    finally:
        counters[slot] = bytes(counters.full_value_size)
    with pytest.raises(ValueError):
        counters[slot] = abi.COUNTER.pack(1, 1)  # one CPU's worth is not a per-CPU value


def test_ordinary_map_per_cpu_is_one_value(obj):
    trie = obj.maps[abi.PREFIX_TRIE_V4_MAP]
    trie[v4_prefix(7)] = struct.pack("=Q", 41)
    assert not trie.per_cpu_type and trie.full_value_size == 8
    assert trie.per_cpu(v4_prefix(7)) == [trie[v4_prefix(7)]]
    assert trie.sum(v4_prefix(7), "=Q") == (41,)


def test_per_cpu_hash_values(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    value = b"".join(abi.RULE.pack(enums.RuleAction.BLOCK, 0, cpu * 10) for cpu in range(CPUS))
    rules[v4_key(7)] = value
    assert rules.per_cpu(v4_key(7)) == [abi.RULE.pack(enums.RuleAction.BLOCK, 0, cpu * 10)
                                         for cpu in range(CPUS)]
    assert rules.sum(v4_key(7), "=IIQ") == (enums.RuleAction.BLOCK * CPUS, 0, 10 * sum(range(CPUS)))
    assert dict(rules.items_batch()) == {v4_key(7): value}


# Batch operations


def test_batch_of_100k_on_hash():
    # A preallocated hash: its inserts never wait for the kernel's allocator (the
    # per-CPU rule maps are not preallocated: pingkiller.rules.insert rides that out).
    count = 100_000
    with Map.create(lib.BPF_MAP_TYPE_HASH, "pk_test_batch", 4, 16, count) as rules:
        _batch_of_100k(rules, count)


def _batch_of_100k(rules: Map, count: int) -> None:
    keys = b"".join(v4_key(i) for i in range(count))
    values = b"".join(abi.encode_rule(enums.RuleAction.BLOCK, hits=i) for i in range(count))
    assert rules.update_batch(keys, values) == count
    assert len(rules) == count
    items = dict(rules.items_batch())
    assert len(items) == count
    assert items[v4_key(12345)] == abi.encode_rule(enums.RuleAction.BLOCK, hits=12345)
    assert items[v4_key(count - 1)] == abi.encode_rule(enums.RuleAction.BLOCK, hits=count - 1)
    assert rules.delete_batch(keys[: 4 * 50_000]) == 50_000
    assert len(rules) == count - 50_000
    assert rules.delete_batch([v4_key(i) for i in range(50_000, count)]) == 50_000
    assert rules.is_empty()


def test_batch_on_lpm(obj):
    prefixes = obj.maps[abi.PREFIX_TRIE_V4_MAP]
    keys = [v4_prefix(i) for i in range(2000)]
    values = [TRIE_A if i % 2 else TRIE_B for i in range(2000)]
    assert prefixes.update_batch(keys, values) == 2000
    assert dict(prefixes.items_batch(chunk=64)) == dict(zip(keys, values, strict=True))
    assert prefixes.delete_batch(keys[:1000]) == 1000
    assert set(prefixes) == set(keys[1000:])


def test_batch_on_lpm_v6(obj):
    prefixes = obj.maps[abi.PREFIX_TRIE_V6_MAP]
    keys = [abi.prefix_key(64, bytes.fromhex(f"fd00{i:04x}") + bytes(12)) for i in range(500)]
    assert prefixes.update_batch(keys, keys) == 500
    assert sorted(k for k, _ in prefixes.items_batch()) == sorted(keys)


def test_items_batch_on_per_cpu_array(obj):
    counters = obj.maps[abi.COUNTERS_MAP]
    items = dict(counters.items_batch())
    assert set(items) == {abi.u32_key(i) for i in range(abi.COUNTER_COUNT)}
    assert all(len(v) == counters.full_value_size for v in items.values())


def test_delete_batch_stops_at_a_missing_key(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    rules.update_batch([v4_key(i) for i in range(5)], [BLOCK_RULE] * 5)
    with pytest.raises(BatchError) as err:
        rules.delete_batch([v4_key(0), v4_key(1), v4_key(99), v4_key(2)])
    assert err.value.errno == errno.ENOENT
    assert err.value.completed == 2
    assert set(rules) == {v4_key(2), v4_key(3), v4_key(4)}


def test_batch_argument_errors(obj):
    rules = obj.maps[abi.RULES_V4_MAP]
    assert rules.update_batch([], []) == 0
    assert rules.delete_batch(b"") == 0
    with pytest.raises(ValueError, match="2 keys but 1 values"):
        rules.update_batch([v4_key(1), v4_key(2)], [BLOCK_RULE])
    with pytest.raises(ValueError, match="whole number"):
        rules.update_batch(b"12345", BLOCK_RULE)


def test_batch_update_into_a_full_map_raises_batch_error():
    small = datapath.open_object()
    small.set_max_entries(abi.RULES_V4_MAP, 8)
    with small.load():
        rules = small.maps[abi.RULES_V4_MAP]
        assert rules.info.max_entries == 8
        with pytest.raises(BatchError) as err:
            rules.update_batch([v4_key(i) for i in range(20)], [BLOCK_RULE] * 20)
        assert isinstance(err.value, BpfError)
        assert err.value.errno == errno.E2BIG
        assert err.value.completed == 8
        assert "8 elements done" in str(err.value)
        assert len(rules) == 8


def test_set_max_entries_after_load_fails(obj):
    with pytest.raises(BpfError) as err:
        obj.set_max_entries(abi.RULES_V4_MAP, 16)
    assert err.value.errno == errno.EBUSY


def test_clear_hash_map(obj):
    rules = obj.maps[abi.RULES_V6_MAP]
    rules.update_batch([bytes(15) + bytes([i]) for i in range(50)], [BLOCK_RULE] * 50)
    rules.clear()
    assert rules.is_empty()


# Pins and ids


def test_map_reopened_by_pin_and_id(obj, bpffs_dir):
    rules = obj.maps[abi.RULES_V4_MAP]
    rules[v4_key(3)] = BLOCK_RULE
    rules.pin(bpffs_dir / "rules")
    with Map.from_pin(bpffs_dir / "rules") as pinned:
        assert pinned.info.id == rules.info.id
        assert pinned[v4_key(3)] == BLOCK_RULE
        pinned[v4_key(4)] = ALLOW_RULE
    assert rules[v4_key(4)] == ALLOW_RULE
    with Map.from_id(rules.info.id) as by_id:
        assert set(by_id) == {v4_key(3), v4_key(4)}
    with pytest.raises(BpfError) as err:
        Map.from_pin(bpffs_dir / "missing")
    assert err.value.errno == errno.ENOENT


# Programs


def test_program_info_and_test_run(obj):
    program = obj.programs[abi.PROGRAM_NAME]
    info = program.info()
    assert info.name == abi.PROGRAM_NAME
    assert info.type == lib.BPF_PROG_TYPE_XDP
    assert len(info.tag) == 16
    run = program.test_run(PING, repeat=3)
    assert run.retval == XDP_PASS
    assert run.data == PING  # the program does not rewrite frames
    assert run.duration_ns >= 0


# Ring buffer


def _ping_with_events(obj: Object, count: int = 1) -> None:
    config = abi.Config(events=enums.EventsMode.ALL, event_rate=0)
    obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = config.encode()
    obj.programs[abi.PROGRAM_NAME].test_run(PING, repeat=count)


@pytest.fixture
def ring(obj):
    with RingBuffer(obj.maps[abi.EVENTS_MAP]) as rb:
        rb.consume()
        yield rb


def test_ring_poll_times_out_empty(ring):
    started = time.monotonic()
    batch = ring.poll(0.2)
    assert len(batch) == 0 and batch.raw == b""
    assert time.monotonic() - started >= 0.15
    assert len(ring.consume()) == 0


def test_ring_with_selectors(obj, ring):
    with selectors.DefaultSelector() as selector:
        selector.register(ring, selectors.EVENT_READ)
        assert isinstance(ring.fileno(), int) and ring.fileno() >= 0
        assert selector.select(timeout=0) == []
        _ping_with_events(obj, 3)
        ready = selector.select(timeout=2)
        assert [key.fileobj for key, _ in ready] == [ring]
        batch = ring.poll(0)
    assert len(batch) == 3
    assert batch.dropped == 0
    assert all(len(record) == abi.EVENT.size for record in batch)
    assert len(batch[0:2]) == 2
    events = list(batch.unpack(abi.EVENT))
    assert [e[2] for e in events] == [len(PING)] * 3  # length
    assert [e[9] for e in events] == [8] * 3  # icmp type: echo request
    assert len(ring.poll(0)) == 0


def test_ring_consume_without_waiting(obj, ring):
    _ping_with_events(obj, 2)
    batch = ring.consume()
    assert len(batch) == 2
    assert len(ring.consume()) == 0


def test_ring_rejects_other_maps_and_closes(obj):
    with pytest.raises(ValueError, match="not a ring buffer"):
        RingBuffer(obj.maps[abi.COUNTERS_MAP])
    rb = RingBuffer(obj.maps[abi.EVENTS_MAP])
    rb.close()
    rb.close()  # idempotent
    with pytest.raises(BpfError, match="closed") as caught:
        rb.poll(0)
    assert caught.value.errno == errno.EBADF


# Objects


def test_object_from_file():
    if not OBJECT_PATH.exists():
        pytest.skip(f"{OBJECT_PATH} missing: run `python3 build.py`")
    with Object.from_file(OBJECT_PATH) as from_file:
        assert not from_file.loaded
        from_file.load()
        assert from_file.loaded
        assert set(from_file.programs) == {abi.PROGRAM_NAME, *abi.TC_PROGRAM_NAMES.values()}
        assert from_file.programs[abi.TC_IN_PROGRAM_NAME].type_name == "sched_cls"
        assert abi.RULES_V4_MAP in from_file.maps
        from_file.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = abi.Config(
            default_action=enums.DefaultAction.DROP
        ).encode()
        assert from_file.programs[abi.PROGRAM_NAME].test_run(PING).retval == 1


def test_object_from_missing_file(tmp_path):
    with pytest.raises(BpfError) as err:
        Object.from_file(tmp_path / "nope.o")
    assert err.value.errno == errno.ENOENT


def test_context_manager_closes_everything():
    with datapath.load() as obj:
        assert obj.loaded and obj.programs and obj.maps
        prog_id = obj.programs[abi.PROGRAM_NAME].info().id
        assert "loaded" in repr(obj)
    assert obj.programs == {} and obj.maps == {}
    assert "closed" in repr(obj)
    with pytest.raises(BpfError, match="closed") as caught:
        obj.set_max_entries(abi.RULES_V4_MAP, 1)
    assert caught.value.errno == errno.EBADF
    obj.close()  # idempotent
    # Nothing pinned it, so the kernel frees the program (after an RCU grace period).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            Program.from_id(prog_id).close()
        except BpfError as err:
            assert err.errno == errno.ENOENT
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"program id {prog_id} still alive after close")


# Verifier errors and libbpf's log


BAD_PROGRAM = """
struct xdp_md { unsigned int data, data_end, data_meta, ingress_ifindex, rx_queue_index,
                egress_ifindex; };

__attribute__((section("xdp"), used)) int bad_xdp(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;

	return data[0] == 0xff ? 1 : 2;	/* no check against data_end */
}

char LICENSE[] __attribute__((section("license"), used)) = "GPL";
"""


# The same mistake after 300 logged steps: a verifier log far beyond any fixed buffer.
LONG_BAD_PROGRAM = BAD_PROGRAM.replace(
    "	unsigned char *data = (unsigned char *)(long)ctx->data;\n",
    "	volatile unsigned int acc = 0;\n"
    "#pragma unroll\n"
    "	for (int i = 0; i < 300; i++)\n"
    "		acc += i;\n"
    "	unsigned char *data = (unsigned char *)(long)ctx->data + acc % 2;\n",
)


def _compile(tmp_path_factory, source: str) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang is needed to build the invalid program")
    src = tmp_path_factory.mktemp("verifier") / "bad.c"
    src.write_text(source)
    out = src.with_suffix(".o")
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def bad_object(tmp_path_factory) -> Path:
    return _compile(tmp_path_factory, BAD_PROGRAM)


def test_verifier_error_of_a_long_log_keeps_the_cause(tmp_path_factory):
    long_object = _compile(tmp_path_factory, LONG_BAD_PROGRAM)
    with Object.from_file(long_object) as bad, pytest.raises(VerifierError) as caught:
        bad.load()
    assert len(caught.value.log) > 16384
    assert "packet" in caught.value.summary


def test_verifier_error_names_the_cause(bad_object):
    with Object.from_file(bad_object) as bad, pytest.raises(VerifierError) as caught:
        bad.load()
    err = caught.value
    assert isinstance(err, BpfError) and isinstance(err, OSError)
    assert err.errno == errno.EACCES
    assert err.program == "bad_xdp"
    assert "packet" in err.cause  # e.g. "R1 offset is outside of the packet"
    assert not err.summary.startswith("processed")
    assert err.log.strip()
    assert err.cause in err.log and err.summary.endswith(err.cause)
    assert "invalid access to packet" in err.log
    assert err.summary in str(err) and "bad_xdp" in str(err)


def test_libbpf_log_goes_to_logging_not_stderr(bad_object, caplog, capfd):
    with (
        caplog.at_level(logging.DEBUG, logger="pingkiller.bpf.libbpf"),
        Object.from_file(bad_object) as bad,
        pytest.raises(VerifierError),
    ):
        bad.load()
    records = [r for r in caplog.records if r.name == "pingkiller.bpf.libbpf"]
    assert records
    assert any(r.levelno == logging.WARNING and "bad_xdp" in r.getMessage() for r in records)
    # The log is in the binding's own buffer, not printed by libbpf.
    assert not any("BEGIN PROG LOAD LOG" in r.getMessage() for r in records)
    assert "libbpf" not in capfd.readouterr().err


def test_load_only_loads_the_programs_named_and_every_map():
    everything = datapath.open_object()
    names = set(everything.program_names())
    everything.close()
    for chosen in sorted(names):
        with datapath.open_object() as obj:
            obj.load_only(chosen)
            obj.load()
            assert set(obj.programs) == {chosen}
            assert set(obj.maps) >= {abi.SETTINGS_MAP, abi.RULES_V4_MAP, abi.EVENTS_MAP}
    with datapath.open_object() as obj, pytest.raises(KeyError, match="no program named 'nope'"):
        obj.load_only(abi.PROGRAM_NAME, "nope")


def test_what_the_libbpf_log_callback_raises_reaches_the_caller():
    """A signal handler's KeyboardInterrupt (Ctrl-C, the demo's SIGTERM) may be raised
    while libbpf's log callback runs Python; cffi would print and drop it, losing the
    signal (a SIGTERM'd demo ran on for its whole duration). The call raises it instead."""

    class Interrupting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise KeyboardInterrupt

    logger = logging.getLogger("pingkiller.bpf.libbpf")
    handler, level = Interrupting(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(KeyboardInterrupt), datapath.open_object() as obj:
            obj.load()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    with datapath.load():  # nothing is left pending for the next call
        pass
