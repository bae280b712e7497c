"""``pingkiller demo``: kill pings in a sandbox of its own, with a live view and a verdict.

Two peers (network namespaces joined to this host by veth pairs) ping the host over
IPv4 and IPv6. pingkiller sits on both host-side veths with one small blocklist that
names the first peer's addresses, so that peer's pings die and the other's are
answered. The attachments are private (``persist=False``: nothing pinned, other
attachments untouched) and everything created is removed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from pingkiller.abi import DefaultAction, TimingSlot
from pingkiller.bpf import XdpMode
from pingkiller.capabilities import require_privileges
from pingkiller.events import Event, EventStream
from pingkiller.killer import Attachment, attach
from pingkiller.policy import Policy
from pingkiller.sandbox import PING, Peer, Sandbox
from pingkiller.stats import TIMED_VERDICTS, Stats

# Both peers' attachments: the blocklist decides, and processing time is measured.
DEMO_POLICY = Policy(DefaultAction.PASS, timing=True)

if TYPE_CHECKING:
    from rich.console import RenderableType

PING_INTERVAL = 0.2
_REPLY = re.compile(r"bytes from .*icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"no answer yet for icmp_seq=(\d+)")
_TOTALS = re.compile(r"(\d+) packets transmitted, (\d+) received")


class Pinger:
    """A real ``ping`` run inside a peer's namespace, counted line by line as it runs."""

    def __init__(self, peer: Peer, destination: str, duration: float) -> None:
        self.destination = destination
        self.family = "ipv6" if ":" in destination else "ipv4"
        self.sent = 0
        self.answered = 0
        args = [PING, "-6" if self.family == "ipv6" else "-4", "-n", "-O", "-i", str(PING_INTERVAL),
                "-W", "1", "-w", str(max(1, round(duration))), destination]
        self._process = subprocess.Popen(
            peer.exec_args(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if reply := _REPLY.search(line):
                self.answered += 1
                self.sent = max(self.sent, int(reply.group(1)))
            elif missing := _NO_ANSWER.search(line):
                self.sent = max(self.sent, int(missing.group(1)))
            elif totals := _TOTALS.search(line):  # ping's own final count is authoritative
                self.sent, self.answered = int(totals.group(1)), int(totals.group(2))

    @property
    def done(self) -> bool:
        return self._process.poll() is not None

    def stop(self) -> None:
        """End ping (it prints its totals) and wait for the last line to be read."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=3)


@dataclass
class DemoPeer:
    """One peer of the demo, its attachment and its pings."""

    role: str  # "blocked" or "allowed"
    peer: Peer
    attachment: Attachment
    pingers: list[Pinger]
    mode: XdpMode = XdpMode.NONE

    def to_json(self) -> dict[str, object]:
        return {
            "role": self.role,
            "namespace": self.peer.netns,
            "interface": self.peer.host_ifname,
            "addresses": [self.peer.peer_v4, self.peer.peer_v6],
            "mode": self.mode.value,
            "pings": {p.family: {"sent": p.sent, "answered": p.answered} for p in self.pingers},
        }


@dataclass
class DemoState:
    """Everything the live view shows; updated about five times a second."""

    started: float
    duration: float
    peers: list[DemoPeer]
    stats: dict[str, Stats] = field(default_factory=dict)
    first_stats: dict[str, Stats] = field(default_factory=dict)
    recent_events: deque[tuple[str, Event]] = field(default_factory=lambda: deque(maxlen=12))
    events_received: int = 0
    interrupted: bool = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def average_ns(self, verdict: TimingSlot) -> float | None:
        """Mean processing time over both interfaces (timing is on for the demo)."""
        count = sum(s.timing.get(verdict, (0, 0))[0] for s in self.stats.values())
        total = sum(s.timing.get(verdict, (0, 0))[1] for s in self.stats.values())
        return total / count if count else None

    def problems(self) -> list[str]:
        """Why the demo failed: killed pings answered, or allowed pings lost."""
        found = []
        for demo_peer in self.peers:
            for pinger in demo_peer.pingers:
                what = f"{demo_peer.role} peer {pinger.family}"
                if pinger.sent == 0:
                    found.append(f"{what}: no ping was sent")
                elif demo_peer.role == "blocked" and pinger.answered:
                    found.append(f"{what}: {pinger.answered} of {pinger.sent} pings that pingkiller "
                                 "should have killed were answered")
                elif demo_peer.role == "allowed" and pinger.sent - pinger.answered > 1:
                    found.append(f"{what}: only {pinger.answered} of {pinger.sent} allowed pings "
                                 "were answered")
        return found

    def to_json(self) -> dict[str, object]:
        problems = self.problems()
        return {
            "ok": not problems and not self.interrupted,
            "problems": problems,
            "interrupted": self.interrupted,
            "duration_s": round(self.elapsed, 3),
            "peers": [p.to_json() for p in self.peers],
            "stats": {name: stats.to_json() for name, stats in self.stats.items()},
            "events_received": self.events_received,
            "average_ns": {word: self.average_ns(slot) for slot, word in TIMED_VERDICTS.items()},
        }


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


def run(duration: float = 10.0, on_update: Callable[[DemoState], None] | None = None,
        on_event: Callable[[str, Event], None] | None = None) -> DemoState:
    """Run the demo for ``duration`` seconds and return its final state.

    ``on_update`` is called with the state about five times a second, ``on_event``
    with each drop event. Ctrl-C (or SIGTERM) ends it early with ``interrupted`` set.
    """
    require_privileges()
    state = DemoState(time.monotonic(), duration, [])
    streams: dict[str, EventStream] = {}
    with _sigterm_as_interrupt(), Sandbox() as box, ExitStack() as stack:
        selector = stack.enter_context(selectors.DefaultSelector())
        try:
            _start(state, box, stack, streams, selector)
            _watch(state, streams, selector, on_update, on_event)
        except KeyboardInterrupt:
            state.interrupted = True
        for demo_peer in state.peers:
            for pinger in demo_peer.pingers:
                pinger.stop()
        _refresh(state, streams, selector, on_event, timeout=0)
        return state


def _start(state: DemoState, box: Sandbox, stack: ExitStack, streams: dict[str, EventStream],
           selector: selectors.BaseSelector) -> None:
    """Peers, attachments with one blocklist naming the blocked peer, event streams, pings."""
    blocked_peer, allowed_peer = box.add_peer(), box.add_peer()
    blocklist = [blocked_peer.peer_v4, blocked_peer.peer_v6]
    for role, peer in (("blocked", blocked_peer), ("allowed", allowed_peer)):
        attachment = stack.enter_context(
            attach(peer.host_ifname, DEMO_POLICY, block=blocklist, persist=False)
        )
        stream = streams[peer.host_ifname] = stack.enter_context(attachment.events())
        selector.register(stream.fileno(), selectors.EVENT_READ, peer.host_ifname)
        state.peers.append(DemoPeer(role, peer, attachment, [], attachment.link.mode))
        state.first_stats[peer.host_ifname] = attachment.stats()
    state.started = time.monotonic()
    for demo_peer in state.peers:
        for destination in (demo_peer.peer.host_v4, demo_peer.peer.host_v6):
            pinger = Pinger(demo_peer.peer, destination, state.duration)
            stack.callback(pinger.stop)
            demo_peer.pingers.append(pinger)


def _watch(state: DemoState, streams: dict[str, EventStream], selector: selectors.BaseSelector,
           on_update: Callable[[DemoState], None] | None,
           on_event: Callable[[str, Event], None] | None) -> None:
    hard_stop = state.duration + 5  # ping's -w deadline ends it; this only guards a stuck ping
    while state.elapsed < hard_stop:
        _refresh(state, streams, selector, on_event, timeout=0.2)
        if on_update is not None:
            on_update(state)
        if all(p.done for demo_peer in state.peers for p in demo_peer.pingers):
            return


def _refresh(state: DemoState, streams: dict[str, EventStream], selector: selectors.BaseSelector,
             on_event: Callable[[str, Event], None] | None, *, timeout: float) -> None:
    for key, _ in selector.select(timeout):
        ifname = str(key.data)
        for event in streams[ifname].poll(0):
            state.events_received += 1
            state.recent_events.append((ifname, event))
            if on_event is not None:
                on_event(ifname, event)
    for demo_peer in state.peers:
        state.stats[demo_peer.peer.host_ifname] = demo_peer.attachment.stats()


# -- rendering


def _ns(value: float | None) -> str:
    return f"{value:.0f} ns" if value is not None else "-"


def plain_line(state: DemoState) -> str:
    """One status line for a non-terminal stdout."""
    parts = [f"t={state.elapsed:4.1f}s"]
    for demo_peer in state.peers:
        pings = " ".join(f"{p.family} {p.answered}/{p.sent}" for p in demo_peer.pingers)
        parts.append(f"{demo_peer.role}: {pings}")
    dropped = sum(s.dropped for s in state.stats.values())
    passed = sum(s.passed for s in state.stats.values())
    parts.append(f"dropped {dropped} passed {passed}")
    parts.append(f"avg drop {_ns(state.average_ns(TimingSlot.DROP))} "
                 f"pass {_ns(state.average_ns(TimingSlot.PASS))}")
    return " | ".join(parts)


def render(state: DemoState) -> RenderableType:
    """The live view: pings per peer, counters and rates per interface, recent drop events."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    pings = Table(title="pings to the host (answered / sent)", expand=True)
    pings.add_column("peer")
    pings.add_column("addresses")
    pings.add_column("IPv4", justify="right")
    pings.add_column("IPv6", justify="right")
    for demo_peer in state.peers:
        cells = {p.family: f"{p.answered} / {p.sent}" for p in demo_peer.pingers}
        style = "red" if demo_peer.role == "blocked" else "green"
        pings.add_row(f"[{style}]{demo_peer.role}[/]", f"{demo_peer.peer.peer_v4}  "
                      f"{demo_peer.peer.peer_v6}", cells.get("ipv4", "-"), cells.get("ipv6", "-"))

    counters = Table(title="pingkiller counters", expand=True)
    for column in ("interface", "mode", "dropped", "passed", "drop pps", "avg drop", "avg pass"):
        counters.add_column(column, justify="left" if column in ("interface", "mode") else "right")
    for demo_peer in state.peers:
        ifname = demo_peer.peer.host_ifname
        stats = state.stats.get(ifname)
        if stats is None:
            continue
        earlier = state.first_stats[ifname]
        elapsed = max(stats.taken_at - earlier.taken_at, 1e-9)
        rate = (stats.dropped - earlier.dropped) / elapsed
        counters.add_row(ifname, demo_peer.mode.value, str(stats.dropped), str(stats.passed),
                         f"{rate:.1f}", _ns(stats.average_ns(TimingSlot.DROP)),
                         _ns(stats.average_ns(TimingSlot.PASS)))

    lines = [f"{ifname}: {event.describe()}" for ifname, event in state.recent_events]
    events = Panel(Text("\n".join(lines) or "(none yet)", no_wrap=True, overflow="ellipsis"),
                   title=f"drop events ({state.events_received} received)")
    left = max(0.0, state.duration - state.elapsed)
    header = (f"[bold]pingkiller demo[/]: the blocked peer's pings die at XDP, the allowed "
              f"peer's are answered - {left:.0f}s left (Ctrl-C stops)")
    return Group(header, pings, counters, events)


def summary_lines(state: DemoState) -> list[str]:
    """The end-of-demo summary, in words."""
    lines = ["", "Summary:"]
    for demo_peer in state.peers:
        pings = ", ".join(f"{p.family} {p.answered} of {p.sent} answered" for p in demo_peer.pingers)
        lines.append(f"  {demo_peer.role} peer {demo_peer.peer.peer_v4} ({demo_peer.mode.value} mode on "
                     f"{demo_peer.peer.host_ifname}): {pings}")
    dropped = sum(s.dropped for s in state.stats.values())
    lines.append(f"  pingkiller dropped {dropped} packets, sent {state.events_received} drop events; "
                 f"average processing time: drop {_ns(state.average_ns(TimingSlot.DROP))}, "
                 f"pass {_ns(state.average_ns(TimingSlot.PASS))}")
    problems = state.problems()
    if state.interrupted:
        lines.append("  interrupted before the end")
    lines.extend(f"  FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append("  OK: every ping to or from the blocked peer was killed, the others answered")
    lines.append("  sandbox removed: namespaces, veths and attachments are gone")
    return lines


def run_live(duration: float, out: TextIO) -> DemoState:
    """Run with a rich live view on a terminal, or plain lines (one per second) elsewhere."""
    if out.isatty():
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        with Live(console=console, refresh_per_second=5, transient=False) as live:
            return run(duration, on_update=lambda state: live.update(render(state)))

    last_line = 0.0

    def update(state: DemoState) -> None:
        nonlocal last_line
        if state.elapsed - last_line >= 1.0:
            last_line = state.elapsed
            out.write(plain_line(state) + "\n")
            out.flush()

    def event(ifname: str, item: Event) -> None:
        out.write(f"event {ifname}: {item.describe()}\n")

    return run(duration, on_update=update, on_event=event)
