"""Ring-buffer flood: a consumer that stops reading while thousands of pings arrive.

The program must keep dropping (verdict and counters exact), and when the consumer
resumes, every event is accounted for: sent == received, and
sent + lost + suppressed == frames that wanted an event.
"""

from __future__ import annotations

import frames
import pytest
from conftest import Datapath

from pingkiller import abi
from pingkiller import bpf as bpflib
from pingkiller.model import enums

pytestmark = pytest.mark.root

# pk_event is 60 bytes, 64 with alignment, plus the ring's 8-byte record header.
RING_RECORDS = 1048576 // 72
FLOOD = 40_000  # nearly three ring-fulls


def flood(dp: Datapath, frame: frames.Frame, count: int) -> None:
    """Run ``count`` frames in one BPF_PROG_RUN without consuming; all must be dropped."""
    result = dp.program.test_run(frame.data, repeat=count)
    assert result.retval == bpflib.XDP_DROP


def event_counters(dp: Datapath) -> tuple[int, int, int]:
    sent = dp.counter(abi.CounterSlot.EVENTS_SENT)[0]
    lost = dp.counter(abi.CounterSlot.EVENTS_LOST)[0]
    suppressed = dp.counter(abi.CounterSlot.EVENTS_SUPPRESSED)[0]
    return sent, lost, suppressed


def test_flood_without_rate_limit(dp: Datapath) -> None:
    dp.configure(events=enums.EventsMode.PINGS, event_rate=0, default_action=enums.DefaultAction.DROP)
    ping = frames.echo4()
    flood(dp, ping, FLOOD)
    flood(dp, ping, 1000)  # the ring is full now: still dropped, every event lost
    frames_run = FLOOD + 1000
    assert dp.counter(enums.Reason.DROP_DEFAULT) == (frames_run, frames_run * len(ping.data))
    assert dp.counter(enums.Reason.PASS_DEFAULT) == (0, 0)
    sent, lost, suppressed = event_counters(dp)
    assert suppressed == 0
    assert sent + lost == frames_run
    assert RING_RECORDS * 0.9 < sent <= RING_RECORDS and lost > 0

    received = dp.drain()
    assert len(received) == sent
    assert {(e.reason, e.verdict_code, e.icmp_seq) for e in received} == {
        (enums.Reason.DROP_DEFAULT, bpflib.XDP_DROP, 7)
    }
    # Consumed: there is room again and nothing more is lost.
    flood(dp, ping, 100)
    assert len(dp.drain()) == 100
    assert event_counters(dp) == (sent + 100, lost, 0)


def test_flood_with_rate_limit(dp: Datapath, one_cpu: int) -> None:
    """A rate limit above the ring's size: events are suppressed, lost and sent at once."""
    rate = 20_000
    dp.configure(events=enums.EventsMode.PINGS, event_rate=rate, default_action=enums.DefaultAction.DROP)
    dp.rule("198.51.100.1", enums.RuleAction.BLOCK)
    ping = frames.echo4(dst="198.51.100.1")
    flood(dp, ping, FLOOD)
    assert dp.counter(enums.Reason.DROP_BLOCK) == (FLOOD, FLOOD * len(ping.data))
    assert dp.hits("198.51.100.1") == FLOOD
    sent, lost, suppressed = event_counters(dp)
    assert sent + lost + suppressed == FLOOD
    assert sent > 0 and lost > 0 and suppressed > 0
    assert sent + lost <= 2 * rate  # one run spans at most two one-second windows
    assert len(dp.drain()) == sent
