"""Every enum of pingkiller (their words, which users type and read, are in
:mod:`pingkiller.model.words`; a ``label`` is the word of a member that has one).

The values of those kern/pingkiller.h also defines are written here as numbers;
:mod:`pingkiller.abi` checks them against the compiled header when it is imported.
"""

from __future__ import annotations

import enum


class Hook(enum.IntEnum):
    """Where an attachment runs: the driver's XDP hook, or the tc hook (``enum pk_hook``)."""

    XDP = 0
    TC = 1

    @property
    def label(self) -> str:
        """``xdp`` or ``tc``."""
        return self.name.lower()


class Direction(enum.IntEnum):
    """Which way packets go through the hook (``enum pk_direction``)."""

    IN = 0
    OUT = 1

    @property
    def label(self) -> str:
        """``in`` or ``out``."""
        return self.name.lower()


class Mode(enum.Enum):
    """How an attachment holds its hook. Asked for: AUTO (the kernel's choice: native XDP
    where the driver has it, tcx where the kernel has it), NATIVE or GENERIC (XDP), TCX (a
    tc link) or CLSACT (a filter on the clsact qdisc, for kernels before 6.6). Reported
    also: OFFLOAD (XDP on the NIC), NONE (the attachment filters nothing)."""

    AUTO = "auto"
    NATIVE = "native"
    GENERIC = "generic"
    OFFLOAD = "offload"
    TCX = "tcx"
    CLSACT = "clsact"
    NONE = "none"

    @property
    def hook(self) -> Hook | None:
        """The hook this mode is one of (None: AUTO and NONE are either's)."""
        if self in (Mode.NATIVE, Mode.GENERIC, Mode.OFFLOAD):
            return Hook.XDP
        if self in (Mode.TCX, Mode.CLSACT):
            return Hook.TC
        return None


class Reason(enum.IntEnum):
    """Why a packet got its verdict, one counter each (``enum pk_reason``)."""

    PASS_NOT_PING = 0
    PASS_ALLOW = 1
    PASS_DEFAULT = 2
    DROP_BLOCK = 3
    DROP_DEFAULT = 4
    PASS_FRAGMENT = 5
    PASS_UNPARSED = 6
    DROP_RATE = 7  # a limited ping over its source's rate
    DROP_RATE_TOTAL = 8  # a limited ping over the total rate of all limited pings
    PASS_RATE = 9  # a limited ping within its rate

    @property
    def dropped(self) -> bool:
        return self in (Reason.DROP_BLOCK, Reason.DROP_DEFAULT, Reason.DROP_RATE,
                        Reason.DROP_RATE_TOTAL)

    @property
    def label(self) -> str:
        """Stable lower-case name used in output, JSON and metrics (e.g. ``drop_block``)."""
        return self.name.lower()


class DefaultAction(enum.IntEnum):
    """What happens to a ping no rule decides (``enum pk_action``)."""

    PASS = 0
    DROP = 1
    LIMIT = 2  # pass at most the policy's rate per source (Policy.limit)


class RuleAction(enum.IntEnum):
    """What a rule does with pings from or to its network (``enum pk_rule_action``)."""

    ALLOW = 1
    BLOCK = 2
    LIMIT = 3  # pass at most the rule's rate per source


class IcmpSet(enum.IntEnum):
    """The shorthands for which ICMP messages count as a ping (``enum pk_icmp_set``);
    LIST is any other set (:class:`pingkiller.IcmpTypes`)."""

    ECHO = 0
    ECHO_REQUEST = 1
    ALL = 2
    LIST = 3


class EventsMode(enum.IntEnum):
    """Which packets send an event (``enum pk_events_mode``)."""

    OFF = 0
    DROPS = 1
    PINGS = 2
    ALL = 3


class TimingSlot(enum.IntEnum):
    """Which verdicts processing time is measured for (``enum pk_timing_slot``)."""

    DROP = 0
    PASS = 1


class LinkState(enum.Enum):
    """What the kernel says of an attachment's link."""

    FILTERING = "filtering"  # attached to the interface its pins are named after
    RENAMED = "renamed"  # still filters, but the interface has another name now
    MOVED = "moved"  # still filters, on an interface moved to another network namespace
    ELSEWHERE = "elsewhere"  # attached from another network namespace, which it filters
    UNREADABLE = "unreadable"  # the link cannot be read
    DEFUNCT = "defunct"  # the kernel detached it: its interface is gone
    DETACHED = "detached"  # detached by another tool; its interface is still here
    GONE = "gone"  # no interface has the link's index any more

    @property
    def stale(self) -> bool:
        """Whether the attachment filters nothing any more."""
        return self not in (LinkState.FILTERING, LinkState.RENAMED, LinkState.MOVED,
                            LinkState.ELSEWHERE)

    @property
    def here(self) -> bool:
        """Whether the link's interface is in this network namespace."""
        return self in (LinkState.FILTERING, LinkState.RENAMED)


class PinState(enum.Enum):
    """What an attachment's pin directory holds now, against what a handle opened."""

    CURRENT = "current"  # the program this handle opened
    REPLACED = "replaced"  # another program, by a replace: counters and event ring carry over
    SUPERSEDED = "superseded"  # another attachment (detached, attached again): ours is frozen
    DETACHED = "detached"  # nothing: the attachment was detached

    @property
    def ended(self) -> bool:
        """Whether what a handle of the old attachment reads no longer changes."""
        return self in (PinState.SUPERSEDED, PinState.DETACHED)
