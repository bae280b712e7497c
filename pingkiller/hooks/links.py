"""A bpf_link as a :class:`~pingkiller.hooks.base.HookLink`: XDP's and tcx's."""

from __future__ import annotations

from pathlib import Path

from pingkiller.bpf import LinkInfo, Program, TcxLink, XdpLink, XdpMode
from pingkiller.hooks.base import ClosedOnExit
from pingkiller.model.enums import Mode

MODES = {XdpMode.NATIVE: Mode.NATIVE, XdpMode.GENERIC: Mode.GENERIC,
         XdpMode.OFFLOAD: Mode.OFFLOAD, XdpMode.NONE: Mode.NONE, XdpMode.AUTO: Mode.AUTO}


class BpfLink(ClosedOnExit):
    """An XDP or tcx link, held by its fd."""

    def __init__(self, link: XdpLink | TcxLink) -> None:
        self.link = link

    def info(self) -> LinkInfo:
        return self.link.info()

    def update(self, program: Program) -> None:
        self.link.update(program)

    def detach(self) -> None:
        self.link.detach()

    def pin(self, path: Path) -> None:
        self.link.pin(path)

    def close(self) -> None:
        self.link.close()



def xdp_mode(mode: Mode) -> XdpMode:
    """The binding's XDP mode for ``mode`` (AUTO, NATIVE or GENERIC)."""
    return {Mode.AUTO: XdpMode.AUTO, Mode.NATIVE: XdpMode.NATIVE,
            Mode.GENERIC: XdpMode.GENERIC, Mode.OFFLOAD: XdpMode.OFFLOAD}[mode]
