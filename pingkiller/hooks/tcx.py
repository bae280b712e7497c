"""The tc hook through tcx (Linux 6.6+): programs in order, pingkiller's held by a link,
after those attached before it; what it passes goes on to the next (TCX_NEXT)."""

from __future__ import annotations

import errno
from pathlib import Path

from pingkiller.bpf import (
    BpfError,
    NotSupportedError,
    Program,
    TcDirection,
    TcxLink,
    tc_filters,
    tcx_query,
)
from pingkiller.hooks.base import HookLink, Strategy
from pingkiller.hooks.links import BpfLink
from pingkiller.hooks.xdp import check_not_ours
from pingkiller.model.enums import Direction, Hook, Mode
from pingkiller.model.errors import AttachFailed
from pingkiller.model.point import Point
from pingkiller.store.layout import LINK_PIN

TC_DIRECTIONS = {Direction.IN: TcDirection.INGRESS, Direction.OUT: TcDirection.EGRESS}


class TcxHook(Strategy):
    hook = Hook.TC
    modes = (Mode.TCX,)
    has_link_pin = True
    chained = True

    def attach(self, program: Program, point: Point, ifindex: int, mode: Mode) -> HookLink:
        try:
            return BpfLink(TcxLink.attach(program, ifindex, TC_DIRECTIONS[point.direction]))
        except NotSupportedError:
            raise AttachFailed(f"{point.ifname}: this kernel has no tcx (Linux 6.6+): use "
                               "mode clsact, or the XDP hook", point=point) from None
        except BpfError as err:
            raise AttachFailed(f"attaching to {point.label} failed: {err}", point=point) from None

    def open(self, point: Point, directory: Path) -> HookLink:
        return BpfLink(TcxLink.from_pin(directory / LINK_PIN))

    def from_id(self, point: Point, link_id: int) -> HookLink:
        return BpfLink(TcxLink.from_id(link_id))

    def mode_at(self, ifindex: int) -> Mode:
        return self.modes[0]

    def running(self, point: Point, ifindex: int) -> list[int]:
        return tc_chain(point, ifindex)

    def runs(self, point: Point, ifindex: int, prog_ids: set[int]) -> bool:
        # A clsact filter shows in a dump anyone may read; the tcx query needs privilege.
        direction = TC_DIRECTIONS[point.direction]
        return bool(prog_ids & set(clsact_chain(ifindex, direction))
                    or prog_ids & set(tcx_chain(ifindex, direction)))

    def check_free(self, point: Point, ifindex: int, held: dict[int, Point]) -> None:
        check_not_ours(point, self.running(point, ifindex), held)


def tcx_chain(ifindex: int, direction: TcDirection) -> list[int]:
    """The programs of a tcx hook in order; none on a kernel without tcx (EINVAL)."""
    try:
        return tcx_query(ifindex, direction)
    except BpfError as err:
        if err.errno != errno.EINVAL:
            raise
        return []


def clsact_chain(ifindex: int, direction: TcDirection) -> list[int]:
    """The programs of the bpf filters on a clsact direction, in the order they run."""
    return [found.prog_id for found in tc_filters(ifindex, direction) if found.prog_id]


def tc_chain(point: Point, ifindex: int) -> list[int]:
    """Every program of ``point``'s tc hook in the order they run: tcx's, then the
    clsact qdisc's filters (whichever holds pingkiller's program)."""
    direction = TC_DIRECTIONS[point.direction]
    return tcx_chain(ifindex, direction) + clsact_chain(ifindex, direction)
