"""Opening a pinned attachment: as a reader (every pin read-only, no lock, nothing
finished) or as a writer (its link and maps read-write, for changes under the lock)."""

from __future__ import annotations

import errno
from contextlib import ExitStack
from pathlib import Path

from pingkiller import abi, hooks
from pingkiller.attachment.state import NoLink, RecordedLink, abi_problem
from pingkiller.attachment.tracking import Pinned, pinned_in
from pingkiller.attachment.view import AttachmentView
from pingkiller.attachment.writer import Attachment
from pingkiller.bpf import BpfError, Map, Program
from pingkiller.datapath import migrate
from pingkiller.hooks.base import HookLink
from pingkiller.model.errors import NotAttached, PingkillerError, Remedy
from pingkiller.model.point import Point
from pingkiller.publish import PINNED_MAPS
from pingkiller.store import Store
from pingkiller.store.layout import IDENTITY_PIN, LINK_PIN, PROGRAM_PIN
from pingkiller.store.records import Identity, read_identity
from pingkiller.system import capabilities


def incomplete(point: Point, missing: list[str] | tuple[str, ...] = ()) -> NotAttached:
    what = f"incomplete: missing {', '.join(missing)}" if missing else "its pins are incomplete"
    return NotAttached(f"{point.label} has no complete pingkiller attachment ({what})",
                       point=point, remedy=Remedy.DETACH)


def open_reader(store: Store, point: Point) -> AttachmentView | None:
    """A reader's view of ``point``'s pins; None when it has none (detached meanwhile).

    Pins whose maps cannot be read (incomplete, another ABI version) give a view with
    ``unreadable`` set, whose :meth:`~AttachmentView.info` still tells its state."""
    try:
        return store.read(point, lambda base, pending: _read(store, point, base, pending))
    except BpfError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise capabilities.refused(err, capabilities.NEEDS_ROOT_TO_READ) from None
        raise


def _read(store: Store, point: Point, base: Path, pending: bool) -> AttachmentView:
    """Read one pin directory; ``pending``: one an interrupted writer left (it may lack
    the identity record, which the writer pins last: it is of this version)."""
    strategy = hooks.for_pins(point, base)
    with ExitStack() as opened:
        try:
            link, identity, program = _recorded(store, point, base, opened)
        except BpfError as err:
            if err.errno != errno.ENOENT:
                raise
            return AttachmentView(point, store, strategy, NoLink(), {}, read_only=True,
                                  unreadable=incomplete(point, _missing_records(base)))
        except PingkillerError as err:  # an identity record of a newer pingkiller
            return AttachmentView(point, store, strategy, NoLink(), {}, read_only=True,
                                  unreadable=err)
        pins_abi = identity.abi_version if identity else (abi.ABI_VERSION if pending else 1)
        maps: dict[str, Map] = {}
        missing: list[str] = []
        problem: PingkillerError | None = None
        if pins_abi != abi.ABI_VERSION:
            problem = abi_problem(point, pins_abi)
        else:
            maps, missing = _open_maps(base, opened, read_only=True)
            if missing:
                problem = incomplete(point, missing)
        pinned = None if problem else pinned_in(base)
        opened.pop_all()
    return AttachmentView(point, store, strategy, link, maps, program=program,
                          identity=identity, pinned=pinned, unreadable=problem, read_only=True,
                          reopen=lambda: _reopened(open_reader(store, point), point))


def _recorded(store: Store, point: Point, base: Path, opened: ExitStack,
              ) -> tuple[HookLink | RecordedLink, Identity | None, Program | None]:
    """The link as recorded (program pin + identity), or the link pin itself for pins
    made before those records existed (which needs write access to it)."""
    strategy = hooks.for_pins(point, base)
    try:
        program = opened.enter_context(Program.from_pin(base / PROGRAM_PIN, read_only=True))
    except BpfError as err:
        if err.errno != errno.ENOENT or not (base / LINK_PIN).exists():
            raise
        return opened.enter_context(strategy.open(point, base)), None, None
    identity = read_identity(base)
    if identity is None:
        if not (base / LINK_PIN).exists() and strategy.has_link_pin:
            raise incomplete(point, [IDENTITY_PIN])
        # A link of pins older than records; or a clsact filter whose writer died before
        # the record: found by its place and the pinned program (read-only).
        return opened.enter_context(strategy.open(point, base)), None, program
    return RecordedLink(point, program, identity, store), identity, program


def _missing_records(base: Path) -> list[str]:
    return [name for name in (PROGRAM_PIN, IDENTITY_PIN, LINK_PIN) if not (base / name).exists()]


def _open_maps(base: Path, opened: ExitStack, *, read_only: bool,
               names: tuple[str, ...] = PINNED_MAPS) -> tuple[dict[str, Map], list[str]]:
    """The pinned maps that are there, and the names of those that are not."""
    maps, missing = {}, []
    for name in names:
        try:
            maps[name] = opened.enter_context(Map.from_pin(base / name, read_only=read_only))
        except BpfError as err:
            if err.errno != errno.ENOENT:
                raise
            missing.append(name)
    return maps, missing


def _reopened(view: AttachmentView | None, point: Point) -> AttachmentView:
    if view is None:
        raise NotAttached(f"{point.label} was detached", point=point)
    return view


def open_writer(store: Store, point: Point, *, check_abi: bool = True) -> Attachment:
    """A writer's view: the link and maps opened read-write. Pins of another ABI version
    raise IncompatiblePins unless ``check_abi`` is False (upgrade, detach)."""
    where = store.directory(point)
    strategy = hooks.for_pins(point, where)
    with ExitStack() as opened:
        try:
            identity = read_identity(where)
            pins_abi = identity.abi_version if identity else 1
            if check_abi and pins_abi != abi.ABI_VERSION:
                raise abi_problem(point, pins_abi)
            link = opened.enter_context(strategy.open(point, where))
            maps, missing = _open_maps(where, opened, read_only=False,
                                       names=migrate.pinned_maps(pins_abi, PINNED_MAPS))
        except BpfError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise capabilities.refused(err, capabilities.NEEDS_ROOT) from None
            if err.errno == errno.ENOENT:
                raise incomplete(point, [LINK_PIN]) from None
            raise
        if missing:
            raise incomplete(point, missing)
        program = _pinned_program(where)  # None for pins made before programs were pinned
        if program is not None:
            opened.enter_context(program)
        pinned = _pinned_now(where)
        opened.pop_all()
    return Attachment(point, store, strategy, link, maps, program=program, identity=identity,
                      pinned=pinned, reopen=lambda: open_writer(store, point))


def _pinned_program(directory: Path) -> Program | None:
    try:
        return Program.from_pin(directory / PROGRAM_PIN, read_only=True)
    except BpfError:
        return None


def _pinned_now(directory: Path) -> Pinned | None:
    try:
        return pinned_in(directory)
    except (BpfError, OSError):
        return None
