"""The handle's write side: changing an attachment's policy and rules, detaching it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pingkiller import abi
from pingkiller.attachment.state import abi_problem
from pingkiller.attachment.tracking import CARRIED_MAPS, Pinned, pinned_in
from pingkiller.attachment.view import AttachmentView
from pingkiller.bpf import Map, Object, Program
from pingkiller.datapath.limits import LimitTable
from pingkiller.datapath.rules import LOOKUP_FLAGS, RuleTable
from pingkiller.hooks.base import HookLink, Strategy
from pingkiller.model.enums import PinState, RuleAction
from pingkiller.model.errors import (
    AttachmentEnded,
    InvalidInput,
    PermissionDenied,
    Remedy,
    StaleAttachment,
)
from pingkiller.model.limits import Limit, Rate
from pingkiller.model.network import Network, NetworkLike, format_network
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.results import RuleDiff
from pingkiller.model.rules import Rule, RuleSet, read_rule_file
from pingkiller.publish import KEPT_BY_REBUILDS, load_object, object_for, publish
from pingkiller.store import Store
from pingkiller.store.records import (
    Identity,
    copy_settings,
    read_flags,
    read_identity,
    read_policy,
    write_settings,
)
from pingkiller.system import capabilities

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

# Rule changes larger than this go through a copy of the rule tables swapped in at once
# (a rebuild), so a writer killed meanwhile leaves no partial change.
ATOMIC_ABOVE = 256

# A change to a rule table: it returns the rules changed, and appends to the list (when
# given) a call that undoes it.
Edit = Callable[[RuleTable, "list[Callable[[], None]] | None"], int]


def setting(rules: RuleSet, action: RuleAction, limit: Limit | None = None) -> Edit:
    return lambda table, undo: table.set(rules, action, limit=limit, undo=undo)


def removing(rules: RuleSet) -> Edit:
    return lambda table, undo: table.remove(rules, undo=undo)


def each(edits: list[Edit]) -> Edit:
    """The ``edits`` one after another, as one."""
    return lambda table, undo: sum(edit(table, undo) for edit in edits)


def check_limit(action: RuleAction, limit: Limit | None) -> None:
    """A limit rule needs its limit; no other rule has one."""
    if action is RuleAction.LIMIT and limit is None:
        raise InvalidInput("limit rules need a rate: give limit=Limit.of(\"10/s\") (say)")
    if action is not RuleAction.LIMIT and limit is not None:
        raise InvalidInput(f"only limit rules have a rate, not {action.name.lower()} rules")


# Rules by what they do: each action (and a limit rule's limit) with its networks.
Rules = list[tuple[RuleAction, "Limit | None", RuleSet]]


def wanted_rules(block: Iterable[NetworkLike] = (), allow: Iterable[NetworkLike] = (),
                 limit: Mapping[Limit, Iterable[NetworkLike]] | None = None) -> Rules:
    """``block``, ``allow`` and ``limit`` (each limit's networks) as :data:`Rules`."""
    wanted: Rules = [
        (RuleAction.BLOCK, None, RuleSet.of(block)), (RuleAction.ALLOW, None, RuleSet.of(allow))]
    wanted += [(RuleAction.LIMIT, each_limit, RuleSet.of(networks))
               for each_limit, networks in (limit or {}).items()]
    seen: dict[Network, str] = {}
    for action, each_limit, networks in wanted:
        what = action.name.lower() + (f" at {each_limit}" if each_limit else "")
        for network in networks.networks():
            if seen.setdefault(network, what) != what:
                raise InvalidInput(f"{format_network(network)} given two rules ({seen[network]} "
                                   f"and {what}): pick one")
    return wanted


@dataclass
class Staged:
    """A rule change made ready on one attachment: :meth:`commit` makes it take effect (a
    change made in place already has, and can be undone until then), :meth:`abort`
    drops it. What :func:`pingkiller.change_rules` uses to change several attachments
    all or nothing."""

    attachment: Attachment
    changed: int
    undo: list[Callable[[], None]]
    rebuilt: tuple[Object, RuleTable, dict[str, dict[bytes, int]]] | None = None

    def commit(self) -> int:
        if self.rebuilt is not None:
            self.attachment._swap_in(*self.rebuilt)
        return self.changed

    def abort(self) -> None:
        for put_back in reversed(self.undo):
            put_back()
        if self.rebuilt is not None:
            self.rebuilt[0].close()


class Attachment(AttachmentView):
    """pingkiller at one point, to change: its policy, its rules, its life.

    Obtain it with :func:`pingkiller.attach` or :func:`pingkiller.open`. As a context
    manager it closes its handles on exit; a pinned attachment stays attached, a private
    one (``persist=False``) is detached then, and if it is never closed, it warns
    (ResourceWarning) and is detached when it is collected. Everything an
    :class:`AttachmentView` reads, it reads too.
    """

    def __init__(self, point: Point, store: Store | None, strategy: Strategy, link: HookLink,
                 maps: dict[str, Map], *, program: Program | None = None,
                 obj: Object | None = None, identity: Identity | None = None,
                 pinned: Pinned | None = None,
                 reopen: Callable[[], AttachmentView] | None = None) -> None:
        super().__init__(point, store, strategy, link, maps, program=program, obj=obj,
                         identity=identity, pinned=pinned, reopen=reopen)
        self._link: HookLink = link
        self.recovered: list[str] = []  # what the writer that made or changed it finished first
        self.replaced = False  # made by attach(replace=True) in an existing one's place

    @property
    def link(self) -> HookLink:
        """What holds its program on the hook (a bpf_link, or a clsact filter)."""
        self._check_open()
        return self._link

    # -- policy

    def set_policy(self, policy: Policy) -> None:
        """Change default action, ICMP set, events, timing... at once, rules untouched."""
        with self._writing():
            size = self.maps[abi.BUCKETS_MAP].info.max_entries
            if policy.limit_buckets != size:
                raise InvalidInput(f"{self.point.label} remembers {size} limited sources; "
                                   "another number of buckets needs a new map: attach with "
                                   "replace", point=self.point)
            lookups = read_flags(self.maps) & LOOKUP_FLAGS
            before = read_policy(self.maps)
            write_settings(self.maps, abi.Config.of(policy, lookups))
            # What sources spent under another rate is no debt under this one.
            if (before.limit, before.limit_prefix6) != (policy.limit, policy.limit_prefix6):
                LimitTable(self.maps[abi.LIMITS_MAP], self.maps[abi.BUCKETS_MAP]).drop_buckets({0})
            if before.limit_total != policy.limit_total:
                self.maps[abi.RATE_TOTAL_MAP][abi.u32_key(0)] = bytes(8)

    # -- rules

    def block(self, addresses: Iterable[NetworkLike]) -> int:
        """Block pings from/to these addresses or prefixes; returns rules changed."""
        return self.set_rules(RuleSet.of(addresses), RuleAction.BLOCK)

    def allow(self, addresses: Iterable[NetworkLike]) -> int:
        """Let pings from/to these addresses or prefixes pass; returns rules changed."""
        return self.set_rules(RuleSet.of(addresses), RuleAction.ALLOW)

    def limit(self, addresses: Iterable[NetworkLike], rate: Rate | str,
              burst: int | None = None) -> int:
        """Let pings from/to these addresses or prefixes pass at most ``rate`` per source
        (``"10/s"``; IPv6 sources per the policy's limit_prefix6), in bursts of up to
        ``burst`` (default: the rate's per-second figure); returns rules changed."""
        return self.set_rules(RuleSet.of(addresses), RuleAction.LIMIT,
                              limit=Limit.of(rate, burst))

    def unblock(self, addresses: Iterable[NetworkLike]) -> int:
        """Remove any rule for these addresses or prefixes; returns how many existed."""
        return self.remove_rules(RuleSet.of(addresses))

    def block_file(self, path: str | Path, action: RuleAction = RuleAction.BLOCK) -> int:
        """Give every address or prefix of a rule file (one a line, # comments) ``action``."""
        return self.set_rules(read_rule_file(path), action)

    def set_rules(self, rules: RuleSet, action: RuleAction, *, limit: Limit | None = None,
                  atomic: bool | None = None) -> int:
        """Give every rule of ``rules`` the ``action`` (LIMIT: at ``limit``); returns
        rules changed.

        ``atomic``: all or nothing also if this process is killed meanwhile (a copy of
        the rules is swapped in; it loads a program, so it needs CAP_PERFMON too). None
        (the default) means: for pinned attachments, when more than ATOMIC_ABOVE rules
        change; smaller changes are made in place, a few syscalls."""
        check_limit(action, limit)
        with self._writing(changing=True):
            return self.stage(setting(rules, action, limit), len(rules), atomic).commit()

    def remove_rules(self, rules: RuleSet, *, atomic: bool | None = None) -> int:
        """Remove any rule of ``rules``; returns how many existed (``atomic`` as for
        :meth:`set_rules`)."""
        with self._writing(changing=True):
            return self.stage(removing(rules), len(rules), atomic).commit()

    def sync_rules(self, *, block: Iterable[NetworkLike] = (), allow: Iterable[NetworkLike] = (),
                   limit: Mapping[Limit, Iterable[NetworkLike]] | None = None,
                   atomic: bool | None = None) -> RuleDiff:
        """Make this attachment's rules exactly ``block``, ``allow`` and ``limit`` (each
        limit's addresses): add or change what differs, remove the rest; rules that stay
        keep their hits. All or nothing."""
        wanted = wanted_rules(block, allow, limit)
        with self._writing(changing=True):
            edits, added, removed = self.differences(wanted)
            if edits:
                size = sum(len(rule_set) for _, _, rule_set in wanted)
                self.stage(each(edits), size + len(removed), atomic).commit()
            return RuleDiff(self.point, tuple(added), tuple(removed), self._rules().count())

    def differences(self, wanted: Rules) -> tuple[list[Edit], list[Rule], list[Rule]]:
        """What makes the rules exactly ``wanted`` (:func:`wanted_rules`): the edits, the
        rules they add or change, and the rules they remove."""
        current = {rule.address: rule for batch in self._rules().entries() for rule in batch}
        wanted_by_address = {Rule.of(network, action).address: (action, limit)
                             for action, limit, rules in wanted for network in rules.networks()}
        added = [Rule(address, action, 0, limit)
                 for address, (action, limit) in wanted_by_address.items()
                 if address not in current
                 or (current[address].action, current[address].limit) != (action, limit)]
        removed = [rule for address, rule in current.items() if address not in wanted_by_address]
        edits: list[Edit] = []
        for action, limit, _ in wanted:
            networks = [rule.network for rule in added
                        if (rule.action, rule.limit) == (action, limit)]
            if networks:
                edits.append(setting(RuleSet.of(networks), action, limit))
        if removed:
            edits.append(removing(RuleSet.of(rule.network for rule in removed)))
        return edits, added, removed

    def stage(self, edit: Edit, size: int, atomic: bool | None) -> Staged:
        """Make ``edit`` ready (see :class:`Staged`); call as a writer (the store's lock
        held, :meth:`writing`). Small changes are made in place, undoable; big ones
        (``atomic``, see :meth:`set_rules`) on a copy of the rules not yet swapped in."""
        if self.store is None or not (size > ATOMIC_ABOVE if atomic is None else atomic):
            undo: list[Callable[[], None]] = []
            try:
                return Staged(self, edit(self._rules(), undo), undo)
            except BaseException:
                for put_back in reversed(undo):  # what the edit did before it failed
                    put_back()
                raise
        capabilities.require(load=True)
        if self.identity is not None and self.identity.abi_version != abi.ABI_VERSION:
            raise abi_problem(self.point, self.identity.abi_version)
        obj = object_for(self.strategy, self.point)
        try:
            for name in (*CARRIED_MAPS, *KEPT_BY_REBUILDS):
                obj.reuse_map(name, self.maps[name])
            load_object(obj)
            copy_settings(self.maps, obj.maps)
            table = RuleTable(obj.maps)
            before = table.copy_from(self.maps)
            changed = edit(table, None)
        except BaseException:
            obj.close()
            raise
        return Staged(self, changed, [], (obj, table, before))

    def _swap_in(self, obj: Object, table: RuleTable, before: dict[str, dict[bytes, int]]) -> None:
        """A rebuilt copy of the rules swapped in like a replace (kill -9 safe); hits the
        old rules counted meanwhile are added after the swap."""
        assert self.store is not None
        try:
            publish(self.store, obj, self.strategy, self.point, self.link)
        except BaseException:
            obj.close()
            raise
        table.carry_hits(before, self.maps)
        self._release()
        self.maps, self._obj, self._table, self._program = dict(obj.maps), obj, table, None
        directory = self.store.directory(self.point)
        self.identity, self._pinned = read_identity(directory), pinned_in(directory)

    # -- locking

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The store's lock, held for a change of this attachment; what killed writers
        left is finished first and a replace by another process followed, so a change
        never goes to maps nothing runs any more."""
        with self._writing():
            yield

    def _writing(self, *, changing: bool = False) -> AbstractContextManager[None]:
        self._check_open()
        if self.read_only:
            raise PermissionDenied(f"{self.point.label}'s attachment was opened read-only: "
                                   "open it with read_only=False to change it", point=self.point)
        if self.store is None:
            self.check()
            return nullcontext()
        return self._locked(changing)

    @contextmanager
    def _locked(self, changing: bool) -> Iterator[None]:
        assert self.store is not None
        with self.store.writer() as recovered:
            self.recovered += recovered
            self.check()
            if changing and self.is_stale():
                raise StaleAttachment(f"{self.point.label}'s attachment filters nothing "
                                      f"({self.problem()})", point=self.point,
                                      remedy=Remedy.DETACH)
            yield

    # -- lifetime

    def detach(self) -> None:
        """Detach from the hook and remove the pins (a private attachment: detach)."""
        self._check_open()
        if self.read_only:
            raise PermissionDenied(f"{self.point.label}'s attachment was opened read-only: "
                                   "open it with read_only=False to detach it", point=self.point)
        if self.store is None:
            self._link.detach()
        else:
            with self.store.writer():
                state = self.pin_state()
                if state is PinState.SUPERSEDED:
                    raise AttachmentEnded(f"{self.point.label} was detached and attached "
                                          "again: this handle's attachment is gone, the new "
                                          "one is left alone", point=self.point)
                if state is not PinState.DETACHED:
                    self.store.detach(self.point)
        self.close()

    def surrender_link(self) -> HookLink:
        """Close this handle but leave its link open, for the caller to own (a replace
        hands the link on to the attachment that takes this one's place)."""
        self._check_open()
        self._closed = True
        self._release()
        return self._link

    def close(self) -> None:
        """Release this process's handles. A pinned attachment stays attached; a private
        one is detached (a clsact filter too, which no handle holds)."""
        if not self._closed and self.store is None:
            self._link.detach()
        super().close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or self.store is not None:
            return
        try:
            self.close()
        finally:
            warnings.warn(f"unclosed private attachment {self.point.label}: detached now; "
                          "close it (or use it in `with`) to detach it when you mean to",
                          ResourceWarning, stacklevel=2, source=self)
