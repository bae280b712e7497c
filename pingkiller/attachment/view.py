"""The handle's read side: an attachment as a reader sees it, which knows when what it
reads has ended."""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Self

from pingkiller import abi
from pingkiller.attachment.state import Health, RecordedLink, health, identity_of, outdated
from pingkiller.attachment.tracking import Pinned, ended_by, pin_state, stopped_filtering
from pingkiller.bpf import BpfError, Map, Object, Program
from pingkiller.datapath.counters import read_stats, watch
from pingkiller.datapath.rules import RuleScan, RuleTable
from pingkiller.hooks import Strategy
from pingkiller.hooks.base import HookLink
from pingkiller.model.enums import LinkState, Mode, PinState, Reason
from pingkiller.model.errors import AttachmentClosed, AttachmentEnded, PermissionDenied, PingkillerError
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.rules import Rule
from pingkiller.model.stats import Stats
from pingkiller.store import Store
from pingkiller.store.records import Identity, read_policy

if TYPE_CHECKING:
    from pingkiller.datapath.events import EventFeed, EventStream

_log = logging.getLogger("pingkiller.attachment")
class AttachmentView:
    """pingkiller at one point, as read: policy, rules, counters, events, state.

    Obtain one with :func:`pingkiller.open` (``read_only=True``) or from
    :func:`pingkiller.each_attachment`; :class:`~pingkiller.Attachment` (the writer) is
    one too. A context manager: it closes its handles on exit.

    It knows when what it reads has ended: once the attachment it opened is detached,
    replaced by another attachment, or stops filtering (its interface deleted, its link
    detached), every read raises :class:`~pingkiller.AttachmentEnded` instead of
    returning frozen data, and watchers stop. Across a replace that carries counters and
    events over (``attach(..., replace=True)``, an upgrade, a big rule change), it
    follows the new pins. After :meth:`close`, reads raise
    :class:`~pingkiller.AttachmentClosed`. An attachment that already filtered nothing
    when it was opened is read as it was (``status`` shows such ones).

    ``unreadable`` is set where the pins' maps cannot be read (incomplete pins, another
    ABI version): :meth:`info` still tells its state, and reads raise that error.
    """

    def __init__(self, point: Point, store: Store | None, strategy: Strategy,
                 link: HookLink | RecordedLink, maps: dict[str, Map], *,
                 program: Program | None = None, obj: Object | None = None,
                 identity: Identity | None = None, pinned: Pinned | None = None,
                 unreadable: PingkillerError | None = None, read_only: bool = False,
                 reopen: Callable[[], AttachmentView] | None = None) -> None:
        self.point = point
        self.store = store
        self.strategy = strategy
        self.identity = identity  # what the pins record (None: private, or no record)
        self.maps = maps
        self.unreadable = unreadable
        self.read_only = read_only
        self._reopen = reopen  # the attachment as the pins hold it now
        self._link = link
        self._program = program  # the pinned program, read-only (readers)
        self._obj = obj  # the loaded object this handle made (attach)
        self._pinned = pinned  # what the directory held when opened
        self._events_map: Map | None = None
        self._table: RuleTable | None = None
        self._ended: AttachmentEnded | None = None
        self._closed = False
        self._filtering = not self.health().state.stale  # when opened

    @property
    def ifname(self) -> str:
        return self.point.ifname

    @property
    def pinned(self) -> bool:
        """Whether it lives in the pin store (False: private, ``persist=False``)."""
        return self.store is not None

    @property
    def directory(self) -> Path | None:
        """Its pin directory (None: private)."""
        return self.store.directory(self.point) if self.store is not None else None

    # -- what it is

    def health(self) -> Health:
        """What the kernel says of its link (see :class:`LinkState`)."""
        return health(self._link, self.identity, self.point, self.store)

    def link_state(self) -> LinkState:
        return self.health().state

    def problem(self) -> str:
        """What is wrong with it, in words ('' when nothing is). A renamed interface is
        a problem (the pins keep the old name) but not stale: the program still filters."""
        return self.health().problem

    def is_stale(self) -> bool:
        """Whether it filters nothing any more."""
        return self.link_state().stale

    @property
    def mode(self) -> Mode:
        """How it holds its hook now: NATIVE, GENERIC (XDP), TCX, CLSACT; NONE when it
        filters nothing."""
        return self._placed(self.health(), chain=False)[0]

    def _placed(self, now: Health, *, chain: bool) -> tuple[Mode, tuple[int, ...]]:
        """Its mode now, and with ``chain`` the programs its hook runs in order."""
        if now.info is None or now.state.stale or not now.state.here:
            return Mode.NONE, ()
        try:
            mode = self.strategy.mode_at(now.info.ifindex)
            running = self.strategy.running(self.point, now.info.ifindex) if chain else ()
        except BpfError:
            return Mode.NONE, ()  # the interface went away meanwhile
        return mode, tuple(running) if self.strategy.chained else ()

    @property
    def policy(self) -> Policy:
        self.check()
        return read_policy(self.maps)

    # -- rules

    def rules(self) -> list[Rule]:
        """Every rule, in memory (see :meth:`rule_entries` for large tables)."""
        self.check()
        return self._rules().rules()

    def rule_entries(self) -> Iterator[list[Rule]]:
        """Every rule, streamed a batch at a time (memory: one batch): IPv4 addresses,
        IPv4 prefixes, IPv6 addresses, IPv6 prefixes."""
        self.check()
        return self._rules().entries()

    def rule_count(self) -> int:
        """How many rules there are, counted without decoding any (~0.35 s for 10^6)."""
        self.check()
        return self._rules().count()

    def scan_rules(self, keep: int | None = None) -> RuleScan:
        """One pass over the rules: how many there are, and the first ``keep`` of them
        (all when None), decoding no batch beyond them."""
        self.check()
        return self._rules().scan(keep)

    def _rules(self) -> RuleTable:
        if self._table is None:
            self._table = RuleTable(self.maps)
        return self._table

    # -- counters and events

    def stats(self, *, per_cpu: bool = False) -> Stats:
        """Its counters now (sums over CPUs; ``per_cpu`` adds each CPU's)."""
        self.check()
        return self._stats(per_cpu=per_cpu)

    def _stats(self, *, per_cpu: bool = False) -> Stats:
        """Counters, with the program's run time from its pin, else by id where allowed."""
        program = self._program or (self._obj.programs[self.strategy.program_name(self.point)]
                                    if self._obj is not None else None)
        if program is not None:
            return read_stats(self.maps, program, per_cpu=per_cpu)
        try:
            by_id = Program.from_id(self._link.info().prog_id)
        except BpfError:
            return read_stats(self.maps, None, per_cpu=per_cpu)
        with by_id:
            return read_stats(self.maps, by_id, per_cpu=per_cpu)

    def watch_stats(
        self, interval: float, *, per_cpu: bool = False
    ) -> Generator[tuple[Stats, dict[Reason, float]], None, None]:
        """Every ``interval`` seconds a snapshot and the rates (packets per second, by
        reason) since the one before, until the caller stops iterating (or closes it), or
        the attachment ends (:class:`~pingkiller.AttachmentEnded`). The kernel's BPF
        run-time stats are switched on meanwhile, where it allows."""
        return watch(functools.partial(self.stats, per_cpu=per_cpu), interval)

    def events(self, *, backlog: bool = False) -> EventStream:
        """A stream of its events (the policy says which packets send one), from now on:
        what the ring holds already is skipped and counted (``stream.skipped``); with
        ``backlog=True`` it comes first instead. The ring has one read position: what one
        reader skips or reads, the next does not see. Moving that position needs a
        read-write handle on the ring: a read-only view opens one (and fails clearly
        where the pin is not writable)."""
        from pingkiller.datapath.events import EventStream

        self.check()
        return EventStream(self._events_ring(), backlog=backlog)

    def _events_ring(self) -> Map:
        if not self.read_only or self.store is None:
            return self.maps[abi.EVENTS_MAP]
        if self._events_map is None:
            self._events_map = read_only_events(self.store.directory(self.point), self.point)
        return self._events_map

    def follow_events(self, *, count: int | None = None, timeout: float | None = None,
                      backlog: bool = False) -> EventFeed:
        """Its events in batches until ``count`` events or ``timeout`` seconds (None: no
        limit), with a summary of what was received, suppressed and lost meanwhile; close
        it, or use it in ``with``. About once a second it checks the attachment: when it
        has ended, iterating raises :class:`~pingkiller.AttachmentEnded` after the events
        left in the ring; across a replace it carries on, as the ring does."""
        from pingkiller.datapath.events import EventFeed

        stream = self.events(backlog=backlog)
        try:
            return EventFeed(stream, self._event_losses, count=count, timeout=timeout,
                             ended=self.ended)
        except BaseException:
            stream.close()
            raise

    def _event_losses(self) -> tuple[int, int]:
        stats = self._stats()
        return stats.events_suppressed, stats.events_lost

    # -- status

    def info(self, *, with_rules: bool = True, rule_count: int | None = None) -> AttachmentInfo:
        """What status shows (also of an attachment that has ended). Without
        ``with_rules`` the rules are only counted, or not even that when the caller
        passes the ``rule_count`` it has (from :meth:`scan_rules`)."""
        self._check_open()
        now = self.health()
        readable = self.unreadable is None
        rules = tuple(self._rules().rules()) if with_rules and readable else ()
        if rule_count is None:
            rule_count = len(rules) if with_rules or not readable else self._rules().count()
        identity = self.identity or identity_of(now, pinned=self.pinned)
        problem = now.problem
        if self.unreadable is not None:
            problem = f"{self.unreadable}; {problem}" if problem else str(self.unreadable)
        mode, chain = self._placed(now, chain=True)
        return AttachmentInfo(
            point=self.point, ifindex=now.info.ifindex if now.info else 0,
            program_id=now.info.prog_id if now.info else 0,
            link_id=now.info.id if now.info else 0, mode=mode,
            policy=read_policy(self.maps) if readable else None,
            rule_count=rule_count, rules=rules,
            stats=self._stats() if readable else None, problem=problem,
            pin_dir=str(self.directory or ""), state=now.state,
            abi_version=identity.abi_version, program=identity.program.hex(),
            outdated=outdated(identity), chain=chain,
        )

    # -- lifetime

    def ended(self) -> AttachmentEnded | None:
        """The error that ends this handle's reads, or None while they go on (a replace
        that carried counters and events over is followed)."""
        if self._ended is None and not self._closed:
            self._ended = self._check_pins() or self._check_link()
        return self._ended

    def pin_state(self) -> PinState:
        """Whether the pins still hold the attachment this handle opened: the same
        (CURRENT), another after a replace that carried counters and events over
        (REPLACED), another attachment (SUPERSEDED), or none (DETACHED). An attachment
        that pins nothing (``persist=False``) is always CURRENT."""
        return pin_state(self.store, self.point, self._pinned)

    def check(self) -> None:
        """Raise :class:`~pingkiller.AttachmentClosed` after :meth:`close`,
        :class:`~pingkiller.AttachmentEnded` once the attachment has ended, or why its
        maps cannot be read; follow a replace that carried counters and events over."""
        self._check_open()
        if self.unreadable is not None:
            raise self.unreadable
        ended = self.ended()
        if ended is not None:
            raise ended

    def _check_open(self) -> None:
        if self._closed:
            raise AttachmentClosed(f"this handle on {self.point.label} was closed: open the "
                                   "attachment again to use it", point=self.point)

    def _check_pins(self) -> AttachmentEnded | None:
        state = self.pin_state()
        if state is PinState.REPLACED:
            before = self._pinned.program_id if self._pinned else 0
            self._follow()
            _log.warning("%s's program was replaced (id %d, now %d); its counters and event "
                         "ring carry over, so this carries on", self.point.label, before,
                         self._pinned.program_id if self._pinned else 0)
        return ended_by(self.point, state)

    def _check_link(self) -> AttachmentEnded | None:
        return stopped_filtering(self.point, self.health()) if self._filtering else None

    def _follow(self) -> None:
        """Read the pins a replace put in place of those this handle opened (counters and
        events carried over; the rule maps and program are new)."""
        if self._reopen is None:
            return
        fresh = self._reopen()
        self._release()
        self._link.close()
        self._link, self.maps, self._program = fresh._link, fresh.maps, fresh._program
        self.identity, self._pinned, self._table = fresh.identity, fresh._pinned, None
        self._events_map = None
        fresh.maps, fresh._program, fresh._closed = {}, None, True

    def close(self) -> None:
        """Release this process's handles (a pinned attachment stays attached)."""
        if self._closed:
            return
        self._closed = True
        self._link.close()
        self._release()

    def _release(self) -> None:
        """Release every handle but the link's."""
        for bpf_map in self.maps.values():
            bpf_map.close()
        for handle in (self._program, self._events_map):
            if handle is not None:
                handle.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "private" if self.store is None else str(self.directory)
        return f"<{type(self).__name__} {self.point.label} ({where})>"


def read_only_events(directory: Path, point: Point) -> Map:
    """The events pin of ``directory`` opened read-write for a reader (moving the ring's
    read position needs it)."""
    pin = directory / abi.EVENTS_MAP
    try:
        return Map.from_pin(pin)
    except BpfError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise PermissionDenied(
            f"streaming {point.label}'s events moves the ring buffer's read position, which "
            f"needs write access to {pin} ({os.strerror(err.errno)}): read them where bpffs "
            "is writable; stats and status only read", point=point) from None
