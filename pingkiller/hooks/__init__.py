"""The hooks an attachment runs on, one strategy each (:mod:`~pingkiller.hooks.xdp`,
:mod:`~pingkiller.hooks.tcx`, :mod:`~pingkiller.hooks.clsact`) behind one link protocol
(:class:`~pingkiller.hooks.base.HookLink`).

XDP takes one program per interface. tc takes many in order: pingkiller's tcx link runs
after those attached before it and hands what it passes on to those after it. Where the
kernel has no tcx (before Linux 6.6), a tc attachment is a filter on the clsact qdisc.
"""

from __future__ import annotations

import errno
from pathlib import Path

from pingkiller.bpf import BpfError, tcx_supported
from pingkiller.hooks.base import HookLink, Strategy
from pingkiller.hooks.clsact import ClsactHook
from pingkiller.hooks.tcx import TcxHook
from pingkiller.hooks.xdp import XdpHook
from pingkiller.model.enums import Hook, Mode
from pingkiller.model.errors import AttachFailed, InvalidInput
from pingkiller.model.point import Point
from pingkiller.model.words import MODES
from pingkiller.store.layout import LINK_PIN

XDP = XdpHook()
TCX = TcxHook()
CLSACT = ClsactHook()
STRATEGIES: tuple[Strategy, ...] = (XDP, TCX, CLSACT)

__all__ = ["CLSACT", "STRATEGIES", "TCX", "XDP", "HookLink", "Strategy", "for_attach",
           "for_pins", "of_hook", "runs"]


def for_attach(point: Point, mode: Mode | str) -> tuple[Strategy, Mode]:
    """The strategy and mode of an attach at ``point`` asked in ``mode`` (AUTO: native XDP
    where the driver has it; tcx where the kernel has it, else clsact). A mode of the
    other hook is refused."""
    mode = MODES.coerce(mode)
    if mode.hook not in (None, point.hook) or mode is Mode.NONE:
        other = "the tc hook" if mode.hook is Hook.TC else "the XDP hook"
        raise InvalidInput(f"mode {mode.value} is a mode of {other}, not of {point.label}'s "
                           f"hook ({', '.join(m.value for m in of_hook(point.hook))} or auto)",
                           point=point)
    if point.hook is Hook.XDP:
        return XDP, mode
    if mode is Mode.TCX and not tcx_supported():
        raise AttachFailed(
            f"this kernel has no tcx (link-based tc hooks, Linux 6.6+), so mode tcx cannot "
            f"attach to {point.ifname}: use mode clsact (or auto), which attaches a filter on "
            "the clsact qdisc instead", point=point)
    if mode is Mode.CLSACT or (mode is Mode.AUTO and not tcx_supported()):
        return CLSACT, mode
    return TCX, mode


def of_hook(hook: Hook) -> tuple[Mode, ...]:
    """The modes one may ask of ``hook`` (besides AUTO)."""
    return tuple(mode for strategy in STRATEGIES if strategy.hook is hook
                 for mode in strategy.modes)


def for_pins(point: Point, directory: Path) -> Strategy:
    """The strategy of the attachment pinned in ``directory``: tc pins hold a link pin
    when tcx holds the hook, none for a clsact filter."""
    if point.hook is Hook.XDP:
        return XDP
    return TCX if (directory / LINK_PIN).exists() else CLSACT


def for_hook(point: Point) -> Strategy:
    """A strategy that can tell which programs run at ``point``'s hook."""
    return XDP if point.hook is Hook.XDP else TCX


def runs(point: Point, ifindex: int, prog_ids: set[int]) -> bool | None:
    """Whether any of ``prog_ids`` runs on ``ifindex``'s hook of ``point`` (False when the
    interface is gone); None when this process may not ask (querying tcx hooks needs
    CAP_NET_ADMIN, which a reader with CAP_BPF alone lacks)."""
    try:
        return for_hook(point).runs(point, ifindex, prog_ids)
    except BpfError as err:
        if err.errno in (errno.EPERM, errno.EACCES):
            return None
        return False
