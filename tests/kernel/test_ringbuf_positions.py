"""The ring buffer's read position (pingkiller.bpf.RingBuffer) against the real kernel: a
consumer skips what is buffered, tells it apart from what comes later (mark), and takes
at most a limit of records, leaving the rest in the ring for the next reader.
"""

from __future__ import annotations

import frames
import pytest
from conftest import Datapath

from pingkiller import abi
from pingkiller.bpf import RingBuffer
from pingkiller.datapath.events import decode
from pingkiller.model import enums

pytestmark = pytest.mark.root

RECORD = 8 + 64  # the ring's 8-byte header + pk_event (60 bytes, 64 with alignment)


def send(dp: Datapath, count: int, seq: int) -> None:
    """``count`` events of pings with sequence number ``seq``."""
    dp.program.test_run(frames.echo4(seq=seq).data, repeat=count)


@pytest.fixture
def events_dp(dp: Datapath) -> Datapath:
    dp.configure(events=enums.EventsMode.PINGS, event_rate=0, default_action=enums.DefaultAction.DROP)
    return dp


def test_skip_moves_past_what_is_buffered_for_every_reader(events_dp: Datapath) -> None:
    dp = events_dp
    send(dp, 5, seq=1)
    assert dp.ring.pending() == 5 * RECORD
    with RingBuffer(dp.obj.maps[abi.EVENTS_MAP]) as other:  # a second reader of the same map
        assert other.pending() == 5 * RECORD
        assert other.skip() == 5 * RECORD
        assert other.skip() == 0
        assert (other.pending(), dp.ring.pending()) == (0, 0)
        assert len(other.consume()) == 0
    send(dp, 2, seq=2)
    assert [e.icmp_seq for e in decode(dp.ring.poll(1.0))] == [2, 2]


def test_a_limit_leaves_the_rest_in_the_ring(events_dp: Datapath) -> None:
    dp = events_dp
    for seq in range(1, 6):
        send(dp, 1, seq)
    assert [e.icmp_seq for e in decode(dp.ring.consume(limit=2))] == [1, 2]
    assert dp.ring.pending() == 3 * RECORD
    assert len(dp.ring.consume(limit=0)) == 0
    with RingBuffer(dp.obj.maps[abi.EVENTS_MAP]) as other:  # the next reader gets the rest
        assert [e.icmp_seq for e in decode(other.poll(1.0, limit=1))] == [3]
    assert [e.icmp_seq for e in decode(dp.ring.poll(1.0, limit=10))] == [4, 5]
    assert dp.ring.pending() == 0
    with pytest.raises(ValueError, match="limit"):
        dp.ring.consume(limit=-1)


def test_mark_counts_the_records_buffered_before_it(events_dp: Datapath) -> None:
    dp = events_dp
    send(dp, 3, seq=1)
    assert dp.ring.mark() == 3 * RECORD
    send(dp, 2, seq=2)
    first = dp.ring.consume(limit=2)
    assert (len(first), first.marked) == (2, 2)
    rest = dp.ring.consume()
    assert (len(rest), rest.marked) == (3, 1)
    assert [e.icmp_seq for e in decode(rest)] == [1, 2, 2]
    send(dp, 1, seq=3)
    assert dp.ring.consume().marked == 0
