"""The tc hook through a filter on the clsact qdisc, where the kernel has no tcx (before
Linux 6.6): not link-based, at a priority of pingkiller's own ('PK').

The filter holds no fd: it runs until it is removed (or the interface or its qdisc goes),
also after the process that attached it ends, pinned or not. It is found again by its
place and by the program pinned beside the maps.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

from pingkiller.bpf import BpfError, LinkInfo, Program, TcFilter, remove_clsact_if_empty, tc_filters
from pingkiller.hooks.base import ClosedOnExit, HookLink
from pingkiller.hooks.tcx import TC_DIRECTIONS, TcxHook
from pingkiller.model.enums import Direction, Mode
from pingkiller.model.errors import AttachFailed, IncompatiblePins
from pingkiller.model.point import Point
from pingkiller.store.layout import PROGRAM_PIN
from pingkiller.store.records import read_identity

# pingkiller's place on a clsact qdisc, in either direction: 'PK'. Filters run by
# priority, lowest first; a filter of another tool at this place makes an attach fail.
CLSACT_PRIORITY = 0x504B
CLSACT_HANDLE = 1


class ClsactLink(ClosedOnExit):
    """pingkiller's filter on an interface's clsact qdisc, standing for the filter that
    runs ``program_id``: detach leaves a filter in its place that runs another program
    (someone else's) alone."""

    def __init__(self, ifindex: int, direction: Direction, program_id: int) -> None:
        self.filter = TcFilter(ifindex, TC_DIRECTIONS[direction], CLSACT_PRIORITY, CLSACT_HANDLE)
        self.program_id = program_id

    def info(self) -> LinkInfo:
        """As for a link: ``ifindex`` 0 when the filter is gone or runs another program."""
        running = self.filter.query()
        ours = running != 0 and running == self.program_id
        return LinkInfo(id=0, prog_id=running or self.program_id,
                        ifindex=self.filter.ifindex if ours else 0, type=0,
                        attach_type=self.filter.direction.attach_type)

    def update(self, program: Program) -> None:
        """Swap ``program`` into the filter's place (the kernel replaces it atomically)."""
        TcFilter.attach(program, self.filter.ifindex, self.filter.direction,
                        priority=CLSACT_PRIORITY, handle=CLSACT_HANDLE, replace=True)
        self.program_id = program.info().id

    def detach(self) -> None:
        """Remove the filter if it runs our program, then the clsact qdisc if no filter of
        anyone is left on it."""
        if self.filter.query() == self.program_id:
            self.filter.detach()
        with contextlib.suppress(BpfError):  # the interface is gone, and its qdisc with it
            remove_clsact_if_empty(self.filter.ifindex)

    def pin(self, path: Path) -> None:
        """A filter has no fd to pin: it is found by its place and the pinned program."""

    def close(self) -> None:
        """Nothing to release: the filter holds no fd."""



class ClsactHook(TcxHook):
    """tc through the clsact qdisc: what runs there, and whether the hook is free, is
    asked as for tcx (the tc hook runs tcx's programs, then the qdisc's filters)."""

    modes = (Mode.CLSACT,)
    has_link_pin = False

    def attach(self, program: Program, point: Point, ifindex: int, mode: Mode) -> HookLink:
        direction = TC_DIRECTIONS[point.direction]
        try:
            TcFilter.attach(program, ifindex, direction, priority=CLSACT_PRIORITY,
                            handle=CLSACT_HANDLE)
        except BpfError as err:
            try:
                taken = any(found.priority == CLSACT_PRIORITY
                            for found in tc_filters(ifindex, direction))
            except BpfError:
                taken = False
            if not taken:
                raise AttachFailed(f"attaching to {point.label} failed: {err}",
                                   point=point) from None
            where = direction.value
            raise AttachFailed(
                f"{point.ifname}'s clsact {where} has a filter at priority {CLSACT_PRIORITY} "
                "(pingkiller's place) that pingkiller did not attach: it is left alone; remove "
                f"it (`tc filter del dev {point.ifname} {where} prio {CLSACT_PRIORITY}`) and "
                "try again", point=point) from None
        return ClsactLink(ifindex, point.direction, program.info().id)

    def open(self, point: Point, directory: Path) -> HookLink:
        with Program.from_pin(directory / PROGRAM_PIN, read_only=True) as program:
            program_id = program.info().id
        return ClsactLink(_recorded_ifindex(point, directory), point.direction, program_id)

    def from_id(self, point: Point, link_id: int) -> HookLink:
        raise BpfError(errno.EPERM, "opening link", "a clsact filter has no link")



def _recorded_ifindex(point: Point, directory: Path) -> int:
    """The interface of a clsact attachment: as its identity record says, or (a writer
    killed before it pinned the record) the index of the interface it is named after."""
    try:
        identity = read_identity(directory)
    except (BpfError, IncompatiblePins):
        identity = None
    if identity is not None:
        return identity.ifindex
    try:
        return socket.if_nametoindex(point.ifname)
    except OSError:
        raise BpfError(errno.ENOENT, "finding the clsact filter",
                       f"{point.ifname}: no such interface") from None
