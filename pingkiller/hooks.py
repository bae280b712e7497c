"""The hooks an attachment runs on, as the kernel sees them: which program of the object
a :class:`~pingkiller.pins.Point` runs, which kind of link holds it, and which programs
run there now.

XDP takes one program per interface (a link holds it, or another tool's program holds
the hook). tc takes many in order: pingkiller's tcx link runs after those attached
before it and hands what it passes on to those after it (TCX_NEXT). Where the kernel has
no tcx (before Linux 6.6), a tc attachment is a filter on the interface's clsact qdisc
instead (:class:`ClsactLink`): not link-based, at a priority of pingkiller's own.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import socket
from pathlib import Path
from types import TracebackType

from pingkiller import abi, pins
from pingkiller.abi import Direction, Hook
from pingkiller.bpf import (
    BpfError,
    LinkInfo,
    Map,
    Program,
    TcDirection,
    TcFilter,
    TcxLink,
    XdpLink,
    remove_clsact_if_empty,
    tc_filters,
    tcx_query,
    tcx_supported,
    xdp_query,
)
from pingkiller.pins import Point

TC_DIRECTIONS = {Direction.IN: TcDirection.INGRESS, Direction.OUT: TcDirection.EGRESS}
# pingkiller's place on a clsact qdisc, in either direction: 'PK'. Filters run by
# priority, lowest first; a filter of another tool at this place makes an attach fail.
CLSACT_PRIORITY = 0x504B
CLSACT_HANDLE = 1


class TcMode(enum.Enum):
    """How a tc attachment holds its program: a tcx link where the kernel has tcx (auto),
    or a classic filter on the clsact qdisc."""

    AUTO = "auto"
    TCX = "tcx"
    CLSACT = "clsact"


class ClsactLink:
    """pingkiller's filter on an interface's clsact qdisc, doing for a tc attachment on
    a kernel without tcx what a link does for the others: its info, an atomic swap of
    the program, detach. It holds no fd: the filter runs until detached (or the interface
    or its qdisc goes), also after the process that attached it ends, pinned or not.

    It stands for the filter running ``program_id``: detach leaves a filter in its place
    that runs another program (someone else's) alone.
    """

    def __init__(self, ifindex: int, direction: Direction, program_id: int) -> None:
        self.filter = TcFilter(ifindex, TC_DIRECTIONS[direction], CLSACT_PRIORITY, CLSACT_HANDLE)
        self.program_id = program_id

    @classmethod
    def attach(cls, program: Program, ifindex: int, direction: Direction) -> ClsactLink:
        """Attach ``program`` at pingkiller's place on ``ifindex``'s clsact qdisc (made if
        there is none); BpfError (EEXIST) where a filter is there already."""
        TcFilter.attach(program, ifindex, TC_DIRECTIONS[direction], priority=CLSACT_PRIORITY,
                        handle=CLSACT_HANDLE)
        return cls(ifindex, direction, program.info().id)

    def info(self) -> LinkInfo:
        """As for a link: ``ifindex`` 0 when the filter is gone or runs another program."""
        running = self.filter.query()
        ours = running != 0 and running == self.program_id
        return LinkInfo(id=0, prog_id=running or self.program_id,
                        ifindex=self.filter.ifindex if ours else 0, type=0,
                        attach_type=self.filter.direction.attach_type)

    def update(self, program: Program, expected: Program | None = None) -> None:
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

    def close(self) -> None:
        """Nothing to release: the filter holds no fd."""

    def __enter__(self) -> ClsactLink:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


InterfaceLink = XdpLink | TcxLink | ClsactLink


def program_name(point: Point) -> str:
    """The name of the object's program that runs at ``point``."""
    if point.hook is Hook.XDP:
        return abi.PROGRAM_NAME
    return abi.TC_PROGRAM_NAMES[point.direction]


def use_clsact(mode: TcMode) -> bool:
    """Whether a tc attach in ``mode`` makes a clsact filter (auto: where there is no tcx)."""
    return mode is TcMode.CLSACT or (mode is TcMode.AUTO and not tcx_supported())


def open_link(point: Point, directory: Path) -> InterfaceLink:
    """The link of the attachment pinned in ``directory``: its link pin, or for a tc
    attachment without one, the clsact filter that would run its pinned program
    (BpfError ENOENT when there is neither link pin nor program pin)."""
    link_pin = directory / pins.LINK_PIN
    if point.hook is Hook.XDP:
        return XdpLink.from_pin(link_pin)
    if link_pin.exists():
        return TcxLink.from_pin(link_pin)
    with Program.from_pin(directory / pins.PROGRAM_PIN, read_only=True) as program:
        program_id = program.info().id
    return ClsactLink(_recorded_ifindex(point, directory), point.direction, program_id)


def _recorded_ifindex(point: Point, directory: Path) -> int:
    """The interface of a clsact attachment: as its identity record says, or (a writer
    killed before it pinned the record) the index of the interface it is named after."""
    try:
        with Map.from_pin(directory / pins.IDENTITY_PIN, read_only=True) as record:
            return pins.Identity.decode(record[abi.u32_key(0)]).ifindex
    except (BpfError, ValueError):
        pass
    try:
        return socket.if_nametoindex(point.ifname)
    except OSError:
        raise BpfError(errno.ENOENT, "finding the clsact filter",
                       f"{point.ifname}: no such interface") from None


def link_from_id(point: Point, link_id: int) -> XdpLink | TcxLink:
    """The link with id ``link_id``, of the kind ``point`` runs (needs CAP_SYS_ADMIN)."""
    if point.hook is Hook.XDP:
        return XdpLink.from_id(link_id)
    return TcxLink.from_id(link_id)


def running_programs(point: Point, ifindex: int) -> list[int]:
    """The ids of the programs on ``ifindex``'s hook of ``point``, in the order they run:
    XDP's (one per mode), or the tcx chain of its direction followed by the bpf filters
    of its clsact qdisc (BpfError: no such interface)."""
    if point.hook is Hook.XDP:
        return xdp_query(ifindex).attached_ids
    direction = TC_DIRECTIONS[point.direction]
    return _tcx_chain(ifindex, direction) + _clsact_chain(ifindex, direction)


def _tcx_chain(ifindex: int, direction: TcDirection) -> list[int]:
    """The programs of a tcx hook in order; none on a kernel without tcx (EINVAL)."""
    try:
        return tcx_query(ifindex, direction)
    except BpfError as err:
        if err.errno != errno.EINVAL:
            raise
        return []


def _clsact_chain(ifindex: int, direction: TcDirection) -> list[int]:
    """The programs of the bpf filters on a clsact direction, in the order they run."""
    return [found.prog_id for found in tc_filters(ifindex, direction) if found.prog_id]


def runs(point: Point, ifindex: int, prog_ids: set[int]) -> bool | None:
    """Whether any of ``prog_ids`` runs on ``ifindex``'s hook of ``point`` (False when the
    interface is gone); None when this process may not ask (querying tcx hooks needs
    CAP_NET_ADMIN, which a reader with CAP_BPF alone lacks)."""
    try:
        if point.hook is Hook.XDP:
            return bool(prog_ids & set(running_programs(point, ifindex)))
        direction = TC_DIRECTIONS[point.direction]
        # A clsact filter shows in a dump anyone may read; the tcx query needs privilege.
        return bool(prog_ids & set(_clsact_chain(ifindex, direction))
                    or prog_ids & set(_tcx_chain(ifindex, direction)))
    except BpfError as err:
        if err.errno in (errno.EPERM, errno.EACCES):
            return None
        return False
