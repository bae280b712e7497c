"""The names of the pin store: one directory per attachment under the pin root, and the
work directories a writer renames them through.

An attachment at :class:`~pingkiller.model.point.Point` ``eth0`` (XDP) lives in
``<root>/eth0``, at its tc hook in ``<root>/eth0,tc-in`` and ``<root>/eth0,tc-out``
(',' is in no interface name). bpffs refuses names with '.', so a '.' of an interface
name is stored as '~'. Work directories start with '=' (in no validated name):
``=tmp-PID-ENTRY`` (an attach or replace being written), ``=old-PID-ENTRY`` (the pins a
replace moves away), ``=del-PID-ENTRY`` (a detach in progress).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import InvalidInput, InvalidInterfaceName
from pingkiller.model.point import Point, validate_ifname

ENV = "PINGKILLER_PIN_ROOT"
DEFAULT_ROOT = Path("/sys/fs/bpf/pingkiller")
# What an attachment's directory holds besides the maps.
LINK_PIN = "link"
PROGRAM_PIN = "program"  # the program the link runs, for readers (and a replace in progress)
IDENTITY_PIN = "identity"  # an Identity record in a one-entry array map (store.records)

_TC_SUFFIXES = {Direction.IN: ",tc-in", Direction.OUT: ",tc-out"}


class Work(enum.Enum):
    """What a writer was doing in a work directory it left behind."""

    ATTACH = "=tmp-"  # new pins being written (an attach, a replace, a rule-file swap)
    REPLACE = "=old-"  # the previous pins, moved away during a replace
    DETACH = "=del-"  # pins moved out of sight before their link is detached


def default_root() -> Path:
    """The pin root: $PINGKILLER_PIN_ROOT, else /sys/fs/bpf/pingkiller."""
    return Path(os.environ.get(ENV) or DEFAULT_ROOT)


def entry(point: Point) -> str:
    """The name of ``point``'s pin directory."""
    suffix = _TC_SUFFIXES[point.direction] if point.hook is Hook.TC else ""
    return validate_ifname(point.ifname).replace(".", "~") + suffix


def point_of(name: str) -> Point | None:
    """The point a pin directory's name stands for (None: not one of ours)."""
    ifname, comma, suffix = name.partition(",")
    ifname = ifname.replace("~", ".")
    try:
        if not comma:
            return Point(ifname)
        for direction, known in _TC_SUFFIXES.items():
            if known == comma + suffix:
                return Point(ifname, Hook.TC, direction)
    except (InvalidInput, InvalidInterfaceName):
        pass
    return None


@dataclass(frozen=True)
class Leftover:
    """A work directory a writer left: where, what it was doing, for which attachment."""

    path: Path
    work: Work
    point: Point
    pid: int


def work_name(work: Work, point: Point, pid: int | None = None) -> str:
    return f"{work.value}{os.getpid() if pid is None else pid}-{entry(point)}"


def leftover(path: Path) -> Leftover | None:
    """What work directory ``path`` is (None: an attachment's own, or not ours)."""
    for work in Work:
        if path.name.startswith(work.value):
            pid_text, _, name = path.name[len(work.value):].partition("-")
            point = point_of(name)
            if pid_text.isdigit() and point is not None:
                return Leftover(path, work, point, int(pid_text))
    return None
