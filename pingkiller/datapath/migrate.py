"""Converting the pinned maps of an older ABI version into this one's, for `upgrade`.

Each older version this build converts (:data:`pingkiller.abi.MIGRATABLE_ABI_VERSIONS`)
has a :class:`Step`: the maps its pins hold, those the new program is loaded on as they
are (their layout did not change: rules keep counting hits, event readers carry on), and
a converter that copies what the others mean into freshly loaded maps of this version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pingkiller import abi
from pingkiller.bpf import Map
from pingkiller.datapath.rules import RuleTable

# The maps ABI 1 and 2 pinned. Their rule maps were shared, not per-CPU (a hash per
# family for addresses, an LPM trie per family for prefixes), one struct pk_rule a value,
# and their settings had no event window.
PINNED_V2 = (
    abi.SETTINGS_MAP, abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP,
    abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP,
)
# The maps ABI 3 and 4 pinned: this version's but the limiter's.
PINNED_V4 = (
    *PINNED_V2, abi.PREFIX_TRIE_V4_MAP, abi.PREFIX_TRIE_V6_MAP,
)
# Each counter slot of ABI 1 to 4 and the slot that counts the same in this one: the
# reasons kept their numbers, the event counters moved past the three new reasons.
COUNTER_SLOTS_V4 = {
    **{reason: reason for reason in range(7)},
    7: abi.CounterSlot.EVENTS_SENT, 8: abi.CounterSlot.EVENTS_SUPPRESSED,
    9: abi.CounterSlot.EVENTS_LOST,
}

# What a conversion read from the old maps, to add what they counted until the swap.
Carry = Callable[[Mapping[str, Map], Mapping[str, Map]], None]


@dataclass(frozen=True)
class Step:
    """How pins of an older ABI become this one's."""

    pinned: tuple[str, ...]  # the maps such pins hold
    reused: tuple[str, ...]  # loaded on as they are: same type, size and meaning
    # Before the swap: copy the rest into the new (loaded) maps; returns what adds the
    # counts the old program made meanwhile, once the new one runs.
    convert: Callable[[Mapping[str, Map], Mapping[str, Map]], Carry]


def pinned_maps(abi_version: int, current: tuple[str, ...]) -> tuple[str, ...]:
    """The names of the maps that pins of ``abi_version`` hold (``current``: this
    version's, also for versions it does not know)."""
    return STEPS[abi_version].pinned if abi_version in STEPS else current


def step_for(abi_version: int) -> Step:
    """The conversion of pins of ``abi_version`` (one of MIGRATABLE_ABI_VERSIONS)."""
    return STEPS[abi_version]


def convert_settings(old: Mapping[str, Map], new: Mapping[str, Map]) -> None:
    """The policy of ABI 1 to 4 (its 24 bytes mean the same in this one) into ``new``."""
    key = abi.u32_key(0)
    new[abi.SETTINGS_MAP][key] = abi.Config.decode_v4(old[abi.SETTINGS_MAP][key]).encode()


def convert_counters(old: Mapping[str, Map], new: Mapping[str, Map]) -> Carry:
    """Every counter of ABI 1 to 4 into its slot here; the returned carry adds what the
    old counters gained after this read."""
    source, target = old[abi.COUNTERS_MAP], new[abi.COUNTERS_MAP]
    read = {slot: source[abi.u32_key(slot)] for slot in COUNTER_SLOTS_V4}
    for slot, raw in read.items():
        target[abi.u32_key(COUNTER_SLOTS_V4[slot])] = raw

    def carry(old: Mapping[str, Map], new: Mapping[str, Map]) -> None:
        source, target = old[abi.COUNTERS_MAP], new[abi.COUNTERS_MAP]
        for slot, before in read.items():
            key = abi.u32_key(COUNTER_SLOTS_V4[slot])
            gained = [(now[0] - then[0], now[1] - then[1]) for now, then in zip(
                _per_cpu(source, source[abi.u32_key(slot)]), _per_cpu(source, before),
                strict=True)]
            if any(packets for packets, _ in gained):
                target[key] = b"".join(
                    abi.COUNTER.pack(packets + more, size + more_bytes)
                    for (packets, size), (more, more_bytes)
                    in zip(_per_cpu(target, target[key]), gained, strict=True))
    return carry


def _per_cpu(counters: Map, raw: bytes) -> list[tuple[int, int]]:
    return [abi.COUNTER.unpack(value) for value in counters.split_per_cpu(raw)]


def _from_v2(old: Mapping[str, Map], new: Mapping[str, Map]) -> Carry:
    convert_settings(old, new)
    carry_counters = convert_counters(old, new)
    table = RuleTable(new)
    hits = table.copy_from(old)

    def carry(old: Mapping[str, Map], new: Mapping[str, Map]) -> None:
        carry_counters(old, new)
        RuleTable(new).carry_hits(hits, old)
    return carry


def _from_v4(old: Mapping[str, Map], new: Mapping[str, Map]) -> Carry:
    convert_settings(old, new)
    return convert_counters(old, new)


_V2 = Step(PINNED_V2, (abi.TIMING_MAP, abi.EVENTS_MAP), _from_v2)
# The rule maps and tries are this version's: every rule's padding, now its limit, is 0.
_V4 = Step(PINNED_V4, tuple(name for name in PINNED_V4
                            if name not in (abi.SETTINGS_MAP, abi.COUNTERS_MAP)), _from_v4)
STEPS = {1: _V2, 2: _V2, 3: _V4, 4: _V4}
