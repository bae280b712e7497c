"""What every hook offers the rest of pingkiller: one link protocol and one strategy.

A strategy knows, for its kind of hook, which program of the object runs there, how a
link is made, pinned, reopened and told apart, which programs run on the hook now, and
whether the hook is free to attach to. The code above asks the strategy; it never
branches on the hook or on the kind of link.
"""

from __future__ import annotations

import abc
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from pingkiller import abi
from pingkiller.bpf import LinkInfo, Program
from pingkiller.model.enums import Hook, Mode
from pingkiller.model.point import Point


class HookLink(Protocol):
    """What holds pingkiller's program on a hook: a bpf_link (XDP, tcx) or a clsact filter."""

    def info(self) -> LinkInfo:
        """The link's id, program and interface (``ifindex`` 0: it holds nothing now)."""

    def update(self, program: Program) -> None:
        """Swap ``program`` in atomically: no packet meets no program."""

    def detach(self) -> None:
        """Take the program off the hook."""

    def pin(self, path: Path) -> None:
        """Pin it at ``path`` (a clsact filter has nothing to pin: nothing happens)."""

    def close(self) -> None:
        """Release this process's handle; the program stays on the hook if pinned."""

    def __enter__(self) -> HookLink: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None: ...


class ClosedOnExit:
    """``with`` for a link: the block's end calls :meth:`close`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class Strategy(abc.ABC):
    """One kind of hook: XDP, tcx or clsact."""

    hook: Hook
    modes: tuple[Mode, ...]  # the modes one may ask of it (besides AUTO)
    has_link_pin: bool  # whether its link is pinned (a clsact filter holds no fd)
    chained: bool  # whether programs run there in order, one after another (tc)

    def program_name(self, point: Point) -> str:
        """The name of the object's program that runs at ``point``."""
        if point.hook is Hook.XDP:
            return abi.PROGRAM_NAME
        return abi.TC_PROGRAM_NAMES[point.direction]

    @abc.abstractmethod
    def attach(self, program: Program, point: Point, ifindex: int, mode: Mode) -> HookLink:
        """Attach ``program`` at ``point`` on interface ``ifindex`` (AttachFailed,
        ForeignProgram... naming the problem)."""

    @abc.abstractmethod
    def open(self, point: Point, directory: Path) -> HookLink:
        """The link of the attachment pinned in ``directory`` (BpfError ENOENT: none)."""

    @abc.abstractmethod
    def from_id(self, point: Point, link_id: int) -> HookLink:
        """The link with id ``link_id`` (BpfError: gone, or not allowed: CAP_SYS_ADMIN)."""

    @abc.abstractmethod
    def mode_at(self, ifindex: int) -> Mode:
        """How pingkiller holds this hook on ``ifindex`` now that it does (BpfError: no
        such interface)."""

    @abc.abstractmethod
    def running(self, point: Point, ifindex: int) -> list[int]:
        """The ids of the programs on ``ifindex``'s hook, in the order they run
        (BpfError: no such interface, or EPERM: this process may not ask)."""

    def runs(self, point: Point, ifindex: int, prog_ids: set[int]) -> bool:
        """Whether any of ``prog_ids`` runs on ``ifindex``'s hook (BpfError as for
        :meth:`running`)."""
        return bool(prog_ids & set(self.running(point, ifindex)))

    @abc.abstractmethod
    def check_free(self, point: Point, ifindex: int, held: dict[int, Point]) -> None:
        """Refuse a hook where attaching would displace or double a program: one that
        another tool holds, or one that runs pingkiller pinned under another point
        (``held``: program id -> point of every pingkiller link pinned for such a hook)."""
