"""Putting a program at a point: load the data path's object for it, and publish it into
the pin store, all or nothing under kill -9. Every change of the program an attachment
runs goes through here: attach, replace, a big rule change (a rebuilt copy of the
rules), upgrade.
"""

from __future__ import annotations

from collections.abc import Callable

from pingkiller import abi
from pingkiller.bpf import BpfError, Map, Object, Program
from pingkiller.datapath.program import open_object, program_digest
from pingkiller.datapath.rules import RuleTable
from pingkiller.hooks import Strategy
from pingkiller.hooks.base import HookLink
from pingkiller.hooks.pinned import pin_link
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import PermissionDenied
from pingkiller.model.limits import Limit
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.rules import RuleSet
from pingkiller.store import Store, remove, secure
from pingkiller.store.layout import PROGRAM_PIN
from pingkiller.store.records import write_settings
from pingkiller.system import capabilities

PINNED_MAPS = (
    abi.SETTINGS_MAP,
    abi.COUNTERS_MAP,
    abi.TIMING_MAP,
    abi.EVENTS_MAP,
    abi.RULES_V4_MAP,
    abi.RULES_V6_MAP,
    abi.PREFIXES_V4_MAP,
    abi.PREFIXES_V6_MAP,
    abi.PREFIX_TRIE_V4_MAP,
    abi.PREFIX_TRIE_V6_MAP,
    abi.LIMITS_MAP,
    abi.BUCKETS_MAP,
    abi.RATE_TOTAL_MAP,
)
# Kept across a replace, so counters and event readers carry on.
CARRIED_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP)
# Kept also when a big rule change swaps a rebuilt copy of the rules in: what each
# limited source has spent.
KEPT_BY_REBUILDS = (abi.BUCKETS_MAP, abi.RATE_TOTAL_MAP)


def object_for(strategy: Strategy, point: Point) -> Object:
    """The object, opened to load only the program that runs at ``point`` (the kernel
    verifies one program, not three; the maps are the same)."""
    obj = open_object()
    obj.load_only(strategy.program_name(point))
    return obj


def load_object(obj: Object) -> None:
    """Load ``obj``; a seccomp filter that refuses bpf() is named as such."""
    try:
        obj.load()
    except BpfError as err:
        if capabilities.seccomp_refused(err):
            raise PermissionDenied(capabilities.SECCOMP_REFUSED) from None
        raise


def load(strategy: Strategy, point: Point, policy: Policy,
         rules: list[tuple[RuleAction, Limit | None, RuleSet]], carried: dict[str, Map]) -> Object:
    """The object for ``point``, loaded on the ``carried`` maps, with ``policy`` and
    rules: configured before anything runs it. Its buckets start full: a replace
    forgets how much each source has spent."""
    obj = object_for(strategy, point)
    try:
        for name, existing in carried.items():
            obj.reuse_map(name, existing)
        obj.set_max_entries(abi.BUCKETS_MAP, policy.limit_buckets)
        load_object(obj)
        write_settings(obj.maps, abi.Config.of(policy))
        table = RuleTable(obj.maps)
        for action, limit, networks in rules:
            if len(networks):
                table.set(networks, action, limit=limit)
    except BaseException:
        obj.close()
        raise
    return obj


def publish(store: Store, obj: Object, strategy: Strategy, point: Point,
            link: HookLink | Callable[[Program], HookLink]) -> HookLink:
    """Make ``obj``'s program the one ``point``'s pins name, all or nothing under kill -9.

    Its maps and program are pinned in a temporary directory, then the program is
    swapped into ``link`` (an existing attachment's: one atomic update, no moment without
    a program) or attached by calling ``link`` (a new attachment); the link and the
    identity record are pinned and the directory renamed into place. A writer killed on
    the way leaves the temporary directory, which the next one completes (if the swap
    happened) or removes (:meth:`pingkiller.store.Store.recover`). Call it as a writer.
    """
    temp = store.temporary(point)
    swapped = False
    try:
        for name in PINNED_MAPS:
            obj.maps[name].pin(temp / name)
            secure(temp / name)
        # Pinned before the link runs it: during a swap it tells recovery whether the swap
        # happened; afterwards it tells readers which program the link runs.
        program = obj.programs[strategy.program_name(point)]
        program.pin(temp / PROGRAM_PIN)
        secure(temp / PROGRAM_PIN)
        if callable(link):
            link = link(program)
        else:
            link.update(program)
            swapped = True
        pin_link(link, temp, program_digest())
        store.publish(temp, point)
    except BaseException:
        if swapped:
            store.recover()  # the new program runs already: its maps must win, as after a kill -9
        else:
            remove(temp)
        raise
    return link
