"""Which ICMP and ICMPv6 messages count as pings: a set of types per family, written as
a comma-separated list of words (``echo,timestamp``) or one of the shorthands of
:class:`~pingkiller.model.enums.IcmpSet`. ICMPv6 neighbour discovery (types 133-137)
is never in a set: without it IPv6 stops working."""

from __future__ import annotations

from dataclasses import dataclass

from pingkiller.model.enums import IcmpSet
from pingkiller.model.errors import InvalidInput
from pingkiller.model.untrusted import quote

ICMP_TYPES = range(256)
ND_TYPES = frozenset(range(133, 138))  # router/neighbour solicitation, advertisement, redirect
_ANY_V6 = frozenset(ICMP_TYPES) - ND_TYPES

# Each word: the ICMP types and the ICMPv6 types it names. In the order shown and the
# order a set is written in (the first words that cover a set name it).
WORDS: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    "all": (frozenset(ICMP_TYPES), _ANY_V6),
    "echo": (frozenset({0, 8}), frozenset({128, 129})),
    "echo-request": (frozenset({8}), frozenset({128})),
    "echo-reply": (frozenset({0}), frozenset({129})),
    "timestamp": (frozenset({13, 14}), frozenset()),
    "timestamp-request": (frozenset({13}), frozenset()),
    "timestamp-reply": (frozenset({14}), frozenset()),
    "address-mask": (frozenset({17, 18}), frozenset()),
    "info": (frozenset({15, 16}), frozenset()),
    "unreachable": (frozenset({3}), frozenset({1})),
    "packet-too-big": (frozenset(), frozenset({2})),
    "time-exceeded": (frozenset({11}), frozenset({3})),
    "parameter-problem": (frozenset({12}), frozenset({4})),
    "redirect": (frozenset({5}), frozenset()),
    "source-quench": (frozenset({4}), frozenset()),
    "router": (frozenset({9, 10}), frozenset()),
    "mld": (frozenset(), frozenset({130, 131, 132, 143})),
    "node-info": (frozenset(), frozenset({139, 140})),
}
# The shorthands, which are words too.
SHORTHANDS = {IcmpSet.ECHO: "echo", IcmpSet.ECHO_REQUEST: "echo-request", IcmpSet.ALL: "all"}
_V4_PREFIX, _V6_PREFIX = "icmp:", "icmpv6:"
HELP = ("a comma-separated list of " + ", ".join(WORDS) + f"; {_V4_PREFIX}N or "
        f"{_V6_PREFIX}N for one type number")


@dataclass(frozen=True)
class IcmpTypes:
    """The ICMP types (``v4``) and ICMPv6 types (``v6``) that count as pings."""

    v4: frozenset[int]
    v6: frozenset[int]

    def __post_init__(self) -> None:
        for name, types in (("ICMP", self.v4), ("ICMPv6", self.v6)):
            if not isinstance(types, frozenset) or not types <= frozenset(ICMP_TYPES):
                raise InvalidInput(f"{name} types must be a frozenset of numbers 0-255")
        if self.v6 & ND_TYPES:
            raise InvalidInput("ICMPv6 types 133-137 (neighbour discovery) always pass: "
                               "they cannot count as pings")
        if not self.v4 and not self.v6:
            raise InvalidInput("the set of ICMP types that count as pings is empty")

    @classmethod
    def of(cls, shorthand: IcmpSet) -> IcmpTypes:
        """The types a shorthand names (LIST names none: ValueError)."""
        if shorthand not in SHORTHANDS:
            raise ValueError(f"{shorthand!r} names no set of its own")
        return cls(*WORDS[SHORTHANDS[shorthand]])

    @classmethod
    def parse(cls, text: str) -> IcmpTypes:
        """``echo``, ``echo,timestamp``, ``echo-request,icmp:13``... (see :data:`HELP`)."""
        v4: set[int] = set()
        v6: set[int] = set()
        for written in text.split(","):
            item = written.strip().lower()
            if item in WORDS:
                v4 |= WORDS[item][0]
                v6 |= WORDS[item][1]
            elif item.startswith((_V4_PREFIX, _V6_PREFIX)):
                prefix, _, number = item.partition(":")
                if not (number.isdecimal() and number.isascii() and len(number) <= 3
                        and int(number) < 256):
                    raise InvalidInput(f"{quote(written)}: an ICMP type is a number from 0 to 255")
                if prefix + ":" == _V6_PREFIX and int(number) in ND_TYPES:
                    raise InvalidInput(f"{quote(written)} is neighbour discovery, which always "
                                       "passes: it cannot count as a ping")
                (v6 if prefix + ":" == _V6_PREFIX else v4).add(int(number))
            else:
                raise InvalidInput(f"{quote(written)} is not an ICMP type (known: echo, "
                                   "echo-request, timestamp, unreachable, all... or icmp:N, "
                                   "icmpv6:N)")
        return cls(frozenset(v4), frozenset(v6))

    @classmethod
    def coerce(cls, value: IcmpTypes | IcmpSet | str) -> IcmpTypes:
        """``value`` as IcmpTypes: a shorthand or text turned into its types."""
        if isinstance(value, IcmpSet):
            if value not in SHORTHANDS:
                raise InvalidInput(f"{value.name} names no set of ICMP types: give the types "
                                   "(IcmpTypes.parse(\"echo,timestamp\"))")
            return cls.of(value)
        return cls.parse(value) if isinstance(value, str) else value

    @property
    def shorthand(self) -> IcmpSet:
        """The shorthand these types are, or LIST when they are none of them."""
        for shorthand, word in SHORTHANDS.items():
            if (self.v4, self.v6) == WORDS[word]:
                return shorthand
        return IcmpSet.LIST

    def words(self) -> list[str]:
        """The set written as words: the first words it holds whole, then type numbers."""
        v4, v6 = set(self.v4), set(self.v6)
        words = []
        for word, (types_v4, types_v6) in WORDS.items():
            if (types_v4 or types_v6) and types_v4 <= v4 and types_v6 <= v6 and (
                    types_v4 & v4 or types_v6 & v6):
                words.append(word)
                v4 -= types_v4
                v6 -= types_v6
        words += [f"{_V4_PREFIX}{t}" for t in sorted(v4)] + [f"{_V6_PREFIX}{t}" for t in sorted(v6)]
        return words

    def bitmap(self, family: int) -> tuple[int, ...]:
        """The kernel's form: 8 words of 32 bits, bit ``t % 32`` of word ``t // 32`` set
        for each type ``t`` of ``family`` (4 or 6)."""
        words = [0] * 8
        for t in self.v4 if family == 4 else self.v6:
            words[t >> 5] |= 1 << (t & 31)
        return tuple(words)

    @classmethod
    def from_bitmaps(cls, v4: tuple[int, ...], v6: tuple[int, ...]) -> IcmpTypes:
        """Inverse of :meth:`bitmap` (InvalidInput for ND types or an empty set)."""
        def types(words: tuple[int, ...]) -> frozenset[int]:
            return frozenset(t for t in ICMP_TYPES if words[t >> 5] >> (t & 31) & 1)
        return cls(types(v4), types(v6))

    def describe(self) -> str:
        """For humans: ``pings (echo request/reply)``, ``echo requests``, or the words."""
        return {
            IcmpSet.ECHO: "pings (echo request/reply)",
            IcmpSet.ECHO_REQUEST: "echo requests",
            IcmpSet.ALL: "all ICMP but IPv6 neighbour discovery",
        }.get(self.shorthand, "ICMP " + ", ".join(self.words()))

    def __str__(self) -> str:
        return ",".join(self.words())


ECHO = IcmpTypes.of(IcmpSet.ECHO)
