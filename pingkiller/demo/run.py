"""``pingkiller demo``: kill pings in a sandbox of its own, and tell whether it worked.

Three peers (network namespaces joined to this host by veth pairs) ping the host over
IPv4 and IPv6, and the host pings each of them. pingkiller sits on every host-side veth
twice, with one small blocklist that names the first peer's addresses: at XDP, where
that peer's pings die as they arrive, and at tc egress, where the host's own pings to it
die before they leave (the peer's namespace counts no echo request arriving, its
/proc/net/snmp InEchos); the second peer's pings, both ways, are answered. The third
pings fast (50 a second) and its XDP attachment limits pings no rule decides
(DEMO_LIMIT, per source): about the limit's worth are answered, the rest dropped. The
attachments are private (``persist=False``: nothing pinned, other attachments
untouched) and everything created is removed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import pingkiller
from pingkiller.demo.pingers import PING_INTERVAL, EchoCounter, Pinger
from pingkiller.demo.sandbox import Peer, Sandbox
from pingkiller.model.enums import DefaultAction, Direction, Hook, IcmpSet, Mode, Reason, TimingSlot
from pingkiller.model.events import Event
from pingkiller.model.limits import Limit
from pingkiller.model.policy import Policy
from pingkiller.model.stats import Stats
from pingkiller.system import capabilities

if TYPE_CHECKING:
    from pingkiller import Attachment, EventStream

# Every attachment of the demo: the blocklist decides, and processing time is measured.
DEMO_POLICY = Policy(DefaultAction.PASS, timing=True)
# The limited peer's XDP attachment: echo requests no rule decides pass at DEMO_LIMIT per
# source (echo replies, to the host's own pings, are not limited: they are no requests).
DEMO_LIMIT = Limit.of("10/s", 10)
LIMITED_POLICY = Policy(DefaultAction.LIMIT, IcmpSet.ECHO_REQUEST, limit=DEMO_LIMIT, timing=True)
FAST_PING_INTERVAL = 0.02  # the limited peer's pings: 50 a second, five times its limit
# How far from burst + rate * seconds a limited pinger may be: the limiter's clock ticks
# (1/HZ), ping's time is not the limiter's, and a reply may be late past ping's deadline.
LIMIT_TOLERANCE = 3


@dataclass
class DemoPeer:
    """One peer of the demo: its attachments (XDP, and tc egress for the host's own
    pings to it), its pings to the host, the host's pings to it, and what arrived."""

    role: str  # "blocked", "allowed" or "limited"
    peer: Peer
    attachment: Attachment
    pingers: list[Pinger]
    mode: Mode = Mode.NONE  # the XDP attachment's, in effect
    egress: Attachment | None = None  # at the host veth's tc egress hook
    host_pingers: list[Pinger] = field(default_factory=list)
    echoes: EchoCounter | None = None
    limit: Limit | None = None  # pings from the peer that no rule decides (the limited peer)


@dataclass
class DemoState:
    """Everything the live view shows; updated about five times a second."""

    started: float
    duration: float
    peers: list[DemoPeer]
    stats: dict[str, Stats] = field(default_factory=dict)  # the XDP attachments', by interface
    first_stats: dict[str, Stats] = field(default_factory=dict)
    egress_stats: dict[str, Stats] = field(default_factory=dict)  # the tc egress ones'
    first_egress_stats: dict[str, Stats] = field(default_factory=dict)
    recent_events: deque[tuple[str, Event]] = field(default_factory=lambda: deque(maxlen=12))
    events_received: int = 0
    interrupted: bool = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def average_ns(self, verdict: TimingSlot) -> float | None:
        """Mean processing time over both interfaces' XDP attachments (timing is on for
        the demo; the tc ones' are in ``egress_stats``)."""
        count = sum(s.timing.get(verdict, (0, 0))[0] for s in self.stats.values())
        total = sum(s.timing.get(verdict, (0, 0))[1] for s in self.stats.values())
        return total / count if count else None

    def dropped(self) -> tuple[int, int]:
        """Packets dropped so far at XDP and at tc egress (all interfaces)."""
        return (sum(s.dropped for s in self.stats.values()),
                sum(s.dropped for s in self.egress_stats.values()))

    def egress_drops(self, demo_peer: DemoPeer) -> int:
        """The host's pings to ``demo_peer`` its tc egress attachment dropped (each try)."""
        stats = self.egress_stats.get(demo_peer.peer.host_ifname)
        first = self.first_egress_stats.get(demo_peer.peer.host_ifname)
        if stats is None or first is None:
            return 0
        return (stats.reasons[Reason.DROP_BLOCK].packets
                - first.reasons[Reason.DROP_BLOCK].packets)

    def problems(self) -> list[str]:
        """Why the demo failed: killed pings answered, a host request that reached the
        blocked peer, or allowed pings lost."""
        found = []
        for demo_peer in self.peers:
            for pinger in demo_peer.pingers:
                found += _ping_problems(f"{demo_peer.role} peer {pinger.family}", pinger,
                                        demo_peer.role, demo_peer.limit)
            for pinger in demo_peer.host_pingers:  # the host's pings are not limited
                found += _ping_problems(f"host {pinger.family} to the {demo_peer.role} peer",
                                        pinger, "allowed" if demo_peer.limit else demo_peer.role)
            if demo_peer.role == "blocked" and demo_peer.echoes and demo_peer.echoes.total:
                found.append(f"{demo_peer.echoes.total} of the host's echo requests reached the "
                             "blocked peer: tc egress should have stopped them before they left")
        return found


def _ping_problems(what: str, pinger: Pinger, role: str, limit: Limit | None = None
                   ) -> list[str]:
    if pinger.sent == 0:
        return [f"{what}: no ping was sent"]
    if role == "blocked" and pinger.answered:
        return [f"{what}: {pinger.answered} of {pinger.sent} pings that pingkiller should have "
                "killed were answered"]
    if role == "allowed" and pinger.sent - pinger.answered > 1:
        return [f"{what}: only {pinger.answered} of {pinger.sent} allowed pings were answered"]
    if limit is not None:
        low, high = limited_range(pinger, limit)
        if not low <= pinger.answered <= high:
            return [f"{what}: {pinger.answered} of {pinger.sent} pings answered, not "
                    f"{low}-{high} (a burst of {limit.burst}, then {limit.rate})"]
    return []


def limited_range(pinger: Pinger, limit: Limit) -> tuple[int, int]:
    """How many of a limited pinger's pings may be answered: its burst and the rate's
    worth of the time between its first and last ping (at least its sends' spacing, at
    most how long it ran), give or take LIMIT_TOLERANCE; never more than were sent."""
    spread = max(0, pinger.sent - 1) * FAST_PING_INTERVAL
    low = limit.burst + limit.rate.per_second * min(spread, pinger.seconds) - LIMIT_TOLERANCE
    high = limit.burst + limit.rate.per_second * pinger.seconds + LIMIT_TOLERANCE
    return max(0, min(round(low), pinger.sent)), min(round(high), pinger.sent)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let the first SIGTERM clean up like Ctrl-C does; later ones must not cut the cleanup short.

    Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        if not received:
            received = True
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# The demo's event streams, by attachment (its point's label): its interface and stream.
Streams = dict[str, "tuple[str, EventStream]"]


def run(duration: float = 10.0, on_update: Callable[[DemoState], None] | None = None,
        on_event: Callable[[str, Event], None] | None = None) -> DemoState:
    """Run the demo for ``duration`` seconds and return its final state.

    ``on_update`` is called with the state about five times a second, ``on_event``
    with each drop event and the interface it happened on (a tc one says so:
    :meth:`Event.describe <pingkiller.Event.describe>`). Ctrl-C (or SIGTERM) ends
    it early with ``interrupted`` set.
    """
    capabilities.require(write=True)
    state = DemoState(time.monotonic(), duration, [])
    streams: Streams = {}
    with _sigterm_as_interrupt(), Sandbox() as box, ExitStack() as stack:
        selector = stack.enter_context(selectors.DefaultSelector())
        try:
            _start(state, box, stack, streams, selector)
            _watch(state, streams, selector, on_update, on_event)
        except KeyboardInterrupt:
            state.interrupted = True
        for demo_peer in state.peers:
            for pinger in demo_peer.pingers + demo_peer.host_pingers:
                pinger.stop()
        _refresh(state, streams, selector, on_event, timeout=0)
        return state


def _start(state: DemoState, box: Sandbox, stack: ExitStack, streams: Streams,
           selector: selectors.BaseSelector) -> None:
    """Peers; on each host veth an XDP and a tc egress attachment with one blocklist
    naming the blocked peer (the limited peer's XDP one limits the rest); event streams;
    echo counters; pings both ways."""
    blocked_peer, allowed_peer, limited_peer = box.add_peer(), box.add_peer(), box.add_peer()
    blocklist = [blocked_peer.peer_v4, blocked_peer.peer_v6]
    for role, peer in (("blocked", blocked_peer), ("allowed", allowed_peer),
                       ("limited", limited_peer)):
        ifname = peer.host_ifname
        limited = role == "limited"
        attachment = stack.enter_context(
            pingkiller.attach(ifname, LIMITED_POLICY if limited else DEMO_POLICY, hook=Hook.XDP,
                              direction=Direction.IN, block=blocklist, persist=False)
        )
        egress = stack.enter_context(
            pingkiller.attach(ifname, DEMO_POLICY, hook=Hook.TC, direction=Direction.OUT,
                              block=blocklist, persist=False)
        )
        for each in (attachment, egress):
            stream = stack.enter_context(each.events())
            streams[each.point.label] = (ifname, stream)
            selector.register(stream.fileno(), selectors.EVENT_READ, each.point.label)
        echoes = EchoCounter(peer)
        stack.callback(echoes.close)
        state.peers.append(DemoPeer(role, peer, attachment, [], attachment.mode,
                                    egress=egress, echoes=echoes,
                                    limit=DEMO_LIMIT if limited else None))
        state.first_stats[ifname] = attachment.stats()
        state.first_egress_stats[ifname] = egress.stats()
    state.started = time.monotonic()
    for demo_peer in state.peers:
        peer = demo_peer.peer
        interval = FAST_PING_INTERVAL if demo_peer.limit else PING_INTERVAL
        for destination in (peer.host_v4, peer.host_v6):
            pinger = Pinger(peer, destination, state.duration, interval)
            stack.callback(pinger.stop)
            demo_peer.pingers.append(pinger)
        for destination in (peer.peer_v4, peer.peer_v6):  # the host's own pings to the peer
            pinger = Pinger(None, destination, state.duration)
            stack.callback(pinger.stop)
            demo_peer.host_pingers.append(pinger)


def _watch(state: DemoState, streams: Streams, selector: selectors.BaseSelector,
           on_update: Callable[[DemoState], None] | None,
           on_event: Callable[[str, Event], None] | None) -> None:
    hard_stop = state.duration + 5  # ping's -w deadline ends it; this only guards a stuck ping
    while state.elapsed < hard_stop:
        _refresh(state, streams, selector, on_event, timeout=0.2)
        if on_update is not None:
            on_update(state)
        if all(p.done for demo_peer in state.peers
               for p in demo_peer.pingers + demo_peer.host_pingers):
            return


def _refresh(state: DemoState, streams: Streams, selector: selectors.BaseSelector,
             on_event: Callable[[str, Event], None] | None, *, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        ifname, stream = streams[str(key.data)]
        for event in stream.poll(0):
            state.events_received += 1
            state.recent_events.append((ifname, event))
            if on_event is not None:
                on_event(ifname, event)
    for demo_peer in state.peers:
        ifname = demo_peer.peer.host_ifname
        state.stats[ifname] = demo_peer.attachment.stats()
        if demo_peer.egress is not None:
            state.egress_stats[ifname] = demo_peer.egress.stats()
        if demo_peer.echoes is not None:
            demo_peer.echoes.update()
