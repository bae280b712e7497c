"""The demo as people see it: a rich live view on a terminal (:func:`render`), one plain
line a second elsewhere (:func:`plain_line`), and the summary at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from pingkiller.demo.run import DemoPeer, DemoState, limited_range, run
from pingkiller.model.enums import TimingSlot
from pingkiller.model.events import Event

if TYPE_CHECKING:
    from rich.console import RenderableType


def _ns(value: float | None) -> str:
    return f"{value:.0f} ns" if value is not None else "-"


def _seen(demo_peer: DemoPeer) -> int:
    return demo_peer.echoes.total if demo_peer.echoes else 0


_STYLES = {"blocked": "red", "allowed": "green", "limited": "yellow"}


def _limit_note(demo_peer: DemoPeer) -> str:
    """`` (limit 10/s, burst 10)`` for the limited peer, else ''."""
    limit = demo_peer.limit
    return f" (limit {limit.rate}, burst {limit.burst})" if limit else ""


def plain_line(state: DemoState) -> str:
    """One status line for a non-terminal stdout."""
    parts = [f"t={state.elapsed:4.1f}s"]
    for demo_peer in state.peers:
        pings = " ".join(f"{p.family} {p.answered}/{p.sent}" for p in demo_peer.pingers)
        parts.append(f"{demo_peer.role}: {pings}{_limit_note(demo_peer)}")
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
        style = _STYLES[demo_peer.role]
        pings.add_row(f"[{style}]{demo_peer.role}[/]{_limit_note(demo_peer)}",
                      f"{demo_peer.peer.peer_v4}  "
                      f"{demo_peer.peer.peer_v6}", cells.get("ipv4", "-"), cells.get("ipv6", "-"))

    outgoing = Table(title="the host's pings to the peers (answered / sent): tc egress stops "
                           "those to the blocked peer before they leave", expand=True)
    for column in ("peer", "IPv4", "IPv6", "echo requests the peer got", "dropped at tc out"):
        outgoing.add_column(column, justify="left" if column == "peer" else "right")
    for demo_peer in state.peers:
        cells = {p.family: f"{p.answered} / {p.sent}" for p in demo_peer.host_pingers}
        style = _STYLES[demo_peer.role]
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
              f"pings to it at tc egress; the allowed peer's are answered, the limited "
              f"peer's up to its limit - {left:.0f}s left (Ctrl-C stops)")
    return Group(header, pings, outgoing, counters, events)


def summary_lines(state: DemoState) -> list[str]:
    """The end-of-demo summary, in words."""
    lines = ["", "Summary:"]
    for demo_peer in state.peers:
        pings = ", ".join(f"{p.family} {p.answered} of {p.sent} answered" for p in demo_peer.pingers)
        if demo_peer.limit is not None:
            expected = [limited_range(p, demo_peer.limit) for p in demo_peer.pingers]
            pings += "; the limit allows " + ", ".join(f"{low}-{high}" for low, high in expected)
        limit = demo_peer.limit
        how = f", limit {limit.rate}, burst {limit.burst}" if limit else ""
        lines.append(f"  {demo_peer.role} peer {demo_peer.peer.peer_v4} ({demo_peer.mode.value} mode on "
                     f"{demo_peer.peer.host_ifname}{how}): {pings}")
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
                     "egress, before they left), the limited peer's answered up to its limit, "
                     "the others answered")
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
