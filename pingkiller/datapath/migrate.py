"""Converting the pinned maps of an older ABI version into this one's, for `upgrade`.

Each older version this build converts (:data:`pingkiller.abi.MIGRATABLE_ABI_VERSIONS`)
has its map names here and a converter that copies what they mean into freshly loaded
maps of this version. Maps whose layout did not change are not converted: the new
program is loaded on them (:data:`CARRIED`), so counters and event readers carry on.
"""

from __future__ import annotations

from collections.abc import Mapping

from pingkiller import abi
from pingkiller.bpf import Map
from pingkiller.datapath.rules import RuleTable
from pingkiller.store.records import read_settings, write_settings

# The maps ABI 1 and 2 pinned. Their rule maps were shared, not per-CPU (a hash per
# family for addresses, an LPM trie per family for prefixes), one struct pk_rule a value,
# and their settings had no event window.
PINNED_V2 = (
    abi.SETTINGS_MAP, abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP,
    abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP,
)
# Maps with the same layout in ABI 1, 2 and this one.
CARRIED = (abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP)


def pinned_maps(abi_version: int, current: tuple[str, ...]) -> tuple[str, ...]:
    """The names of the maps that pins of ``abi_version`` hold (``current``: this
    version's, also for versions it does not know)."""
    return PINNED_V2 if abi_version in abi.MIGRATABLE_ABI_VERSIONS else current


def convert(old: Mapping[str, Map], new: Mapping[str, Map]) -> dict[str, dict[bytes, int]]:
    """Copy the policy and every rule with its hits from ``old`` (ABI 1 or 2) into
    ``new`` (loaded, its rule maps empty). Returns the hits it read, per rule map, for
    :meth:`RuleTable.carry_hits` once the new program runs."""
    write_settings(new, read_settings(old))
    return RuleTable(new).copy_from(old)
