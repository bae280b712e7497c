"""Policy values: addresses and prefixes, rules, the per-attachment settings, rule files,
and the words users type and read for each setting (one vocabulary per enum).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Generator, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from pingkiller import abi
from pingkiller.abi import DefaultAction, EventsMode, IcmpSet, Network, RuleAction
from pingkiller.bpf import XdpMode
from pingkiller.errors import InvalidAddress, InvalidInput, RuleFileError
from pingkiller.untrusted import RULE_FILE, looks_like_address, quote, quote_path, read_lines, shown_path

_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

E = TypeVar("E", bound=enum.Enum)


class Vocabulary(Generic[E]):
    """The words for one enum's members, the same everywhere: CLI options, policy files,
    ``--json`` output and ``Policy.to_json``. The order of the words is the order shown."""

    def __init__(self, words: dict[str, E]) -> None:
        self._members = dict(words)
        self._words = {member: word for word, member in words.items()}

    @property
    def words(self) -> list[str]:
        return list(self._members)

    @property
    def members(self) -> list[E]:
        return list(self._words)

    def word(self, member: E) -> str:
        """The word for ``member`` (KeyError for a member that has none)."""
        return self._words[member]

    def parse(self, text: str) -> E:
        """The member ``text`` names (any case); InvalidInput listing the words otherwise."""
        try:
            return self._members[text.lower()]
        except KeyError:
            raise InvalidInput(f"{quote(text)} is not one of {', '.join(self.words)}") from None

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text.lower() in self._members


DEFAULT_ACTIONS = Vocabulary({"drop": DefaultAction.DROP, "pass": DefaultAction.PASS})
ICMP_SETS = Vocabulary({"echo": IcmpSet.ECHO, "echo-request": IcmpSet.ECHO_REQUEST,
                        "all": IcmpSet.ALL})
EVENT_MODES = Vocabulary({"off": EventsMode.OFF, "drops": EventsMode.DROPS,
                          "pings": EventsMode.PINGS, "all": EventsMode.ALL})
RULE_ACTIONS = Vocabulary({"block": RuleAction.BLOCK, "allow": RuleAction.ALLOW})
# The modes one can ask for; an attachment reports the mode in effect as XdpMode.value,
# which may also be "none" (stale) or "offload".
XDP_MODES = Vocabulary({"auto": XdpMode.AUTO, "native": XdpMode.NATIVE,
                        "generic": XdpMode.GENERIC})


def default_action(*, blocking: bool) -> DefaultAction:
    """What pings no rule decides get when the caller does not say: DROP without block
    rules (kill every ping), PASS with them (kill only the listed pings)."""
    return DefaultAction.PASS if blocking else DefaultAction.DROP


_LONGEST_NETWORK = 64  # ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128 is 49


def parse_network(text: str) -> Network:
    """An address or prefix as a network; IPv4-mapped IPv6 becomes IPv4.

    Raises InvalidAddress naming the problem, e.g. host bits set in a prefix; it
    quotes the text sanitized and cut short (:func:`pingkiller.untrusted.quote`).
    """
    cleaned = text.strip()
    if not cleaned:
        raise InvalidAddress("empty address: give an IPv4/IPv6 address or prefix, e.g. 192.0.2.7")
    if "%" in cleaned and len(cleaned) <= _LONGEST_NETWORK:
        raise InvalidAddress(
            f"{quote(cleaned)} has a zone id: rules match addresses on every interface, drop the %zone"
        )
    try:
        if len(cleaned) > _LONGEST_NETWORK:
            raise ValueError("too long")
        network = ipaddress.ip_network(cleaned, strict=True)
    except ValueError as err:
        if "host bits set" in str(err):
            loose = ipaddress.ip_network(cleaned, strict=False)
            raise InvalidAddress(
                f"{quote(cleaned)} has host bits set: did you mean {loose} (or the address alone)?"
            ) from None
        raise InvalidAddress(
            f"{quote(cleaned)} is not an IPv4/IPv6 address or prefix "
            "(e.g. 192.168.1.78, 10.0.0.0/8, 2001:db8::/32)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_V4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_networks(texts: Iterable[str]) -> list[Network]:
    """Parse many; the first bad one raises."""
    return [parse_network(text) for text in texts]


def format_network(network: Network) -> str:
    """``192.0.2.7`` for a host, ``10.0.0.0/8`` for a prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


@dataclass(frozen=True)
class Rule:
    """One rule: a network and what to do with pings from or to it."""

    network: Network
    action: RuleAction
    hits: int = 0

    @property
    def address(self) -> str:
        return format_network(self.network)

    def to_json(self) -> dict[str, object]:
        return {"address": self.address, "action": RULE_ACTIONS.word(self.action), "hits": self.hits}


@dataclass(frozen=True)
class Policy:
    """What an attachment does with pings that no rule decides, and what it reports.

    ``default`` is what happens to a ping no rule decides; ``icmp`` which ICMP messages
    count as pings; ``all_protocols`` makes block rules drop every protocol; ``events``
    and ``event_rate`` (per second per CPU, 0 = unlimited) which packets send an event;
    ``timing`` measures per-verdict processing time. The rules themselves are not part
    of it (see :func:`pingkiller.attach` and :class:`pingkiller.Attachment`).
    """

    default: DefaultAction = DefaultAction.PASS
    icmp: IcmpSet = IcmpSet.ECHO
    all_protocols: bool = False
    events: EventsMode = EventsMode.DROPS
    event_rate: int = abi.DEFAULT_EVENT_RATE
    timing: bool = False

    def __post_init__(self) -> None:
        if self.event_rate < 0:
            raise InvalidInput(f"event rate {self.event_rate} is negative: use 0 for unlimited")
        if self.event_rate > 0xFFFFFFFF:
            raise InvalidInput(f"event rate {self.event_rate} is too large (max {0xFFFFFFFF})")

    def to_config(self, prefix_flags: abi.ConfigFlag = abi.NO_FLAGS) -> abi.Config:
        flags = prefix_flags
        if self.all_protocols:
            flags |= abi.ConfigFlag.ALL_PROTOCOLS
        if self.timing:
            flags |= abi.ConfigFlag.TIMING
        return abi.Config(self.default, self.icmp, self.events, self.event_rate, flags)

    @classmethod
    def from_config(cls, config: abi.Config) -> Policy:
        return cls(
            default=config.default_action,
            icmp=config.icmp_set,
            all_protocols=bool(config.flags & abi.ConfigFlag.ALL_PROTOCOLS),
            events=config.events,
            event_rate=config.event_rate,
            timing=bool(config.flags & abi.ConfigFlag.TIMING),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "default": DEFAULT_ACTIONS.word(self.default),
            "icmp": ICMP_SETS.word(self.icmp),
            "all_protocols": self.all_protocols,
            "events": EVENT_MODES.word(self.events),
            "event_rate": self.event_rate,
            "timing": self.timing,
        }

    def describe(self) -> str:
        """One line for humans, e.g. ``drop every ping (echo) by default``."""
        what = {
            IcmpSet.ECHO: "pings (echo request/reply)",
            IcmpSet.ECHO_REQUEST: "echo requests",
            IcmpSet.ALL: "all ICMP but IPv6 neighbour discovery",
        }[self.icmp]
        verb = "drop" if self.default == DefaultAction.DROP else "pass"
        text = f"{verb} {what} that no rule decides"
        if self.all_protocols:
            text += "; block rules drop every protocol"
        return text


def rule_file_blocks(path: str | Path) -> Generator[tuple[int, list[str]], None, None]:
    """A rule file's lines a block at a time, as (first line number, lines): a regular
    UTF-8 file within the rule file size limit (:data:`pingkiller.untrusted.RULE_FILE`);
    RuleFileError otherwise."""
    return read_lines(RULE_FILE, path)


def parse_rule_line(path: str | Path, number: int, line: str) -> Network | None:
    """The address or prefix on line ``number`` of a rule file: its first word, before
    a ``#`` or ``;`` comment; None for a blank or comment line.

    RuleFileError names file, line and column; it quotes the word (sanitized, cut
    short) only if the word looks like an address, so no other file content is shown.
    """
    words = line.split("#", 1)[0].split(";", 1)[0].split(None, 1)
    if not words:
        return None
    try:
        return parse_network(words[0])
    except InvalidAddress as err:
        raise rule_line_error(path, number, line.index(words[0]) + 1, words[0], err) from None


def rule_line_error(path: str | Path, number: int, column: int, word: str,
                    err: InvalidAddress) -> RuleFileError:
    """The error for a bad word on a rule file line (see :func:`parse_rule_line`)."""
    where = f"{shown_path(path)}:{number}:{column}"
    if looks_like_address(word):
        return RuleFileError(f"{where}: {err}")
    return RuleFileError(f"{where}: not an IPv4/IPv6 address or prefix (the text is not shown: "
                         "it does not look like one)")


def no_rules_error(path: str | Path) -> RuleFileError:
    return RuleFileError(f"rule file {quote_path(path)} holds no address or prefix")


def read_rule_file(path: str | Path) -> list[Network]:
    """Addresses/prefixes from a blocklist file: one per line, ``#`` or ``;`` starts a comment.

    Errors name the file and line (see :func:`parse_rule_line`). An empty file (no
    rules at all) is an error too. The file is read a block at a time.
    """
    networks: list[Network] = []
    with closing(rule_file_blocks(path)) as blocks:  # closes the file also on an error
        for first, lines in blocks:
            for number, line in enumerate(lines, first):
                network = parse_rule_line(path, number, line)
                if network is not None:
                    networks.append(network)
    if not networks:
        raise no_rules_error(path)
    return networks
