"""The rule table: rules encoded into the four rule maps, all-or-nothing, with hit counts.

Every rule lives in a per-CPU hash keyed by its address (rules_v4/_v6) or its prefix
(prefixes_v4/_v6): each CPU counts hits in its own copy, the action is written to all of
them. A prefix is also a key of an LPM trie (prefix_trie_v4/_v6), which finds the longest
prefix holding an address; the trie gets a prefix after its rule and loses it before, so
whatever the trie finds has a rule. Callers hold the attachment's lock around every
change (read-modify-write).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from pingkiller import abi
from pingkiller.bpf import BatchError, BpfError, Map
from pingkiller.datapath.limits import LimitTable
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import RuleTableFull
from pingkiller.model.limits import Limit
from pingkiller.model.network import Network
from pingkiller.model.rules import Rule, RuleSet
from pingkiller.store.records import read_flags, write_flags

RULE_MAPS = (abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP)
# The LPM trie indexing each prefix map.
PREFIX_TRIES = {abi.PREFIXES_V4_MAP: abi.PREFIX_TRIE_V4_MAP,
                abi.PREFIXES_V6_MAP: abi.PREFIX_TRIE_V6_MAP}
# The flag that tells the program a rule map holds rules (it skips empty ones).
LOOKUP_FLAG_OF = {
    abi.RULES_V4_MAP: abi.ConfigFlag.EXACT_V4, abi.RULES_V6_MAP: abi.ConfigFlag.EXACT_V6,
    abi.PREFIXES_V4_MAP: abi.ConfigFlag.PREFIXES_V4, abi.PREFIXES_V6_MAP: abi.ConfigFlag.PREFIXES_V6,
}
LOOKUP_FLAGS = abi.NO_FLAGS
for _flag in LOOKUP_FLAG_OF.values():
    LOOKUP_FLAGS |= _flag
_FULL_ERRNOS = (errno.E2BIG, errno.ENOSPC, errno.ENOMEM)
# A per-CPU hash allocates each new element's copies from a cache the kernel refills in
# the background: a burst of inserts can outrun it and get ENOMEM for a moment. Inserts
# go on where they stopped after a pause; only this many pauses in a row without
# progress (about a second) mean memory is really short.
_ENOMEM_PAUSES = 200
_ENOMEM_PAUSE_SECONDS = 0.005


def insert(table: Map, keys: Sequence[bytes], values: bytes) -> None:
    """``table.update_batch(keys, values)`` through the kernel's transient ENOMEM (see
    _ENOMEM_PAUSES); any other failure, or ENOMEM that lasts, raises BatchError with
    ``completed`` counting every key written."""
    done, pauses, size = 0, 0, table.full_value_size
    while done < len(keys):
        try:
            done += table.update_batch(keys[done:], values[done * size:])
        except BatchError as err:
            if err.errno != errno.ENOMEM or pauses >= _ENOMEM_PAUSES:
                raise BatchError(err.errno or errno.EIO, err.operation, done + err.completed) from None
            pauses = 0 if err.completed else pauses + 1
            done += err.completed
            time.sleep(_ENOMEM_PAUSE_SECONDS)


# The rule maps keyed by an address (the others by prefix length and address).
_EXACT_MAPS = (abi.RULES_V4_MAP, abi.RULES_V6_MAP)
# Up to this many keys a change looks each up instead of reading the whole map.
_FEW_KEYS = 256
_DESCRIPTION = {
    abi.RULES_V4_MAP: "IPv4 address",
    abi.RULES_V6_MAP: "IPv6 address",
    abi.PREFIXES_V4_MAP: "IPv4 prefix",
    abi.PREFIXES_V6_MAP: "IPv6 prefix",
}


def _rule_set(rules: RuleSet | Iterable[Network]) -> RuleSet:
    return rules if isinstance(rules, RuleSet) else RuleSet.of(rules)


def keys_by_map(rules: RuleSet) -> dict[str, list[bytes]]:
    """The map keys of ``rules``, per rule map (empty maps left out)."""
    by_map = {
        abi.RULES_V4_MAP: rules.exact_v4,
        abi.RULES_V6_MAP: rules.exact_v6,
        abi.PREFIXES_V4_MAP: [abi.rule_key(n) for n in rules.prefixes if n.version == 4],
        abi.PREFIXES_V6_MAP: [abi.rule_key(n) for n in rules.prefixes if n.version == 6],
    }
    return {name: keys for name, keys in by_map.items() if keys}


# The order rules are listed in (RuleTable.entries), and how many are read at a time.
LISTING_ORDER = (abi.RULES_V4_MAP, abi.PREFIXES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V6_MAP)
LISTING_BATCH = 4096


class RuleScan(NamedTuple):
    """What :meth:`RuleTable.scan` found: how many rules, and the first of them."""

    total: int
    first: list[Rule]


_FAMILY = {abi.RULES_V4_MAP: socket.AF_INET, abi.PREFIXES_V4_MAP: socket.AF_INET,
           abi.RULES_V6_MAP: socket.AF_INET6, abi.PREFIXES_V6_MAP: socket.AF_INET6}
_ACTIONS = {int(action): action for action in RuleAction}


def _rows(name: str, keys: bytes, values: bytes, count: int, *,
          sort: bool) -> tuple[list[bytes], list[tuple[int, int, int]]]:
    """One batch of rule map ``name`` (packed keys and per-CPU values) as its keys and
    their (action, limit class, hits summed over the CPUs); ``sort``: by address (a
    prefix key holds the prefix length first: then by length)."""
    unpack = _KEYS.setdefault(len(keys) // count, struct.Struct(f"{len(keys) // count}s"))
    packed = [key for (key,) in unpack.iter_unpack(keys)]
    cpus = len(values) // (count * abi.RULE.size)
    copies = _PER_CPU_RULES.setdefault(cpus, struct.Struct("=IIQ" + "8xQ" * (cpus - 1)))
    rows = [(value[0], value[1], sum(value[2:])) for value in copies.iter_unpack(values)]
    if sort:
        by = packed.__getitem__ if name in _EXACT_MAPS else lambda i: packed[i][4:] + packed[i][:4]
        order = sorted(range(count), key=by)
        packed, rows = [packed[i] for i in order], [rows[i] for i in order]
    return packed, rows


_KEYS: dict[int, struct.Struct] = {}  # "Ns": one key of N bytes
_PER_CPU_RULES: dict[int, struct.Struct] = {}  # N copies of struct pk_rule


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


def _decode_entries(name: str, keys: bytes, values: bytes, count: int, sort: bool,
                    classes: Mapping[int, Limit]) -> list[Rule]:
    """One batch of a rule map as entries (``sort``: by address; ``classes``: the limit
    of each class limit rules name)."""
    family, actions, make = _FAMILY[name], _ACTIONS, tuple.__new__
    packed, rows = _rows(name, keys, values, count, sort=sort)
    limit_of = classes.get
    if name in _EXACT_MAPS:
        # inet_ntop over the whole batch (~1 us a rule all told); IPv6 checks its text
        text = (map(socket.inet_ntop, itertools.repeat(family, count), packed)
                if family == socket.AF_INET else map(_address_text, itertools.repeat(family), packed))
        return [make(Rule, (address, actions[action], hits, limit_of(limit_class)))
                for address, (action, limit_class, hits) in zip(text, rows, strict=True)]
    prefix = abi.PREFIX_V4 if family == socket.AF_INET else abi.PREFIX_V6
    maximum = 32 if family == socket.AF_INET else 128
    entries = []
    for key, (action, limit_class, hits) in zip(packed, rows, strict=True):
        prefixlen, address = prefix.unpack(key)
        shown = _address_text(family, address)
        entries.append(make(Rule, (shown if prefixlen == maximum else f"{shown}/{prefixlen}",
                                        actions[action], hits, limit_of(limit_class))))
    return entries


def rule_batches(table: Map) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """A rule map's keys and values (as the map holds them), a batch at a time. Works on
    the rule maps of ABI 1 and 2 too (one struct pk_rule a value)."""
    key_size, value_size = table.info.key_size, table.full_value_size
    for keys, values, count in table.lookup_batches(LISTING_BATCH):
        yield ([keys[i * key_size:(i + 1) * key_size] for i in range(count)],
               [values[i * value_size:(i + 1) * value_size] for i in range(count)])


def rule_hits(table: Map) -> Iterator[tuple[bytes, int]]:
    """Every rule of a rule map and its hits, summed over the CPUs."""
    for keys, values in rule_batches(table):
        yield from zip(keys, (abi.decode_rule(value)[1] for value in values), strict=True)


class RuleTable:
    """Add, remove and list the rules of one loaded or pinned pingkiller instance."""

    def __init__(self, maps: Mapping[str, Map]) -> None:
        self.maps = {name: maps[name] for name in RULE_MAPS}
        self.tries = {name: maps[trie] for name, trie in PREFIX_TRIES.items()}
        self.settings = maps[abi.SETTINGS_MAP]
        self._settings = {abi.SETTINGS_MAP: self.settings}  # what the settings record reads
        # Absent in the maps of ABI 1 to 4, which only ever had block and allow rules.
        self.limits = LimitTable(maps[abi.LIMITS_MAP], maps.get(abi.BUCKETS_MAP)) \
            if abi.LIMITS_MAP in maps else None

    def set(self, rules: RuleSet | Iterable[Network], action: RuleAction, *,
            limit: Limit | None = None, undo: list[Callable[[], None]] | None = None) -> int:
        """Make every network of ``rules`` a rule with ``action`` (LIMIT: at ``limit``);
        returns how many rules changed. A rule that already has the action (and limit)
        keeps its hit count. All or nothing: if a map would overflow, nothing changes and
        RuleTableFull names the capacity. With ``undo``, a call that puts the rules back
        as they were is appended to it (for a change made to several tables, all or
        nothing)."""
        if (action is RuleAction.LIMIT) != (limit is not None):
            raise ValueError("a limit rule needs its limit, and only a limit rule has one")
        limit_class = 0
        if limit is not None:
            assert self.limits is not None
            limit_class = self.limits.index_of(limit, self.limit_classes, undo=undo)
        return self.set_keys(keys_by_map(_rule_set(rules)), action, limit_class=limit_class,
                             undo=undo)

    def limit_classes(self) -> frozenset[int]:
        """The classes limit rules name: a walk of every rule map."""
        return frozenset(abi.rule_limit(value) for name in RULE_MAPS
                         for _, values in rule_batches(self.maps[name]) for value in values
                         if abi.RULE.unpack_from(value)[0] == RuleAction.LIMIT)

    def set_keys(self, by_map: Mapping[str, Sequence[bytes]], action: RuleAction, *,
                 limit_class: int = 0, undo: list[Callable[[], None]] | None = None) -> int:
        """:meth:`set` for rule map keys, per map (:func:`keys_by_map`), a limit rule's
        rate given by its class."""
        plan: list[tuple[Map, list[bytes], list[tuple[bytes, bytes]]]] = []
        for name, keys in by_map.items():
            table = self.maps[name]
            few = len(keys) <= _FEW_KEYS
            if few:
                # A handful of keys: look them up (every rule map is a hash: the lookup
                # is exact) instead of reading the whole table; the kernel's E2BIG then
                # guards the capacity (and the change is undone).
                found = ((key, table.get_raw(key)) for key in keys)
                existing = {key: raw for key, raw in found if raw is not None}
            else:
                existing = {} if table.is_empty() else dict(table.items_batch())
            new = [key for key in keys if key not in existing]
            changed = [
                (key, existing[key])
                for key in keys
                if key in existing and abi.RULE.unpack_from(existing[key])[:2] != (action, limit_class)
            ]
            if not few and len(existing) + len(new) > table.info.max_entries:
                raise self._full_error(table, len(existing), len(new))
            plan.append((table, new, changed))

        # Lookups are switched on before rules are added (and off only after they are
        # removed), so a writer killed in between never leaves a rule unenforced.
        growing = [table.name for table, new, _ in plan if new]
        self._look_up(growing)
        added: list[tuple[Map, list[bytes]]] = []
        replaced: list[tuple[Map, bytes, bytes]] = []
        for table, new, changed in plan:
            value = abi.encode_rule(action, limit=limit_class, cpus=table.cpus)
            try:
                try:
                    insert(table, new, value * len(new))
                except BatchError as err:
                    added.append((table, new[: err.completed]))
                    raise
                added.append((table, new))
                self._index(table.name, new)
                for key, old in changed:
                    table.put(key, value)
                    replaced.append((table, key, old))
            except BpfError as err:
                self._undo(added, replaced)
                self.refresh_lookup_flags(growing)  # off again where the undo emptied it
                if err.errno == errno.ENOMEM:
                    raise self._memory_error(table, len(new)) from None
                if err.errno in _FULL_ERRNOS:
                    raise self._full_error(table, len(table), len(new)) from None
                raise
        if undo is not None:
            def put_back() -> None:
                self._undo(added, replaced)
                self.refresh_lookup_flags(growing)
            undo.append(put_back)
        return sum(len(keys) for _, keys in added) + len(replaced)

    def copy_from(self, old: Mapping[str, Map]) -> dict[str, dict[bytes, int]]:
        """Put every rule of the rule maps ``old`` (empty here; of this ABI or of ABI 1
        and 2, whose values are one struct pk_rule) into this table with its action,
        limit and hits, prefixes into the tries too, and switch the lookups on. One walk
        of each old map; returns the hits it read per rule, for :meth:`carry_hits` once
        the program that counts in ``old`` is swapped out."""
        if self.limits is not None and abi.LIMITS_MAP in old:
            self.limits.copy_from(old[abi.LIMITS_MAP])
        read: dict[str, dict[bytes, int]] = {}
        for name in RULE_MAPS:
            read[name] = seen = dict[bytes, int]()
            cpus = self.maps[name].cpus
            for keys, values in rule_batches(old[name]):
                rules = [(*abi.decode_rule(value), abi.rule_limit(value)) for value in values]
                insert(self.maps[name], keys, b"".join(
                    abi.encode_rule(action, hits, limit=limit_class, cpus=cpus)
                    for action, hits, limit_class in rules))
                self._index(name, keys)
                seen.update(zip(keys, (hits for _, hits, _ in rules), strict=True))
        self.refresh_lookup_flags()
        return read

    def add_hits(self, name: str, key: bytes, gained: int) -> None:
        """Add ``gained`` hits to rule ``key`` of map ``name`` (none if it is gone)."""
        table = self.maps[name]
        current = table.get_raw(key)
        if current is not None:
            action, counted = abi.decode_rule(current)
            table.put(key, abi.encode_rule(action, counted + gained,
                                           limit=abi.rule_limit(current), cpus=table.cpus))

    def carry_hits(self, since: Mapping[str, Mapping[bytes, int]],
                   old: Mapping[str, Map]) -> None:
        """Add the hits the rule maps ``old`` counted after :meth:`copy_from` read
        ``since`` from them (a program swapped out keeps counting until the swap)."""
        for name, counted in since.items():
            for key, hits in rule_hits(old[name]):
                gained = hits - counted.get(key, 0)
                if gained > 0:
                    self.add_hits(name, key, gained)

    def _index(self, name: str, keys: Sequence[bytes]) -> None:
        """Put new prefixes of map ``name`` in its trie (each prefix its own value)."""
        trie = self.tries.get(name)
        if trie is not None and keys:
            insert(trie, keys, b"".join(keys))

    def _undo(self, added: list[tuple[Map, list[bytes]]],
              replaced: list[tuple[Map, bytes, bytes]]) -> None:
        for table, keys in added:
            trie = self.tries.get(table.name)
            for key in keys:
                if trie is not None:
                    trie.discard(key)
                table.discard(key)
        for table, key, old in replaced:
            table.put(key, old)

    @staticmethod
    def _memory_error(table: Map, adding: int) -> RuleTableFull:
        what = _DESCRIPTION.get(table.name, table.name)
        return RuleTableFull(
            f"the kernel has no memory for {adding} more {what} rules (each takes "
            f"{table.full_value_size} bytes: a copy for each of {table.cpus} possible CPUs); "
            "nothing was changed (free memory, or cover addresses with prefixes)"
        )

    @staticmethod
    def _full_error(table: Map, existing: int, adding: int) -> RuleTableFull:
        what = _DESCRIPTION.get(table.name, table.name)
        return RuleTableFull(
            f"rule table full: at most {table.info.max_entries} {what} rules fit, "
            f"{existing} exist and {adding} more were asked for; nothing was changed "
            "(remove rules with `pingkiller unblock`, or cover addresses with prefixes)"
        )

    def remove(self, rules: RuleSet | Iterable[Network], *,
               undo: list[Callable[[], None]] | None = None) -> int:
        """Remove any rule for the networks of ``rules``; returns how many existed. With
        ``undo``, the rules removed are read first, and a call that puts them back (hits
        and all) is appended to it."""
        return self.remove_keys(keys_by_map(_rule_set(rules)), undo=undo)

    def remove_keys(self, by_map: Mapping[str, Sequence[bytes]], *,
                    undo: list[Callable[[], None]] | None = None) -> int:
        """:meth:`remove` for rule map keys, per map (:func:`keys_by_map`)."""
        removed = 0
        gone: list[tuple[str, bytes, bytes]] = []
        for name, keys in by_map.items():
            table, trie = self.maps[name], self.tries.get(name)
            if undo is not None:
                found = ((key, table.get_raw(key)) for key in keys)
                gone += [(name, key, raw) for key, raw in found if raw is not None]
            # Deletion is exact in hashes and LPM tries alike: no need to read the table.
            if trie is not None:
                for key in keys:
                    trie.discard(key)
            removed += sum(table.discard(key) for key in keys)
        self.refresh_lookup_flags(by_map)
        if undo is not None:
            def put_back() -> None:
                self._look_up({name for name, _, _ in gone})
                for name, key, raw in gone:
                    self.maps[name].put(key, raw)
                    self._index(name, [key])
            undo.append(put_back)
        return removed

    def rules(self) -> list[Rule]:
        """Every rule with its hit count, in :meth:`entries` order (all in memory: for a
        large table, stream :meth:`entries` instead)."""
        return [rule for batch in self.entries() for rule in batch]

    def entries(self) -> Iterator[list[Rule]]:
        """Every rule with its hit count, one batch (at most LISTING_BATCH rules) at a
        time, decoded per batch without ipaddress objects (~1 us a rule): memory is one
        batch, whatever the table holds.

        Map by map: IPv4 addresses, IPv4 prefixes, IPv6 addresses, IPv6 prefixes. A map
        that fits in one batch is sorted by address; a larger one comes in the kernel's
        order (a hash map's follows its random hash seed), since sorting it would hold
        it whole.
        """
        classes = self.limits.classes() if self.limits is not None else {}
        for name in LISTING_ORDER:
            for keys, values, count, sort in _map_batches(self.maps[name]):
                yield _decode_entries(name, keys, values, count, sort, classes)

    def count(self) -> int:
        """How many rules there are: a batch walk of each map (see Map.__len__), no
        rule decoded; ~0.35 s for 10^6 rules. A hash map's walk visits every bucket, one
        per entry it can hold (2^20), so even an empty table costs ~1.5 ms a hash map."""
        return sum(len(table) for table in self.maps.values())

    def scan(self, keep: int | None = None) -> RuleScan:
        """How many rules there are and the first ``keep`` (all when None), in
        :meth:`entries` order, from one walk of the maps: batches past the first
        ``keep`` rules are counted, not decoded. Memory: one batch beyond ``keep``."""
        count, kept = 0, list[Rule]()
        classes = self.limits.classes() if self.limits is not None else {}
        for name in LISTING_ORDER:
            for keys, values, found, sort in _map_batches(self.maps[name]):
                count += found
                if keep is None or len(kept) < keep:
                    kept += _decode_entries(name, keys, values, found, sort, classes)
        return RuleScan(count, kept if keep is None else kept[:keep])

    def refresh_lookup_flags(self, names: Iterable[str] = RULE_MAPS) -> None:
        """Tell the program which of the rule maps ``names`` to look in: those that hold
        rules (it skips the others). Each map named costs a walk to its first entry: an
        empty hash map's walk visits every bucket (~1 ms for 2^20)."""
        before = flags = read_flags(self._settings)
        for name in set(names):
            flag = LOOKUP_FLAG_OF[name]
            flags = flags & ~flag if self.maps[name].is_empty() else flags | flag
        if flags != before:
            write_flags(self._settings, flags)

    def _look_up(self, names: Iterable[str]) -> None:
        """Switch the lookups of maps ``names`` on (about to get rules: no walk needed)."""
        before = flags = read_flags(self._settings)
        for name in names:
            flags |= LOOKUP_FLAG_OF[name]
        if flags != before:
            write_flags(self._settings, flags)
