"""What an attachment does with pings no rule decides, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass

from pingkiller.model.enums import DefaultAction, EventsMode, IcmpSet
from pingkiller.model.errors import InvalidInput
from pingkiller.model.icmp import ECHO, IcmpTypes
from pingkiller.model.limits import Limit

DEFAULT_EVENT_RATE = 1000  # events per second per CPU (PK_DEFAULT_EVENT_RATE)
MAX_EVENT_RATE = 0xFFFFFFFF
DEFAULT_BUCKETS = 65536  # sources remembered by the limiter (PK_DEFAULT_BUCKETS)
MIN_BUCKETS, MAX_BUCKETS = 256, 1 << 22  # a bucket costs ~100 bytes of kernel memory
DEFAULT_PREFIX6 = 64  # IPv6 sources share a bucket per /64: one holder's whole subnet


def default_action(*, blocking: bool) -> DefaultAction:
    """What pings no rule decides get when the caller does not say: DROP without block
    rules (kill every ping), PASS with them (kill only the listed pings)."""
    return DefaultAction.PASS if blocking else DefaultAction.DROP


@dataclass(frozen=True)
class Policy:
    """What an attachment does with pings that no rule decides, and what it reports.

    ``default`` is what happens to a ping no rule decides: with LIMIT, ``limit`` is the
    rate each source gets. ``icmp`` which ICMP messages count as pings (a shorthand such
    as ``IcmpSet.ECHO``, text such as ``"echo,timestamp"``, or :class:`IcmpTypes`; read
    back it is always IcmpTypes: :attr:`icmp_types`); ``all_protocols`` makes block
    rules drop every protocol; ``events`` and ``event_rate`` (per second per CPU, 0 =
    unlimited) which packets send an event; ``timing`` measures per-verdict processing
    time. For every limit, the default's and the rules': ``limit_total`` caps all
    limited pings together (it bounds a flood from ever-new, spoofed sources),
    ``limit_prefix6`` is the prefix length IPv6 sources share a bucket by, and
    ``limit_buckets`` how many sources are remembered at once (the least recently seen
    forgotten first). The rules themselves are not part of it (see
    :func:`pingkiller.attach` and :class:`pingkiller.Attachment`).
    """

    default: DefaultAction = DefaultAction.PASS
    icmp: IcmpTypes | IcmpSet | str = ECHO
    all_protocols: bool = False
    events: EventsMode = EventsMode.DROPS
    event_rate: int = DEFAULT_EVENT_RATE
    timing: bool = False
    limit: Limit | None = None
    limit_total: Limit | None = None
    limit_prefix6: int = DEFAULT_PREFIX6
    limit_buckets: int = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "icmp", IcmpTypes.coerce(self.icmp))
        for name in ("limit", "limit_total"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Limit):
                raise InvalidInput(f"{name} must be a Limit, e.g. Limit.of(\"10/s\"), not "
                                   f"{type(value).__name__}")
        if self.event_rate < 0:
            raise InvalidInput(f"event rate {self.event_rate} is negative: use 0 for unlimited")
        if self.event_rate > MAX_EVENT_RATE:
            raise InvalidInput(f"event rate {self.event_rate} is too large (max {MAX_EVENT_RATE})")
        if self.default is DefaultAction.LIMIT and self.limit is None:
            raise InvalidInput("the default action limit needs a rate: give limit too")
        if self.limit is not None and self.default is not DefaultAction.LIMIT:
            raise InvalidInput("limit is the rate of the default action limit: give "
                               "default=DefaultAction.LIMIT too, or use limit rules")
        if isinstance(self.limit_prefix6, bool) or not isinstance(self.limit_prefix6, int) \
                or not 1 <= self.limit_prefix6 <= 128:
            raise InvalidInput(f"IPv6 limit prefix {self.limit_prefix6!r} is not a length "
                               "from 1 to 128")
        if isinstance(self.limit_buckets, bool) or not isinstance(self.limit_buckets, int) \
                or not MIN_BUCKETS <= self.limit_buckets <= MAX_BUCKETS:
            raise InvalidInput(f"limit buckets {self.limit_buckets!r} is not a number from "
                               f"{MIN_BUCKETS} to {MAX_BUCKETS}")

    @property
    def icmp_types(self) -> IcmpTypes:
        """``icmp`` as the types it is (it is always stored so)."""
        assert isinstance(self.icmp, IcmpTypes)
        return self.icmp

    def describe(self) -> str:
        """One line for humans, e.g. ``drop pings (echo request/reply) that no rule decides``."""
        what = self.icmp_types.describe()
        if self.default is DefaultAction.LIMIT:
            assert self.limit is not None
            text = f"limit {what} that no rule decides to {self.limit.rate} per source " \
                   f"(burst {self.limit.burst})"
        else:
            verb = "drop" if self.default == DefaultAction.DROP else "pass"
            text = f"{verb} {what} that no rule decides"
        if self.limit_total is not None:
            text += f"; all limited pings together at most {self.limit_total.rate}"
        if self.all_protocols:
            text += "; block rules drop every protocol"
        return text
