"""Rates and limits: how many pings a source may send (``10/s``, ``600/min``), and in
bursts of how many, for the ``limit`` action."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pingkiller.model.errors import InvalidInput
from pingkiller.model.untrusted import quote

NS_PER_S = 1_000_000_000
# Each unit's length in seconds, by its canonical word.
UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
# Every word a rate's unit may be given as, and the canonical word it means.
UNIT_WORDS = {
    **{word: "s" for word in ("s", "sec", "second", "seconds")},
    **{word: "min" for word in ("m", "min", "minute", "minutes")},
    **{word: "h" for word in ("h", "hour", "hours")},
    **{word: "d" for word in ("d", "day", "days")},
}
MAX_PER_SECOND = 1_000_000  # a ping every microsecond
MAX_COUNT = 0xFFFFFFFF  # the kernel keeps a rate's count in 32 bits
_MAX_DIGITS = 12
MAX_BURST = 1_000_000
# A bucket's tolerance (burst - 1 intervals) must stay far from 2**64 ns in the kernel.
MAX_TOLERANCE_NS = 2**62


@dataclass(frozen=True)
class Rate:
    """``count`` pings per ``unit`` (``s``, ``min``, ``h`` or ``d``): ``Rate(10, "s")``
    is ``10/s``. :meth:`parse` reads the written form."""

    count: int
    unit: str = "s"

    def __post_init__(self) -> None:
        if self.unit not in UNIT_SECONDS:
            raise InvalidInput(f"rate unit {quote(self.unit)} is not one of "
                               f"{', '.join(UNIT_SECONDS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidInput(f"rate {self.count!r}/{self.unit} is not a whole number of "
                               "pings of at least 1")
        if self.count > MAX_PER_SECOND * UNIT_SECONDS[self.unit]:
            raise InvalidInput(f"rate {self} is too high (at most {MAX_PER_SECOND}/s)")
        if self.count > MAX_COUNT:
            raise InvalidInput(f"rate {self}: write it in a shorter unit (at most {MAX_COUNT} "
                               "pings a unit)")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``10/s``, ``600/min``, ``20/m``, ``1/h``, ``5/day``, or ``10`` (per second)."""
        count_text, _, unit_text = text.strip().partition("/")
        unit = UNIT_WORDS.get(unit_text.strip().lower() if unit_text else "s")
        count_text = count_text.strip()
        if unit is None or not count_text.isdecimal() or not count_text.isascii() \
                or len(count_text) > _MAX_DIGITS:
            raise InvalidInput(f"{quote(text)} is not a rate: write COUNT/UNIT, e.g. 10/s, "
                               "600/min, 1/h (units s, min, h, d)")
        return cls(int(count_text), unit)

    @property
    def interval_ns(self) -> int:
        """What one ping costs: the time the rate allows between two, in ns."""
        return max(1, round(UNIT_SECONDS[self.unit] * NS_PER_S / self.count))

    @property
    def per_second(self) -> float:
        return self.count / UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


def coerce_rate(value: Rate | str) -> Rate:
    """``value`` as a Rate: a Rate as it is, text parsed."""
    return Rate.parse(value) if isinstance(value, str) else value


def default_burst(rate: Rate) -> int:
    """A limit's burst when none is given: the rate's per-second figure, at least 1."""
    return max(1, math.ceil(rate.per_second))


@dataclass(frozen=True)
class Limit:
    """At most ``rate`` pings per source, in bursts of up to ``burst``: a token bucket of
    ``burst`` tokens refilled at ``rate``, each ping taking one. :meth:`of` fills in the
    default burst and parses a rate given as text."""

    rate: Rate
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) \
                or not 1 <= self.burst <= MAX_BURST:
            raise InvalidInput(f"burst {self.burst!r} is not a whole number from 1 to {MAX_BURST}")
        if (self.burst - 1) * self.rate.interval_ns > MAX_TOLERANCE_NS:
            raise InvalidInput(f"a burst of {self.burst} at {self.rate} spans more than a "
                               "century: use a smaller burst or a higher rate")

    @classmethod
    def of(cls, rate: Rate | str, burst: int | None = None) -> Limit:
        """The limit of ``rate`` (a Rate or text such as ``10/s``) with ``burst``
        (default: the rate's per-second figure, at least 1)."""
        parsed = coerce_rate(rate)
        return cls(parsed, default_burst(parsed) if burst is None else burst)

    def tolerance_ns(self, tick_ns: int) -> int:
        """How far ahead of now a bucket may be spent and still pass a ping: ``burst - 1``
        intervals, and at least one tick of the clock that measures it (else pings that
        arrive within a tick of each other would be held to one a tick)."""
        return max((self.burst - 1) * self.rate.interval_ns, tick_ns)

    def __str__(self) -> str:
        return f"{self.rate} burst {self.burst}"
