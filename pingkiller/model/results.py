"""What the verbs return: an attachment's state (:class:`AttachmentInfo`), and what a rule
change, a sync, a detach and an upgrade did, each holding the :class:`Point` it is about."""

from __future__ import annotations

from dataclasses import dataclass

from pingkiller.model.enums import Direction, Hook, LinkState, Mode
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.rules import Rule
from pingkiller.model.stats import Stats


@dataclass(frozen=True)
class _AtPoint:
    point: Point

    @property
    def ifname(self) -> str:
        return self.point.ifname

    @property
    def hook(self) -> Hook:
        return self.point.hook

    @property
    def direction(self) -> Direction:
        return self.point.direction


@dataclass(frozen=True)
class AttachmentInfo(_AtPoint):
    """What ``status`` shows of one attachment.

    ``mode`` is the mode in effect (NONE when it filters nothing); ``state`` what the
    kernel says of its link and ``problem`` what is wrong, in words ('' when nothing
    is); ``chain`` (tc) the ids of the programs on its hook in the order they run.
    ``policy``, ``rules`` and ``stats`` are None/empty where its maps cannot be read.
    """

    ifindex: int
    program_id: int
    link_id: int
    mode: Mode
    policy: Policy | None
    rule_count: int
    rules: tuple[Rule, ...]
    stats: Stats | None
    problem: str
    pin_dir: str  # '' for a private attachment
    state: LinkState = LinkState.FILTERING
    abi_version: int = 0  # of the pins
    program: str = ""  # SHA-256 of the running program's ELF ('' when not recorded)
    outdated: bool = False  # the running program is not the installed one
    chain: tuple[int, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether it filters nothing any more."""
        return self.state.stale

    @property
    def position(self) -> int:
        """Where pingkiller runs in its tc hook's chain (1: first), 0 when not in it."""
        return self.chain.index(self.program_id) + 1 if self.program_id in self.chain else 0


@dataclass(frozen=True)
class RuleChange(_AtPoint):
    """What a rule change did to one attachment."""

    changed: int  # rules added or changed (set), or removed (remove)
    rule_count: int  # rules afterwards


@dataclass(frozen=True)
class RuleDiff(_AtPoint):
    """What :func:`pingkiller.sync_rules` did to one attachment: the rules it added or
    changed to the wanted action, the rules it removed, and how many are there now."""

    added: tuple[Rule, ...]
    removed: tuple[Rule, ...]
    rule_count: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True)
class Detached(_AtPoint):
    """What ``detach`` did to one attachment."""

    was_stale: bool
    recovered: tuple[str, ...] = ()  # what recovery finished first, in words


@dataclass(frozen=True)
class Upgraded(_AtPoint):
    """What ``upgrade`` did to one attachment."""

    upgraded: bool  # False: it ran the installed program already
    from_abi: int
    to_abi: int
    from_program: str  # SHA-256 of the ELF that ran ('' when not recorded)
    to_program: str
    recovered: tuple[str, ...] = ()
