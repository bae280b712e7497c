"""What an attachment does with pings no rule decides, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass

from pingkiller.model.enums import DefaultAction, EventsMode, IcmpSet
from pingkiller.model.errors import InvalidInput

DEFAULT_EVENT_RATE = 1000  # events per second per CPU (PK_DEFAULT_EVENT_RATE)
MAX_EVENT_RATE = 0xFFFFFFFF


def default_action(*, blocking: bool) -> DefaultAction:
    """What pings no rule decides get when the caller does not say: DROP without block
    rules (kill every ping), PASS with them (kill only the listed pings)."""
    return DefaultAction.PASS if blocking else DefaultAction.DROP


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
    event_rate: int = DEFAULT_EVENT_RATE
    timing: bool = False

    def __post_init__(self) -> None:
        if self.event_rate < 0:
            raise InvalidInput(f"event rate {self.event_rate} is negative: use 0 for unlimited")
        if self.event_rate > MAX_EVENT_RATE:
            raise InvalidInput(f"event rate {self.event_rate} is too large (max {MAX_EVENT_RATE})")

    def describe(self) -> str:
        """One line for humans, e.g. ``drop pings (echo request/reply) that no rule decides``."""
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
