"""What every verb starts from: the pin store, and the attachments a verb names."""

from __future__ import annotations

from pathlib import Path

from pingkiller.hooks.pinned import PinnedLinks
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import NotAttached, Remedy
from pingkiller.model.point import Point, validate_ifname
from pingkiller.model.words import DIRECTIONS, HOOKS
from pingkiller.store import Store, lock


def store_at(pin_root: str | Path | Store | None = None) -> Store:
    """The pin store at ``pin_root`` (a path, a Store, or None: $PINGKILLER_PIN_ROOT,
    else /sys/fs/bpf/pingkiller), able to write and recover."""
    if isinstance(pin_root, Store):
        return pin_root if pin_root.links is not None else Store(pin_root.root, PinnedLinks())
    return Store(pin_root, PinnedLinks())


def set_lock_timeout(seconds: float | None) -> None:
    """How long this process's writers wait for the pin lock from now on, in seconds (0:
    try once). None goes back to $PINGKILLER_LOCK_TIMEOUT, else 30 s, and checks that
    variable now, so a bad value is reported before anything runs."""
    lock.set_timeout(seconds)


def selected(store: Store, ifname: str, hook: Hook | str | None = None,
             direction: Direction | str | None = None) -> list[Point]:
    """The attachments pinned for ``ifname`` (XDP first, then tc in and out), only those
    at ``hook`` and ``direction`` when given. A listing: no BPF call, no privilege."""
    validate_ifname(ifname)
    wanted_hook = HOOKS.coerce(hook) if hook is not None else None
    wanted_direction = DIRECTIONS.coerce(direction) if direction is not None else None
    return [point for point in store.points() if point.ifname == ifname
            and wanted_hook in (None, point.hook)
            and wanted_direction in (None, point.direction)]


def chosen(store: Store, ifname: str, hook: Hook | str | None,
           direction: Direction | str | None, verb: str | None = None) -> list[Point]:
    """The selected attachments of ``ifname``; NotAttached when there is none (with
    ``verb``, e.g. "detach": "nothing to detach", else the remedy is to attach one)."""
    found = selected(store, ifname, hook, direction)
    if found:
        return found
    wanted = Point(ifname, HOOKS.coerce(hook) if hook is not None else Hook.TC
                   if direction is not None else Hook.XDP,
                   DIRECTIONS.coerce(direction) if direction is not None else Direction.IN)
    nothing = f": nothing to {verb}" if verb else ""
    others = selected(store, ifname)
    if others:
        held = ", ".join(point.hook_text for point in others)
        raise NotAttached(f"{ifname} has no pingkiller attachment at {_asked(hook, direction)} "
                          f"(it has: {held}){nothing}", point=wanted)
    raise NotAttached(f"{ifname} has no pingkiller attachment{nothing}", point=wanted,
                      remedy=None if verb else Remedy.ATTACH)


def _asked(hook: Hook | str | None, direction: Direction | str | None) -> str:
    words = []
    if hook is not None:
        words.append(HOOKS.coerce(hook).label)
    if direction is not None:
        words.append(DIRECTIONS.coerce(direction).label)
    return " ".join(words) or "any hook"
