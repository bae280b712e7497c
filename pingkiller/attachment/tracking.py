"""Whether what a handle opened is still what the pins hold: the same attachment, one
that replaced it and carried its counters and events over (the handle follows it), or
another attachment, or none (the handle has ended)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from pingkiller import abi
from pingkiller.attachment.state import Health
from pingkiller.bpf import BpfError, Map, Program
from pingkiller.model.enums import PinState
from pingkiller.model.errors import AttachmentEnded
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import PROGRAM_PIN

# Kept across a replace, so counters and event readers carry on (pingkiller.publish).
CARRIED_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP)


@dataclass(frozen=True)
class Pinned:
    """Which pins a directory holds: the directory itself, its program and carried maps."""

    directory: tuple[int, int]  # st_dev, st_ino
    program_id: int  # 0: pins made before programs were pinned
    carried: tuple[int, ...]  # ids of CARRIED_MAPS


def pinned_in(base: Path) -> Pinned:
    """What the directory ``base`` holds now (read-only; BpfError ENOENT if incomplete)."""
    info = os.stat(base)
    try:
        with Program.from_pin(base / PROGRAM_PIN, read_only=True) as program:
            program_id = program.info().id
    except BpfError as err:
        if err.errno != errno.ENOENT:
            raise
        program_id = 0
    carried = []
    for name in CARRIED_MAPS:
        with Map.from_pin(base / name, read_only=True) as bpf_map:
            carried.append(bpf_map.info.id)
    return Pinned((info.st_dev, info.st_ino), program_id, tuple(carried))


def pin_state(store: Store | None, point: Point, opened: Pinned | None) -> PinState:
    """What the pins of ``point`` hold now, compared with ``opened`` (see
    :class:`~pingkiller.PinState`); CURRENT for what pins nothing."""
    if store is None or opened is None:
        return PinState.CURRENT
    now = store.read(point, lambda base, _pending: pinned_in(base))
    if now is None:
        return PinState.DETACHED
    if now.directory == opened.directory or now.program_id in (0, opened.program_id):
        return PinState.CURRENT
    return PinState.REPLACED if now.carried == opened.carried else PinState.SUPERSEDED


def ended_by(point: Point, state: PinState) -> AttachmentEnded | None:
    """The end of a handle whose pins are now in ``state`` (None: it reads on)."""
    if state is PinState.DETACHED:
        return AttachmentEnded(f"{point.label} was detached", point=point)
    if state is PinState.SUPERSEDED:
        return AttachmentEnded(f"{point.label} was detached and attached again, with "
                               "counters and events of its own: open it again to follow "
                               "the new attachment", point=point)
    return None


def stopped_filtering(point: Point, now: Health) -> AttachmentEnded | None:
    """The end of a handle whose link is in ``now`` (None: it still filters)."""
    if not now.state.stale:
        return None
    return AttachmentEnded(f"{point.label} filters nothing any more: {now.problem}",
                           point=point)
