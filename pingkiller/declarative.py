"""Declarative policy files: parse and validate, plan against the running state, apply, export.

A policy file is TOML, one table per interface (docs/operations.md has the reference)::

    [interfaces.eth0]
    default = "pass"              # drop | pass (default: drop without block rules)
    icmp = "echo"                 # echo | echo-request | all
    block = ["198.18.0.7", "2001:db8::/32"]
    allow = ["10.0.0.0/8"]
    rule_files = ["blocklist.txt"]  # more block rules, paths relative to this file

A table is one attachment: at the interface's XDP hook unless it says ``hook = "tc"``
(then ``direction = "in"``, ``"out"`` or ``"both"``, two attachments with the same
settings). An interface with several attachments, each with settings and rules of its
own, lists them as an array of tables, ``[[interfaces.eth0]]`` once per attachment.

Applying it reconciles the running pingkiller attachments with the file, one
(interface, hook, direction) at a time: what is missing is attached, pingkiller
attachments that are not listed are detached (nothing else is touched), and kept
attachments get only the settings and rule differences, new rules first, so no kept
rule is ever missing. A file with any error is rejected whole.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import json
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from pingkiller import abi, interfaces, killer, pins, untrusted
from pingkiller.abi import Direction, Hook, Network, RuleAction
from pingkiller.bpf import BpfError, XdpMode
from pingkiller.errors import IncompatiblePins, InterfaceNotFound, PingkillerError, PolicyFileError
from pingkiller.hooks import TcMode
from pingkiller.killer import AttachmentInfo
from pingkiller.pins import Point
from pingkiller.policy import (
    DEFAULT_ACTIONS,
    EVENT_MODES,
    ICMP_SETS,
    RULE_ACTIONS,
    XDP_MODES,
    Policy,
    default_action,
    format_network,
    parse_network,
    read_rule_file,
)

HOOKS = {"xdp": Hook.XDP, "tc": Hook.TC}
DIRECTIONS = {"in": (Direction.IN,), "out": (Direction.OUT,), "both": (Direction.IN, Direction.OUT)}
_CHOICES: dict[str, list[str]] = {
    "hook": list(HOOKS),
    "direction": list(DIRECTIONS),
    "default": DEFAULT_ACTIONS.words,
    "icmp": ICMP_SETS.words,
    "events": EVENT_MODES.words,
    "mode": [*XDP_MODES.words, *(mode.value for mode in TcMode if mode is not TcMode.AUTO)],
}
_BOOLS = ("all_protocols", "timing")
_LISTS = ("block", "allow", "rule_files")
KEYS = (*_CHOICES, *_BOOLS, "event_rate", *_LISTS)
_MAX_EVENT_RATE = 0xFFFFFFFF
_MAX_PROBLEMS = 5
_LOCATED = 50  # problems located by line (each is a search); the rest are counted
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class AttachmentSpec:
    """What one attachment should be: where it runs, its settings, mode and rules."""

    ifname: str
    policy: Policy
    mode: XdpMode | TcMode = XdpMode.AUTO  # a TcMode at the tc hook
    rules: dict[Network, RuleAction] = field(default_factory=dict)
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)

    def networks(self, action: RuleAction) -> list[Network]:
        return [network for network, act in self.rules.items() if act == action]


@dataclass(frozen=True)
class PolicyFile:
    """A whole, valid policy file: the attachments pingkiller should hold and nothing else,
    in the file's order."""

    attachments: dict[Point, AttachmentSpec]
    source: str = "<policy>"

    @property
    def interfaces(self) -> dict[str, list[AttachmentSpec]]:
        """The attachments by interface (an interface's in the file's order)."""
        found: dict[str, list[AttachmentSpec]] = {}
        for spec in self.attachments.values():
            found.setdefault(spec.ifname, []).append(spec)
        return found


def policy_file(specs: Iterable[AttachmentSpec], source: str = "<policy>") -> PolicyFile:
    """A PolicyFile of ``specs`` (one per point)."""
    return PolicyFile({spec.point: spec for spec in specs}, source)


@dataclass(frozen=True)
class _Where:
    """Which table of the file a problem is in: ``[interfaces.IFNAME]``, or the
    ``entry``-th (from 0) ``[[interfaces.IFNAME]]`` of an interface listed as an array."""

    ifname: str
    entry: int | None = None

    @property
    def shown(self) -> str:
        if self.entry is None:
            return f"[interfaces.{_shown_key(self.ifname)}]"
        return f"[[interfaces.{_shown_key(self.ifname)}]] #{self.entry + 1}"


class _Problems:
    """Collects every error of a file, each located by line (when found), table and key."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.found: list[tuple[int, str]] = []

    @property
    def many(self) -> bool:
        """Whether enough problems were found that the rest are only counted (neither
        located nor given suggestions: each costs a search)."""
        return len(self.found) >= _LOCATED

    def add(self, where: _Where | None, key: str | None, message: str) -> None:
        line = None if self.many else self._line(where, key)
        place = f"{self.source}:{line}" if line else self.source
        table = where.shown if where is not None else ""
        field_name = " ".join(part for part in (table, key and _shown_key(key)) if part)
        text = f"{place}: {field_name}: {message}" if field_name else f"{place}: {message}"
        self.found.append((line or (1 << 62 if self.many else 0), text))

    def _line(self, where: _Where | None, key: str | None) -> int | None:
        """Best effort: the line of ``key`` in the table ``where`` (or of its header)."""
        if where is None:
            pattern = rf"\s*\[?\s*{re.escape(key or 'interfaces')}\b"
            return next((n for n, line in enumerate(self.lines, 1) if re.match(pattern, line)), None)
        name = re.escape(where.ifname)
        if where.entry is None:
            header = re.compile(rf"\s*\[\s*interfaces\s*\.\s*(\"?){name}\1\s*\]")
            start = next((n for n, line in enumerate(self.lines, 1) if header.match(line)), None)
        else:
            header = re.compile(rf"\s*\[\[\s*interfaces\s*\.\s*(\"?){name}\1\s*\]\]")
            starts = [n for n, line in enumerate(self.lines, 1) if header.match(line)]
            start = starts[where.entry] if where.entry < len(starts) else None
        if start is None or key is None:
            return start
        assignment = re.compile(rf"\s*(\"?){re.escape(key)}\1\s*=")
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if line.lstrip().startswith("["):
                break
            if assignment.match(line):
                return number
        return start

    def raise_if_any(self) -> None:
        if not self.found:
            return
        shown = [text for _, text in sorted(self.found, key=lambda item: item[0])][:_MAX_PROBLEMS]
        more = len(self.found) - len(shown)
        tail = f"; and {more} more" if more else ""
        raise PolicyFileError("; ".join(shown) + tail + " (nothing was changed)")


def load(path: str | Path) -> PolicyFile:
    """Read and validate a policy file; PolicyFileError lists what is wrong, by line and key."""
    file = Path(path)
    return parse(read_text(file), source=untrusted.shown_path(file), base=file.parent)


def read_text(file: Path) -> str:
    """A policy file's text: a regular UTF-8 file within the policy file size limit
    (:data:`pingkiller.untrusted.POLICY_FILE`); PolicyFileError otherwise."""
    return untrusted.read_text(untrusted.POLICY_FILE, file)


_TOML_ERROR = re.compile(r"(.*) \((at line \d+, column \d+|at end of document)\)", re.DOTALL)


def parse(text: str, *, source: str = "<policy>", base: Path | None = None) -> PolicyFile:
    """Validate a policy file's text; rule_files are read relative to ``base``.

    Nesting deeper than :data:`pingkiller.untrusted.MAX_TOML_DEPTH` and strings or
    tokens longer than :data:`~pingkiller.untrusted.MAX_TOML_TOKEN` are refused before
    the text is parsed; errors quote at most a short, sanitized part of the text.
    """
    shape = untrusted.toml_shape_problem(text)
    if shape is not None:
        line, column, problem = shape
        raise PolicyFileError(f"{source}:{line}:{column}: {problem} (nothing was changed)")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = _TOML_ERROR.fullmatch(str(err))
        what = f"{untrusted.plain(found[1])} ({found[2]})" if found else untrusted.plain(str(err))
        raise PolicyFileError(f"{source}: not valid TOML: {what} (nothing was changed)") from None
    except RecursionError:  # the shape check should have seen it coming
        raise PolicyFileError(f"{source}: not valid TOML: nested too deep (nothing was "
                              "changed)") from None
    problems = _Problems(text, source)
    for key in document:
        if key != "interfaces":
            problems.add(None, key, f"unknown top-level key{_suggest(key, ['interfaces'])}")
    tables = document.get("interfaces")
    attachments: dict[Point, AttachmentSpec] = {}
    if tables is None:
        problems.add(None, None, "no [interfaces] table: list the interfaces pingkiller should "
                                 "hold, e.g. [interfaces.eth0] (an empty [interfaces] detaches all)")
    elif not isinstance(tables, dict):
        problems.add(None, "interfaces", "must be a table of interfaces, e.g. [interfaces.eth0]")
    else:
        for ifname, value in tables.items():
            for where, table in _entries(ifname, value, problems):
                for spec in _parse_attachment(where, table, problems, base or Path(".")):
                    if spec.point in attachments:
                        problems.add(where, "hook", f"{spec.point.hook_text} is listed twice for "
                                                    f"{_shown_key(ifname)}: keep one entry per "
                                                    "hook and direction")
                    attachments[spec.point] = spec
    problems.raise_if_any()
    return PolicyFile(attachments, source)


def _entries(ifname: str, value: object, problems: _Problems) -> list[tuple[_Where, object]]:
    """The tables of one interface: its table, or each of its array of tables."""
    try:
        pins.validate_ifname(ifname)
    except PingkillerError as err:
        problems.add(_Where(ifname), None, str(err))
        return []
    if isinstance(value, list) and value:
        return [(_Where(ifname, entry), table) for entry, table in enumerate(value)]
    if isinstance(value, list):
        problems.add(_Where(ifname), None, "an empty list of attachments: list one, or remove "
                                           "the interface")
        return []
    return [(_Where(ifname), value)]


def _suggest(word: str, choices: Iterable[str]) -> str:
    if len(word) > untrusted.QUOTE_WIDTH:
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown_key(name: str) -> str:
    """A key or interface name of the file in a message: as written when short and
    plain, else quoted sanitized and cut short."""
    if len(name) <= untrusted.QUOTE_WIDTH and name.isascii() and name.isprintable():
        return _toml_key(name)
    return untrusted.quote(name)


def _parse_attachment(
    where: _Where, table: object, problems: _Problems, base: Path
) -> list[AttachmentSpec]:
    """One table's attachments: one, or two for ``direction = "both"`` (none on errors)."""
    before = len(problems.found)
    if not isinstance(table, dict):
        problems.add(where, None, "must be a table of settings, e.g. default = \"drop\"")
        return []
    for key in table:
        if key not in KEYS:
            hint = "" if problems.many else _suggest(key, KEYS)
            problems.add(where, key, f"unknown key{hint}; known: {', '.join(KEYS)}")

    chosen: dict[str, str] = {}
    for key, choices in _CHOICES.items():
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, str) and value.lower() in choices:
            chosen[key] = value.lower()
        else:
            problems.add(where, key, f"{untrusted.describe_value(value)} is not one of "
                                     f"{', '.join(choices)}")
    hook = HOOKS[chosen.get("hook", "xdp")]
    direction = chosen.get("direction", "in")
    if hook is Hook.XDP and direction != "in":
        problems.add(where, "direction", f"{direction!r} needs hook = \"tc\": XDP sees only "
                                         "packets that arrive (add hook = \"tc\", or remove "
                                         "direction)")
    tc_modes = {mode.value: mode for mode in TcMode}
    chosen_mode = chosen.get("mode", "auto")
    if hook is Hook.TC and chosen_mode not in tc_modes:
        problems.add(where, "mode", f"{chosen_mode!r} is an XDP mode: it needs hook = "
                                    "\"xdp\" (a tc attachment's mode is \"tcx\", "
                                    "\"clsact\" or \"auto\")")
    if hook is Hook.XDP and chosen_mode in tc_modes and chosen_mode != "auto":
        problems.add(where, "mode", f"{chosen_mode!r} is a tc mode: it needs hook = \"tc\" "
                                    "(an XDP attachment's mode is \"native\", \"generic\" "
                                    "or \"auto\")")
    flags: dict[str, bool] = {}
    for key in _BOOLS:
        value = table.get(key, False)
        if isinstance(value, bool):
            flags[key] = value
        else:
            problems.add(where, key, f"{untrusted.describe_value(value)} is not true or false")
    event_rate = table.get("event_rate", Policy().event_rate)
    if isinstance(event_rate, bool) or not isinstance(event_rate, int):
        problems.add(where, "event_rate",
                     f"{untrusted.describe_value(event_rate)} is not a whole number (0 = unlimited)")
    elif not 0 <= event_rate <= _MAX_EVENT_RATE:
        problems.add(where, "event_rate", f"{event_rate} is out of range 0..{_MAX_EVENT_RATE}")

    rules = _parse_rules(where, table, problems, base)
    if len(problems.found) > before:
        return []
    assert isinstance(event_rate, int)
    if "default" in chosen:
        default = DEFAULT_ACTIONS.parse(chosen["default"])
    else:  # as `pingkiller attach`: kill every ping unless block rules say which
        default = default_action(blocking=RuleAction.BLOCK in rules.values())
    policy = Policy(
        default=default,
        icmp=ICMP_SETS.parse(chosen.get("icmp", "echo")),
        all_protocols=flags["all_protocols"],
        events=EVENT_MODES.parse(chosen.get("events", "drops")),
        event_rate=event_rate,
        timing=flags["timing"],
    )
    mode: XdpMode | TcMode = (tc_modes[chosen_mode] if hook is Hook.TC
                              else XDP_MODES.parse(chosen_mode))
    return [AttachmentSpec(where.ifname, policy, mode, rules, hook, each)
            for each in DIRECTIONS[direction]]


def _string_list(where: _Where, key: str, table: dict[str, object], problems: _Problems) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.add(where, key, "must be a list of strings, e.g. [\"198.18.0.7\", \"10.0.0.0/8\"]")
        return []
    return [str(item) for item in value]


def _parse_rules(
    where: _Where, table: dict[str, object], problems: _Problems, base: Path
) -> dict[Network, RuleAction]:
    rules: dict[Network, RuleAction] = {}
    conflicts: set[Network] = set()
    sources: list[tuple[str, RuleAction, list[Network]]] = []
    for key, action in (("block", RuleAction.BLOCK), ("allow", RuleAction.ALLOW)):
        networks = []
        for text in _string_list(where, key, table, problems):
            try:
                networks.append(parse_network(text))
            except PingkillerError as err:
                problems.add(where, key, str(err))
        sources.append((key, action, networks))
    for name in _string_list(where, "rule_files", table, problems):
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            sources.append(("rule_files", RuleAction.BLOCK, read_rule_file(path)))
        except PingkillerError as err:
            problems.add(where, "rule_files", str(err))
    for _, action, networks in sources:
        for network in networks:
            if rules.get(network, action) != action:
                conflicts.add(network)
            rules[network] = action
    if conflicts:
        listed = ", ".join(sorted(format_network(n) for n in conflicts))
        problems.add(where, "allow", f"{listed} both blocked and allowed: keep one")
    return rules


# -- plan and apply


class StepAction(enum.StrEnum):
    """What a step does to its attachment (its word in ``--json`` output)."""

    ATTACH = "attach"
    DETACH = "detach"
    REATTACH = "reattach"  # detach and attach again: stale, or a mode change
    UPDATE = "update"  # settings and rule differences, in place
    UPGRADE = "upgrade"  # run the installed program, in place (pingkiller upgrade)


@dataclass(frozen=True)
class Step:
    """One change to one attachment: attach, detach, reattach (mode change), update or
    upgrade."""

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
            what = f"{self.spec.policy.describe()}; {blocks} block, {allows} allow rules"
            if self.point.hook is Hook.XDP:
                what += f", mode {self.spec.mode.value}"
            if self.action is StepAction.ATTACH:
                return f"attach {where}: {what}"
            return f"detach and attach {where} again ({self.reason}): {what}"
        parts = []
        if self.policy_from is not None:
            changed = _policy_changes(self.policy_from, self.spec.policy)
            parts.append("set " + ", ".join(changed))
        if self.add:
            parts.append("add " + ", ".join(
                f"{RULE_ACTIONS.word(action)} {format_network(network)}"
                for network, action in _shown(self.add.items())
            ) + _more(len(self.add)))
        if self.remove:
            parts.append("remove " + ", ".join(
                format_network(network) for network in _shown(self.remove)
            ) + _more(len(self.remove)))
        return f"update {where}: " + "; ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "interface": self.point.ifname,
            "hook": self.point.hook.label,
            "direction": self.point.direction.label,
            "action": self.action.value,
            "reason": self.reason or None,
            "policy": self.spec.policy.to_json() if self.spec else None,
            "mode": self.spec.mode.value if self.spec else None,
            "policy_changes": _policy_changes(self.policy_from, self.spec.policy)
            if self.policy_from and self.spec else [],
            "add": [{"address": format_network(n), "action": RULE_ACTIONS.word(a)}
                    for n, a in self.add.items()],
            "remove": [format_network(n) for n in self.remove],
        }


def _point_json(point: Point) -> dict[str, str]:
    return {"interface": point.ifname, "hook": point.hook.label,
            "direction": point.direction.label}


_SHOWN = 10
_T = TypeVar("_T")


def _shown(items: Iterable[_T]) -> list[_T]:
    return list(items)[:_SHOWN]


def _more(count: int) -> str:
    return f" and {count - _SHOWN} more" if count > _SHOWN else ""


def _policy_changes(before: Policy, after: Policy) -> list[str]:
    old, new = before.to_json(), after.to_json()
    return [f"{key} {old[key]} -> {new[key]}".lower() for key in new if old[key] != new[key]]


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

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.source,
            "changes": [step.to_json() for step in self.steps],
            "unchanged": self.unchanged_interfaces,
            "unchanged_attachments": [_point_json(point) for point in self.unchanged],
        }


def plan(desired: PolicyFile, running: list[AttachmentInfo] | None = None) -> Plan:
    """Compare a policy file with the running attachments (read now unless given), one
    (interface, hook, direction) at a time.

    Interfaces the file would attach to must exist; otherwise nothing is planned and
    InterfaceNotFound names them.
    """
    current = {info.point: info for info in (killer.attachments() if running is None else running)}
    steps = [
        Step(point, StepAction.DETACH, reason="not in the policy file")
        for point in sorted(current) if point not in desired.attachments
    ]
    unchanged = []
    missing: dict[str, None] = {}
    for point, spec in desired.attachments.items():
        info = current.get(point)
        if info is None or info.stale:
            try:
                interfaces.interface_index(point.ifname)
            except PingkillerError:
                missing[point.ifname] = None
                continue
        if info is not None and not info.stale and info.outdated:
            steps.append(_upgrade_step(info, spec))
            if info.policy is None:
                continue  # unreadable until upgraded: reconcile plans the rest afterwards
        if info is None:
            steps.append(Step(point, StepAction.ATTACH, spec=spec))
        elif info.stale or info.policy is None:
            steps.append(Step(point, StepAction.REATTACH,
                              f"the attachment is stale: {info.problem}", spec))
        elif point.hook is Hook.XDP and spec.mode != XdpMode.AUTO and info.mode != spec.mode:
            steps.append(Step(point, StepAction.REATTACH,
                              f"mode {info.mode.value} -> {spec.mode.value}; the kernel "
                              "cannot change it in place", spec))
        elif (point.hook is Hook.TC and spec.mode in (TcMode.TCX, TcMode.CLSACT)
              and info.clsact != (spec.mode is TcMode.CLSACT)):
            steps.append(Step(point, StepAction.REATTACH,
                              f"mode {info.mode_text} -> {spec.mode.value}: a tcx link "
                              "and a clsact filter are attached differently", spec))
        else:
            step = _update(info, spec)
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


def _upgrade_step(info: AttachmentInfo, spec: AttachmentSpec) -> Step:
    """Upgrade an attachment that runs another program than the installed one; pins of an
    ABI this build cannot adopt stop the plan (IncompatiblePins names the fix)."""
    if info.abi_version not in abi.ADOPTABLE_ABI_VERSIONS:
        raise IncompatiblePins(killer.abi_problem(info.point, info.abi_version))
    running = info.program[:12] or "unrecorded"
    return Step(info.point, StepAction.UPGRADE, spec=spec,
                reason=f"it runs program {running} (ABI {info.abi_version}), not the installed one")


def _update(info: AttachmentInfo, spec: AttachmentSpec) -> Step | None:
    running = {rule.network: rule.action for rule in info.rules}
    add = {n: a for n, a in spec.rules.items() if running.get(n) != a}
    remove = tuple(n for n in running if n not in spec.rules)
    policy_from = info.policy if info.policy != spec.policy else None
    if not (add or remove or policy_from):
        return None
    return Step(info.point, StepAction.UPDATE, spec=spec, policy_from=policy_from, add=add,
                remove=remove)


def apply(changes: Plan, log: Callable[[str], None] | None = None) -> None:
    """Carry out a plan, step by step (each step is logged before it runs)."""
    for step in changes.steps:
        if log is not None:
            log(step.describe())
        _apply_step(step)


def _apply_step(step: Step) -> None:
    point = step.point
    if step.action is StepAction.UPGRADE:
        killer.upgrade(point.ifname, hook=point.hook, direction=point.direction)
        return
    if step.action in (StepAction.DETACH, StepAction.REATTACH):
        killer.detach(point.ifname, hook=point.hook, direction=point.direction)
    if step.action is StepAction.DETACH:
        return
    spec = step.spec
    assert spec is not None
    if step.action in (StepAction.ATTACH, StepAction.REATTACH):
        killer.attach(
            spec.ifname,
            spec.policy,
            hook=spec.hook,
            direction=spec.direction,
            block=spec.networks(RuleAction.BLOCK),
            allow=spec.networks(RuleAction.ALLOW),
            mode=spec.mode,
        ).close()
        return
    with killer.open_attachment(point.ifname, hook=point.hook,
                                direction=point.direction) as attachment:
        # New and changed rules first, then the settings, then stale rules go:
        # a rule that is kept is never missing.
        attachment.block([n for n, a in step.add.items() if a == RuleAction.BLOCK])
        attachment.allow([n for n, a in step.add.items() if a == RuleAction.ALLOW])
        if step.policy_from is not None:
            attachment.set_policy(spec.policy)
        attachment.unblock(step.remove)


def reconcile(path: str | Path, *, dry_run: bool = False,
              log: Callable[[str], None] | None = None) -> Plan:
    """Load, plan and (unless ``dry_run``) apply a policy file; returns the plan.

    Applying is writing: what a killed writer left half done is finished first, so the
    plan starts from what the pins will hold. A dry run only reads.
    """
    desired = load(path)
    if not dry_run:
        killer.recover_interrupted()
    changes = plan(desired)
    if not dry_run:
        changes = _apply_all(changes, desired, log)
    return changes


def _apply_all(changes: Plan, desired: PolicyFile, log: Callable[[str], None] | None) -> Plan:
    """Apply a plan; after upgrades, plan again what they made readable, and apply that."""
    apply(changes, log)
    if not any(step.action is StepAction.UPGRADE for step in changes.steps):
        return changes
    rest = plan(desired)
    apply(rest, log)
    return Plan(changes.source, changes.steps + rest.steps, rest.unchanged)


def watch(path: str | Path, log: Callable[[str], None], *, interval: float = 2.0) -> None:
    """Apply ``path`` now and again whenever its content changes; runs until interrupted.

    Changes are noticed by polling (inode, mtime, size, then a content hash), which also
    sees a Kubernetes ConfigMap's symlink swap. An invalid file is logged and the last
    good state stays until the next edit; a failed apply (e.g. an interface not there
    yet) is retried every interval.
    """
    file = Path(path)
    seen: tuple[int, int, int] | None = (-1, -1, -1)  # differs from any file, and from None
    text: str | None = None
    digest = ""
    pending = False
    last_error = ""
    while True:
        fingerprint = _fingerprint(file)
        if fingerprint != seen:
            seen = fingerprint
            try:
                current = read_text(file)
            except PolicyFileError as err:
                last_error = _log_once(log, str(err), last_error)
            else:
                new_digest = hashlib.sha256(current.encode()).hexdigest()
                if new_digest != digest:
                    text, digest, pending = current, new_digest, True
                    log(f"{untrusted.shown_path(file)}: read (sha256 {digest[:12]})")
        if pending and text is not None:
            try:
                _apply_text(file, text, log)
            except PolicyFileError as err:
                pending = False
                last_error = _log_once(log, str(err), last_error)
            except (PingkillerError, BpfError) as err:
                last_error = _log_once(log, f"{err} (retrying)", last_error)
            else:
                pending = False
                last_error = ""
        time.sleep(interval)


def _fingerprint(file: Path) -> tuple[int, int, int] | None:
    try:
        stat = file.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _apply_text(file: Path, text: str, log: Callable[[str], None]) -> None:
    source = untrusted.shown_path(file)
    desired = parse(text, source=source, base=file.parent)
    for note in killer.recover_interrupted():
        log(note)
    changes = plan(desired)
    if not changes.changed:
        log(f"{source}: running state matches ({len(changes.unchanged)} attachments)")
        return
    changes = _apply_all(changes, desired, log)
    log(f"{source}: applied {len(changes.steps)} change(s)")


def _log_once(log: Callable[[str], None], message: str, last: str) -> str:
    if message != last:
        log(f"error: {message}")
    return message


# -- export


def from_running(running: list[AttachmentInfo] | None = None) -> PolicyFile:
    """The running attachments as a policy file (stale ones are left out); every rule
    in memory (:func:`export_file` streams them)."""
    specs = []
    for info in killer.attachments() if running is None else running:
        policy = _exported_policy(info)
        if policy is None:
            continue
        rules = {rule.network: rule.action for rule in info.rules}
        specs.append(AttachmentSpec(info.ifname, policy, _exported_mode(info), rules, info.hook,
                                    info.direction))
    return policy_file(specs, "<running>")


def _exported_policy(info: AttachmentInfo) -> Policy | None:
    """The policy to export for ``info``; None for a stale attachment (left out)."""
    if info.stale:
        return None
    if info.policy is None:  # filters, but its pins cannot be read (another ABI version)
        raise IncompatiblePins(f"cannot export {info.point.label}: {info.problem}")
    return info.policy


def _exported_mode(info: AttachmentInfo) -> XdpMode | TcMode:
    if info.hook is not Hook.XDP:  # a clsact filter stays one; tcx is what auto makes
        return TcMode.CLSACT if info.clsact else TcMode.AUTO
    return info.mode if info.mode in XDP_MODES.members else XdpMode.AUTO


_HEADER = [
    "# pingkiller policy: apply with `pingkiller apply -f FILE` (docs/operations.md)",
    "",
    "[interfaces]",
]
_RULE_LISTS = (("block", RuleAction.BLOCK), ("allow", RuleAction.ALLOW))


def _table_header(ifname: str, several: bool) -> list[str]:
    """An interface's table header: ``[interfaces.X]`` for its only attachment,
    ``[[interfaces.X]]`` for each of several."""
    name = f"interfaces.{_toml_key(ifname)}"
    return ["", f"[[{name}]]" if several else f"[{name}]"]


def _settings_lines(spec: AttachmentSpec) -> list[str]:
    """An attachment's table after its header, up to its rule lists: where it runs and
    every setting spelled out (the mode at the XDP hook, and at tc unless it is auto)."""
    out = [f"hook = {json.dumps(spec.hook.label)}",
           f"direction = {json.dumps(spec.direction.label)}"]
    out += [f"{key} = {json.dumps(value)}" for key, value in spec.policy.to_json().items()]
    if spec.hook is Hook.XDP or spec.mode is not TcMode.AUTO:
        out.append(f"mode = {json.dumps(spec.mode.value)}")
    return out


def _by_interface(specs: Iterable[_T], ifname: Callable[[_T], str]) -> Iterator[list[_T]]:
    """Runs of consecutive items of one interface."""
    run: list[_T] = []
    for item in specs:
        if run and ifname(run[0]) != ifname(item):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def dump(policy: PolicyFile) -> str:
    """A policy file as TOML text that :func:`parse` reads back to the same value: by
    interface name, an interface's attachments XDP first, then tc in and out."""
    out = list(_HEADER)
    ordered = sorted(policy.attachments.values(), key=lambda spec: spec.point)
    for specs in _by_interface(ordered, lambda spec: spec.ifname):
        for spec in specs:
            out += _table_header(spec.ifname, len(specs) > 1)
            out += _settings_lines(spec)
            for key, action in _RULE_LISTS:
                networks = spec.networks(action)
                if networks:
                    out.append(f"{key} = [")
                    out += [f"    {json.dumps(format_network(n))}," for n in networks]
                    out.append("]")
    return "\n".join(out) + "\n"


def export(running: list[AttachmentInfo] | None = None) -> str:
    """The running state as policy-file text (round trip: applying it changes nothing)."""
    if running is not None:
        return dump(from_running(running))
    with export_file() as text:
        return text.read()


# Text an export keeps in memory before its temporary file goes to disk ($TMPDIR).
_SPOOL_MEMORY = 4 << 20


def _spool() -> IO[str]:
    return tempfile.SpooledTemporaryFile(_SPOOL_MEMORY, mode="w+", encoding="utf-8")


def export_file() -> IO[str]:
    """:func:`export`'s text of the running state in a temporary file, rewound: built
    one batch of rules at a time (memory: a batch, and up to a few MB of text before the
    file spills to $TMPDIR), so a million rules need not fit in memory. The same text
    as :func:`dump` of :func:`from_running`; an error raises before anything is
    returned (no partial text).

    Whether an interface's header is ``[interfaces.X]`` or ``[[interfaces.X]]`` depends
    on how many of its attachments are exported, known only once the last one is read,
    so each attachment's table goes to a spool of its own until then (attachments come
    by interface, :func:`pingkiller.killer.each_attachment`'s order)."""
    text = _spool()
    try:
        text.write("\n".join(_HEADER) + "\n")
        tables: list[tuple[str, IO[str]]] = []  # the current interface's: (ifname, body)
        try:
            for found in killer.each_attachment():
                info = found if isinstance(found, AttachmentInfo) else found.info(with_rules=False)
                policy = _exported_policy(info)
                if policy is None:
                    continue
                assert isinstance(found, killer.Attachment)  # its pins were read: it has a policy
                if tables and tables[0][0] != info.ifname:
                    _write_tables(text, tables)
                body = _spool()
                tables.append((info.ifname, body))
                spec = AttachmentSpec(info.ifname, policy, _exported_mode(info), {}, info.hook,
                                      info.direction)
                body.write("\n".join(_settings_lines(spec)) + "\n")
                _write_rule_lists(body, found)
            _write_tables(text, tables)
        finally:
            for _, body in tables:
                body.close()
        text.seek(0)
    except BaseException:
        text.close()
        raise
    return text


def _write_tables(out: IO[str], tables: list[tuple[str, IO[str]]]) -> None:
    """One interface's tables, each with its header, to ``out``; closes and forgets them."""
    for ifname, body in tables:
        out.write("\n".join(_table_header(ifname, len(tables) > 1)) + "\n")
        body.seek(0)
        shutil.copyfileobj(body, out)
        body.close()
    tables.clear()


def _write_rule_lists(out: IO[str], attachment: killer.Attachment) -> None:
    """``block = [...]`` and ``allow = [...]`` (each only if it has rules) from one pass
    over the rules: block lines go straight to ``out``, allow lines to a spool until
    block's list is closed."""
    with _spool() as allow:
        blocked = allowed = 0
        for batch in attachment.rule_entries():
            block_lines = [f'    "{rule.address}",\n' for rule in batch
                           if rule.action == RuleAction.BLOCK]
            if block_lines and not blocked:
                out.write("block = [\n")
            out.writelines(block_lines)
            blocked += len(block_lines)
            allow_lines = [f'    "{rule.address}",\n' for rule in batch
                           if rule.action == RuleAction.ALLOW]
            allow.writelines(allow_lines)
            allowed += len(allow_lines)
        if blocked:
            out.write("]\n")
        if allowed:
            out.write("allow = [\n")
            allow.seek(0)
            shutil.copyfileobj(allow, out)
            out.write("]\n")


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)
