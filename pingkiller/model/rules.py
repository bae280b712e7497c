"""Rules as values: one rule as listed (:class:`Rule`), the networks a change names
(:class:`RuleSet`), and the one reader of rule files (:func:`read_rule_file`)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import InvalidAddress, RuleFileError
from pingkiller.model.limits import Limit
from pingkiller.model.network import (
    Network,
    NetworkLike,
    format_network,
    is_exact,
    parse_network,
    parse_networks,
)
from pingkiller.model.untrusted import (
    RULE_FILE,
    looks_like_address,
    quote_path,
    read_lines,
    shown_path,
)


class Rule(NamedTuple):
    """One rule: an address or prefix as text (``192.0.2.7``, ``10.0.0.0/8``:
    :func:`~pingkiller.model.network.format_network`'s form), what it does with pings
    from or to it (a limit rule: at which ``limit``), and how many packets it decided.
    Cheap to make: the :class:`~ipaddress.IPv4Network` is made only when
    :attr:`network` is asked for."""

    address: str
    action: RuleAction
    hits: int = 0
    limit: Limit | None = None

    @property
    def network(self) -> Network:
        return parse_network(self.address)

    @classmethod
    def of(cls, network: Network, action: RuleAction, hits: int = 0,
           limit: Limit | None = None) -> Rule:
        return cls(format_network(network), action, hits, limit)


@dataclass
class RuleSet:
    """The networks a rule change names, ready to encode: exact IPv4 and IPv6 addresses
    packed (``exact_v4``, ``exact_v6``), prefixes as networks; ``requested`` counts what
    was given, duplicates included. :meth:`unique` drops duplicates, keeping the order.

    Make one with :meth:`of` (addresses and prefixes as text or ``ipaddress`` objects,
    normalised like :func:`~pingkiller.model.network.parse_network`) or
    :func:`read_rule_file`, and add them up with ``+``."""

    exact_v4: list[bytes] = field(default_factory=list)
    exact_v6: list[bytes] = field(default_factory=list)
    prefixes: list[Network] = field(default_factory=list)
    requested: int = 0

    @classmethod
    def of(cls, values: Iterable[NetworkLike]) -> RuleSet:
        made = cls()
        for network in parse_networks(values):
            made.add(network)
        return made.unique()

    def add(self, network: Network) -> None:
        self.requested += 1
        if not is_exact(network):
            self.prefixes.append(network)
        elif network.version == 4:
            self.exact_v4.append(network.network_address.packed)
        else:
            self.exact_v6.append(network.network_address.packed)

    def unique(self) -> RuleSet:
        """This set without duplicates (first occurrences kept, in order)."""
        return RuleSet(_unique(self.exact_v4), _unique(self.exact_v6), _unique(self.prefixes),
                       self.requested)

    def networks(self) -> Iterator[Network]:
        """Every network, exact IPv4 first, then exact IPv6, then prefixes."""
        yield from map(ipaddress.IPv4Network, self.exact_v4)
        yield from map(ipaddress.IPv6Network, self.exact_v6)
        yield from self.prefixes

    def __len__(self) -> int:
        """How many networks it holds (duplicates included unless made unique)."""
        return len(self.exact_v4) + len(self.exact_v6) + len(self.prefixes)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.exact_v4 + other.exact_v4, self.exact_v6 + other.exact_v6,
                       self.prefixes + other.prefixes, self.requested + other.requested).unique()


H = TypeVar("H", bytes, Network)


def _unique(items: list[H]) -> list[H]:
    deduplicated = list(dict.fromkeys(items))
    return items if len(deduplicated) == len(items) else deduplicated


def read_rule_file(path: str | Path) -> RuleSet:
    """The rules of a rule file: one address or prefix per line (its first word), ``#``
    or ``;`` starts a comment, blank lines are skipped; a regular UTF-8 file within the
    rule file size limit (:data:`pingkiller.model.untrusted.RULE_FILE`).

    Read a block of lines at a time, so memory follows the rules, not the file. A block
    whose every non-blank line is a bare IPv4 address is packed straight from the text
    with inet_pton (it accepts exactly the dotted quads ``ipaddress`` accepts); other
    lines go through :func:`~pingkiller.model.network.parse_network`, so the rules and
    the errors are the same either way. RuleFileError names file, line and column, and
    quotes the word only if it looks like an address; a file with no rule is an error.
    """
    rules = RuleSet()
    pton, inet = socket.inet_pton, socket.AF_INET
    with closing(read_lines(RULE_FILE, path)) as blocks:  # closes the file also on an error
        for first, lines in blocks:
            entries = [entry for line in lines if (entry := line.strip())]
            try:
                rules.exact_v4 += [pton(inet, entry) for entry in entries]
            except (OSError, ValueError):
                pass  # not all bare addresses: line by line
            else:
                rules.requested += len(entries)
                continue
            for number, line in enumerate(lines, first):
                word = line.split("#", 1)[0].split(";", 1)[0].split(None, 1)
                if not word:
                    continue
                try:  # a bare IPv4 address (the common case), packed without ipaddress
                    rules.exact_v4.append(pton(inet, word[0]))
                    rules.requested += 1
                    continue
                except (OSError, ValueError):
                    pass
                rules.add(_word_network(path, number, line, word[0]))
    if not rules.requested:
        raise RuleFileError(f"rule file {quote_path(path)} holds no address or prefix")
    return rules.unique()


def _word_network(path: str | Path, number: int, line: str, word: str) -> Network:
    """The network ``word`` (the first of line ``number``) names."""
    try:
        return parse_network(word)
    except InvalidAddress as err:
        where = f"{shown_path(path)}:{number}:{line.index(word) + 1}"
        if looks_like_address(word):
            raise RuleFileError(f"{where}: {err}") from None
        raise RuleFileError(f"{where}: not an IPv4/IPv6 address or prefix (the text is not "
                            "shown: it does not look like one)") from None
