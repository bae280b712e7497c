"""The pin store: the one owner of pingkiller's directories on bpffs.

Every attachment's pins (link, program, identity record, maps) live in one directory
under the pin root (:mod:`~pingkiller.store.layout`). Directories change only by
rename, so a reader sees a whole attachment or none:

- attach and replace write a temporary directory (``=tmp-``), then rename it into
  place; a replace first renames the old directory away (``=old-``) and removes it after;
- detach renames the directory away (``=del-``) before it detaches the link.

A writer holds the store's lock from its first change to its last, and first finishes
or undoes what a killed writer left (:meth:`Store.recover`): the state machine of
docs/architecture.md. What depends on bpffs and on the hooks (is a link alive, which
program does it run, pin it, detach it) is behind :class:`Links`, so the transactions
run, and are unit-tested, on a plain directory tree too.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol, TypeVar

from pingkiller.model.errors import PermissionDenied
from pingkiller.model.point import Point
from pingkiller.store import lock
from pingkiller.store.layout import (
    LINK_PIN,
    Leftover,
    Work,
    default_root,
    entry,
    leftover,
    point_of,
    work_name,
)
from pingkiller.store.root import ensure_root, read_only_error, read_only_mount
from pingkiller.system.capabilities import NEEDS_ROOT, NEEDS_ROOT_TO_READ
from pingkiller.system.trust import first_closed

_log = logging.getLogger("pingkiller.recovery")
T = TypeVar("T")

# A reader that finds a directory missing or changing looks again this often: a replace
# renames the old directory away just before the new one takes its name.
READ_ATTEMPTS = 20
READ_RETRY_SECONDS = 0.005
_FD_DIR = Path("/proc/self/fd")


class Links(Protocol):
    """What the store needs of the links its directories pin (the hooks know how)."""

    def alive(self, point: Point, directory: Path) -> bool:
        """Whether the link pinned in ``directory`` (or the filter it records) still runs."""

    def runs_program_of(self, point: Point, running: Path, pinned: Path) -> bool:
        """Whether the link of ``running`` runs the program pinned in ``pinned``."""

    def complete(self, point: Point, directory: Path, source: Path) -> None:
        """Pin in ``directory`` the link of ``source`` and the identity record, each
        unless it is there already."""

    def detach(self, point: Point, directory: Path) -> None:
        """Detach the link pinned in ``directory`` (nothing if there is none)."""

    def program_runs(self, point: Point, directory: Path) -> bool:
        """(Read-only) whether the program pinned in ``directory`` runs at ``point``."""


class Moved(Exception):
    """A directory was renamed while it was being read: read it again."""


class Store:
    """The pins under ``root`` (default: $PINGKILLER_PIN_ROOT, else /sys/fs/bpf/pingkiller).

    ``links`` does what needs the kernel (see :class:`Links`); a store without it can
    list and read, not write or recover."""

    def __init__(self, root: Path | str | None = None, links: Links | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.links = links

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- names

    def directory(self, point: Point) -> Path:
        """The pin directory of the attachment at ``point``."""
        return self.root / entry(point)

    def points(self) -> list[Point]:
        """The attachments that have a pin directory, by interface, XDP first."""
        if not self.root.is_dir():
            return []
        found = (point_of(p.name) for p in self.root.iterdir() if not p.name.startswith("="))
        return sorted(point for point in found if point is not None)

    def leftovers(self) -> list[Leftover]:
        """Work directories that writers left behind, attaches first."""
        if not self.root.is_dir():
            return []
        found = [left for path in self.root.iterdir() if (left := leftover(path)) is not None]
        order = list(Work)
        return sorted(found, key=lambda left: order.index(left.work))

    # -- access

    def check_access(self, *, write: bool) -> None:
        """Raise PermissionDenied unless this process may use the pins: read them, or with
        ``write``, change them (on a writable mount). The pins are root's (0600 in a 0700
        root; systemd and bpftool mount bpffs itself 0700), so a user without root is
        refused whatever capabilities it holds, naming the directory closed to it."""
        closed = first_closed(self.root, write=write)
        if closed is None and not write and os.path.isdir(self.root) \
                and not os.access(self.root, os.R_OK):
            closed = self.root
        if write and closed is not None:
            read_only = read_only_mount(self.root)
            if read_only is not None:
                raise read_only_error(read_only)
        if closed is not None:
            needs = NEEDS_ROOT if write else f"reading them {NEEDS_ROOT_TO_READ}"
            raise PermissionDenied(f"the pins in {self.root} are root's ({closed} is closed "
                                   f"to this user): {needs}")

    # -- writing

    @contextmanager
    def writer(self) -> Iterator[list[str]]:
        """The one way to write: bpffs mounted and the root made and trusted, the lock
        held, and what killed writers left finished or undone first (yielded: what was
        done, in words). A thread that holds the lock already holds it on."""
        ensure_root(self.root)
        with lock.locked(self.root):
            yield self.recover()

    def temporary(self, point: Point) -> Path:
        """A fresh directory to write ``point``'s pins in before :meth:`publish`."""
        path = self.root / work_name(Work.ATTACH, point)
        remove(path)
        path.mkdir(mode=0o700)
        return path

    def publish(self, temp: Path, point: Point) -> None:
        """Move a finished temporary directory to ``point``'s place, replacing what was there."""
        final = self.directory(point)
        if final.exists():
            old = self.root / work_name(Work.REPLACE, point)
            remove(old)
            final.rename(old)
            temp.rename(final)
            remove(old)
        else:
            temp.rename(final)

    def retire(self, point: Point) -> Path:
        """Move ``point``'s pins out of sight before detaching, so a crash cannot revive them."""
        doomed = self.root / work_name(Work.DETACH, point)
        remove(doomed)
        self.directory(point).rename(doomed)
        return doomed

    def detach(self, point: Point, directory: Path | None = None) -> None:
        """Detach the link pinned in ``directory`` (default: ``point``'s, retired first)
        and remove the directory."""
        doomed = directory if directory is not None else self.retire(point)
        self._links().detach(point, doomed)
        remove(doomed)

    def recover(self) -> list[str]:
        """Finish or undo what killed writers left; returns what was done, in words (also
        logged, one warning each, on the ``pingkiller.recovery`` logger).

        Call with the lock held: every writer holds it from its first pin to its last,
        so what is left now was left by a writer that is gone.
        """
        notes = [f"{left.point.label}: {self._recover(left)}" for left in self.leftovers()]
        for note in notes:
            _log.warning("recovered: %s", note)
        return notes

    def _recover(self, left: Leftover) -> str:
        links, point, path = self._links(), left.point, left.path
        final = self.directory(point)
        if left.work is Work.ATTACH and not final.exists() and links.alive(point, path):
            links.complete(point, path, path)  # the identity record, if the writer died before it
            self.publish(path, point)
            return "completed an interrupted attach"
        if left.work is Work.ATTACH and final.exists() and self._swapped(point, path, final):
            # The link pin is in the new directory only once the swap is done; a clsact
            # filter has none, and runs the new directory's program.
            linked = (final / LINK_PIN).exists() and not (path / LINK_PIN).exists()
            links.complete(point, path, final if linked else path)
            self.publish(path, point)
            return "completed an interrupted replace"
        if left.work is Work.REPLACE and not final.exists():
            path.rename(final)
            return "restored pins of an interrupted replace"
        if left.work is Work.DETACH or (left.work is Work.ATTACH and not final.exists()):
            self.detach(point, path)
        else:
            remove(path)
        return f"cleaned up after an interrupted {left.work.name.lower()}"

    def _swapped(self, point: Point, temp: Path, final: Path) -> bool:
        """Whether an interrupted replace had swapped the link to ``temp``'s program (then
        the running program uses the maps pinned in ``temp``, so ``temp`` must win)."""
        if (temp / LINK_PIN).exists():
            return True  # the link is pinned there only after the swap
        return self._links().runs_program_of(point, final, temp)

    def _links(self) -> Links:
        if self.links is None:
            raise TypeError(f"{self!r} was made without links: it can only be read")
        return self.links

    # -- reading (no lock, nothing finished)

    def pending(self, point: Point) -> Path | None:
        """For an attachment whose directory is missing, the directory an interrupted
        writer left that the next writer's recovery will publish: the new pins of an
        attach or replace whose program runs, else the old pins of a replace."""
        previous = None
        for left in self.leftovers():
            if left.point != point:
                continue
            if left.work is Work.ATTACH and self._links().program_runs(point, left.path):
                return left.path
            if left.work is Work.REPLACE:
                previous = left.path
        return previous

    def replacing(self, point: Point) -> list[Path]:
        """The temporary directories interrupted writers left for ``point``."""
        return [left.path for left in self.leftovers()
                if left.work is Work.ATTACH and left.point == point]

    def read(self, point: Point, read: Callable[[Path, bool], T]) -> T | None:
        """``read(base, pending)`` of ``point``'s pins as they stand, or None when there
        are none (detached). ``base`` names the directory through an open fd, so every pin
        read comes from one directory; ``pending`` says it is one an interrupted writer
        left (:meth:`pending`). ``read`` raises :class:`Moved` when the directory was
        renamed meanwhile (:func:`check_unmoved`); it is read again then."""
        directory = self.directory(point)
        for _ in range(READ_ATTEMPTS):
            where = directory if directory.is_dir() else self.pending(point)
            if where is None:
                return None
            try:
                return _read_through_fd(where, functools.partial(_read_at, read,
                                                                 pending=where != directory))
            except Moved:
                time.sleep(READ_RETRY_SECONDS)
        raise Moved(f"{point.label}'s pins kept moving while they were read")


def _read_at(read: Callable[[Path, bool], T], base: Path, *, pending: bool) -> T:
    return read(base, pending)


def _read_through_fd(directory: Path, read: Callable[[Path], T]) -> T:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise Moved from None
    try:
        base = _FD_DIR / str(dir_fd) if _FD_DIR.is_dir() else directory
        result = read(base)
        try:
            check_unmoved(dir_fd, directory)
        except Moved:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # what was read belongs to a directory that is gone
            raise
        return result
    finally:
        os.close(dir_fd)


def check_unmoved(dir_fd: int, directory: Path) -> None:
    """Raise :class:`Moved` unless ``directory`` still names the directory of ``dir_fd``."""
    held = os.fstat(dir_fd)
    try:
        now = os.stat(directory)
    except FileNotFoundError:
        raise Moved from None
    if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        raise Moved


def remove(path: Path) -> None:
    """Remove a pin directory and everything in it (unpinning what it holds)."""
    import shutil  # only writers remove: ~3 ms of start-up

    with suppress(FileNotFoundError):
        shutil.rmtree(path)


def secure(path: Path) -> None:
    """Pins are for root only."""
    os.chmod(path, 0o600)
