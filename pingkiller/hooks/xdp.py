"""The XDP hook: one program per interface, held by a bpf_link, seeing what arrives."""

from __future__ import annotations

import errno
from pathlib import Path

from pingkiller.bpf import BpfError, NotSupportedError, Program, XdpLink, xdp_query
from pingkiller.hooks.base import HookLink, Strategy
from pingkiller.hooks.links import MODES, BpfLink, xdp_mode
from pingkiller.model.enums import Hook, Mode
from pingkiller.model.errors import AlreadyAttached, AttachFailed, ForeignProgram, Remedy
from pingkiller.model.point import Point
from pingkiller.store.layout import LINK_PIN

# The object's programs, as the kernel names them: a program of these names is pingkiller's.
OUR_PROGRAM_NAMES = ("pingkiller", "pingkill_tc_in", "pingkill_tc_out")


class XdpHook(Strategy):
    hook = Hook.XDP
    modes = (Mode.NATIVE, Mode.GENERIC)
    has_link_pin = True
    chained = False

    def attach(self, program: Program, point: Point, ifindex: int, mode: Mode) -> HookLink:
        try:
            return BpfLink(XdpLink.attach(program, ifindex, xdp_mode(mode)))
        except NotSupportedError:
            raise AttachFailed(f"{point.ifname} does not support XDP in {mode.value} mode: "
                               "try mode generic or auto", point=point) from None
        except BpfError as err:
            if err.errno == errno.EBUSY:
                self.check_free(point, ifindex, {})
            raise AttachFailed(f"attaching to {point.label} failed: {err}", point=point) from None

    def open(self, point: Point, directory: Path) -> HookLink:
        return BpfLink(XdpLink.from_pin(directory / LINK_PIN))

    def from_id(self, point: Point, link_id: int) -> HookLink:
        return BpfLink(XdpLink.from_id(link_id))

    def mode_at(self, ifindex: int) -> Mode:
        return MODES[xdp_query(ifindex).mode]

    def running(self, point: Point, ifindex: int) -> list[int]:
        return xdp_query(ifindex).attached_ids

    def check_free(self, point: Point, ifindex: int, held: dict[int, Point]) -> None:
        attached = self.running(point, ifindex)
        if not attached:
            return
        prog_id = attached[0]
        check_not_ours(point, attached, held)
        try:
            with Program.from_id(prog_id) as program:
                name = program.info().name
        except BpfError:
            name = "?"
        if name in OUR_PROGRAM_NAMES:
            raise AlreadyAttached(
                f"{point.ifname} already carries a pingkiller program (id {prog_id}) that is "
                "not pinned: another process holds a private attachment (persist=False) "
                "there; it goes when that process closes it or ends", point=point)
        raise ForeignProgram(
            f"{point.ifname} already carries XDP program id {prog_id} ({name!r}) that "
            "pingkiller did not attach; it is left alone", point=point, remedy=Remedy.TC_HOOK)


def check_not_ours(point: Point, running: list[int], held: dict[int, Point]) -> None:
    """Raise AlreadyAttached when the hook runs pingkiller pinned under another point (the
    interface was renamed): a second one would judge every ping twice."""
    for prog_id, other in held.items():
        if prog_id in running and other != point:
            raise AlreadyAttached(
                f"{point.ifname} already carries pingkiller's attachment pinned as "
                f"{other.ifname!r} (the interface was renamed)", point=other,
                remedy=Remedy.DETACH)
