"""The links of pin directories, as the store's transactions need them
(:class:`pingkiller.store.Links`): alive or not, running which program, pinned, detached."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from pingkiller import abi
from pingkiller.bpf import BpfError, Program
from pingkiller.hooks import for_pins, runs
from pingkiller.hooks.base import HookLink
from pingkiller.model.errors import IncompatiblePins
from pingkiller.model.point import Point
from pingkiller.store import secure
from pingkiller.store.layout import IDENTITY_PIN, LINK_PIN, PROGRAM_PIN
from pingkiller.store.records import Identity, write_identity
from pingkiller.system.interfaces import netns_cookie


def open_link(point: Point, directory: Path) -> HookLink:
    """The link of the attachment pinned in ``directory`` (BpfError ENOENT: none)."""
    return for_pins(point, directory).open(point, directory)


def pin_link(link: HookLink, directory: Path, program: bytes = b"") -> None:
    """Pin ``link`` in ``directory`` and the identity record beside it, each unless it is
    there already (``program``: the ELF's SHA-256, b"" when not known)."""
    if not (directory / LINK_PIN).exists():
        link.pin(directory / LINK_PIN)
        if (directory / LINK_PIN).exists():
            secure(directory / LINK_PIN)
    if not (directory / IDENTITY_PIN).exists():
        info = link.info()
        write_identity(directory, Identity(info.id, info.ifindex, abi.ABI_VERSION,
                                           netns_cookie(), program))


class PinnedLinks:
    """:class:`pingkiller.store.Links` for bpffs and the kernel's hooks."""

    def alive(self, point: Point, directory: Path) -> bool:
        try:
            with open_link(point, directory) as link:
                return link.info().ifindex != 0
        except (BpfError, IncompatiblePins):
            return False

    def runs_program_of(self, point: Point, running: Path, pinned: Path) -> bool:
        try:
            program = Program.from_pin(pinned / PROGRAM_PIN, read_only=True)
        except BpfError:
            return False  # killed before the new program was pinned, so before the swap
        with program:
            try:
                with open_link(point, running) as link:
                    return link.info().prog_id == program.info().id
            except BpfError:
                return False

    def complete(self, point: Point, directory: Path, source: Path) -> None:
        with open_link(point, source) as link:
            pin_link(link, directory)

    def detach(self, point: Point, directory: Path) -> None:
        try:
            with open_link(point, directory) as link:
                link.detach()
        except BpfError as err:
            if err.errno != errno.ENOENT:
                raise

    def program_runs(self, point: Point, directory: Path) -> bool:
        try:
            ifindex = socket.if_nametoindex(point.ifname)
            program = Program.from_pin(directory / PROGRAM_PIN, read_only=True)
        except (OSError, BpfError):
            return False
        with program:
            return runs(point, ifindex, {program.info().id}) is True
