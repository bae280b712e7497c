"""The pin store's transactions on a plain directory tree (no bpffs, no root): what a
writer killed at each step leaves, and what the next writer's recovery makes of it.

The kernel's part (is a link alive, which program does it run, pin it, detach it) is a
fake :class:`~pingkiller.store.Links`: a directory's ``program`` file holds a program id,
its ``link`` file the id of the program the link runs, and the fake kernel knows which
programs run and which links were detached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import IDENTITY_PIN, LINK_PIN, PROGRAM_PIN, Work, work_name

POINT = Point("eth0")


class FakeKernel:
    """:class:`pingkiller.store.Links` over marker files."""

    def __init__(self) -> None:
        self.running: set[str] = set()  # program ids some hook runs
        self.detached: list[str] = []

    def _link(self, directory: Path) -> str | None:
        link = directory / LINK_PIN
        return link.read_text() if link.exists() else None

    def alive(self, point: Point, directory: Path) -> bool:
        return self._link(directory) in self.running

    def runs_program_of(self, point: Point, running: Path, pinned: Path) -> bool:
        program = pinned / PROGRAM_PIN
        return program.exists() and self._link(running) == program.read_text()

    def complete(self, point: Point, directory: Path, source: Path) -> None:
        if not (directory / LINK_PIN).exists():
            (directory / LINK_PIN).write_text((directory / PROGRAM_PIN).read_text())
        (directory / IDENTITY_PIN).touch()

    def detach(self, point: Point, directory: Path) -> None:
        program = self._link(directory)
        if program is not None:
            self.running.discard(program)
            self.detached.append(program)

    def program_runs(self, point: Point, directory: Path) -> bool:
        program = directory / PROGRAM_PIN
        return program.exists() and program.read_text() in self.running


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def store(tmp_path: Path, kernel: FakeKernel) -> Store:
    root = tmp_path / "pins"
    root.mkdir(mode=0o700)
    return Store(root, kernel)


def pins(directory: Path, program: str, *, link: bool = True) -> Path:
    """A directory of pins: the program, and the link running it (or not yet pinned)."""
    directory.mkdir(exist_ok=True)
    (directory / PROGRAM_PIN).write_text(program)
    (directory / "settings").write_text(program)  # a map
    if link:
        (directory / LINK_PIN).write_text(program)
        (directory / IDENTITY_PIN).touch()
    return directory


def attached(store: Store, kernel: FakeKernel, program: str) -> Path:
    kernel.running.add(program)
    return pins(store.directory(POINT), program)


def left(store: Store, work: Work, pid: int = 4242) -> Path:
    return store.root / work_name(work, POINT, pid)


def names(store: Store) -> list[str]:
    return sorted(os.listdir(store.root))


# -- attach

def test_an_attach_killed_before_its_link_ran_is_removed(store: Store, kernel: FakeKernel) -> None:
    pins(left(store, Work.ATTACH), "7", link=False)
    assert store.recover() == ["eth0: cleaned up after an interrupted attach"]
    assert names(store) == []


def test_an_attach_killed_after_its_link_ran_is_completed(store: Store, kernel: FakeKernel) -> None:
    kernel.running.add("7")
    temp = pins(left(store, Work.ATTACH), "7")
    (temp / IDENTITY_PIN).unlink()  # killed before the record
    assert store.recover() == ["eth0: completed an interrupted attach"]
    assert names(store) == ["eth0"]
    assert (store.directory(POINT) / IDENTITY_PIN).exists()
    assert store.points() == [POINT]


# -- replace

def test_a_replace_killed_before_the_swap_is_rolled_back(store: Store, kernel: FakeKernel) -> None:
    attached(store, kernel, "7")
    pins(left(store, Work.ATTACH), "8", link=False)  # new pins, the link still runs 7
    assert store.recover() == ["eth0: cleaned up after an interrupted attach"]
    assert names(store) == ["eth0"] and kernel.running == {"7"}
    assert (store.directory(POINT) / PROGRAM_PIN).read_text() == "7"


def test_a_replace_killed_after_the_swap_keeps_the_running_maps(store: Store,
                                                                 kernel: FakeKernel) -> None:
    final = attached(store, kernel, "7")
    (final / LINK_PIN).write_text("8")  # the link was swapped to the new program
    kernel.running = {"8"}
    pins(left(store, Work.ATTACH), "8", link=False)
    assert store.recover() == ["eth0: completed an interrupted replace"]
    assert names(store) == ["eth0"]
    assert (store.directory(POINT) / PROGRAM_PIN).read_text() == "8"  # the maps 8 uses


def test_a_replace_killed_between_its_renames_is_restored(store: Store, kernel: FakeKernel) -> None:
    kernel.running.add("7")
    pins(left(store, Work.REPLACE), "7")  # the old pins, moved away; the new not in place
    assert store.recover() == ["eth0: restored pins of an interrupted replace"]
    assert names(store) == ["eth0"]


def test_old_pins_left_after_a_finished_replace_are_removed(store: Store,
                                                             kernel: FakeKernel) -> None:
    attached(store, kernel, "8")
    pins(left(store, Work.REPLACE), "7")
    assert store.recover() == ["eth0: cleaned up after an interrupted replace"]
    assert names(store) == ["eth0"] and kernel.detached == []  # 7's link is 8's: not detached


# -- detach

def test_a_detach_killed_after_its_rename_is_finished(store: Store, kernel: FakeKernel) -> None:
    kernel.running.add("7")
    pins(left(store, Work.DETACH), "7")
    assert store.recover() == ["eth0: cleaned up after an interrupted detach"]
    assert names(store) == [] and kernel.running == set() and kernel.detached == ["7"]


def test_a_detach_takes_the_pins_out_of_sight_first(store: Store, kernel: FakeKernel) -> None:
    attached(store, kernel, "7")
    store.detach(POINT)
    assert names(store) == [] and kernel.detached == ["7"]


# -- publish, and what readers make of leftovers

def test_publish_replaces_whole_directories(store: Store, kernel: FakeKernel) -> None:
    attached(store, kernel, "7")
    temp = store.temporary(POINT)
    pins(temp, "8")
    store.publish(temp, POINT)
    assert names(store) == ["eth0"]
    assert (store.directory(POINT) / PROGRAM_PIN).read_text() == "8"


def test_readers_see_the_pins_the_next_writer_will_keep(store: Store, kernel: FakeKernel) -> None:
    kernel.running.add("8")
    pins(left(store, Work.REPLACE), "7")
    new = pins(left(store, Work.ATTACH), "8")
    assert store.pending(POINT) == new  # its program runs: recovery publishes it
    kernel.running = set()
    assert store.pending(POINT) == left(store, Work.REPLACE)  # else the old ones come back
    seen = store.read(POINT, lambda base, pending: (base.resolve(), pending))
    assert seen == (left(store, Work.REPLACE).resolve(), True)
    assert names(store) == sorted([left(store, Work.REPLACE).name, new.name])  # nothing finished


def test_a_reader_of_no_pins_gets_none(store: Store) -> None:
    assert store.read(POINT, lambda base, pending: base) is None


def test_leftovers_of_other_pids_and_points_are_told_apart(store: Store) -> None:
    (store.root / work_name(Work.DETACH, Point("eth1"), 9)).mkdir()
    (store.root / work_name(Work.ATTACH, POINT, 7)).mkdir()
    (store.root / "=tmp-notapid-eth0").mkdir()
    found = [(each.work, each.point, each.pid) for each in store.leftovers()]
    assert found == [(Work.ATTACH, POINT, 7), (Work.DETACH, Point("eth1"), 9)]


def test_a_store_without_links_reads_but_does_not_recover(tmp_path: Path) -> None:
    reader = Store(tmp_path)
    (tmp_path / work_name(Work.ATTACH, POINT, 7)).mkdir()
    with pytest.raises(TypeError, match="can only be read"):
        reader.recover()
