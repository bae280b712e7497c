"""detach: take pingkiller off hooks and remove its pins (also where the interface is
gone); and finishing what killed writers left, on its own."""

from __future__ import annotations

from pingkiller import hooks
from pingkiller.attachment.state import health
from pingkiller.bpf import BpfError
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import IncompatiblePins
from pingkiller.model.point import Point, validate_ifname
from pingkiller.model.results import Detached
from pingkiller.ops.common import chosen, store_at
from pingkiller.ops.listing import PinRoot
from pingkiller.store import Store
from pingkiller.store.records import read_identity
from pingkiller.system import capabilities


def detach(ifname: str, *, hook: Hook | str | None = None,
           direction: Direction | str | None = None, pin_root: PinRoot = None) -> list[Detached]:
    """Detach pingkiller from ``ifname`` and remove its pins (works if the interface is
    gone): every attachment of the interface, or those at ``hook`` and ``direction``."""
    validate_ifname(ifname)
    store = store_at(pin_root)
    capabilities.require()
    store.check_access(write=True)
    with store.writer() as recovered:
        done = []
        for point in chosen(store, ifname, hook, direction, "detach"):
            stale = _filters_nothing(store, point)
            store.detach(point)
            done.append(Detached(point, stale, tuple(recovered)))
            recovered = []
    return done


def _filters_nothing(store: Store, point: Point) -> bool:
    """Whether the pinned link filters nothing, judged from the link alone (the maps may
    be incomplete or of another ABI version: detach works whatever they are)."""
    where = store.directory(point)
    try:
        identity = read_identity(where)
    except IncompatiblePins:
        identity = None
    try:
        with hooks.for_pins(point, where).open(point, where) as link:
            return health(link, identity, point, store).state.stale
    except BpfError:
        return True


def detach_all(*, pin_root: PinRoot = None) -> list[Detached]:
    """Detach every pingkiller attachment (and nothing else)."""
    done: list[Detached] = []
    for point in recovered_points(pin_root):
        done += detach(point.ifname, hook=point.hook, direction=point.direction,
                       pin_root=pin_root)
    return done


def recovered_points(pin_root: PinRoot = None) -> list[Point]:
    """Every attachment with pins, after recovering what killed writers left behind."""
    store = store_at(pin_root)
    capabilities.require()
    store.check_access(write=True)
    if not store.root.is_dir():
        return []
    with store.writer():
        return store.points()


def recover_interrupted(*, pin_root: PinRoot = None) -> list[str]:
    """Finish or undo what killed writers left half done (under the lock), as every
    writer does first; returns what was done, in words. Readers never do this: until a
    writer runs, they show the last change that was completed."""
    store = store_at(pin_root)
    capabilities.require()
    store.check_access(write=True)
    if not store.root.is_dir():
        return []
    with store.writer() as recovered:
        return recovered
