"""The plan: what applying a policy file would change, one attachment (interface, hook,
direction) at a time, as a pure function of the file and the running attachments.

What is missing is attached, pingkiller attachments that are not listed are detached
(nothing else is touched), attachments whose mode differs are detached and attached
again, outdated ones upgraded, and kept attachments get only the settings and rule
differences (:mod:`pingkiller.declarative.reconciling` carries it out).
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from pingkiller.declarative.file import AttachmentSpec, PolicyFile, policy_settings
from pingkiller.model.enums import Hook, Mode, RuleAction
from pingkiller.model.errors import InterfaceNotFound, Remedy
from pingkiller.model.limits import Limit
from pingkiller.model.network import Network, format_network
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.words import RULE_ACTIONS

if TYPE_CHECKING:
    from pingkiller.ops.listing import PinRoot


class StepAction(enum.StrEnum):
    """What a step does to its attachment (the value is its word)."""

    ATTACH = "attach"
    DETACH = "detach"
    REATTACH = "reattach"  # detach and attach again: stale, or a mode change
    UPDATE = "update"  # settings and rule differences, in place
    UPGRADE = "upgrade"  # run the installed program, in place (pingkiller.upgrade)


@dataclass(frozen=True)
class Step:
    """One change to one attachment: attach, detach, reattach (mode change), update or
    upgrade.

    ``spec`` is the target (None for a detach); ``reason`` says why (detach, reattach,
    upgrade). An update holds what differs: ``policy_from`` the running policy when it
    differs from the target's (else None), ``add`` the rules to add or change, ``remove``
    the rules to remove."""

    point: Point
    action: StepAction
    reason: str = ""
    spec: AttachmentSpec | None = None
    policy_from: Policy | None = None
    add: dict[Network, RuleAction] = field(default_factory=dict)
    remove: tuple[Network, ...] = ()

    @property
    def ifname(self) -> str:
        return self.point.ifname

    def limit_of(self, network: Network) -> Limit | None:
        """The limit of a limit rule this step adds (None for other rules)."""
        return self.spec.limits.get(network) if self.spec is not None else None

    def rule_text(self, network: Network, action: RuleAction) -> str:
        """``block``, ``allow``, ``limit 10/s burst 10``."""
        limit = self.limit_of(network) if action is RuleAction.LIMIT else None
        return RULE_ACTIONS.word(action) + (f" {limit}" if limit else "")

    @property
    def policy_changes(self) -> list[str]:
        """An update's changed settings in words, e.g. ``default pass -> drop`` (empty
        when the policy stays)."""
        if self.policy_from is None or self.spec is None:
            return []
        return policy_changes(self.policy_from, self.spec.policy)

    def describe(self) -> str:
        """One line for humans; an attachment at the XDP hook is named by its interface,
        one at the tc hook as e.g. ``eth0 (tc out)``."""
        where = self.point.label
        if self.action in (StepAction.DETACH, StepAction.UPGRADE):
            return f"{self.action.value} {where}: {self.reason}"
        assert self.spec is not None
        if self.action in (StepAction.ATTACH, StepAction.REATTACH):
            blocks = len(self.spec.networks(RuleAction.BLOCK))
            allows = len(self.spec.networks(RuleAction.ALLOW))
            limits = len(self.spec.networks(RuleAction.LIMIT))
            what = f"{self.spec.policy.describe()}; {blocks} block, {allows} allow" + (
                f", {limits} limit" if limits else "") + " rules"
            if self.point.hook is Hook.XDP:
                what += f", mode {self.spec.mode.value}"
            if self.action is StepAction.ATTACH:
                return f"attach {where}: {what}"
            return f"detach and attach {where} again ({self.reason}): {what}"
        parts = []
        if self.policy_from is not None:
            parts.append("set " + ", ".join(self.policy_changes))
        if self.add:
            parts.append("add " + ", ".join(
                f"{self.rule_text(network, action)} {format_network(network)}"
                for network, action in _shown(self.add.items())
            ) + _more(len(self.add)))
        if self.remove:
            parts.append("remove " + ", ".join(
                format_network(network) for network in _shown(self.remove)
            ) + _more(len(self.remove)))
        return f"update {where}: " + "; ".join(parts)


_SHOWN = 10
_T = TypeVar("_T")


def _shown(items: Iterable[_T]) -> list[_T]:
    return list(items)[:_SHOWN]


def _more(count: int) -> str:
    return f" and {count - _SHOWN} more" if count > _SHOWN else ""


def policy_changes(before: Policy, after: Policy) -> list[str]:
    """The settings that differ, each as ``key old -> new`` in the file's words."""
    old, new = policy_settings(before), policy_settings(after)
    return [f"{key} {_setting(old.get(key))} -> {_setting(new.get(key))}".lower()
            for key in {**old, **new} if old.get(key) != new.get(key)]


def _setting(value: object) -> str:
    if value is None:
        return "none"
    return ",".join(value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Plan:
    """What applying a policy file would change; empty when the running state matches it."""

    source: str
    steps: list[Step]
    unchanged: list[Point]  # attachments the file lists that need no change

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    @property
    def unchanged_interfaces(self) -> list[str]:
        """Interfaces none of whose attachments changes (in the file's order)."""
        touched = {step.ifname for step in self.steps}
        return list(dict.fromkeys(p.ifname for p in self.unchanged if p.ifname not in touched))


def plan(desired: PolicyFile, running: list[AttachmentInfo] | None = None, *,
         pin_root: PinRoot = None) -> Plan:
    """Compare a policy file with the running attachments (read now, from ``pin_root``,
    unless given), one (interface, hook, direction) at a time.

    Interfaces the file would attach to must exist; otherwise nothing is planned and
    InterfaceNotFound names them. Pins this pingkiller cannot upgrade stop the plan
    (IncompatiblePins, with what to do as its remedy).
    """
    if running is None:
        from pingkiller.ops.listing import attachments

        running = attachments(pin_root=pin_root)
    current = {info.point: info for info in running}
    steps = [
        Step(point, StepAction.DETACH, reason="not in the policy file")
        for point in sorted(current) if point not in desired.attachments
    ]
    unchanged = []
    missing: dict[str, None] = {}
    for point, spec in desired.attachments.items():
        info = current.get(point)
        if (info is None or info.stale) and not _exists(point.ifname):
            missing[point.ifname] = None
            continue
        if info is not None and not info.stale and info.outdated:
            steps.append(_upgrade_step(info, spec))
            if info.policy is None:
                continue  # unreadable until upgraded: reconcile plans the rest afterwards
        step = _step(point, spec, info)
        if step is None:
            unchanged.append(point)
        else:
            steps.append(step)
    if missing:
        names = ", ".join(missing)
        raise InterfaceNotFound(
            f"{desired.source}: interface(s) {names} not found on this host: create them or remove "
            "their tables (nothing was changed)"
        )
    return Plan(desired.source, steps, unchanged)


def _exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def _step(point: Point, spec: AttachmentSpec, info: AttachmentInfo | None) -> Step | None:
    """What makes the attachment at ``point`` (``info``, None: there is none) ``spec``."""
    if info is None:
        return Step(point, StepAction.ATTACH, spec=spec)
    if info.stale or info.policy is None:
        return Step(point, StepAction.REATTACH, f"the attachment is stale: {info.problem}", spec)
    if point.hook is Hook.XDP and spec.mode is not Mode.AUTO and info.mode is not spec.mode:
        return Step(point, StepAction.REATTACH, f"mode {info.mode.value} -> {spec.mode.value}; "
                                                "the kernel cannot change it in place", spec)
    if point.hook is Hook.TC and spec.mode is not Mode.AUTO \
            and tc_mode(info) is not spec.mode:
        return Step(point, StepAction.REATTACH,
                    f"mode {tc_mode(info).value} -> {spec.mode.value}: a tcx link and a "
                    "clsact filter are attached differently", spec)
    if info.policy.limit_buckets != spec.policy.limit_buckets:
        return Step(point, StepAction.REATTACH,
                    f"limit_buckets {info.policy.limit_buckets} -> "
                    f"{spec.policy.limit_buckets}: the map is sized when it is made", spec)
    return _update(info, spec)


def tc_mode(info: AttachmentInfo) -> Mode:
    """How a tc attachment holds its hook: TCX (a link) or CLSACT (a filter), also where
    the mode in effect cannot be seen (moved to another network namespace): a clsact
    filter has no link id."""
    if info.mode in (Mode.TCX, Mode.CLSACT):
        return info.mode
    return Mode.CLSACT if info.link_id == 0 else Mode.TCX


def _upgrade_step(info: AttachmentInfo, spec: AttachmentSpec) -> Step:
    """Upgrade an attachment that runs another program than the installed one; pins of an
    ABI this build cannot upgrade stop the plan (IncompatiblePins names the remedy)."""
    from pingkiller.attachment.state import abi_problem

    problem = abi_problem(info.point, info.abi_version)
    if problem.remedy is not Remedy.UPGRADE:
        raise problem
    running = info.program[:12] or "unrecorded"
    return Step(info.point, StepAction.UPGRADE, spec=spec,
                reason=f"it runs program {running} (ABI {info.abi_version}), not the installed one")


def _update(info: AttachmentInfo, spec: AttachmentSpec) -> Step | None:
    """The settings and rule differences, as text for the rules: a running rule's
    address is :func:`format_network`'s text."""
    running = {rule.address: (rule.action, rule.limit) for rule in info.rules}
    wanted = {format_network(network): (network, action) for network, action in spec.rules.items()}
    add = {network: action for address, (network, action) in wanted.items()
           if running.get(address) != (action, spec.limits.get(network))}
    remove = tuple(rule.network for rule in info.rules if rule.address not in wanted)
    policy_from = info.policy if info.policy != spec.policy else None
    if not (add or remove or policy_from):
        return None
    return Step(info.point, StepAction.UPDATE, spec=spec, policy_from=policy_from, add=add,
                remove=remove)
