"""What the kernel says of an attachment's link: whether it still filters, where, and
what is wrong in words; and, for a reader that cannot open the link, the link as the pins
record it (:class:`RecordedLink`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from pingkiller import abi, hooks
from pingkiller.bpf import BpfError, LinkInfo, Program
from pingkiller.datapath.program import program_digest
from pingkiller.hooks.base import ClosedOnExit, HookLink
from pingkiller.model.enums import LinkState
from pingkiller.model.errors import IncompatiblePins, Remedy
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import PROGRAM_PIN
from pingkiller.store.records import UNRECORDED, Identity
from pingkiller.system import interfaces

# Said of an attachment whose hook this process may not query (see hooks.runs).
UNVERIFIED = ("not verified: seeing which programs run at a tc hook needs CAP_NET_ADMIN "
              "(or root); shown as its pins record it")


class RecordedLink(ClosedOnExit):
    """A pinned attachment's link as a reader knows it without opening it.

    The kernel opens link pins only read-write, so a reader takes the link's id and
    interface from the identity record and the program from its (read-only) pin, and
    asks the kernel which program the interface runs: the link is alive while that is
    the pinned program (or the new one of a replace that was killed after swapping,
    which the next writer completes), and ``info().ifindex`` is 0 otherwise, as for a
    defunct link. It cannot be changed: update, detach and pin raise.
    """

    def __init__(self, point: Point, program: Program, identity: Identity,
                 store: Store) -> None:
        self.point = point
        self.program = program
        self.identity = identity
        self.store = store
        self.prog_id = program.info().id
        self.from_kernel = False  # whether the last info() came from the link itself
        self.unverified = False  # whether the last info() could not ask what runs there
        self.strategy = hooks.for_hook(point) if identity.link_id else hooks.CLSACT

    def info(self) -> LinkInfo:
        """The link's info: from the kernel's link by id where this process may open it
        (CAP_SYS_ADMIN; nothing is written), else inferred from what the interface runs."""
        try:
            if not self.identity.link_id:  # a clsact filter: there is no link
                raise BpfError(errno.EPERM, "opening link")
            with self.strategy.from_id(self.point, self.identity.link_id) as link:
                info = link.info()
            self.from_kernel = True
            return info
        except BpfError as err:
            self.from_kernel = err.errno == errno.ENOENT  # the link is gone: defunct
            if self.from_kernel:
                return LinkInfo(id=self.identity.link_id, prog_id=self.prog_id, ifindex=0)
        alive = hooks.runs(self.point, self.identity.ifindex,
                           {self.prog_id} | replacing_programs(self.store, self.point))
        self.unverified = alive is None
        if alive is None:  # as recorded, while its interface exists
            alive = interfaces.interface_name(self.identity.ifindex) is not None
        return LinkInfo(id=self.identity.link_id, prog_id=self.prog_id,
                        ifindex=self.identity.ifindex if alive else 0)

    def update(self, program: Program) -> None:
        raise PermissionError("a recorded link cannot be changed")

    def detach(self) -> None:
        raise PermissionError("a recorded link cannot be detached")

    def pin(self, path: Path) -> None:
        raise PermissionError("a recorded link cannot be pinned")

    def close(self) -> None:
        self.program.close()



def replacing_programs(store: Store | None, point: Point) -> set[int]:
    """Ids of the programs that interrupted writers pinned for ``point`` (read-only)."""
    ids: set[int] = set()
    for directory in store.replacing(point) if store is not None else ():
        try:
            with Program.from_pin(directory / PROGRAM_PIN, read_only=True) as program:
                ids.add(program.info().id)
        except BpfError:
            continue
    return ids


@dataclass(frozen=True)
class Health:
    """What the kernel says of a link: its info (None if unreadable), its state, and what
    is wrong in words ('' when it filters where its pins say)."""

    info: LinkInfo | None
    state: LinkState
    problem: str


def health(link: HookLink | RecordedLink, identity: Identity | None, point: Point,
           store: Store | None) -> Health:
    """The link's :class:`Health` (``identity``: what the pins record, None if nothing)."""
    ifname = point.ifname
    try:
        info = link.info()
    except BpfError:
        return Health(None, LinkState.UNREADABLE, f"its {point.hook.label} link cannot be read")
    if info.ifindex == 0:
        return Health(info, *_defunct(link, identity, point))
    cookie = identity.netns_cookie if identity else 0
    if cookie and cookie != interfaces.netns_cookie():
        return Health(info, LinkState.ELSEWHERE,
                      "it was attached in another network namespace and filters there")
    here = hooks.runs(point, info.ifindex, {info.prog_id} | replacing_programs(store, point))
    if here is False:
        return Health(info, LinkState.MOVED, "its interface was moved to another network "
                                             "namespace; still filtering there")
    current = interfaces.interface_name(info.ifindex)
    if current is None:
        return Health(info, LinkState.GONE, "the interface is gone")
    if current != ifname:
        return Health(info, LinkState.RENAMED, f"the interface was renamed to {current!r}")
    unverified = here is None or (isinstance(link, RecordedLink) and link.unverified)
    return Health(info, LinkState.FILTERING, UNVERIFIED if unverified else "")


def _defunct(link: HookLink | RecordedLink, identity: Identity | None,
             point: Point) -> tuple[LinkState, str]:
    """Why a link that holds no interface holds none."""
    if identity is not None and interfaces.interface_name(identity.ifindex) == point.ifname:
        if identity.link_id == 0:
            return LinkState.DETACHED, (f"its clsact filter was removed, but {point.ifname} is "
                                        "still here (not by pingkiller)")
        return LinkState.DETACHED, (f"the link was detached, but {point.ifname} is still here "
                                    "(not by pingkiller: e.g. `bpftool link detach`)")
    if identity is not None and identity.link_id == 0:
        return LinkState.DEFUNCT, ("its clsact filter is gone (the interface, its clsact qdisc "
                                   "or the filter was removed, or the interface moved to "
                                   "another network namespace)")
    if isinstance(link, RecordedLink) and not link.from_kernel:
        return LinkState.DEFUNCT, ("its program runs on no interface here (the interface is "
                                   "gone, or was moved to another network namespace)")
    return LinkState.DEFUNCT, "the interface is gone (the link is defunct)"


def identity_of(now: Health, *, pinned: bool) -> Identity:
    """The identity of an attachment that has no record: pins made before records were
    (UNRECORDED), or a private attachment, which runs the installed program."""
    if pinned:
        return UNRECORDED
    return Identity(now.info.id if now.info else 0, now.info.ifindex if now.info else 0,
                    abi.ABI_VERSION, 0, program_digest())


def outdated(identity: Identity) -> bool:
    """Whether the pins run another program than the installed one."""
    return identity.abi_version != abi.ABI_VERSION or identity.program != program_digest()


class NoLink(ClosedOnExit):
    """The link of pins that name none any more (incomplete pins): it holds nothing."""

    def info(self) -> LinkInfo:
        raise BpfError(errno.ENOENT, "opening link", "the pins hold no link")

    def update(self, program: Program) -> None:
        raise PermissionError("the pins hold no link")

    def detach(self) -> None:
        """Nothing to detach."""

    def pin(self, path: Path) -> None:
        raise PermissionError("the pins hold no link")

    def close(self) -> None:
        """Nothing to release."""



def abi_problem(point: Point, pins_abi: int) -> IncompatiblePins:
    """The error for pins of ABI ``pins_abi``, which this pingkiller does not read."""
    ours = abi.ABI_VERSION
    if pins_abi > ours:
        return IncompatiblePins(f"{point.label}'s pins were made by a newer pingkiller (ABI "
                                f"{pins_abi}; this one reads ABI {ours})", point=point,
                                remedy=Remedy.NEWER)
    if pins_abi in abi.ADOPTABLE_ABI_VERSIONS | abi.MIGRATABLE_ABI_VERSIONS:
        return IncompatiblePins(f"{point.label}'s pins were made by an older pingkiller (ABI "
                                f"{pins_abi}; this one reads ABI {ours})", point=point,
                                remedy=Remedy.UPGRADE)
    return IncompatiblePins(f"{point.label}'s pins were made by an older pingkiller (ABI "
                            f"{pins_abi}) that this one (ABI {ours}) cannot adopt",
                            point=point, remedy=Remedy.DETACH)
