"""Crash recovery: what the pin transactions of :mod:`pingkiller.pins` left behind a
killed writer, and how the next writer finishes or undoes it.

A writer builds an attachment's pins in a temporary directory and renames it into place
(attach, ``--replace``), or renames the pins away before unpinning them (detach), so a
directory of a writer that died tells which change it was making (``pins.leftovers()``).
Writers call :func:`recover` under the pin lock before they change anything. Readers
never finish anything: :func:`pending_directory` and :func:`replacing_programs` only tell
them which pins the next writer will keep.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from pingkiller import abi, hooks, interfaces, pins
from pingkiller.bpf import MAP_TYPE_ARRAY, BpfError, Map, Program
from pingkiller.hooks import ClsactLink, InterfaceLink
from pingkiller.pins import Point

_log = logging.getLogger("pingkiller.recovery")


def recover() -> list[str]:
    """Finish or undo what killed writers left half done; returns what was done, in words
    (also logged, one warning per action, on the ``pingkiller.recovery`` logger).

    Call with the pin lock held. Every writer holds that lock from its first pin to its
    last, so whatever is left over now was left by a writer that is gone (its pid may
    have been reused, or live in another pid namespace sharing this bpffs).
    """
    notes = []
    for path, kind, point, _pid in pins.leftovers():
        final = pins.directory(point)
        if kind == "attach" and not final.exists() and _link_alive(point, path):
            with hooks.open_link(point, path) as link:
                pin_link(link, path)  # the identity record, if the writer died before it
            pins.publish(path, point)
            notes.append(f"{point.label}: completed an interrupted attach")
            continue
        if kind == "attach" and final.exists() and _replace_done(point, path, final):
            # The link pin is in the new directory only once the swap is done; a clsact
            # filter has none, and runs the new directory's program
            linked = (final / pins.LINK_PIN).exists() and not (path / pins.LINK_PIN).exists()
            source = final if linked else path
            with hooks.open_link(point, source) as link:
                pin_link(link, path)
            pins.publish(path, point)
            notes.append(f"{point.label}: completed an interrupted replace")
            continue
        if kind == "replace" and not final.exists():
            path.rename(final)
            notes.append(f"{point.label}: restored pins of an interrupted replace")
            continue
        if kind == "detach" or (kind == "attach" and not final.exists()):
            detach_directory(point, path)
        else:
            pins.remove(path)
        notes.append(f"{point.label}: cleaned up after an interrupted {kind}")
    for note in notes:
        _log.warning("recovered: %s", note)
    return notes


def _replace_done(point: Point, temp: Path, final: Path) -> bool:
    """Whether an interrupted --replace had already swapped the link to ``temp``'s program.

    Then the running program uses the maps pinned in ``temp``, so ``temp`` must win.
    """
    if (temp / pins.LINK_PIN).exists():
        return True  # the link is pinned there only after the swap
    try:
        program = Program.from_pin(temp / pins.PROGRAM_PIN, read_only=True)
    except BpfError:
        return False  # killed before the new program was pinned, so before the swap
    with program:
        try:
            with hooks.open_link(point, final) as link:
                return link.info().prog_id == program.info().id
        except BpfError:
            return False


def pin_link(link: InterfaceLink, directory: Path, program: bytes = b"") -> None:
    """Pin the link and the identity record beside it, each unless already there.

    The record (:class:`pingkiller.pins.Identity`: the link's id and ifindex, this
    network namespace, the ABI version and ``program``, the ELF's SHA-256, b"" when not
    known) tells readers which link and program this is: they cannot open the link pin,
    which the kernel opens only read-write.
    """
    if not isinstance(link, ClsactLink) and not (directory / pins.LINK_PIN).exists():
        link.pin(directory / pins.LINK_PIN)
        pins.secure(directory / pins.LINK_PIN)
    if not (directory / pins.IDENTITY_PIN).exists():
        info = link.info()
        record = pins.Identity(info.id, info.ifindex, abi.ABI_VERSION, interfaces.netns_cookie(),
                               program)
        with Map.create(MAP_TYPE_ARRAY, "pk_identity", 4, pins.Identity.FORMAT.size, 1) as bpf_map:
            bpf_map[abi.u32_key(0)] = record.encode()
            bpf_map.pin(directory / pins.IDENTITY_PIN)
        pins.secure(directory / pins.IDENTITY_PIN)


def _link_alive(point: Point, directory: Path) -> bool:
    try:
        with hooks.open_link(point, directory) as link:
            return link.info().ifindex != 0
    except (BpfError, ValueError):
        return False


def detach_directory(point: Point, directory: Path) -> None:
    """Detach the link pinned in ``directory`` (if any is) and remove the directory."""
    try:
        with hooks.open_link(point, directory) as link:
            link.detach()
    except BpfError as err:
        if err.errno != errno.ENOENT:
            raise
    pins.remove(directory)


# -- what readers make of leftovers (read-only: nothing is finished)


def pending_directory(point: Point) -> Path | None:
    """For an attachment whose pin directory is missing, the directory an interrupted
    writer left that the next writer's recovery will publish: the new pins of an attach
    or --replace whose program runs on the interface, else the previous pins of an
    interrupted --replace. None when there is none (the interface has no attachment).
    """
    previous = None
    for path, kind, found, _pid in pins.leftovers():
        if found != point:
            continue
        if kind == "attach" and _runs_on(path, point):
            return path
        if kind == "replace":
            previous = path
    return previous


def _runs_on(directory: Path, point: Point) -> bool:
    """Whether the program pinned in ``directory`` runs at ``point`` (read-only)."""
    try:
        ifindex = socket.if_nametoindex(point.ifname)
        program = Program.from_pin(directory / pins.PROGRAM_PIN, read_only=True)
    except (OSError, BpfError):
        return False
    with program:
        return hooks.runs(point, ifindex, {program.info().id}) is True


def replacing_programs(point: Point) -> set[int]:
    """Ids of the programs that interrupted writers pinned for ``point`` (read-only)."""
    ids = set()
    for path, kind, found, _pid in pins.leftovers():
        if kind != "attach" or found != point:
            continue
        try:
            with Program.from_pin(path / pins.PROGRAM_PIN, read_only=True) as program:
                ids.add(program.info().id)
        except BpfError:
            continue
    return ids
