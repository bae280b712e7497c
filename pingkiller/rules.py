"""The rule table: rules encoded into the four rule maps, all-or-nothing, with hit counts.

Exact host rules live in hash maps, prefixes in LPM tries (see :mod:`pingkiller.abi`).
Callers hold the attachment's lock around every change (read-modify-write).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from pingkiller import abi
from pingkiller.abi import Network, RuleAction
from pingkiller.bpf import BatchError, BpfError, Map
from pingkiller.errors import RuleTableFull
from pingkiller.policy import (
    RULE_ACTIONS,
    Rule,
    no_rules_error,
    parse_network,
    parse_rule_line,
    rule_file_blocks,
)

RULE_MAPS = (abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP)
_FULL_ERRNOS = (errno.E2BIG, errno.ENOSPC, errno.ENOMEM)
# Exact maps are hashes: a lookup there is exact (in an LPM trie it is a longest match).
_EXACT_MAPS = (abi.RULES_V4_MAP, abi.RULES_V6_MAP)
_FEW_KEYS = 256
_DESCRIPTION = {
    abi.RULES_V4_MAP: "IPv4 address",
    abi.RULES_V6_MAP: "IPv6 address",
    abi.PREFIXES_V4_MAP: "IPv4 prefix",
    abi.PREFIXES_V6_MAP: "IPv6 prefix",
}


def group_by_map(networks: Iterable[Network]) -> dict[str, list[bytes]]:
    """Rule keys per map, duplicates removed, order kept."""
    grouped: dict[str, dict[bytes, None]] = defaultdict(dict)
    for network in networks:
        grouped[abi.rule_map_name(network)][abi.rule_key(network)] = None
    return {name: list(keys) for name, keys in grouped.items()}


@dataclass(frozen=True)
class RuleKeys:
    """Rules as map keys: ``by_map`` holds each rule map's keys (no duplicates, order kept);
    ``requested`` counts the addresses/prefixes given, duplicates included."""

    requested: int
    by_map: dict[str, list[bytes]]

    @classmethod
    def of(cls, networks: Sequence[Network]) -> RuleKeys:
        return cls(len(networks), group_by_map(networks))

    def __add__(self, other: RuleKeys) -> RuleKeys:
        if not self.requested:
            return other
        merged = {name: dict.fromkeys(keys) for name, keys in self.by_map.items()}
        for name, keys in other.by_map.items():
            merged.setdefault(name, {}).update(dict.fromkeys(keys))
        return RuleKeys(self.requested + other.requested, {n: list(k) for n, k in merged.items()})


def read_rule_keys(path: str | Path) -> RuleKeys:
    """:func:`~pingkiller.policy.read_rule_file` as map keys, fast for plain IPv4 lists.

    The file is read a block of lines at a time. A block whose every non-blank line is
    a bare IPv4 address is packed straight from the text with the C library's inet_pton
    (it accepts exactly the dotted quads ``ipaddress`` accepts); other blocks go line by
    line, bare IPv4 addresses and prefixes still packed so, the rest through
    :func:`~pingkiller.policy.parse_rule_line`, so the rules and the errors are the same
    either way. Memory follows the rules, not the file.
    """
    pton, inet = socket.inet_pton, socket.AF_INET
    exact_v4: list[bytes] = []
    others: dict[str, dict[bytes, None]] = {}
    requested = 0
    with closing(rule_file_blocks(path)) as blocks:  # closes the file also on an error
        for first, lines in blocks:
            entries = [entry for line in lines if (entry := line.strip())]
            try:
                exact_v4 += [pton(inet, entry) for entry in entries]
            except (OSError, ValueError):
                pass  # not all bare addresses: line by line
            else:
                requested += len(entries)
                continue
            for number, line in enumerate(lines, first):
                entry = line.strip()
                if not entry:
                    continue
                key = _ipv4_key(entry)
                if key is None:
                    network = parse_rule_line(path, number, line)
                    if network is None:
                        continue  # a comment
                    key = (abi.rule_map_name(network), abi.rule_key(network))
                requested += 1
                if key[0] == abi.RULES_V4_MAP:
                    exact_v4.append(key[1])
                else:
                    others.setdefault(key[0], {})[key[1]] = None
    if not requested:
        raise no_rules_error(path)
    by_map = {name: list(keys) for name, keys in others.items()}
    if exact_v4:
        unique = len(set(exact_v4)) == len(exact_v4)
        by_map[abi.RULES_V4_MAP] = exact_v4 if unique else list(dict.fromkeys(exact_v4))
    return RuleKeys(requested, by_map)


def _ipv4_key(entry: str) -> tuple[str, bytes] | None:
    """(map, key) of a bare IPv4 address or prefix, or None for anything else (then
    parse_rule_line reads it: comments, other columns, IPv6, errors and their words)."""
    address, slash, length = entry.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    if not slash:
        return abi.RULES_V4_MAP, packed
    if not (length.isascii() and length.isdigit() and len(length) <= 2):
        return None
    prefixlen = int(length)
    if prefixlen > 32 or int.from_bytes(packed, "big") & (0xFFFFFFFF >> prefixlen):
        return None  # parse_rule_line words the error
    if prefixlen == 32:
        return abi.RULES_V4_MAP, packed
    return abi.PREFIXES_V4_MAP, abi.prefix_key(prefixlen, packed)


# The order rules are listed in (RuleTable.entries), and how many are read at a time.
LISTING_ORDER = (abi.RULES_V4_MAP, abi.PREFIXES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V6_MAP)
LISTING_BATCH = 4096


class RuleEntry(NamedTuple):
    """One rule as :meth:`RuleTable.entries` lists it: the address or prefix as text
    (``192.0.2.7``, ``10.0.0.0/8``: :func:`~pingkiller.policy.format_network`'s form),
    its action and hit count. Cheap to make (no ipaddress object); :meth:`rule` makes
    the :class:`~pingkiller.policy.Rule`."""

    address: str
    action: RuleAction
    hits: int

    def to_json(self) -> dict[str, object]:
        """The same object as :meth:`Rule.to_json <pingkiller.policy.Rule.to_json>`."""
        return {"address": self.address, "action": RULE_ACTIONS.word(self.action), "hits": self.hits}

    def rule(self) -> Rule:
        return Rule(parse_network(self.address), self.action, self.hits)


class RuleScan(NamedTuple):
    """What :meth:`RuleTable.scan` found: how many rules, and the first of them."""

    total: int
    first: list[RuleEntry]


_FAMILY = {abi.RULES_V4_MAP: socket.AF_INET, abi.PREFIXES_V4_MAP: socket.AF_INET,
           abi.RULES_V6_MAP: socket.AF_INET6, abi.PREFIXES_V6_MAP: socket.AF_INET6}
_ACTIONS = {int(action): action for action in RuleAction}


def _rows(name: str, keys: bytes, values: bytes, count: int, *,
          sort: bool) -> tuple[list[bytes], list[tuple[int, int]]]:
    """One batch of rule map ``name`` (packed keys and values) as its keys and their
    (action, hits); ``sort``: by address (a prefix key holds the prefix length first:
    then by length)."""
    unpack = _KEYS.setdefault(len(keys) // count, struct.Struct(f"{len(keys) // count}s"))
    packed = [key for (key,) in unpack.iter_unpack(keys)]
    rows: list[tuple[int, int]] = list(abi.RULE.iter_unpack(values))
    if sort:
        by = packed.__getitem__ if name in _EXACT_MAPS else lambda i: packed[i][4:] + packed[i][:4]
        order = sorted(range(count), key=by)
        packed, rows = [packed[i] for i in order], [rows[i] for i in order]
    return packed, rows


_KEYS: dict[int, struct.Struct] = {}  # "Ns": one key of N bytes


def _map_batches(table: Map) -> Iterator[tuple[bytes, bytes, int, bool]]:
    """``table``'s batches, each with whether to sort it: when it is the whole map (one
    batch ahead is read to know: memory two batches)."""
    batches = table.lookup_batches(LISTING_BATCH)
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    yield (*first, second is None)
    if second is not None:
        yield (*second, False)
        for batch in batches:
            yield (*batch, False)


def _address_text(family: int, packed: bytes) -> str:
    """format_network's text of an address: inet_ntop, which compresses IPv6 as Python
    does, but for the dotted forms it gives ::/96 and ::ffff:0:0/96 addresses."""
    text = socket.inet_ntop(family, packed)
    if family == socket.AF_INET6 and "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text


def _decode_entries(name: str, keys: bytes, values: bytes, count: int, sort: bool) -> list[RuleEntry]:
    """One batch of a rule map as entries (``sort``: by address)."""
    family, actions, make = _FAMILY[name], _ACTIONS, tuple.__new__
    packed, rows = _rows(name, keys, values, count, sort=sort)
    if name in _EXACT_MAPS:
        # inet_ntop over the whole batch (~1 us a rule all told); IPv6 checks its text
        text = (map(socket.inet_ntop, itertools.repeat(family, count), packed)
                if family == socket.AF_INET else map(_address_text, itertools.repeat(family), packed))
        return [make(RuleEntry, (address, actions[action], hits))
                for address, (action, hits) in zip(text, rows, strict=True)]
    prefix = abi.PREFIX_V4 if family == socket.AF_INET else abi.PREFIX_V6
    maximum = 32 if family == socket.AF_INET else 128
    entries = []
    for key, (action, hits) in zip(packed, rows, strict=True):
        prefixlen, address = prefix.unpack(key)
        shown = _address_text(family, address)
        entries.append(make(RuleEntry, (shown if prefixlen == maximum else f"{shown}/{prefixlen}",
                                        actions[action], hits)))
    return entries


class RuleTable:
    """Add, remove and list the rules of one loaded or pinned pingkiller instance."""

    def __init__(self, maps: Mapping[str, Map]) -> None:
        self.maps = {name: maps[name] for name in RULE_MAPS}
        self.settings = maps[abi.SETTINGS_MAP]

    def set(self, networks: Iterable[Network], action: RuleAction) -> int:
        """Make every network a rule with ``action``; returns how many rules changed.

        A rule that already has the action keeps its hit count. All or nothing: if a map
        would overflow, nothing changes and RuleTableFull names the capacity.
        """
        return self.set_keys(group_by_map(networks), action)

    def set_keys(self, by_map: Mapping[str, Sequence[bytes]], action: RuleAction) -> int:
        """:meth:`set` for keys already grouped by map (see :class:`RuleKeys`)."""
        value = abi.encode_rule(action)
        plan: list[tuple[Map, list[bytes], list[tuple[bytes, bytes]]]] = []
        for name, keys in by_map.items():
            table = self.maps[name]
            few_exact = name in _EXACT_MAPS and len(keys) <= _FEW_KEYS
            if few_exact:
                # A handful of hash keys: look them up instead of reading the whole table;
                # the kernel's E2BIG then guards the capacity (and the change is undone).
                found = ((key, table.get_raw(key)) for key in keys)
                existing = {key: raw for key, raw in found if raw is not None}
            else:
                existing = {} if table.is_empty() else dict(table.items_batch())
            new = [key for key in keys if key not in existing]
            changed = [
                (key, existing[key])
                for key in keys
                if key in existing and abi.decode_rule(existing[key])[0] != action
            ]
            if not few_exact and len(existing) + len(new) > table.info.max_entries:
                raise self._full_error(table, len(existing), len(new))
            plan.append((table, new, changed))

        # Prefix lookups are switched on before prefixes are added (and off only after
        # they are removed), so a writer killed in between never leaves a rule unenforced.
        self.refresh_prefix_flags(adding=[table.name for table, new, _ in plan if new])
        added: list[tuple[Map, list[bytes]]] = []
        replaced: list[tuple[Map, bytes, bytes]] = []
        for table, new, changed in plan:
            try:
                try:
                    table.update_batch(new, value * len(new))
                except BatchError as err:
                    added.append((table, new[: err.completed]))
                    raise
                added.append((table, new))
                for key, old in changed:
                    table.put(key, value)
                    replaced.append((table, key, old))
            except BpfError as err:
                self._undo(added, replaced)
                if err.errno in _FULL_ERRNOS:
                    raise self._full_error(table, len(table), len(new)) from None
                raise
        self.refresh_prefix_flags()
        return sum(len(keys) for _, keys in added) + len(replaced)

    @staticmethod
    def _undo(added: list[tuple[Map, list[bytes]]], replaced: list[tuple[Map, bytes, bytes]]) -> None:
        for table, keys in added:
            for key in keys:
                table.pop(key, None)
        for table, key, old in replaced:
            table.put(key, old)

    @staticmethod
    def _full_error(table: Map, existing: int, adding: int) -> RuleTableFull:
        what = _DESCRIPTION.get(table.name, table.name)
        return RuleTableFull(
            f"rule table full: at most {table.info.max_entries} {what} rules fit, "
            f"{existing} exist and {adding} more were asked for; nothing was changed "
            "(remove rules with `pingkiller unblock`, or cover addresses with prefixes)"
        )

    def remove(self, networks: Iterable[Network]) -> int:
        """Remove any rule for these networks; returns how many existed."""
        return self.remove_keys(group_by_map(networks))

    def remove_keys(self, by_map: Mapping[str, Sequence[bytes]]) -> int:
        """:meth:`remove` for keys already grouped by map (see :class:`RuleKeys`)."""
        removed = 0
        for name, keys in by_map.items():
            table = self.maps[name]
            # Deletion is exact in hashes and LPM tries alike: no need to read the table.
            removed += sum(table.discard(key) for key in keys)
        self.refresh_prefix_flags()
        return removed

    def rules(self) -> list[Rule]:
        """Every rule with its hit count, in :meth:`entries` order (all in memory: for a
        large table, stream :meth:`entries` instead)."""
        found: list[Rule] = []
        for name in LISTING_ORDER:
            for keys, values, count, sort in _map_batches(self.maps[name]):
                packed, rows = _rows(name, keys, values, count, sort=sort)
                found += [Rule(abi.network_from_key(name, key), _ACTIONS[action], hits)
                          for key, (action, hits) in zip(packed, rows, strict=True)]
        return found

    def entries(self) -> Iterator[list[RuleEntry]]:
        """Every rule with its hit count, one batch (at most LISTING_BATCH rules) at a
        time, decoded per batch without ipaddress objects (~1 us a rule): memory is one
        batch, whatever the table holds.

        Map by map: IPv4 addresses, IPv4 prefixes, IPv6 addresses, IPv6 prefixes. A map
        that fits in one batch is sorted by address; a larger one comes in the kernel's
        order (a hash map's follows its random hash seed), since sorting it would hold
        it whole.
        """
        for name in LISTING_ORDER:
            for keys, values, count, sort in _map_batches(self.maps[name]):
                yield _decode_entries(name, keys, values, count, sort)

    def count(self) -> int:
        """How many rules there are: a batch walk of each map (see Map.__len__), no
        rule decoded; ~0.35 s for 10^6 rules. A hash map's walk visits every bucket, one
        per entry it can hold (2^20), so even an empty table costs ~1.5 ms a hash map."""
        return sum(len(table) for table in self.maps.values())

    def scan(self, keep: int | None = None) -> RuleScan:
        """How many rules there are and the first ``keep`` (all when None), in
        :meth:`entries` order, from one walk of the maps: batches past the first
        ``keep`` rules are counted, not decoded. Memory: one batch beyond ``keep``."""
        count, kept = 0, list[RuleEntry]()
        for name in LISTING_ORDER:
            for keys, values, found, sort in _map_batches(self.maps[name]):
                count += found
                if keep is None or len(kept) < keep:
                    kept += _decode_entries(name, keys, values, found, sort)
        return RuleScan(count, kept if keep is None else kept[:keep])

    def refresh_prefix_flags(self, adding: Iterable[str] = ()) -> None:
        """Tell the program whether to look in the LPM tries (skipped when they are empty);
        ``adding`` names tries about to get rules, which count as non-empty."""
        raw = self.settings[abi.u32_key(0)]
        config = abi.Config.decode(raw)
        flags = config.flags & ~(abi.ConfigFlag.PREFIXES_V4 | abi.ConfigFlag.PREFIXES_V6)
        soon = set(adding)
        if abi.PREFIXES_V4_MAP in soon or not self.maps[abi.PREFIXES_V4_MAP].is_empty():
            flags |= abi.ConfigFlag.PREFIXES_V4
        if abi.PREFIXES_V6_MAP in soon or not self.maps[abi.PREFIXES_V6_MAP].is_empty():
            flags |= abi.ConfigFlag.PREFIXES_V6
        if flags != config.flags:
            self.settings[abi.u32_key(0)] = replace(config, flags=flags).encode()
