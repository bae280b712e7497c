"""Attachments: attach, open, list and detach pingkiller on interfaces; change policy live.

An attachment is pingkiller at one :class:`~pingkiller.pins.Point`: an interface's XDP
hook, or its tc hook in one direction. It pins its link, program, identity record and
maps under a bpffs directory of its own (:mod:`pingkiller.pins`), so it outlives the
process that made it and any later process can reopen it; an interface can carry an XDP
attachment and tc ones at once, each with its own maps. With ``persist=False`` nothing
is pinned and closing the attachment detaches it.

Writers (attach, detach, rule and policy changes) hold the pin lock, and the first
thing they do is finish what a killed writer left half done. Readers (status, stats,
export, the exporter) only read: they open every pin read-only, take no lock and
finish nothing, so they work on a read-only bpffs with CAP_BPF alone.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pingkiller import (
    abi,
    capabilities,
    datapath,
    hooks,
    interfaces,
    lock,
    migrate,
    pins,
    recovery,
)
from pingkiller.abi import Direction, Hook, Network, Reason, RuleAction
from pingkiller.bpf import (
    BpfError,
    Map,
    NotSupportedError,
    Object,
    Program,
    TcxLink,
    XdpLink,
    XdpMode,
    tc_filters,
)
from pingkiller.bpf.link import LinkInfo, xdp_query
from pingkiller.errors import (
    AlreadyAttached,
    AttachFailed,
    IncompatiblePins,
    InvalidInput,
    NotAttached,
    PermissionDenied,
    PingkillerError,
    StaleAttachment,
)
from pingkiller.hooks import ClsactLink, InterfaceLink, TcMode
from pingkiller.pins import Point
from pingkiller.policy import Policy, Rule, default_action, format_network, parse_network
from pingkiller.rules import (
    LOOKUP_FLAGS,
    RuleEntry,
    RuleKeys,
    RuleScan,
    RuleTable,
    read_rule_keys,
)
from pingkiller.stats import Stats, read_stats, run_time_stats

if TYPE_CHECKING:
    from pingkiller.events import EventFeed, EventStream

PINNED_MAPS = (
    abi.SETTINGS_MAP,
    abi.COUNTERS_MAP,
    abi.TIMING_MAP,
    abi.EVENTS_MAP,
    abi.RULES_V4_MAP,
    abi.RULES_V6_MAP,
    abi.PREFIXES_V4_MAP,
    abi.PREFIXES_V6_MAP,
    abi.PREFIX_TRIE_V4_MAP,
    abi.PREFIX_TRIE_V6_MAP,
)
# Rule changes larger than this go through a copy of the rule tables swapped in at once
# (Attachment._rebuilt), so a writer killed meanwhile leaves no partial change.
ATOMIC_ABOVE = 256
# Kept across --replace so counters and event readers carry on.
CARRIED_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP)

# A reader that finds a directory missing or changing looks again this often: a
# --replace renames the old directory away just before the new one takes its name.
_READ_ATTEMPTS = 20
_READ_RETRY_SECONDS = 0.005
_FD_DIR = Path("/proc/self/fd")
_log = logging.getLogger("pingkiller.killer")


@contextmanager
def _writing() -> Iterator[None]:
    """The pin lock, as a writer takes it: bpffs mounted and the pin root made first
    (an explicit step: taking the lock mounts nothing)."""
    pins.ensure_root()
    with lock.locked():
        yield


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


# States in which the link's interface is in this network namespace.
_HERE = (LinkState.FILTERING, LinkState.RENAMED)


def _runs_here(info: LinkInfo, point: Point) -> bool | None:
    """Whether interface ``info.ifindex`` of this network namespace runs the link's
    program (an ifindex is unique only within a namespace: another interface may have
    it here once ours moved away); None when this process may not ask."""
    return hooks.runs(point, info.ifindex, {info.prog_id} | recovery.replacing_programs(point))


# Said of an attachment whose hook this process may not query (see hooks.runs).
_UNVERIFIED = ("not verified: seeing which programs run at a tc hook needs CAP_NET_ADMIN "
               "(or root); shown as its pins record it")


def _outdated(identity: pins.Identity) -> bool:
    return (identity.abi_version != abi.ABI_VERSION
            or identity.program != datapath.program_digest())


def abi_problem(point: Point, pins_abi: int) -> str:
    """What to do about pins of ABI ``pins_abi``, which this pingkiller does not read."""
    ours = abi.ABI_VERSION
    ifname = point.label
    verb_args = point.options
    if pins_abi > ours:
        return (f"{ifname}'s pins were made by a newer pingkiller (ABI {pins_abi}; this one "
                f"reads ABI {ours}): use that pingkiller or a newer one for {ifname} "
                f"(this one can still `pingkiller detach {verb_args}`)")
    if pins_abi in abi.ADOPTABLE_ABI_VERSIONS | abi.MIGRATABLE_ABI_VERSIONS:
        return (f"{ifname}'s pins were made by an older pingkiller (ABI {pins_abi}; this one "
                f"reads ABI {ours}): `pingkiller upgrade {verb_args}` moves them to this version "
                "in place, keeping rules and counters")
    return (f"{ifname}'s pins were made by an older pingkiller (ABI {pins_abi}) that this one "
            f"(ABI {ours}) cannot adopt: `pingkiller detach {verb_args}`, then attach again")


def _link_state(
    link: InterfaceLink | RecordedLink, identity: pins.Identity | None, point: Point
) -> tuple[LinkInfo | None, LinkState, str]:
    """See :meth:`Attachment._link_state`."""
    ifname = point.ifname
    try:
        info = link.info()
    except BpfError:
        kind = "XDP" if point.hook is Hook.XDP else "tc"
        return None, LinkState.UNREADABLE, f"its {kind} link cannot be read"
    if info.ifindex == 0:
        if isinstance(link, ClsactLink) or (identity is not None and not identity.link_id
                                            and point.hook is Hook.TC):
            return info, LinkState.DEFUNCT, (
                "its clsact filter is gone (the interface, its clsact qdisc or the filter "
                "was removed, or the interface moved to another network namespace)")
        if identity is not None and interfaces.interface_name(identity.ifindex) == ifname:
            return info, LinkState.DETACHED, (
                f"the link was detached, but {ifname} is still here (not by pingkiller: "
                f"e.g. `bpftool link detach`); `pingkiller detach {point.options}` removes "
                "its pins")
        if isinstance(link, RecordedLink) and not link.from_kernel:
            return info, LinkState.DEFUNCT, (
                "its program runs on no interface here (the interface is gone, or was "
                "moved to another network namespace)")
        return info, LinkState.DEFUNCT, "the interface is gone (the link is defunct)"
    cookie = identity.netns_cookie if identity else 0
    if cookie and cookie != interfaces.netns_cookie():
        return info, LinkState.ELSEWHERE, (
            "it was attached in another network namespace and filters there: manage it "
            "from that namespace")
    here = _runs_here(info, point)
    if here is False:
        return info, LinkState.MOVED, (
            "its interface was moved to another network namespace; still filtering there "
            f"(`pingkiller detach {point.options}` removes it)")
    current = interfaces.interface_name(info.ifindex)
    if current is None:
        return info, LinkState.GONE, "the interface is gone"
    if current != ifname:
        return info, LinkState.RENAMED, f"the interface was renamed to {current!r}"
    unverified = here is None or (isinstance(link, RecordedLink) and link.unverified)
    return info, LinkState.FILTERING, _UNVERIFIED if unverified else ""


def _networks(addresses: Iterable[str | Network]) -> list[Network]:
    return [a if not isinstance(a, str) else parse_network(a) for a in addresses]


@dataclass(frozen=True)
class AttachmentInfo:
    """What ``status`` shows about one attachment."""

    ifname: str
    ifindex: int
    program_id: int
    link_id: int
    mode: XdpMode  # in effect; NONE when stale
    policy: Policy | None
    rule_count: int
    rules: list[Rule]
    stats: Stats | None
    stale: bool
    problem: str
    pin_dir: str
    state: LinkState = LinkState.FILTERING
    abi_version: int = abi.ABI_VERSION  # of the pins
    program: str = ""  # SHA-256 of the running program's ELF ('' when not recorded)
    outdated: bool = False  # the running program is not the installed one
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN
    # tc: the ids of the programs on the hook, in the order they run (ours among them)
    chain: tuple[int, ...] = ()
    clsact: bool = False  # tc: a filter on the clsact qdisc, not a tcx link

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)

    @property
    def mode_text(self) -> str:
        """How the program is attached: the XDP mode in effect, or for tc ``tcx`` (a
        link) or ``clsact`` (a filter on the clsact qdisc)."""
        if self.hook is Hook.XDP:
            return self.mode.value
        return "clsact" if self.clsact else "tcx"

    @property
    def position(self) -> int:
        """Where pingkiller runs in its tc hook's chain (1: first), 0 when not in it."""
        return self.chain.index(self.program_id) + 1 if self.program_id in self.chain else 0

    def to_json(self) -> dict[str, object]:
        return {
            "interface": self.ifname,
            "hook": self.hook.label,
            "direction": self.direction.label,
            "ifindex": self.ifindex,
            "program_id": self.program_id,
            "link_id": self.link_id,
            "mode": self.mode_text,
            "chain": list(self.chain) if self.hook is Hook.TC else None,
            "state": self.state.value,
            "stale": self.stale,
            "problem": self.problem or None,
            "abi_version": self.abi_version,
            "program": self.program or None,
            "outdated": self.outdated,
            "policy": self.policy.to_json() if self.policy else None,
            "rule_count": self.rule_count,
            "rules": [rule.to_json() for rule in self.rules],
            "stats": self.stats.to_json() if self.stats else None,
            "pin_dir": self.pin_dir,
        }


class RecordedLink:
    """A pinned attachment's link as a reader knows it without opening it.

    The kernel opens link pins only read-write, so a reader takes the link's id and
    interface from the identity record and the program from its (read-only) pin, and
    asks the kernel which program the interface runs: the link is alive while that is
    the pinned program (or the new one of a --replace that was killed after swapping,
    which the next writer completes), and ``info().ifindex`` is 0 otherwise, as for a
    defunct link.
    """

    def __init__(self, point: Point, program: Program, identity: pins.Identity) -> None:
        self.point = point
        self.program = program
        self.identity = identity
        self.prog_id = program.info().id
        self.from_kernel = False  # whether the last info() came from the link itself
        self.unverified = False  # whether the last info() could not ask what runs there

    def info(self) -> LinkInfo:
        """The link's info: from the kernel's link by id where this process may open it
        (CAP_SYS_ADMIN; nothing is written), else inferred from what the interface runs."""
        try:
            if not self.identity.link_id:  # a clsact filter: there is no link
                raise BpfError(errno.EPERM, "opening link")
            with hooks.link_from_id(self.point, self.identity.link_id) as link:
                info = link.info()
            self.from_kernel = True
            return info
        except BpfError as err:
            self.from_kernel = err.errno == errno.ENOENT  # the link is gone: defunct
            if self.from_kernel:
                return LinkInfo(id=self.identity.link_id, prog_id=self.prog_id, ifindex=0)
        alive = hooks.runs(self.point, self.identity.ifindex,
                           {self.prog_id} | recovery.replacing_programs(self.point))
        self.unverified = alive is None
        if alive is None:  # as recorded, while its interface exists
            alive = interfaces.interface_name(self.identity.ifindex) is not None
        return LinkInfo(id=self.identity.link_id, prog_id=self.prog_id,
                        ifindex=self.identity.ifindex if alive else 0)

    def close(self) -> None:
        self.program.close()


class PinState(enum.Enum):
    """What an attachment's pin directory holds now, against what a handle opened
    (:meth:`Attachment.pin_state`)."""

    CURRENT = "current"  # the program this handle opened
    REPLACED = "replaced"  # another program, by a --replace: the counters and event ring carry over
    SUPERSEDED = "superseded"  # another attachment (detached, attached again): ours is frozen
    DETACHED = "detached"  # nothing: the attachment was detached

    @property
    def ended(self) -> bool:
        """Whether what a handle of the old attachment reads no longer changes."""
        return self in (PinState.SUPERSEDED, PinState.DETACHED)


class AttachmentEnded(PingkillerError):
    """A watcher (``watch_stats``, ``follow_events``) stops: the attachment it watched
    was detached, or another one took its place, so its counters and events are frozen."""

    exit_code = 1

    def __init__(self, message: str, state: PinState) -> None:
        super().__init__(message)
        self.state = state


class _Watcher:
    """What a watcher checks about once a second: whether the pins still hold the
    attachment it reads. A --replace carries the counters and the event ring over, so a
    watcher carries on (and says so on the ``pingkiller.killer`` logger); a detach, or a
    new attachment in its place, ends it."""

    def __init__(self, attachment: Attachment, verb: str) -> None:
        self.attachment = attachment
        self.verb = verb  # the CLI verb that follows the new attachment
        self.program_id = attachment._opened_program_id()

    def check(self) -> PinState:
        state, program_id = self.attachment._pin_state(self.program_id)
        if state is PinState.REPLACED:
            _log.warning("%s's program was replaced (id %d, now %d); its counters and event "
                         "ring carry over, so this carries on",
                         self.attachment.ifname, self.program_id, program_id)
            self.program_id = program_id
        return state

    def error(self, state: PinState) -> AttachmentEnded:
        point = self.attachment.point
        if state is PinState.DETACHED:
            return AttachmentEnded(f"{point.label} was detached; stopping", state)
        return AttachmentEnded(
            f"{point.label} was detached and attached again, with counters and events of its "
            f"own (`pingkiller {self.verb} {point.options}` follows the new attachment); "
            "stopping", state)

    def ended(self) -> AttachmentEnded | None:
        """The error that ends the watch, or None while it goes on."""
        state = self.check()
        return self.error(state) if state.ended else None


def _pinned_ids(point: Point) -> tuple[int, dict[str, int]] | None:
    """The ids of the program and the carried maps pinned for ``point`` now (read-only,
    no lock), or None when it has no attachment. A missing directory is looked for a few
    times: a --replace renames the old one away just before the new one takes its name."""
    directory = pins.directory(point)
    for _ in range(_READ_ATTEMPTS):
        where = directory if directory.is_dir() else recovery.pending_directory(point)
        if where is not None:
            try:
                return _ids_in(where)
            except BpfError as err:
                if err.errno != errno.ENOENT:
                    raise
        time.sleep(_READ_RETRY_SECONDS)
    return None


def _ids_in(directory: Path) -> tuple[int, dict[str, int]]:
    try:
        with Program.from_pin(directory / pins.PROGRAM_PIN, read_only=True) as program:
            program_id = program.info().id
    except BpfError as err:
        if err.errno != errno.ENOENT or not (directory / pins.LINK_PIN).exists():
            raise
        program_id = 0  # pins made before programs were pinned: cannot tell
    maps = {}
    for name in CARRIED_MAPS:
        with Map.from_pin(directory / name, read_only=True) as bpf_map:
            maps[name] = bpf_map.info.id
    return program_id, maps


# A change to a rule table: it returns the rules changed, and appends to the list (when
# given) a call that undoes it.
_RuleEdit = Callable[[RuleTable, "list[Callable[[], None]] | None"], int]


def _setting(keys: RuleKeys, action: RuleAction) -> _RuleEdit:
    return lambda table, undo: table.set_keys(keys.by_map, action, undo=undo)


def _removing(keys: RuleKeys) -> _RuleEdit:
    return lambda table, undo: table.remove_keys(keys.by_map, undo=undo)


@dataclass(frozen=True)
class _Rebuild:
    """A rebuilt copy of an attachment's rules, made but not swapped in yet."""

    obj: Object
    table: RuleTable
    before: dict[str, dict[bytes, int]]
    changed: int


class Attachment:
    """pingkiller on one interface. Obtain it with :func:`attach` or :func:`open`.

    As a context manager it closes its handles on exit; an attachment made with
    ``persist=False`` is detached then, a pinned one stays. One opened with
    ``read_only=True`` reads everything but refuses changes, and has no ``link``.
    """

    def __init__(
        self, point: Point, link: InterfaceLink | RecordedLink, maps: dict[str, Map], *,
        pinned: bool, obj: Object | None = None, program: Program | None = None,
        read_only: bool = False, identity: pins.Identity | None = None,
    ) -> None:
        self.point = point
        self.identity = identity  # what the pins record (None: private, or no record)
        self.recovered: list[str] = []  # what the writer that made this finished first
        self.replaced = False  # made by attach(replace=True) in an existing one's place
        self._link = link
        self.maps = maps
        self.pinned = pinned
        self.read_only = read_only
        self._obj = obj
        self._program = program  # the pinned program, when it was opened (read-only handle)
        self._events_map: Map | None = None
        self._rule_table: RuleTable | None = None
        # The program whose maps these are: another writer may swap the program (and the
        # rule maps with it) after this handle was opened; see _follow_swaps.
        self._prog_id = link.info().prog_id if not isinstance(link, RecordedLink) else 0

    @property
    def ifname(self) -> str:
        return self.point.ifname

    @property
    def hook(self) -> Hook:
        return self.point.hook

    @property
    def direction(self) -> Direction:
        return self.point.direction

    @property
    def _table(self) -> RuleTable:
        # Made when first used: upgrade opens maps of older versions, which it converts.
        if self._rule_table is None:
            self._rule_table = RuleTable(self.maps)
        return self._rule_table

    @property
    def link(self) -> InterfaceLink:
        """The link: an XdpLink, or a TcxLink at a tc hook (not open in an attachment
        opened read-only)."""
        if not isinstance(self._link, RecordedLink):
            return self._link
        raise PermissionDenied(
            f"{self.point.label}'s attachment was opened read-only and its link is not open "
            "(the kernel opens link pins only read-write): open it with read_only=False"
        )

    # -- policy

    @property
    def policy(self) -> Policy:
        return Policy.from_config(abi.Config.decode(self.maps[abi.SETTINGS_MAP][abi.u32_key(0)]))

    def set_policy(self, policy: Policy) -> None:
        """Change default action, ICMP set, events, timing... at once, rules untouched."""
        with self._locked():
            current = abi.Config.decode(self.maps[abi.SETTINGS_MAP][abi.u32_key(0)])
            lookups = current.flags & LOOKUP_FLAGS
            self.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = policy.to_config(lookups).encode()

    def _locked(self) -> AbstractContextManager[None]:
        """The pin lock for pinned attachments; private ones have no other writer."""
        self._refuse_if_read_only()
        return self._writing() if self.pinned else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The pin lock, with what killed writers left finished and this handle's maps
        those of the program the link runs now (see :meth:`_follow_swaps`)."""
        with _writing():
            self.recovered += recovery.recover()
            self._follow_swaps()
            yield

    def _follow_swaps(self) -> None:
        """Reopen the maps if another writer swapped the program since this handle was
        opened (a --replace, a rule file, an upgrade bring new rule maps): a change made
        to the old maps would be lost."""
        running = self.link.info().prog_id
        if running == self._prog_id:
            return
        fresh = _open_pinned(self.point)
        fresh._link.close()  # this handle keeps its own fd on the same link
        self._close_all_but_link()
        self.maps, self._program, self.identity = fresh.maps, fresh._program, fresh.identity
        self._rule_table, self._prog_id, self._events_map = fresh._rule_table, running, None

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise PermissionDenied(
                f"{self.point.label}'s attachment was opened read-only: changing it needs "
                "`pingkiller.open(ifname)` with write access to the pins"
            )

    def _changing(self) -> AbstractContextManager[None]:
        """The lock for a rule change, refusing one that would filter nothing."""
        self._refuse_if_read_only()
        if self.is_stale():
            raise StaleAttachment(
                f"{self.point.label}'s attachment filters nothing ({self.problem()}): "
                f"`pingkiller detach {self.point.options}` cleans it, then attach again"
            )
        return self._locked()

    def block(self, addresses: Iterable[str | Network]) -> int:
        """Block pings from/to these addresses or prefixes; returns rules changed."""
        return self._set(addresses, RuleAction.BLOCK)

    def allow(self, addresses: Iterable[str | Network]) -> int:
        """Let pings from/to these addresses or prefixes pass; returns rules changed."""
        return self._set(addresses, RuleAction.ALLOW)

    def _set(self, addresses: Iterable[str | Network], action: RuleAction) -> int:
        networks = _networks(addresses)
        with self._changing():
            return self._table.set(networks, action)

    def block_file(self, path: str | Path, action: RuleAction = RuleAction.BLOCK) -> int:
        """Load a blocklist file (one address/prefix per line, # comments) in batches."""
        return self.set_rules(read_rule_keys(path), action)

    def set_rules(self, keys: RuleKeys, action: RuleAction, *, atomic: bool | None = None) -> int:
        """Give every rule in ``keys`` the ``action``; returns rules changed (big lists).

        ``atomic``: all or nothing also if this process is killed meanwhile (see
        :meth:`_rebuilt`; it loads a program, so it needs CAP_PERFMON too). None (the
        default) means: for pinned attachments, when ``keys`` holds more than
        ATOMIC_ABOVE rules; smaller changes are made in place, a few syscalls."""
        with self._changing():
            return self._edit(_setting(keys, action), keys, atomic)

    def remove_rules(self, keys: RuleKeys, *, atomic: bool | None = None) -> int:
        """Remove any rule in ``keys``; returns how many existed (``atomic`` as for
        :meth:`set_rules`)."""
        with self._changing():
            return self._edit(_removing(keys), keys, atomic)

    def _edit(self, edit: _RuleEdit, keys: RuleKeys, atomic: bool | None) -> int:
        if not self._atomic(keys, atomic):
            return edit(self._table, None)
        return self._finish_rebuild(self._prepare_rebuild(edit))

    def _atomic(self, keys: RuleKeys, atomic: bool | None) -> bool:
        if not self.pinned:
            return False  # no other process sees it, and it dies with this one
        if atomic is None:
            atomic = sum(len(k) for k in keys.by_map.values()) > ATOMIC_ABOVE
        if atomic:
            capabilities.require_privileges(load=True)
        return atomic

    def _prepare_rebuild(self, edit: _RuleEdit) -> _Rebuild:
        """The first half of :meth:`_rebuilt`: a copy of the rules with ``edit`` made to it,
        in a loaded object that nothing runs yet (closing it changes nothing)."""
        if self.identity is not None and self.identity.abi_version != abi.ABI_VERSION:
            raise IncompatiblePins(abi_problem(self.point, self.identity.abi_version))
        obj = _object_for(self.point)
        try:
            for name in CARRIED_MAPS:
                obj.reuse_map(name, self.maps[name])
            _load_object(obj)
            obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = self.maps[abi.SETTINGS_MAP][abi.u32_key(0)]
            table = RuleTable(obj.maps)
            before = table.copy_from(self.maps)
            changed = edit(table, None)
        except BaseException:
            obj.close()
            raise
        return _Rebuild(obj, table, before, changed)

    def _finish_rebuild(self, rebuild: _Rebuild) -> int:
        """The second half of :meth:`_rebuilt`: the copy swapped in."""
        obj, table = rebuild.obj, rebuild.table
        try:
            _publish(obj, self.point, self.link)
        except BaseException:
            obj.close()
            raise
        table.carry_hits(rebuild.before, self.maps)
        self._close_all_but_link()
        self.maps, self._obj, self._rule_table = dict(obj.maps), obj, table
        self._prog_id = obj.programs[hooks.program_name(self.point)].info().id
        self.identity = _read_identity(pins.directory(self.point))
        return rebuild.changed

    def _rebuilt(self, edit: _RuleEdit) -> int:
        """Apply ``edit`` to a copy of the rules and swap the copy in at once.

        A big change (a rule file of a million lines) takes a while, and a writer killed
        in the middle of changing the running rule maps would leave half of it. So the
        installed program is loaded with fresh rule maps holding the current rules, the
        edit goes there, and the program is swapped in like a --replace (:func:`_publish`,
        which the next writer completes or undoes after a kill -9); counters, timing and
        events carry over. Hits the old rules counted meanwhile are added after the swap.
        """
        return self._finish_rebuild(self._prepare_rebuild(edit))

    def unblock(self, addresses: Iterable[str | Network]) -> int:
        """Remove any rule for these addresses; returns how many existed."""
        networks = _networks(addresses)
        with self._changing():
            return self._table.remove(networks)

    def rules(self) -> list[Rule]:
        """Every rule, in memory (see :meth:`rule_entries` for large tables)."""
        return self._table.rules()

    def rule_entries(self) -> Iterator[list[RuleEntry]]:
        """Every rule, streamed a batch at a time (memory: one batch); the order is
        :meth:`RuleTable.entries <pingkiller.rules.RuleTable.entries>`'."""
        return self._table.entries()

    def rule_count(self) -> int:
        """How many rules there are, counted without decoding any (~0.35 s for 10^6)."""
        return self._table.count()

    def scan_rules(self, keep: int | None = None) -> RuleScan:
        """One pass over the rules: how many there are, and the first ``keep`` of them
        (all when None), decoding no batch beyond them."""
        return self._table.scan(keep)

    # -- observation

    def program(self) -> Program:
        """A new handle on the running program (by id: needs CAP_SYS_ADMIN)."""
        return Program.from_id(self._link.info().prog_id)

    def stats(self, *, per_cpu: bool = False) -> Stats:
        return self._stats(None, per_cpu=per_cpu)

    def _stats(self, prog_id: int | None, *, per_cpu: bool = False) -> Stats:
        """Counters, with the program's run time from its pin, or else by id if allowed."""
        if self._program is not None:
            return read_stats(self.maps, self._program, per_cpu=per_cpu)
        try:
            program = Program.from_id(self._link.info().prog_id if prog_id is None else prog_id)
        except BpfError:
            return read_stats(self.maps, None, per_cpu=per_cpu)
        with program:
            return read_stats(self.maps, program, per_cpu=per_cpu)

    def _link_state(self) -> tuple[LinkInfo | None, LinkState, str]:
        """The link's kernel info (None if unreadable), its state, and what is wrong in
        words ('' when it filters where its pins say)."""
        return _link_state(self._link, self.identity, self.point)

    def link_state(self) -> LinkState:
        """What the kernel says of the link (see :class:`LinkState`)."""
        return self._link_state()[1]

    def follow_events(self, *, count: int | None = None, timeout: float | None = None,
                      backlog: bool = False) -> EventFeed:
        """This attachment's events in batches until ``count`` events or ``timeout``
        seconds (None: no limit), with a summary of what was received, suppressed and lost
        meanwhile (:class:`pingkiller.events.EventFeed`); close it, or use it in ``with``.

        From now on: what the ring holds already is skipped, unless ``backlog`` (then it
        comes first, each batch saying how much of it is backlog: see :meth:`events`).
        It takes exactly ``count`` events from the ring; the rest stay for the next reader.

        About once a second it looks at the pins (:meth:`pin_state`): when the attachment
        was detached, or another took its place, iterating raises :class:`AttachmentEnded`
        after the events left in the ring; across a ``--replace`` it carries on, as the
        ring does."""
        from pingkiller.events import EventFeed

        stream = self.events(backlog=backlog)
        try:
            ended = _Watcher(self, "events").ended if self.pinned else None
            return EventFeed(stream, self._event_losses, count=count, timeout=timeout, ended=ended)
        except BaseException:
            stream.close()
            raise

    def _event_losses(self) -> tuple[int, int]:
        stats = self.stats()
        return stats.events_suppressed, stats.events_lost

    def watch_stats(
        self, interval: float, *, per_cpu: bool = False
    ) -> Generator[tuple[Stats, dict[Reason, float]], None, None]:
        """Every ``interval`` seconds a snapshot and the rates (packets per second, by
        reason) since the one before, until the caller stops iterating (or closes it).

        The kernel's BPF run-time stats are switched on meanwhile, where it allows. Each
        interval it looks at the pins (:meth:`pin_state`) and raises
        :class:`AttachmentEnded` when the attachment was detached or another took its
        place; across a ``--replace`` it carries on (the counters carry over) with the
        run time of the new program.
        """
        watcher = _Watcher(self, "stats") if self.pinned else None
        timed: Program | None = None  # the running program, once a --replace swapped it
        try:
            with run_time_stats():
                earlier = self.stats()
                while True:
                    time.sleep(interval)
                    if watcher is not None:
                        state = watcher.check()
                        if state.ended:
                            raise watcher.error(state)
                        if state is PinState.REPLACED:
                            timed = self._reopen_program(timed)
                    if timed is None:
                        current = self.stats(per_cpu=per_cpu)
                    else:
                        current = read_stats(self.maps, timed, per_cpu=per_cpu)
                    yield current, current.rates(earlier)
                    earlier = current
        finally:
            if timed is not None:
                timed.close()

    def _reopen_program(self, previous: Program | None) -> Program | None:
        """The program pinned now (read-only), in place of ``previous``."""
        if previous is not None:
            previous.close()
        try:
            return Program.from_pin(pins.directory(self.point) / pins.PROGRAM_PIN, read_only=True)
        except BpfError:
            return None  # moved meanwhile: the run time is read as before until the next change

    def pin_state(self) -> PinState:
        """Whether the pin directory still holds the attachment this handle opened: the
        same program (CURRENT), another after a ``--replace`` that carried this handle's
        counters and event ring over (REPLACED), another attachment (SUPERSEDED), or none
        (DETACHED). Read-only, no lock: a few pins opened and closed. An attachment that
        pins nothing (``persist=False``) is always CURRENT."""
        return self._pin_state(self._opened_program_id())[0]

    def _opened_program_id(self) -> int:
        """The id of the program this handle opened (a --replace changes what the link runs)."""
        if isinstance(self._link, RecordedLink):
            return self._link.prog_id
        if self._program is not None:
            return self._program.info().id
        if self._obj is not None:
            return self._obj.programs[hooks.program_name(self.point)].info().id
        return self._link.info().prog_id

    def _pin_state(self, program_id: int) -> tuple[PinState, int]:
        """The state against ``program_id``, and the id of the program pinned now."""
        if not self.pinned:
            return PinState.CURRENT, program_id
        pinned = _pinned_ids(self.point)
        if pinned is None:
            return PinState.DETACHED, 0
        now, maps = pinned
        if now in (0, program_id):
            return PinState.CURRENT, program_id
        ours = {name: self.maps[name].info.id for name in CARRIED_MAPS}
        return (PinState.REPLACED if maps == ours else PinState.SUPERSEDED), now

    def events(self, *, backlog: bool = False) -> EventStream:
        """A stream of this attachment's events (the mode is set by the policy), from now
        on: the events the ring holds already (nobody read them) are skipped and counted
        (``stream.skipped``); with ``backlog=True`` they come first instead, and each batch
        says how many of its first events they are (``batch.backlog``). The ring has one
        read position: what one reader skips or reads, the next does not see.

        Reading events moves the ring buffer's read position, which the kernel lets
        only a read-write handle do: an attachment opened read-only opens the events
        pin read-write for it (and fails clearly where the pin is not writable).
        """
        from pingkiller.events import EventStream

        if not self.read_only:
            return EventStream(self.maps[abi.EVENTS_MAP], backlog=backlog)
        if self._events_map is None:
            pin = pins.directory(self.point) / abi.EVENTS_MAP
            try:
                self._events_map = Map.from_pin(pin)
            except BpfError as err:
                if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                raise PermissionDenied(
                    f"streaming {self.ifname}'s events moves the ring buffer's read position, "
                    f"which needs write access to {pin} ({os.strerror(err.errno)}): run "
                    "`pingkiller events` where bpffs is writable; stats and status only read"
                ) from None
        return EventStream(self._events_map, backlog=backlog)

    def problem(self) -> str:
        """What is wrong with the attachment, or '' when nothing is.

        A renamed interface is a problem (the pins keep the old name) but not stale:
        the program still filters. Everything else reported here is stale.
        """
        return self._link_state()[2]

    def is_stale(self) -> bool:
        """True when the attachment filters nothing any more (link defunct, interface gone)."""
        return self.link_state().stale

    def info(self, *, with_rules: bool = True, rule_count: int | None = None) -> AttachmentInfo:
        """What status shows. Without ``with_rules`` the rules are only counted, or not
        even that when the caller passes the ``rule_count`` it has (from scan_rules)."""
        link_info, state, problem = self._link_state()
        rules = self.rules() if with_rules else []
        if rule_count is None:
            rule_count = len(rules) if with_rules else self.rule_count()
        if link_info is not None:
            stats = self._stats(link_info.prog_id)
        else:
            stats = read_stats(self.maps, self._program)
        # A private attachment has no record: it runs the installed program.
        identity = self.identity or pins.Identity(
            link_info.id if link_info else 0, link_info.ifindex if link_info else 0,
            abi.ABI_VERSION, 0, datapath.program_digest())
        return _described(self.point, link_info, state, problem, identity,
                          pin_dir=str(pins.directory(self.point)) if self.pinned else "",
                          policy=self.policy, rule_count=rule_count, rules=rules, stats=stats)

    # -- lifetime

    def detach(self) -> None:
        """Detach from the interface and remove the pins."""
        self._refuse_if_read_only()
        if self.pinned:
            with _writing():
                _detach_pinned(self.point)
        else:
            self.link.detach()
        self.close()

    def close(self) -> None:
        """Release this process's handles (a pinned attachment stays attached; a private
        one is detached, a clsact filter too, which no handle holds)."""
        if not self.pinned and isinstance(self._link, ClsactLink):
            self._link.detach()
        self._link.close()
        self._close_all_but_link()

    def _close_all_but_link(self) -> None:
        """Release every handle but the link's (a --replace hands the link on)."""
        for bpf_map in self.maps.values():
            bpf_map.close()
        for handle in (self._program, self._events_map):
            if handle is not None:
                handle.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _incomplete(point: Point, missing: Iterable[str] = ()) -> NotAttached:
    what = f"incomplete: missing {', '.join(missing)}" if missing else "its pins are incomplete"
    return NotAttached(
        f"{point.label} has no complete pingkiller attachment ({what}; "
        f"`pingkiller detach {point.options}` cleans them, then attach again)"
    )


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


def _read_identity(base: Path) -> pins.Identity | None:
    """The identity record pinned in ``base``; None when there is none (pins of ABI 1
    made before records existed). An unreadable record raises IncompatiblePins."""
    try:
        with Map.from_pin(base / pins.IDENTITY_PIN, read_only=True) as record:
            raw = record[abi.u32_key(0)]
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    try:
        return pins.Identity.decode(raw)
    except ValueError as err:
        raise IncompatiblePins(f"{base.name}'s pins cannot be read by this pingkiller: {err}; "
                               "use the pingkiller that made them") from None


def _open_pinned(point: Point, directory: Path | None = None, *,
                 check_abi: bool = True) -> Attachment:
    """A writer's view: the link and maps opened read-write. Pins of another ABI version
    raise IncompatiblePins unless ``check_abi`` is False (upgrade, detach)."""
    where = directory or pins.directory(point)
    with ExitStack() as opened:
        try:
            identity = _read_identity(where)
            pins_abi = identity.abi_version if identity else 1
            if check_abi and pins_abi != abi.ABI_VERSION:
                raise IncompatiblePins(abi_problem(point, pins_abi))
            link = hooks.open_link(point, where)
            opened.enter_context(link)
            maps, missing = _open_maps(where, opened, read_only=False,
                                       names=migrate.pinned_maps(pins_abi, PINNED_MAPS))
        except BpfError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise capabilities.refused(err, capabilities.NEEDS_ROOT) from None
            if err.errno == errno.ENOENT:
                raise _incomplete(point, [pins.LINK_PIN]) from None
            raise
        if missing:
            raise _incomplete(point, missing)
        program = _pinned_program(where)  # None for pins made before programs were pinned
        opened.pop_all()
    return Attachment(point, link, maps, pinned=True, program=program, identity=identity)


def _pinned_program(directory: Path) -> Program | None:
    try:
        return Program.from_pin(directory / pins.PROGRAM_PIN, read_only=True)
    except BpfError:
        return None


class _Gone(NotAttached):
    """The attachment's directory disappeared while it was being read (a detach)."""


class _Moved(Exception):
    """The directory was renamed while it was being read: read it again."""


class _Unreadable(Exception):
    """An attachment whose maps cannot be read (incomplete pins, another ABI version):
    ``error`` says why; ``info`` is what status shows of it, filtering state included."""

    def __init__(self, error: PingkillerError, info: AttachmentInfo) -> None:
        super().__init__(str(error))
        self.error = error
        self.info = info


def _open_read_only(point: Point) -> Attachment:
    """A reader's view: every pin opened read-only, no lock, nothing written.

    A writer renames whole directories (a --replace moves the old one away just before
    the new one takes its place), so the pins are opened through one directory fd and a
    directory that vanishes or changes meanwhile is read again. Where a writer was killed
    between those renames, the directory the next writer will publish is read instead
    (see :func:`pingkiller.recovery.pending_directory`), without finishing anything.
    """
    directory = pins.directory(point)
    for _ in range(_READ_ATTEMPTS):
        where = directory if directory.is_dir() else recovery.pending_directory(point)
        if where is not None:
            try:
                return _read_directory(point, where, pending=where != directory)
            except _Moved:
                pass
        time.sleep(_READ_RETRY_SECONDS)
    if not directory.is_dir() and recovery.pending_directory(point) is None:
        raise _Gone(f"{point.label} has no pingkiller attachment: attach one with "
                    f"`pingkiller attach {point.options}`")
    raise _incomplete(point)


def _read_directory(point: Point, directory: Path, *, pending: bool = False) -> Attachment:
    """Read one pin directory; ``pending``: a directory an interrupted writer left (it
    may lack the identity record, which the writer pins last: it is of this version)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise _Moved from None
    except PermissionError:
        raise PermissionDenied(f"reading pingkiller's pins {capabilities.NEEDS_ROOT_TO_READ}") from None
    try:
        base = _FD_DIR / str(dir_fd) if _FD_DIR.is_dir() else directory
        with ExitStack() as opened:
            try:
                view = _recorded_link(base, opened, point)
                identity = view.identity if isinstance(view, RecordedLink) else None
                pins_abi = identity.abi_version if identity else (abi.ABI_VERSION if pending else 1)
                if pins_abi != abi.ABI_VERSION:
                    _raise_if_moved(dir_fd, directory)
                    raise _unreadable(IncompatiblePins(abi_problem(point, pins_abi)), view,
                                      identity, point)
                maps, missing = _open_maps(base, opened, read_only=True)
            except BpfError as err:
                if err.errno in (errno.EACCES, errno.EPERM):
                    raise capabilities.refused(err, capabilities.NEEDS_ROOT_TO_READ) from None
                if err.errno == errno.ENOENT:
                    _raise_if_moved(dir_fd, directory)
                    raise _incomplete(point, _missing_records(base)) from None
                raise
            if missing:
                _raise_if_moved(dir_fd, directory)
                raise _unreadable(_incomplete(point, missing), view, identity, point)
            if isinstance(view, RecordedLink):
                program: Program | None = view.program
            elif (program := _pinned_program(base)) is not None:
                opened.enter_context(program)  # closed with the rest if the directory moved
            _raise_if_moved(dir_fd, directory)
            opened.pop_all()
    finally:
        os.close(dir_fd)
    return Attachment(point, view, maps, pinned=True, program=program, read_only=True,
                      identity=identity)


def _missing_records(base: Path) -> list[str]:
    return [name for name in (pins.PROGRAM_PIN, pins.IDENTITY_PIN, pins.LINK_PIN)
            if not (base / name).exists()]


def _unreadable(error: PingkillerError, link: InterfaceLink | RecordedLink,
                identity: pins.Identity | None, point: Point) -> _Unreadable:
    """What status shows of an attachment whose maps it cannot read: its real state."""
    info, state, problem = _link_state(link, identity, point)
    return _Unreadable(error, _described(
        point, info, state, f"{error}; {problem}" if problem else str(error),
        identity or pins.Identity(0, 0), pin_dir=str(pins.directory(point)),
        policy=None, rule_count=0, rules=[], stats=None,
    ))


def _described(
    point: Point, link_info: LinkInfo | None, state: LinkState, problem: str,
    identity: pins.Identity, *, pin_dir: str, policy: Policy | None, rule_count: int,
    rules: list[Rule], stats: Stats | None,
) -> AttachmentInfo:
    """An AttachmentInfo from the link's state and the pins' identity record."""
    here = link_info is not None and state in _HERE
    mode, chain = XdpMode.NONE, tuple[int, ...]()
    if here and link_info is not None:
        try:
            if point.hook is Hook.XDP:
                mode = xdp_query(link_info.ifindex).mode
            else:
                chain = tuple(hooks.running_programs(point, link_info.ifindex))
        except BpfError:
            pass  # the interface went away meanwhile
    return AttachmentInfo(
        ifname=point.ifname,
        ifindex=link_info.ifindex if link_info else 0,
        program_id=link_info.prog_id if link_info else 0,
        link_id=link_info.id if link_info else 0,
        mode=mode,
        policy=policy, rule_count=rule_count, rules=rules, stats=stats,
        stale=state.stale, problem=problem, pin_dir=pin_dir, state=state,
        abi_version=identity.abi_version, program=identity.program.hex(),
        outdated=_outdated(identity), hook=point.hook, direction=point.direction, chain=chain,
        clsact=point.hook is Hook.TC and identity.ifindex != 0 and not identity.link_id,
    )


def _recorded_link(base: Path, opened: ExitStack, point: Point) -> RecordedLink | InterfaceLink:
    """The link as recorded (program pin + identity), or the link pin itself for pins
    made before those records existed (which needs write access to it)."""
    try:
        program = Program.from_pin(base / pins.PROGRAM_PIN, read_only=True)
        try:
            identity = _read_identity(base)
        except BaseException:
            program.close()
            raise
    except BpfError as err:
        if err.errno != errno.ENOENT or not (base / pins.LINK_PIN).exists():
            raise
        return _entered(opened, hooks.open_link(point, base))
    if identity is None:
        program.close()
        if not (base / pins.LINK_PIN).exists() and point.hook is Hook.TC:
            # A clsact filter (no link pin) whose writer died before the record: the
            # filter is found by its place and the pinned program (read-only)
            return hooks.open_link(point, base)
        if not (base / pins.LINK_PIN).exists():
            raise _incomplete(point, [pins.IDENTITY_PIN])
        return _entered(opened, hooks.open_link(point, base))
    opened.callback(program.close)
    return RecordedLink(point, program, identity)


def _entered(opened: ExitStack, link: InterfaceLink) -> InterfaceLink:
    opened.enter_context(link)
    return link


def _raise_if_moved(dir_fd: int, directory: Path) -> None:
    """Raise _Moved unless ``directory`` still names the directory behind ``dir_fd``."""
    held = os.fstat(dir_fd)
    try:
        now = os.stat(directory)
    except FileNotFoundError:
        raise _Moved from None
    if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        raise _Moved


_Labelled = TypeVar("_Labelled", Hook, Direction)


def _as(kind: type[_Labelled], value: _Labelled | str | None) -> _Labelled | None:
    """A hook or direction given as the enum or its word (``xdp``, ``in``...); None
    stays None."""
    if value is None or isinstance(value, kind):
        return value
    for known in kind:
        if known.label == value:
            return known
    words = " or ".join(known.label for known in kind)
    raise InvalidInput(f"unknown {kind.__name__.lower()} {value!r}: {words}")


def _as_hook(hook: Hook | str | None) -> Hook | None:
    return _as(Hook, hook)


def _as_direction(direction: Direction | str | None) -> Direction | None:
    return _as(Direction, direction)


def _selection(hook: Hook | None, direction: Direction | None) -> str:
    """The CLI options that select attachments, e.g. `` --hook tc``."""
    words = ""
    if hook is not None:
        words += f" --hook {hook.label}"
    if direction is not None:
        words += f" --direction {direction.label}"
    return words


def points(ifname: str, *, hook: Hook | str | None = None,
           direction: Direction | str | None = None) -> list[Point]:
    """The attachments pinned for ``ifname`` (XDP first, then tc in and out), only those
    at ``hook`` and ``direction`` when given. A listing: no BPF call, no privilege."""
    pins.validate_ifname(ifname)
    wanted_hook, wanted_direction = _as_hook(hook), _as_direction(direction)
    return [point for point in pins.listed() if point.ifname == ifname
            and wanted_hook in (None, point.hook)
            and wanted_direction in (None, point.direction)]


def _chosen(ifname: str, hook: Hook | str | None, direction: Direction | str | None,
            verb: str) -> list[Point]:
    """The selected attachments of ``ifname``; NotAttached when there is none."""
    found = points(ifname, hook=hook, direction=direction)
    if found:
        return found
    selection = _selection(_as_hook(hook), _as_direction(direction))
    others = points(ifname)
    if others:
        held = ", ".join(point.hook_text for point in others)
        raise NotAttached(f"{ifname} has no pingkiller attachment at{selection} (it has: "
                          f"{held}): {verb}")
    raise NotAttached(f"{ifname} has no pingkiller attachment: {verb}")


def _to_open(ifname: str, hook: Hook | str | None, direction: Direction | str | None, *,
             read_only: bool) -> list[Point]:
    """The attachments an open of ``ifname`` names, once the privileges it needs are
    checked (a bad name is bad input, also without them)."""
    pins.validate_ifname(ifname)
    if read_only:
        capabilities.require_read_privileges()
    else:
        capabilities.require_privileges()
    return _chosen(ifname, hook, direction, _attach_one(ifname, hook))


def _attach_one(ifname: str, hook: Hook | str | None) -> str:
    return f"attach one with `pingkiller attach {ifname}{_selection(_as_hook(hook), None)}`"


def open_attachment(ifname: str, *, hook: Hook | str | None = None,
                    direction: Direction | str | None = None,
                    read_only: bool = False) -> Attachment:
    """Reopen the pinned attachment on ``ifname`` (made by any process).

    ``hook`` and ``direction`` say which, where the interface has several (an XDP and a
    tc one, or tc in and out); with one, it is that one. With ``read_only`` every pin is
    opened read-only and nothing is locked or written: that needs only read access to the
    pins and CAP_BPF, and the attachment refuses changes. Otherwise the link and maps are
    opened read-write, to change them.
    """
    found = _to_open(ifname, hook, direction, read_only=read_only)
    if len(found) > 1:
        held = ", ".join(point.hook_text for point in found)
        raise InvalidInput(f"{ifname} has {len(found)} pingkiller attachments ({held}): say "
                           "which with --hook xdp, or --hook tc --direction in|out")
    return _open_point(found[0], read_only=read_only)


def open_each(ifname: str, *, hook: Hook | str | None = None,
              direction: Direction | str | None = None,
              read_only: bool = False) -> list[Attachment]:
    """Every pinned attachment of ``ifname`` (those at ``hook``/``direction`` only, when
    given), opened like :func:`open_attachment`; close each (or use them in ``with``)."""
    found = _to_open(ifname, hook, direction, read_only=read_only)
    opened: list[Attachment] = []
    try:
        for point in found:
            opened.append(_open_point(point, read_only=read_only))
    except BaseException:
        for attachment in opened:
            attachment.close()
        raise
    return opened


@dataclass(frozen=True)
class RuleChange:
    """What :func:`change_rules` did to one attachment."""

    ifname: str
    hook: Hook
    direction: Direction
    changed: int  # rules added or changed (set), or removed (remove)
    rule_count: int  # rules afterwards

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)


def change_rules(ifname: str, keys: RuleKeys, action: RuleAction | None, *,
                 hook: Hook | str | None = None, direction: Direction | str | None = None,
                 atomic: bool | None = None) -> list[RuleChange]:
    """Give every rule in ``keys`` the ``action`` (None: remove them) on every attachment
    of ``ifname``, or those at ``hook`` and ``direction``: what the CLI's block, allow and
    unblock do. All or nothing across the attachments: none is changed if one filters
    nothing any more, and a change one of them refuses (a full table) is undone in the
    others. ``atomic`` as for :meth:`Attachment.set_rules`: the copies of every
    attachment are made before the first is swapped in."""
    edit = _removing(keys) if action is None else _setting(keys, action)
    attachments = open_each(ifname, hook=hook, direction=direction)
    try:
        with _writing():
            recovered = recovery.recover()
            for attachment in attachments:
                attachment.recovered, recovered = recovered, []
                attachment._follow_swaps()
                if attachment.is_stale():
                    point = attachment.point
                    raise StaleAttachment(
                        f"{point.label}'s attachment filters nothing ({attachment.problem()}): "
                        f"`pingkiller detach {point.options}` cleans it, then attach again; "
                        "nothing was changed")
            changed = _edit_each(attachments, edit, keys, atomic)
            return [RuleChange(a.ifname, a.hook, a.direction, count, a.rule_count())
                    for a, count in zip(attachments, changed, strict=True)]
    finally:
        for attachment in attachments:
            attachment.close()


def _edit_each(attachments: list[Attachment], edit: _RuleEdit, keys: RuleKeys,
               atomic: bool | None) -> list[int]:
    """``edit`` made to every attachment, all or nothing; call with the pin lock held."""
    undo: list[Callable[[], None]] = []
    rebuilds: dict[int, _Rebuild] = {}
    changed: dict[int, int] = {}
    try:
        for index, attachment in enumerate(attachments):
            if attachment._atomic(keys, atomic):
                rebuilds[index] = attachment._prepare_rebuild(edit)
            else:
                changed[index] = edit(attachment._table, undo)
    except BaseException:
        for put_back in reversed(undo):
            put_back()
        for rebuild in rebuilds.values():
            rebuild.obj.close()
        raise
    for index, rebuild in rebuilds.items():
        changed[index] = attachments[index]._finish_rebuild(rebuild)
    return [changed[index] for index in range(len(attachments))]


def _open_point(point: Point, *, read_only: bool) -> Attachment:
    if not read_only:
        return _open_pinned(point)
    try:
        return _open_read_only(point)
    except _Unreadable as err:
        raise err.error from None


def _detach_pinned(point: Point) -> None:
    if not pins.directory(point).is_dir():
        raise NotAttached(f"{point.label} has no pingkiller attachment: nothing to detach")
    recovery.detach_directory(point, pins.retire(point))


def attach(
    ifname: str,
    policy: Policy | None = None,
    *,
    hook: Hook | str = Hook.XDP,
    direction: Direction | str = Direction.IN,
    block: Iterable[str | Network] = (),
    allow: Iterable[str | Network] = (),
    mode: XdpMode | TcMode = XdpMode.AUTO,
    replace: bool = False,
    persist: bool = True,
) -> Attachment:
    """Attach pingkiller to ``ifname`` with a :class:`Policy` and rules; returns the attachment.

    ``policy`` says what happens to pings no rule decides, what counts as a ping, and what
    is reported. Without one, every setting has its default and pings no rule decides are
    dropped when no ``block`` rule is given (kill every ping), passed otherwise (kill only
    the listed pings): :func:`pingkiller.policy.default_action`. ``block`` and ``allow``
    are addresses or prefixes (strings or ``ipaddress`` networks).

    ``hook`` is ``xdp`` (the default: the driver's hook, fastest, one program per
    interface, packets that arrive only) or ``tc`` (runs beside other programs of the
    hook, after them, and sees ``direction`` ``in`` or ``out``, the host's own pings
    included; :func:`attach_both` takes both directions). ``mode`` is the XDP mode asked
    for (an :class:`XdpMode`; AUTO lets the kernel choose), or for tc a
    :class:`~pingkiller.hooks.TcMode`: a tcx link (TCX), a filter on the clsact qdisc
    (CLSACT: not link-based, for kernels before 6.6), or AUTO, tcx where the kernel has
    it. An interface can carry an XDP attachment and tc ones at once, each with its own
    maps.

    The program is loaded, configured and filled with rules before it is attached, so it
    never runs half-configured. ``replace`` swaps program and policy of an existing
    attachment atomically. ``persist=False`` pins nothing: the attachment lives until
    closed.
    """
    point = Point(ifname, _as_hook(hook) or Hook.XDP, _as_direction(direction) or Direction.IN)
    return _attach([point], policy, block=block, allow=allow, modes=_modes(point, mode),
                   replace=replace, persist=persist)[0]


def attach_both(
    ifname: str,
    policy: Policy | None = None,
    *,
    block: Iterable[str | Network] = (),
    allow: Iterable[str | Network] = (),
    mode: XdpMode | TcMode = TcMode.AUTO,
    replace: bool = False,
    persist: bool = True,
) -> list[Attachment]:
    """:func:`attach` at ``ifname``'s tc hook in both directions (the CLI's ``--hook tc
    --direction both``): two attachments, in then out, each with its own maps and the
    same policy and rules; all or nothing (the first is detached again if the second
    fails)."""
    both = [Point(ifname, Hook.TC, direction) for direction in Direction]
    return _attach(both, policy, block=block, allow=allow, modes=_modes(both[0], mode),
                   replace=replace, persist=persist)


def _modes(point: Point, mode: XdpMode | TcMode) -> tuple[XdpMode, TcMode]:
    """The XDP mode and the tc mode an attach at ``point`` asks for (AUTO of either kind
    means AUTO for both); a mode of the other hook's kind is refused."""
    if point.hook is Hook.TC:
        if isinstance(mode, XdpMode) and mode is not XdpMode.AUTO:
            raise InvalidInput(f"--mode {mode.value} is an XDP mode: a tc attachment is a "
                               "tcx link or a clsact filter (--mode tcx, clsact or auto)")
        return XdpMode.AUTO, mode if isinstance(mode, TcMode) else TcMode.AUTO
    if isinstance(mode, TcMode) and mode is not TcMode.AUTO:
        raise InvalidInput(f"--mode {mode.value} is a tc mode: it needs --hook tc")
    return mode if isinstance(mode, XdpMode) else XdpMode.AUTO, TcMode.AUTO


def _attach(
    points: list[Point], policy: Policy | None, *, block: Iterable[str | Network],
    allow: Iterable[str | Network], modes: tuple[XdpMode, TcMode], replace: bool,
    persist: bool,
) -> list[Attachment]:
    block_networks = _networks(block)
    allow_networks = _networks(allow)
    both = set(block_networks) & set(allow_networks)
    if both:
        listed = ", ".join(sorted(format_network(n) for n in both))
        raise InvalidInput(f"{listed} given both to block and to allow: pick one")
    if policy is None:
        policy = Policy(default_action(blocking=bool(block_networks)))
    capabilities.require_privileges(load=True)
    ifname = points[0].ifname
    ifindex = interfaces.interface_index(ifname)
    interfaces.check_ethernet(ifname)
    if any(point.hook is Hook.TC for point in points) and modes[1] is TcMode.TCX:
        _require_tcx(ifname)

    if not persist:
        made: list[Attachment] = []
        try:
            for point in points:
                _check_free(point, ifindex)
                obj = _load(point, policy, block_networks, allow_networks, carried={})
                link = _attach_link(obj, point, ifindex, modes)
                made.append(Attachment(point, link, dict(obj.maps), pinned=False, obj=obj))
        except BaseException:
            for attachment in made:
                attachment.detach()
            raise
        return made

    with _writing():
        recovered = recovery.recover()
        made = []
        try:
            for point in points:
                made.append(_attach_pinned(point, ifindex, policy, block_networks,
                                           allow_networks, modes, replace))
        except BaseException:
            for attachment in made:  # all or nothing: what this call attached goes again
                if attachment.replaced:
                    attachment.close()
                else:
                    _detach_pinned(attachment.point)
                    attachment.close()
            raise
        for attachment in made:
            attachment.recovered = recovered
        return made


def _require_tcx(ifname: str) -> None:
    from pingkiller.bpf import tcx_supported

    if not tcx_supported():
        raise AttachFailed(
            f"this kernel has no tcx (link-based tc hooks, Linux 6.6+), so --mode tcx cannot "
            f"attach to {ifname}: use --mode clsact (or auto), which attaches a filter on the "
            "clsact qdisc instead"
        )


def _check_free(point: Point, ifindex: int) -> None:
    """Refuse a hook where attaching would displace or double a program: XDP's held by
    another program, or a hook running pingkiller pinned under another interface name."""
    if point.hook is Hook.XDP:
        interfaces.check_foreign(point.ifname, ifindex)
    else:
        interfaces.check_ours_elsewhere(point, ifindex)


def _attach_pinned(
    point: Point, ifindex: int, policy: Policy, block: list[Network], allow: list[Network],
    modes: tuple[XdpMode, TcMode], replace: bool,
) -> Attachment:
    """Attach (or with ``replace`` swap in) at one point; call with the pin lock held."""
    existing: Attachment | None = None
    if pins.directory(point).is_dir():
        existing = _open_pinned(point)
        _, state, problem = existing._link_state()
        if state.stale:
            existing.close()
            recovery.detach_directory(point, pins.retire(point))
            existing = None
        elif state is not LinkState.FILTERING:
            existing.close()
            raise AlreadyAttached(
                f"pingkiller's attachment for {point.label} still filters, but {problem}: "
                f"`pingkiller detach {point.options}` first"
            )
        elif not replace:
            prog_id = existing.link.info().prog_id
            existing.close()
            raise AlreadyAttached(
                f"pingkiller already holds {point.label} (program id {prog_id}): use --replace "
                f"to swap the policy, or `pingkiller detach {point.options}` first"
            )
    if existing is None:
        _check_free(point, ifindex)
    elif (isinstance(existing.link, XdpLink)
          and modes[0] not in (XdpMode.AUTO, current := existing.link.mode)):
        existing.close()
        raise InvalidInput(
            f"--replace keeps the attach mode ({current.value}); "
            f"to change it to {modes[0].value}, detach first"
        )
    elif point.hook is Hook.TC and modes[1] is not TcMode.AUTO and (
            isinstance(existing.link, ClsactLink) != (modes[1] is TcMode.CLSACT)):
        kind = "clsact" if isinstance(existing.link, ClsactLink) else "tcx"
        existing.close()
        raise InvalidInput(
            f"--replace keeps the attach mode ({kind}); to change it to {modes[1].value}, "
            "detach first"
        )

    carried = {name: existing.maps[name] for name in CARRIED_MAPS} if existing else {}
    try:
        obj = _load(point, policy, block, allow, carried)
    except BaseException:
        if existing is not None:
            existing.close()
        raise
    try:
        if existing is not None:
            link = _publish(obj, point, existing.link)
        else:
            link = _publish(obj, point, lambda program: _attach_link(obj, point, ifindex, modes))
    except BaseException:
        obj.close()
        if existing is not None:
            existing.close()
        raise
    if existing is not None:
        existing._close_all_but_link()  # the new object holds its own copies of the carried maps
    made = Attachment(point, link, dict(obj.maps), pinned=True, obj=obj,
                      identity=_read_identity(pins.directory(point)))
    made.replaced = existing is not None
    return made


def _publish(obj: Object, point: Point,
             link: InterfaceLink | Callable[[Program], InterfaceLink]) -> InterfaceLink:
    """Make ``obj``'s program the one ``point``'s pins name, all or nothing under kill -9.

    Its maps and program are pinned in a temporary directory, then the program is swapped
    into ``link`` (an existing attachment's: one atomic bpf_link_update, no moment without
    a program) or attached by calling ``link`` (a new attachment); the link and the
    identity record are pinned and the directory renamed into place. A writer killed on
    the way leaves the temporary directory, which the next one completes (if the swap
    happened) or removes (:func:`pingkiller.recovery.recover`).
    """
    temp = pins.temporary(point)
    swapped = False
    try:
        for name in PINNED_MAPS:
            obj.maps[name].pin(temp / name)
            pins.secure(temp / name)
        # Pinned before the link runs it: during a swap it tells recovery.recover() whether
        # the swap happened; afterwards it tells readers which program the link runs.
        program = obj.programs[hooks.program_name(point)]
        program.pin(temp / pins.PROGRAM_PIN)
        pins.secure(temp / pins.PROGRAM_PIN)
        if isinstance(link, XdpLink | TcxLink | ClsactLink):
            link.update(program)
            swapped = True
        else:
            link = link(program)
        recovery.pin_link(link, temp, datapath.program_digest())
        pins.publish(temp, point)
    except BaseException:
        if swapped:
            # The new program runs already: its maps must win, as after a kill -9.
            recovery.recover()
        else:
            pins.remove(temp)
        raise
    return link


def _object_for(point: Point) -> Object:
    """The object, opened to load only the program that runs at ``point`` (the kernel
    verifies one program, not three; the maps are the same)."""
    obj = datapath.open_object()
    obj.load_only(hooks.program_name(point))
    return obj


def _load(
    point: Point, policy: Policy, block: list[Network], allow: list[Network],
    carried: dict[str, Map],
) -> Object:
    obj = _object_for(point)
    try:
        for name, existing in carried.items():
            obj.reuse_map(name, existing)
        _load_object(obj)
        obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = policy.to_config().encode()
        table = RuleTable(obj.maps)
        table.set(block, RuleAction.BLOCK)
        table.set(allow, RuleAction.ALLOW)
    except BaseException:
        obj.close()
        raise
    return obj


def _load_object(obj: Object) -> None:
    try:
        obj.load()
    except BpfError as err:
        if capabilities.seccomp_refused(err):
            raise PermissionDenied(capabilities.SECCOMP_REFUSED) from None
        raise


def _attach_link(obj: Object, point: Point, ifindex: int,
                 modes: tuple[XdpMode, TcMode]) -> InterfaceLink:
    ifname = point.ifname
    mode = modes[0]
    program = obj.programs[hooks.program_name(point)]
    try:
        if point.hook is Hook.TC and hooks.use_clsact(modes[1]):
            return _attach_clsact(obj, point, ifindex)
        if point.hook is Hook.TC:
            return TcxLink.attach(program, ifindex, hooks.TC_DIRECTIONS[point.direction])
        return XdpLink.attach(program, ifindex, mode)
    except NotSupportedError:
        obj.close()
        if point.hook is Hook.TC:
            raise AttachFailed(f"{ifname}: this kernel has no tcx (Linux 6.6+): use --hook xdp") from None
        raise AttachFailed(
            f"{ifname} does not support XDP in {mode.value} mode: try --mode generic or --mode auto"
        ) from None
    except BpfError as err:
        obj.close()
        if err.errno == errno.EBUSY and point.hook is Hook.XDP:
            interfaces.check_foreign(ifname, ifindex)
        raise AttachFailed(f"attaching to {point.label} failed: {err}") from None


def _attach_clsact(obj: Object, point: Point, ifindex: int) -> ClsactLink:
    program = obj.programs[hooks.program_name(point)]
    direction = hooks.TC_DIRECTIONS[point.direction]
    try:
        return ClsactLink.attach(program, ifindex, point.direction)
    except BpfError:
        try:
            taken = any(found.priority == hooks.CLSACT_PRIORITY
                        for found in tc_filters(ifindex, direction))
        except BpfError:
            taken = False
        if not taken:
            raise
        obj.close()
        where = direction.value
        raise AttachFailed(
            f"{point.ifname}'s clsact {where} has a filter at priority "
            f"{hooks.CLSACT_PRIORITY} (pingkiller's place) that pingkiller did not attach: "
            f"it is left alone; remove it (`tc filter del dev {point.ifname} {where} prio "
            f"{hooks.CLSACT_PRIORITY}`) and try again"
        ) from None


def _recovered_points() -> list[Point]:
    """Every attachment with pins, after recovering what killed writers left behind."""
    capabilities.require_privileges()
    if not pins.root().is_dir():
        return []
    with _writing():
        recovery.recover()
        return pins.listed()


def recover_interrupted() -> list[str]:
    """Finish or undo what killed writers left half done (under the pin lock), as every
    writer does first; returns what was done, in words. Readers never do this: until a
    writer runs, they show the last change that was completed."""
    capabilities.require_privileges()
    if not pins.root().is_dir():
        return []
    with _writing():
        return recovery.recover()


def attachments(*, with_rules: bool = True) -> list[AttachmentInfo]:
    """Every pinned attachment, stale ones included (interface gone, link defunct).

    Only reads: every pin is opened read-only, no lock is taken and no interrupted
    writer's change is finished (the next writer does that), so this needs only read
    access to the pins and CAP_BPF, and works on a read-only bpffs.
    """
    return [found if isinstance(found, AttachmentInfo) else found.info(with_rules=with_rules)
            for found in each_attachment()]


def each_attachment(ifname: str | None = None, *, hook: Hook | str | None = None,
                    direction: Direction | str | None = None,
                    ) -> Iterator[Attachment | AttachmentInfo]:
    """What :func:`attachments` lists (of ``ifname`` only, and at ``hook`` and
    ``direction`` only, when given), one at a time, as the read-only
    :class:`Attachment`, open until the next one is asked for (then closed), or, for one
    whose maps cannot be read (incomplete pins, another ABI version), the
    :class:`AttachmentInfo` status shows of it. An ``ifname`` with no attachment at
    ``hook``/``direction`` raises NotAttached (when iterating starts).

    For readers that choose what to read: e.g. ``info(with_rules=False)`` and then the
    rules streamed a batch at a time (:meth:`Attachment.rule_entries`), or
    :meth:`Attachment.scan_rules` for a count and the first rules in one pass.
    """
    if ifname is not None:
        pins.validate_ifname(ifname)
    wanted_hook, wanted_direction = _as_hook(hook), _as_direction(direction)
    capabilities.require_read_privileges()
    if ifname is not None:  # naming an interface without such an attachment is a mistake
        _chosen(ifname, hook, direction, _attach_one(ifname, hook))
    interrupted = {point for _, kind, point, _pid in pins.leftovers()
                   if kind in ("attach", "replace")}
    for point in sorted(set(pins.listed()) | interrupted):
        if (ifname not in (None, point.ifname) or wanted_hook not in (None, point.hook)
                or wanted_direction not in (None, point.direction)):
            continue
        try:
            attachment = _open_read_only(point)
        except _Gone:
            continue  # detached while we looked
        except _Unreadable as err:
            yield err.info
            continue
        except NotAttached as err:
            yield _broken(point, str(err))
            continue
        with attachment:
            yield attachment


def _broken(point: Point, problem: str) -> AttachmentInfo:
    return AttachmentInfo(
        ifname=point.ifname, ifindex=0, program_id=0, link_id=0, mode=XdpMode.NONE,
        policy=None, rule_count=0, rules=[], stats=None, stale=True, problem=problem,
        pin_dir=str(pins.directory(point)), hook=point.hook, direction=point.direction,
    )


@dataclass(frozen=True)
class Detached:
    """What ``detach`` did to one attachment."""

    ifname: str
    was_stale: bool
    recovered: tuple[str, ...] = ()  # what recovery finished first (pingkiller.recovery)
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)


def detach(ifname: str, *, hook: Hook | str | None = None,
           direction: Direction | str | None = None) -> list[Detached]:
    """Detach pingkiller from ``ifname`` and remove its pins (works if the interface is
    gone): every attachment of the interface, or those at ``hook`` and ``direction``."""
    pins.validate_ifname(ifname)
    wanted_hook, wanted_direction = _as_hook(hook), _as_direction(direction)
    capabilities.require_privileges()
    with _writing():
        recovered = tuple(recovery.recover())
        done = []
        for point in _chosen(ifname, wanted_hook, wanted_direction, "nothing to detach"):
            stale = _filters_nothing(point)
            _detach_pinned(point)
            done.append(Detached(ifname, stale, recovered, point.hook, point.direction))
            recovered = ()
    return done


def _filters_nothing(point: Point) -> bool:
    """Whether the pinned link filters nothing, judged from the link alone (the maps may
    be incomplete or of another ABI version: detach works whatever they are)."""
    where = pins.directory(point)
    try:
        identity = _read_identity(where)
    except IncompatiblePins:
        identity = None
    try:
        with hooks.open_link(point, where) as link:
            return _link_state(link, identity, point)[1].stale
    except BpfError:
        return True


def detach_all() -> list[Detached]:
    """Detach every pingkiller attachment (and nothing else)."""
    done: list[Detached] = []
    for point in _recovered_points():
        done += detach(point.ifname, hook=point.hook, direction=point.direction)
    return done


@dataclass(frozen=True)
class Upgraded:
    """What ``upgrade`` did to one attachment."""

    ifname: str
    upgraded: bool  # False: it ran the installed program already
    from_abi: int
    from_program: str  # SHA-256 of the ELF that ran ('' when not recorded)
    to_program: str
    recovered: tuple[str, ...] = ()
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)

    def to_json(self) -> dict[str, object]:
        return {"interface": self.ifname, "hook": self.hook.label,
                "direction": self.direction.label, "upgraded": self.upgraded,
                "from_abi": self.from_abi, "to_abi": abi.ABI_VERSION,
                "from_program": self.from_program or None, "to_program": self.to_program}


def upgrade(ifname: str, *, hook: Hook | str | None = None,
            direction: Direction | str | None = None) -> list[Upgraded]:
    """Run the installed program on ``ifname``'s attachments (those at ``hook`` and
    ``direction``, when given) in place of the one each runs.

    The new program is loaded on the attachment's own maps (policy, rules with their hit
    counts, counters, events), which it adopts unchanged when their ABI version is one it
    runs on (:data:`pingkiller.abi.ADOPTABLE_ABI_VERSIONS`); maps of an older version it
    converts (:data:`~pingkiller.abi.MIGRATABLE_ABI_VERSIONS`) are copied into fresh ones
    by :func:`pingkiller.migrate.convert`, hits counted meanwhile carried over. It is
    swapped in with one atomic bpf_link_update: no packet meets no program. All or
    nothing under kill -9, like --replace. An attachment that runs the installed program
    already is left as is.
    """
    pins.validate_ifname(ifname)
    wanted_hook, wanted_direction = _as_hook(hook), _as_direction(direction)
    capabilities.require_privileges(load=True)
    with _writing():
        recovered = tuple(recovery.recover())
        done = []
        for point in _chosen(ifname, wanted_hook, wanted_direction, "nothing to upgrade"):
            done.append(_upgrade_point(point, recovered))
            recovered = ()
    return done


def _upgrade_point(point: Point, recovered: tuple[str, ...]) -> Upgraded:
    """:func:`upgrade` at one point; call with the pin lock held."""
    ifname = point.ifname
    with _open_pinned(point, check_abi=False) as existing:
        record = existing.identity or pins.Identity(0, 0)
        before = record.program.hex()
        installed = datapath.program_digest().hex()
        converted = record.abi_version in abi.MIGRATABLE_ABI_VERSIONS
        if record.abi_version not in abi.ADOPTABLE_ABI_VERSIONS and not converted:
            raise IncompatiblePins(abi_problem(point, record.abi_version))
        if not _outdated(record):
            return Upgraded(ifname, False, record.abi_version, before, installed, recovered,
                            point.hook, point.direction)
        _, state, problem = existing._link_state()
        if state.stale:
            raise StaleAttachment(
                f"{point.label}'s attachment filters nothing ({problem}): `pingkiller detach "
                f"{point.options}` cleans it, then attach again")
        obj = _object_for(point)
        try:
            if converted:
                for name in migrate.CARRIED:
                    obj.reuse_map(name, existing.maps[name])
                _load_object(obj)
                read = migrate.convert(existing.maps, obj.maps)
                _publish(obj, point, existing.link)
                RuleTable(obj.maps).carry_hits(read, existing.maps)
            else:
                for name in PINNED_MAPS:
                    obj.reuse_map(name, existing.maps[name])
                _load_object(obj)
                _publish(obj, point, existing.link)
        finally:
            obj.close()
    return Upgraded(ifname, True, record.abi_version, before, installed, recovered,
                    point.hook, point.direction)


def upgrade_all() -> list[Upgraded]:
    """:func:`upgrade` every attachment that can be (in name order, XDP first)."""
    done: list[Upgraded] = []
    for point in _recovered_points():
        done += upgrade(point.ifname, hook=point.hook, direction=point.direction)
    return done
