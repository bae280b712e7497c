"""Listing and counting rules of the loaded program's maps: the streamed entries say what
the ipaddress-built rules say, in the documented order, a batch at a time; a scan counts
everything in one walk; Map.__len__ counts with batches what a key walk counts."""

from __future__ import annotations

import ipaddress
import itertools
import struct

from conftest import Datapath

from pingkiller import abi
from pingkiller.datapath.rules import LISTING_BATCH, RuleTable
from pingkiller.model.enums import RuleAction
from pingkiller.model.network import format_network, parse_network
from pingkiller.model.rules import Rule, RuleSet

MIXED = ["198.18.0.9", "198.18.0.1", "10.0.0.0/8", "10.0.0.0/16", "198.51.100.0/24", "fd00::7",
         "::1.2.3.4", "::", "2001:db8::/32", "fd00::/8", "2001:db8:0:1::/64", "0.0.0.0/0",
         "::/0", "fe80::1:0:0:1"]


def table(dp: Datapath) -> RuleTable:
    return RuleTable(dp.obj.maps)


def test_entries_are_the_rules_in_map_order_each_small_map_sorted(dp: Datapath) -> None:
    rules = table(dp)
    networks = [parse_network(text) for text in MIXED]
    rules.set(RuleSet.of(networks[::2]), RuleAction.BLOCK)
    rules.set(RuleSet.of(networks[1::2]), RuleAction.ALLOW)
    entries = [entry for batch in rules.entries() for entry in batch]
    as_rules = rules.rules()
    assert entries == as_rules
    assert {entry.address for entry in entries} == {format_network(n) for n in networks}
    assert {entry.network for entry in entries} == set(networks)

    def family_kind(entry: Rule) -> tuple[int, bool]:
        network = parse_network(entry.address)
        return network.version, network.prefixlen < network.max_prefixlen

    kinds = [family_kind(entry) for entry in entries]
    assert kinds == sorted(kinds, key=lambda k: (k[0], k[1]))  # v4 hosts, v4 prefixes, v6 ...
    for _, group in itertools.groupby(entries, family_kind):
        nets = [parse_network(entry.address) for entry in group]
        assert nets == sorted(nets, key=lambda n: (n.network_address, n.prefixlen))
    assert rules.scan() == (len(MIXED), entries)
    assert rules.scan(3) == (len(MIXED), entries[:3])
    assert rules.scan(0) == (len(MIXED), [])
    assert rules.count() == len(MIXED)


def test_a_large_map_streams_in_batches_and_counts_in_one_walk(dp: Datapath) -> None:
    rules = table(dp)
    size = 3 * LISTING_BATCH + 17
    first = int(ipaddress.IPv4Address("100.64.0.0"))
    keys = [(first + i).to_bytes(4, "big") for i in range(size)]
    rules.set_keys({abi.RULES_V4_MAP: keys}, RuleAction.BLOCK)
    prefixes = [abi.prefix_key(24, (first + (i << 8)).to_bytes(4, "big")) for i in range(size)]
    rules.set_keys({abi.PREFIXES_V4_MAP: prefixes}, RuleAction.ALLOW)
    batches = list(rules.entries())
    assert all(len(batch) <= LISTING_BATCH for batch in batches) and len(batches) >= 6
    entries = [entry for batch in batches for entry in batch]
    assert len(entries) == 2 * size
    hosts = {str(ipaddress.IPv4Address(first + i)) for i in range(size)}
    assert {e.address for e in entries[:size]} == hosts
    assert {e.action for e in entries[:size]} == {RuleAction.BLOCK}
    assert {e.address for e in entries[size:]} == {
        f"{ipaddress.IPv4Address(first + (i << 8))}/24" for i in range(size)}
    assert {e.action for e in entries[size:]} == {RuleAction.ALLOW}
    assert rules.count() == 2 * size
    scan = rules.scan(10)
    assert scan.total == 2 * size and len(scan.first) == 10 and scan.first == entries[:10]
    for name in (abi.RULES_V4_MAP, abi.PREFIXES_V4_MAP, abi.RULES_V6_MAP):
        bpf_map = dp.obj.maps[name]
        assert len(bpf_map) == sum(1 for _ in bpf_map.keys_iter())


def test_hit_counts_come_with_the_entries(dp: Datapath) -> None:
    rules = table(dp)
    rules.set(RuleSet.of(["198.18.0.1", "fd00::/8"]), RuleAction.BLOCK)
    for network, hits in (("198.18.0.1", 7), ("fd00::/8", 2**40)):
        net = parse_network(network)
        table_map = dp.obj.maps[abi.rule_map_name(net)]
        # Hits as the program counts them: each CPU in its own copy (all but the first
        # CPU count one each here); the listing sums them.
        cpus = table_map.cpus
        copies = [hits - (cpus - 1)] + [1] * (cpus - 1)
        table_map[abi.rule_key(net)] = b"".join(
            abi.RULE.pack(RuleAction.BLOCK, 0, part) for part in copies)
    entries = [entry for batch in rules.entries() for entry in batch]
    assert [(e.address, e.hits) for e in entries] == [("198.18.0.1", 7), ("fd00::/8", 2**40)]


def test_a_burst_of_inserts_outruns_no_allocator(dp: Datapath) -> None:
    """The per-CPU rule maps allocate each rule's copies from a cache the kernel refills
    in the background; 200k rules at once outran it (ENOMEM after ~57k) before
    RuleTable waited it out."""
    rules = table(dp)
    keys = [struct.pack("!I", 0x0A000000 + i) for i in range(200_000)]
    assert rules.set_keys({abi.RULES_V4_MAP: keys}, RuleAction.BLOCK) == 200_000
    assert rules.count() == 200_000
