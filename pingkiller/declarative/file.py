"""The policy file: read and validate it (:func:`parse`, :func:`load`), write it (:func:`dump`).

A policy file is TOML, one table per interface (docs/operations.md has the reference)::

    [interfaces.eth0]
    default = "pass"              # drop | pass | limit (default: drop without block rules)
    icmp = "echo"                 # echo | echo-request | all, or a list: ["echo", "timestamp"]
    limit = "10/s"                # pings no rule decides, per source (default = "limit")
    block = ["198.18.0.7", "2001:db8::/32"]
    allow = ["10.0.0.0/8"]
    rule_files = ["blocklist.txt"]  # more block rules, paths relative to this file

    [[interfaces.eth0.limit_rules]]   # limit rules: one table per rate
    rate = "600/min"
    burst = 20                    # optional: the rate's per-second figure
    addresses = ["203.0.113.0/24"]
    rule_files = ["monitoring.txt"]

A table is one attachment: at the interface's XDP hook unless it says ``hook = "tc"``
(then ``direction = "in"``, ``"out"`` or ``"both"``, two attachments with the same
settings). An interface with several attachments, each with settings and rules of its
own, lists them as an array of tables, ``[[interfaces.eth0]]`` once per attachment.
A file with any error is rejected whole: :class:`~pingkiller.PolicyFileError` names
each problem by line, table and key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pingkiller.model import untrusted
from pingkiller.model.enums import DefaultAction, Direction, Hook, Mode, RuleAction
from pingkiller.model.errors import PingkillerError, PolicyFileError
from pingkiller.model.icmp import HELP as ICMP_HELP
from pingkiller.model.icmp import IcmpTypes
from pingkiller.model.limits import Limit
from pingkiller.model.network import Network, format_network, parse_network
from pingkiller.model.point import Point, validate_ifname
from pingkiller.model.policy import (
    DEFAULT_BUCKETS,
    DEFAULT_EVENT_RATE,
    DEFAULT_PREFIX6,
    MAX_BUCKETS,
    MAX_EVENT_RATE,
    MIN_BUCKETS,
    Policy,
    default_action,
)
from pingkiller.model.rules import read_rule_file
from pingkiller.model.words import DEFAULT_ACTIONS, DIRECTIONS, EVENT_MODES, HOOKS, MODES

# The file's word for both tc directions: two attachments with the same settings.
BOTH = "both"
_DIRECTIONS = {**{word: (DIRECTIONS.parse(word),) for word in DIRECTIONS.words},
               BOTH: (Direction.IN, Direction.OUT)}
_CHOICES: dict[str, list[str]] = {
    "hook": HOOKS.words,
    "direction": list(_DIRECTIONS),
    "default": DEFAULT_ACTIONS.words,
    "events": EVENT_MODES.words,
    "mode": MODES.words,
}
_BOOLS = ("all_protocols", "timing")
_LISTS = ("block", "allow", "rule_files")
# Rates and their bursts, as attach's options: (rate key, burst key).
_LIMITS = (("limit", "burst"), ("limit_total", "limit_total_burst"))
# Whole numbers in a range, with their default.
_NUMBERS = {"limit_prefix6": (1, 128, DEFAULT_PREFIX6),
            "limit_buckets": (MIN_BUCKETS, MAX_BUCKETS, DEFAULT_BUCKETS)}
KEYS = (*_CHOICES, "icmp", *_BOOLS, "event_rate", *(key for pair in _LIMITS for key in pair),
        *_NUMBERS, *_LISTS, "limit_rules")
# The keys of a limit_rules table.
LIMIT_RULE_KEYS = ("rate", "burst", "addresses", "rule_files")
_MAX_PROBLEMS = 5
_LOCATED = 50  # problems located by line (each is a search); the rest are counted
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_RULE_LISTS = (("block", RuleAction.BLOCK), ("allow", RuleAction.ALLOW))


@dataclass(frozen=True)
class AttachmentSpec:
    """What one attachment should be: where it runs, its settings, mode and rules.

    ``mode`` is how to hold the hook: AUTO (whatever the kernel chooses, and whatever
    runs), NATIVE or GENERIC at XDP, TCX or CLSACT at tc."""

    ifname: str
    policy: Policy
    mode: Mode = Mode.AUTO
    rules: dict[Network, RuleAction] = field(default_factory=dict)
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN
    limits: dict[Network, Limit] = field(default_factory=dict)  # of every LIMIT rule

    @property
    def point(self) -> Point:
        return Point(self.ifname, self.hook, self.direction)

    def networks(self, action: RuleAction) -> list[Network]:
        return [network for network, act in self.rules.items() if act == action]

    def limited(self) -> dict[Limit, list[Network]]:
        """The limit rules by limit, in :func:`limit_order`."""
        found: dict[Limit, list[Network]] = {}
        for network in self.networks(RuleAction.LIMIT):
            found.setdefault(self.limits[network], []).append(network)
        return {limit: found[limit] for limit in sorted(found, key=limit_order)}


def limit_order(limit: Limit) -> tuple[int, int, str]:
    """The order limit rules are written in: by rate (fastest first), then burst."""
    return (limit.rate.interval_ns, limit.burst, str(limit))


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


Setting = str | int | bool | list[str] | None


def policy_settings(policy: Policy) -> dict[str, Setting]:
    """A policy's settings as the file spells them, in the file's order (None: not
    written; limit_prefix6 and limit_buckets only where a limit or their value says)."""
    icmp = policy.icmp_types
    limited = policy.limit is not None or policy.limit_total is not None
    settings: dict[str, Setting] = {
        "default": DEFAULT_ACTIONS.word(policy.default),
        "icmp": str(icmp) if len(icmp.words()) == 1 else icmp.words(),
        "all_protocols": policy.all_protocols,
        "events": EVENT_MODES.word(policy.events),
        "event_rate": policy.event_rate,
        "timing": policy.timing,
    }
    for (rate_key, burst_key), limit in zip(_LIMITS, (policy.limit, policy.limit_total),
                                            strict=True):
        settings[rate_key] = str(limit.rate) if limit else None
        settings[burst_key] = limit.burst if limit else None
    for key, value in (("limit_prefix6", policy.limit_prefix6),
                       ("limit_buckets", policy.limit_buckets)):
        settings[key] = value if limited or value != _NUMBERS[key][2] else None
    return settings


# -- reading


@dataclass(frozen=True)
class _Where:
    """Which table of the file a problem is in: ``[interfaces.IFNAME]``, or the
    ``entry``-th (from 0) ``[[interfaces.IFNAME]]`` of an interface listed as an array."""

    ifname: str
    entry: int | None = None
    part: str = ""  # within the table: e.g. "limit_rules #2"

    @property
    def shown(self) -> str:
        part = f" {self.part}" if self.part else ""
        if self.entry is None:
            return f"[interfaces.{_shown_key(self.ifname)}]{part}"
        return f"[[interfaces.{_shown_key(self.ifname)}]] #{self.entry + 1}{part}"


class _Problems:
    """Collects every error of a file, each located by line (when found), table and key."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.found: list[tuple[int, str]] = []
        self.listed_keys = False  # an unknown key's problem listed the known ones

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
    (:data:`pingkiller.model.untrusted.POLICY_FILE`); PolicyFileError otherwise."""
    return untrusted.read_text(untrusted.POLICY_FILE, file)


_TOML_ERROR = re.compile(r"(.*) \((at line \d+, column \d+|at end of document)\)", re.DOTALL)


def parse(text: str, *, source: str = "<policy>", base: Path | None = None) -> PolicyFile:
    """Validate a policy file's text; rule_files are read relative to ``base``.

    Nesting deeper than :data:`pingkiller.model.untrusted.MAX_TOML_DEPTH` and strings or
    tokens longer than :data:`~pingkiller.model.untrusted.MAX_TOML_TOKEN` are refused
    before the text is parsed; errors quote at most a short, sanitized part of the text.
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
        validate_ifname(ifname)
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
            # The keys are listed once: five problems are shown.
            known = "" if problems.listed_keys else f"; known: {', '.join(KEYS)}"
            problems.listed_keys = True
            problems.add(where, key, f"unknown key{hint}{known}")

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
    hook = HOOKS.parse(chosen.get("hook", "xdp"))
    direction = chosen.get("direction", "in")
    if hook is Hook.XDP and direction != "in":
        problems.add(where, "direction", f"{direction!r} needs hook = \"tc\": XDP sees only "
                                         "packets that arrive (add hook = \"tc\", or remove "
                                         "direction)")
    mode = MODES.parse(chosen.get("mode", "auto"))
    if hook is Hook.TC and mode.hook is Hook.XDP:
        problems.add(where, "mode", f"{mode.value!r} is an XDP mode: it needs hook = "
                                    "\"xdp\" (a tc attachment's mode is \"tcx\", "
                                    "\"clsact\" or \"auto\")")
    if hook is Hook.XDP and mode.hook is Hook.TC:
        problems.add(where, "mode", f"{mode.value!r} is a tc mode: it needs hook = \"tc\" "
                                    "(an XDP attachment's mode is \"native\", \"generic\" "
                                    "or \"auto\")")
    flags: dict[str, bool] = {}
    for key in _BOOLS:
        value = table.get(key, False)
        if isinstance(value, bool):
            flags[key] = value
        else:
            problems.add(where, key, f"{untrusted.describe_value(value)} is not true or false")
    event_rate = table.get("event_rate", DEFAULT_EVENT_RATE)
    if isinstance(event_rate, bool) or not isinstance(event_rate, int):
        problems.add(where, "event_rate",
                     f"{untrusted.describe_value(event_rate)} is not a whole number (0 = unlimited)")
    elif not 0 <= event_rate <= MAX_EVENT_RATE:
        problems.add(where, "event_rate", f"{event_rate} is out of range 0..{MAX_EVENT_RATE}")

    icmp = _icmp(where, table.get("icmp", "echo"), problems)
    rates = [_limit(where, table, rate_key, burst_key, problems) for rate_key, burst_key in _LIMITS]
    numbers = {key: _number(where, table, key, problems) for key in _NUMBERS}
    if rates[0] is not None and chosen.get("default", "limit") != "limit":
        problems.add(where, "limit", f"is the rate of default = \"limit\", not of "
                                     f"{chosen['default']!r}: remove one")
    if rates[0] is None and chosen.get("default") == "limit":
        problems.add(where, "default", "\"limit\" needs a rate: add limit = \"10/s\" (say)")
    rules, limits = _parse_rules(where, table, problems, base)
    if len(problems.found) > before:
        return []
    assert isinstance(event_rate, int) and icmp is not None
    if "default" in chosen:
        default = DEFAULT_ACTIONS.parse(chosen["default"])
    elif rates[0] is not None:
        default = DefaultAction.LIMIT
    else:  # as attach does: kill every ping unless block rules say which
        default = default_action(blocking=RuleAction.BLOCK in rules.values())
    policy = Policy(
        default=default,
        icmp=icmp,
        all_protocols=flags["all_protocols"],
        events=EVENT_MODES.parse(chosen.get("events", "drops")),
        event_rate=event_rate,
        timing=flags["timing"],
        limit=rates[0],
        limit_total=rates[1],
        limit_prefix6=numbers["limit_prefix6"],
        limit_buckets=numbers["limit_buckets"],
    )
    return [AttachmentSpec(where.ifname, policy, mode, rules, hook, each, limits)
            for each in _DIRECTIONS[direction]]


def _icmp(where: _Where, value: object, problems: _Problems) -> IcmpTypes | None:
    """``icmp``: a string (one word, or a comma list) or a list of words."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        problems.add(where, "icmp", f"{untrusted.describe_value(value)} is not a list of ICMP "
                                    f"types: use {ICMP_HELP}")
        return None
    try:
        return IcmpTypes.parse(value)
    except PingkillerError as err:
        problems.add(where, "icmp", str(err))
        return None


def _limit(where: _Where, table: dict[str, object], rate_key: str, burst_key: str,
           problems: _Problems) -> Limit | None:
    """A rate key (text such as "10/s") and its burst (a whole number, optional)."""
    rate, burst = table.get(rate_key), table.get(burst_key)
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
        problems.add(where, burst_key, f"{untrusted.describe_value(burst)} is not a whole number")
        return None
    if rate is None:
        if burst is not None:
            problems.add(where, burst_key, f"is the burst of {rate_key}: add {rate_key} = \"10/s\" "
                                           "(say)")
        return None
    if not isinstance(rate, str):
        problems.add(where, rate_key, f"{untrusted.describe_value(rate)} is not a rate such "
                                      "as \"10/s\" or \"600/min\"")
        return None
    try:
        return Limit.of(rate, burst)
    except PingkillerError as err:
        problems.add(where, rate_key if burst is None or "rate" in str(err) else burst_key, str(err))
        return None


def _number(where: _Where, table: dict[str, object], key: str, problems: _Problems) -> int:
    low, high, default = _NUMBERS[key]
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(where, key, f"{untrusted.describe_value(value)} is not a whole number "
                                 f"from {low} to {high}")
        return default
    return value


def _string_list(where: _Where, key: str, table: dict[str, object], problems: _Problems) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.add(where, key, "must be a list of strings, e.g. [\"198.18.0.7\", \"10.0.0.0/8\"]")
        return []
    return [str(item) for item in value]


def _networks(where: _Where, key: str, table: dict[str, object], problems: _Problems
              ) -> list[Network]:
    networks = []
    for text in _string_list(where, key, table, problems):
        try:
            networks.append(parse_network(text))
        except PingkillerError as err:
            problems.add(where, key, str(err))
    return networks


def _file_networks(where: _Where, key: str, table: dict[str, object], problems: _Problems,
                   base: Path) -> list[Network]:
    """The networks of the rule files ``table[key]`` names (relative to ``base``)."""
    networks: list[Network] = []
    for name in _string_list(where, key, table, problems):
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            networks += read_rule_file(path).networks()
        except PingkillerError as err:
            problems.add(where, key, str(err))
    return networks


def _parse_rules(
    where: _Where, table: dict[str, object], problems: _Problems, base: Path
) -> tuple[dict[Network, RuleAction], dict[Network, Limit]]:
    rules: dict[Network, RuleAction] = {}
    limits: dict[Network, Limit] = {}
    conflicts: set[Network] = set()
    sources: list[tuple[RuleAction, Limit | None, Iterable[Network]]] = [
        (action, None, _networks(where, key, table, problems)) for key, action in _RULE_LISTS]
    sources.append((RuleAction.BLOCK, None,
                    _file_networks(where, "rule_files", table, problems, base)))
    sources += _parse_limit_rules(where, table.get("limit_rules", []), problems, base)
    for action, limit, found in sources:
        for network in found:
            if network in rules and (rules[network], limits.get(network)) != (action, limit):
                conflicts.add(network)
            rules[network] = action
            if limit is not None:
                limits[network] = limit
    if conflicts:
        listed = ", ".join(sorted(format_network(n) for n in conflicts))
        problems.add(where, "allow", f"{listed} given two rules (block, allow, or limits "
                                     "of different rates): keep one")
    return rules, limits


def _parse_limit_rules(where: _Where, value: object, problems: _Problems, base: Path
                       ) -> list[tuple[RuleAction, Limit | None, Iterable[Network]]]:
    """``limit_rules``: a list of tables, each a rate (and burst) and its networks."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.add(where, "limit_rules", "must be a list of tables such as { rate = "
                                           "\"10/s\", addresses = [\"203.0.113.0/24\"] }")
        return []
    found: list[tuple[RuleAction, Limit | None, Iterable[Network]]] = []
    for number, entry in enumerate(value, 1):
        inner = dataclasses.replace(where, part=f"limit_rules #{number}")
        for key in entry:
            if key not in LIMIT_RULE_KEYS:
                problems.add(inner, key, f"unknown key; known: {', '.join(LIMIT_RULE_KEYS)}")
        if "rate" not in entry:
            problems.add(inner, "rate", "is missing: each limit_rules table needs a rate "
                                        "such as \"10/s\"")
            continue
        limit = _limit(inner, entry, "rate", "burst", problems)
        networks = (_networks(inner, "addresses", entry, problems)
                    + _file_networks(inner, "rule_files", entry, problems, base))
        if limit is not None:
            found.append((RuleAction.LIMIT, limit, networks))
    return found


# -- writing

HEADER = [
    "# pingkiller policy: the attachments to hold, and nothing else (docs/operations.md)",
    "",
    "[interfaces]",
]


def table_header(ifname: str, several: bool) -> list[str]:
    """An interface's table header: ``[interfaces.X]`` for its only attachment,
    ``[[interfaces.X]]`` for each of several."""
    name = f"interfaces.{_toml_key(ifname)}"
    return ["", f"[[{name}]]" if several else f"[{name}]"]


def settings_lines(spec: AttachmentSpec) -> list[str]:
    """An attachment's table after its header, up to its rule lists: where it runs and
    every setting spelled out (the mode at the XDP hook, and at tc unless it is auto)."""
    out = [f"hook = {json.dumps(spec.hook.label)}",
           f"direction = {json.dumps(spec.direction.label)}"]
    out += [f"{key} = {json.dumps(value)}" for key, value in policy_settings(spec.policy).items()
            if value is not None]
    if spec.hook is Hook.XDP or spec.mode is not Mode.AUTO:
        out.append(f"mode = {json.dumps(spec.mode.value)}")
    return out


_T = TypeVar("_T")


def by_interface(items: Iterable[_T], ifname: Callable[[_T], str]) -> Iterator[list[_T]]:
    """Runs of consecutive items of one interface."""
    run: list[_T] = []
    for item in items:
        if run and ifname(run[0]) != ifname(item):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def dump(policy: PolicyFile) -> str:
    """A policy file as TOML text that :func:`parse` reads back to the same value: by
    interface name, an interface's attachments XDP first, then tc in and out."""
    out = list(HEADER)
    ordered = sorted(policy.attachments.values(), key=lambda spec: spec.point)
    for specs in by_interface(ordered, lambda spec: spec.ifname):
        for spec in specs:
            out += table_header(spec.ifname, len(specs) > 1)
            out += settings_lines(spec)
            for key, action in _RULE_LISTS:
                networks = spec.networks(action)
                if networks:
                    out.append(f"{key} = [")
                    out += [f"    {json.dumps(format_network(n))}," for n in networks]
                    out.append("]")
            for limit, networks in spec.limited().items():
                out += limit_rules_header(spec.ifname, limit)
                out += [f"    {json.dumps(format_network(n))}," for n in networks]
                out.append("]")
    return "\n".join(out) + "\n"


def limit_rules_header(ifname: str, limit: Limit) -> list[str]:
    """A limit_rules table up to its addresses' opening bracket."""
    return ["", f"[[interfaces.{_toml_key(ifname)}.limit_rules]]",
            f"rate = {json.dumps(str(limit.rate))}", f"burst = {limit.burst}", "addresses = ["]


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)
