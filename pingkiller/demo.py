"""``pingkiller demo``: kill pings in a sandbox of its own, with a live view and a verdict.

Two peers (network namespaces joined to this host by veth pairs) ping the host over
IPv4 and IPv6, and the host pings both of them. pingkiller sits on both host-side veths
twice, with one small blocklist that names the first peer's addresses: at XDP, where
that peer's pings die as they arrive, and at tc egress, where the host's own pings to it
die before they leave (the peer's namespace counts no echo request arriving, its
/proc/net/snmp InEchos); the other peer's pings, both ways, are answered. The
attachments are private (``persist=False``: nothing pinned, other attachments
untouched) and everything created is removed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import os
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
from typing import IO, TYPE_CHECKING, TextIO

from pingkiller.abi import DefaultAction, Reason, TimingSlot
from pingkiller.bpf import XdpMode
from pingkiller.capabilities import require_privileges
from pingkiller.events import Event, EventStream
from pingkiller.killer import Attachment, attach
from pingkiller.policy import Policy
from pingkiller.sandbox import PING, SLEEP, Peer, Sandbox, SandboxError
from pingkiller.stats import TIMED_VERDICTS, Stats

# Every attachment of the demo: the blocklist decides, and processing time is measured.
DEMO_POLICY = Policy(DefaultAction.PASS, timing=True)
FAMILIES = ("ipv4", "ipv6")

if TYPE_CHECKING:
    from rich.console import RenderableType

PING_INTERVAL = 0.2
_REPLY = re.compile(r"bytes from .*icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"no answer yet for icmp_seq=(\d+)")
_TOTALS = re.compile(r"(\d+) packets transmitted, (\d+) received")


class Pinger:
    """A real ``ping``, run inside a peer's namespace (or, without a peer, in this one: the
    host's own pings), counted line by line as it runs.

    ``sent`` is what ping counts: a request the kernel refuses to send (tc egress drops
    it, and sendmsg fails with ENOBUFS) ping tries again under the same sequence number,
    so ping counts fewer of the host's pings to the blocked peer sent than the tc
    attachment counts tries it dropped."""

    def __init__(self, peer: Peer | None, destination: str, duration: float) -> None:
        self.destination = destination
        self.family = "ipv6" if ":" in destination else "ipv4"
        self.sent = 0
        self.answered = 0
        args = [PING, "-6" if self.family == "ipv6" else "-4", "-n", "-O", "-i", str(PING_INTERVAL),
                "-W", "1", "-w", str(max(1, round(duration))), destination]
        self._process = subprocess.Popen(
            peer.exec_args(args) if peer is not None else args, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
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


class EchoCounter:
    """The echo requests a peer's namespace has received since this was made: its
    ``Icmp: InEchos`` (/proc/net/snmp) and ``Icmp6InEchos`` (/proc/net/snmp6), which
    count every echo request that arrived, whoever answers or drops it after.

    The two files are opened once from a short-lived process inside the namespace
    (``/proc/PID/net/...``): an open /proc/net file keeps reading the namespace it was
    opened in, so reading them again costs no process."""

    def __init__(self, peer: Peer) -> None:
        wanted = f"net:[{os.stat(peer.netns_path).st_ino}]"
        holder = subprocess.Popen(peer.exec_args([SLEEP, "30"]), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while _netns_of(holder.pid) != wanted:
                if holder.poll() is not None or time.monotonic() > deadline:
                    raise SandboxError(f"making the sandbox failed: no process could enter "
                                       f"{peer.netns} to read its ICMP counters")
                time.sleep(0.005)
            self._files: dict[str, IO[bytes]] = {}
            for family, name in (("ipv4", "snmp"), ("ipv6", "snmp6")):
                self._files[family] = open(f"/proc/{holder.pid}/net/{name}", "rb", buffering=0)  # noqa: SIM115
        finally:
            holder.kill()
            holder.wait()
        self._first = self._read()
        self.seen = dict.fromkeys(FAMILIES, 0)

    def _read(self) -> dict[str, int]:
        counts = {}
        for family, file in self._files.items():
            file.seek(0)
            text = file.read(1 << 16).decode()
            counts[family] = _in_echos(text) if family == "ipv4" else _in_echos6(text)
        return counts

    def update(self) -> dict[str, int]:
        """Echo requests received since this was made, by family (also kept in ``seen``)."""
        now = self._read()
        self.seen = {family: now[family] - self._first[family] for family in FAMILIES}
        return self.seen

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def close(self) -> None:
        for file in self._files.values():
            file.close()


def _netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def _in_echos(snmp: str) -> int:
    """``InEchos`` of /proc/net/snmp's two ``Icmp:`` lines (names, then values)."""
    names, values = [line.split() for line in snmp.splitlines() if line.startswith("Icmp:")][:2]
    return int(values[names.index("InEchos")])


def _in_echos6(snmp6: str) -> int:
    """``Icmp6InEchos`` of /proc/net/snmp6 (one ``name value`` a line)."""
    for line in snmp6.splitlines():
        name, _, value = line.partition(" ")
        if name == "Icmp6InEchos":
            return int(value)
    return 0


def _pings_json(pingers: list[Pinger]) -> dict[str, dict[str, int]]:
    return {p.family: {"sent": p.sent, "answered": p.answered} for p in pingers}


@dataclass
class DemoPeer:
    """One peer of the demo: its attachments (XDP, and tc egress for the host's own
    pings to it), its pings to the host, the host's pings to it, and what arrived."""

    role: str  # "blocked" or "allowed"
    peer: Peer
    attachment: Attachment
    pingers: list[Pinger]
    mode: XdpMode = XdpMode.NONE
    egress: Attachment | None = None  # at the host veth's tc egress hook
    host_pingers: list[Pinger] = field(default_factory=list)
    echoes: EchoCounter | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "role": self.role,
            "namespace": self.peer.netns,
            "interface": self.peer.host_ifname,
            "addresses": [self.peer.peer_v4, self.peer.peer_v6],
            "mode": self.mode.value,
            "pings": _pings_json(self.pingers),
            "host_pings": _pings_json(self.host_pingers),
            "echo_requests_received": dict(self.echoes.seen) if self.echoes else None,
        }


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
                                        demo_peer.role)
            for pinger in demo_peer.host_pingers:
                found += _ping_problems(f"host {pinger.family} to the {demo_peer.role} peer",
                                        pinger, demo_peer.role)
            if demo_peer.role == "blocked" and demo_peer.echoes and demo_peer.echoes.total:
                found.append(f"{demo_peer.echoes.total} of the host's echo requests reached the "
                             "blocked peer: tc egress should have stopped them before they left")
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
            "egress_stats": {name: stats.to_json() for name, stats in self.egress_stats.items()},
            "events_received": self.events_received,
            "average_ns": {word: self.average_ns(slot) for slot, word in TIMED_VERDICTS.items()},
        }


def _ping_problems(what: str, pinger: Pinger, role: str) -> list[str]:
    if pinger.sent == 0:
        return [f"{what}: no ping was sent"]
    if role == "blocked" and pinger.answered:
        return [f"{what}: {pinger.answered} of {pinger.sent} pings that pingkiller should have "
                "killed were answered"]
    if role == "allowed" and pinger.sent - pinger.answered > 1:
        return [f"{what}: only {pinger.answered} of {pinger.sent} allowed pings were answered"]
    return []


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
    with each drop event and the interface it happened on (a tc one says so:
    :meth:`Event.describe <pingkiller.events.Event.describe>`). Ctrl-C (or SIGTERM) ends
    it early with ``interrupted`` set.
    """
    require_privileges()
    state = DemoState(time.monotonic(), duration, [])
    streams: dict[str, tuple[str, EventStream]] = {}
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


def _start(state: DemoState, box: Sandbox, stack: ExitStack,
           streams: dict[str, tuple[str, EventStream]], selector: selectors.BaseSelector) -> None:
    """Peers; on each host veth an XDP and a tc egress attachment with one blocklist
    naming the blocked peer; event streams; echo counters; pings both ways."""
    blocked_peer, allowed_peer = box.add_peer(), box.add_peer()
    blocklist = [blocked_peer.peer_v4, blocked_peer.peer_v6]
    for role, peer in (("blocked", blocked_peer), ("allowed", allowed_peer)):
        ifname = peer.host_ifname
        attachment = stack.enter_context(
            attach(ifname, DEMO_POLICY, block=blocklist, persist=False)
        )
        egress = stack.enter_context(
            attach(ifname, DEMO_POLICY, hook="tc", direction="out", block=blocklist,
                   persist=False)
        )
        for each in (attachment, egress):
            stream = stack.enter_context(each.events())
            streams[each.point.label] = (ifname, stream)
            selector.register(stream.fileno(), selectors.EVENT_READ, each.point.label)
        echoes = EchoCounter(peer)
        stack.callback(echoes.close)
        state.peers.append(DemoPeer(role, peer, attachment, [], attachment.info().mode,
                                    egress=egress, echoes=echoes))
        state.first_stats[ifname] = attachment.stats()
        state.first_egress_stats[ifname] = egress.stats()
    state.started = time.monotonic()
    for demo_peer in state.peers:
        peer = demo_peer.peer
        for destination in (peer.host_v4, peer.host_v6):
            pinger = Pinger(peer, destination, state.duration)
            stack.callback(pinger.stop)
            demo_peer.pingers.append(pinger)
        for destination in (peer.peer_v4, peer.peer_v6):  # the host's own pings to the peer
            pinger = Pinger(None, destination, state.duration)
            stack.callback(pinger.stop)
            demo_peer.host_pingers.append(pinger)


def _watch(state: DemoState, streams: dict[str, tuple[str, EventStream]],
           selector: selectors.BaseSelector, on_update: Callable[[DemoState], None] | None,
           on_event: Callable[[str, Event], None] | None) -> None:
    hard_stop = state.duration + 5  # ping's -w deadline ends it; this only guards a stuck ping
    while state.elapsed < hard_stop:
        _refresh(state, streams, selector, on_event, timeout=0.2)
        if on_update is not None:
            on_update(state)
        if all(p.done for demo_peer in state.peers
               for p in demo_peer.pingers + demo_peer.host_pingers):
            return


def _refresh(state: DemoState, streams: dict[str, tuple[str, EventStream]],
             selector: selectors.BaseSelector, on_event: Callable[[str, Event], None] | None, *,
             timeout: float) -> None:
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


# -- rendering


def _ns(value: float | None) -> str:
    return f"{value:.0f} ns" if value is not None else "-"


def _seen(demo_peer: DemoPeer) -> int:
    return demo_peer.echoes.total if demo_peer.echoes else 0


def plain_line(state: DemoState) -> str:
    """One status line for a non-terminal stdout."""
    parts = [f"t={state.elapsed:4.1f}s"]
    for demo_peer in state.peers:
        pings = " ".join(f"{p.family} {p.answered}/{p.sent}" for p in demo_peer.pingers)
        parts.append(f"{demo_peer.role}: {pings}")
    for demo_peer in state.peers:
        pings = " ".join(f"{p.family} {p.answered}/{p.sent}" for p in demo_peer.host_pingers)
        part = f"host->{demo_peer.role}: {pings}, peer got {_seen(demo_peer)}"
        if demo_peer.role == "blocked":
            part += f", tc out dropped {state.egress_drops(demo_peer)}"
        parts.append(part)
    at_xdp, at_tc = state.dropped()
    passed = sum(s.passed for s in (*state.stats.values(), *state.egress_stats.values()))
    parts.append(f"dropped {at_xdp + at_tc} passed {passed}")
    parts.append(f"avg drop {_ns(state.average_ns(TimingSlot.DROP))} "
                 f"pass {_ns(state.average_ns(TimingSlot.PASS))}")
    return " | ".join(parts)


def render(state: DemoState) -> RenderableType:
    """The live view: pings per peer both ways, what arrived at each peer, counters and
    rates per attachment, recent drop events."""
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

    outgoing = Table(title="the host's pings to the peers (answered / sent): tc egress stops "
                           "those to the blocked peer before they leave", expand=True)
    for column in ("peer", "IPv4", "IPv6", "echo requests the peer got", "dropped at tc out"):
        outgoing.add_column(column, justify="left" if column == "peer" else "right")
    for demo_peer in state.peers:
        cells = {p.family: f"{p.answered} / {p.sent}" for p in demo_peer.host_pingers}
        style = "red" if demo_peer.role == "blocked" else "green"
        outgoing.add_row(f"[{style}]{demo_peer.role}[/]", cells.get("ipv4", "-"),
                         cells.get("ipv6", "-"), str(_seen(demo_peer)),
                         str(state.egress_drops(demo_peer)))

    counters = Table(title="pingkiller counters", expand=True)
    for column in ("interface", "hook", "dropped", "passed", "drop pps", "avg drop", "avg pass"):
        counters.add_column(column, justify="left" if column in ("interface", "hook") else "right")
    for demo_peer in state.peers:
        ifname = demo_peer.peer.host_ifname
        for hook, now, first in ((f"xdp {demo_peer.mode.value}", state.stats, state.first_stats),
                                 ("tc out", state.egress_stats, state.first_egress_stats)):
            stats, earlier = now.get(ifname), first.get(ifname)
            if stats is None or earlier is None:
                continue
            elapsed = max(stats.taken_at - earlier.taken_at, 1e-9)
            rate = (stats.dropped - earlier.dropped) / elapsed
            counters.add_row(ifname, hook, str(stats.dropped), str(stats.passed), f"{rate:.1f}",
                             _ns(stats.average_ns(TimingSlot.DROP)),
                             _ns(stats.average_ns(TimingSlot.PASS)))

    lines = [f"{ifname}: {event.describe()}" for ifname, event in state.recent_events]
    events = Panel(Text("\n".join(lines) or "(none yet)", no_wrap=True, overflow="ellipsis"),
                   title=f"drop events ({state.events_received} received)")
    left = max(0.0, state.duration - state.elapsed)
    header = (f"[bold]pingkiller demo[/]: the blocked peer's pings die at XDP and the host's "
              f"pings to it at tc egress; the allowed peer's are answered - {left:.0f}s left "
              "(Ctrl-C stops)")
    return Group(header, pings, outgoing, counters, events)


def summary_lines(state: DemoState) -> list[str]:
    """The end-of-demo summary, in words."""
    lines = ["", "Summary:"]
    for demo_peer in state.peers:
        pings = ", ".join(f"{p.family} {p.answered} of {p.sent} answered" for p in demo_peer.pingers)
        lines.append(f"  {demo_peer.role} peer {demo_peer.peer.peer_v4} ({demo_peer.mode.value} mode on "
                     f"{demo_peer.peer.host_ifname}): {pings}")
    for demo_peer in state.peers:
        pings = ", ".join(f"{p.family} {p.answered} of {p.sent} answered"
                          for p in demo_peer.host_pingers)
        line = (f"  host to the {demo_peer.role} peer (tc out on {demo_peer.peer.host_ifname}): "
                f"{pings}; {_seen(demo_peer)} echo requests reached it")
        if demo_peer.role == "blocked":
            line += f", {state.egress_drops(demo_peer)} tries dropped before they left"
        lines.append(line)
    at_xdp, at_tc = state.dropped()
    lines.append(f"  pingkiller dropped {at_xdp + at_tc} packets ({at_xdp} at XDP, {at_tc} at tc "
                 f"egress), sent {state.events_received} drop events; average processing time "
                 f"at XDP: drop {_ns(state.average_ns(TimingSlot.DROP))}, "
                 f"pass {_ns(state.average_ns(TimingSlot.PASS))}")
    problems = state.problems()
    if state.interrupted:
        lines.append("  interrupted before the end")
    lines.extend(f"  FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append("  OK: every ping to or from the blocked peer was killed (the host's at tc "
                     "egress, before they left), the others answered")
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
