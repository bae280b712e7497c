"""Watchers (`stats --watch`, `events`) notice when what they watch ends.

A detach, or a new attachment in the old one's place, leaves a watcher reading maps no
program writes any more: it stops with one line and exit 1. A `--replace` carries the
counters and the event ring over, so a watcher carries on across it (and says so).
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import pins_left, pk_ok, xdp_ids

from pingkiller.demo.sandbox import Peer, run

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "pingkiller"]
STOPS_WITHIN = 5.0  # seconds: events looks about once a second, stats every interval


class Watcher:
    """A watcher command running as a subprocess, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        if args[0] == "events":  # it reads from now on: from its line on stderr saying so
            assert self.proc.stderr is not None
            ready, _, _ = select.select([self.proc.stderr], [], [], 10.0)
            assert ready and "from now on" in self.proc.stderr.readline(), args

    def line(self, timeout: float = 10.0) -> str:
        """The next line on stdout (fails after ``timeout`` seconds)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"{self.args}: no output within {timeout} s"
        line = self.proc.stdout.readline()
        assert line, f"{self.args} ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
        return line

    def ends(self, within: float = STOPS_WITHIN) -> tuple[int, list[str]]:
        """Exit code and stderr lines, once it exits by itself within ``within`` seconds."""
        started = time.monotonic()
        try:
            _, err = self.proc.communicate(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pingkiller {' '.join(self.args)} still runs {within} s later")
        assert time.monotonic() - started < within
        assert "Traceback" not in err, err
        return self.proc.returncode, err.splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@contextmanager
def watching(*args: str) -> Iterator[Watcher]:
    watcher = Watcher(*args)
    try:
        yield watcher
    finally:
        watcher.stop()


@contextmanager
def paused(*watchers: Watcher) -> Iterator[None]:
    """The watchers stopped (SIGSTOP) meanwhile: what changes then, they see at once after."""
    for watcher in watchers:
        watcher.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for watcher in watchers:
            watcher.proc.send_signal(signal.SIGCONT)


def dropped_event(events: Watcher, blocked_peer: Peer) -> str:
    """Ping from the blocked peer and return the event line it makes."""
    assert blocked_peer.ping(blocked_peer.host_v4, count=1, wait=0.5) == 0
    line = events.line()
    sent = f"{blocked_peer.peer_v4} > {blocked_peer.host_v4} echo-request"
    assert sent in line and "drop" in line, line
    return line


def started(blocked_peer: Peer) -> tuple[Watcher, Watcher]:
    """`stats --watch` and `events` on the blocked peer's attachment, both seen running."""
    ifname = blocked_peer.host_ifname
    stats = Watcher("stats", ifname, "--watch", "--interval", "0.2", "--json")
    events = Watcher("events", ifname)
    json.loads(stats.line())
    dropped_event(events, blocked_peer)
    return stats, events



def test_watchers_stop_when_detached(blocked_peer: Peer, pin_root: Path) -> None:
    ifname = blocked_peer.host_ifname
    stats, events = started(blocked_peer)
    try:
        pk_ok("detach", ifname)
        code, lines = stats.ends()
        assert code == 1 and lines == [f"pingkiller: {ifname} was detached; stopping"], lines
        code, lines = events.ends()
        assert code == 1, lines
        assert len(lines) == 2 and lines[0].startswith("1 events received;"), lines
        assert lines[1] == f"pingkiller: {ifname} was detached; stopping"
    finally:
        stats.stop()
        events.stop()
    assert pins_left(pin_root) == [] and xdp_ids(ifname) == []


def test_events_left_in_the_ring_are_shown_before_stopping(blocked_peer: Peer) -> None:
    ifname = blocked_peer.host_ifname
    with watching("events", ifname) as events:
        dropped_event(events, blocked_peer)
        with paused(events):
            # the events wait in the ring
            assert blocked_peer.ping(blocked_peer.host_v4, count=2, wait=0.5) == 0
            pk_ok("detach", ifname)
        assert "echo-request" in events.line() and "echo-request" in events.line()
        code, lines = events.ends()
        assert code == 1 and lines[0].startswith("3 events received;"), lines
        assert lines[-1] == f"pingkiller: {ifname} was detached; stopping"


def test_watchers_carry_on_across_a_replace(blocked_peer: Peer) -> None:
    """The counters and the event ring carry over a --replace: so do the watchers."""
    ifname = blocked_peer.host_ifname
    stats, events = started(blocked_peer)
    try:
        before = json.loads(stats.line())["packets"]["drop_block"]
        pk_ok("attach", ifname, "--replace", "--block", blocked_peer.peer_v4)
        dropped_event(events, blocked_peer)  # the new program's event, through the same ring
        deadline = time.monotonic() + STOPS_WITHIN
        while json.loads(stats.line())["packets"]["drop_block"] <= before:
            assert time.monotonic() < deadline, "stats --watch shows no new drop"
        time.sleep(1.5)  # events has looked at the pins since the replace
        assert stats.proc.poll() is None and events.proc.poll() is None
        pk_ok("detach", ifname)
        for watcher in (stats, events):
            code, lines = watcher.ends()
            assert code == 1 and lines[-1] == f"pingkiller: {ifname} was detached; stopping", lines
            notes = [line for line in lines if "program was replaced" in line]
            assert len(notes) == 1 and "carry over" in notes[0], lines
    finally:
        stats.stop()
        events.stop()


def test_watchers_stop_when_another_attachment_takes_the_place(blocked_peer: Peer) -> None:
    """Detached and attached again: new maps, so the old ones are frozen."""
    ifname = blocked_peer.host_ifname
    stats, events = started(blocked_peer)
    try:
        with paused(stats, events):
            pk_ok("detach", ifname)
            pk_ok("attach", ifname, "--block", blocked_peer.peer_v4)
        for watcher in (stats, events):
            code, lines = watcher.ends()
            assert code == 1, lines
            assert lines[-1] == (
                f"pingkiller: {ifname} was detached and attached again, with counters and events "
                "of its own: open it again to follow the new attachment; stopping")
    finally:
        stats.stop()
        events.stop()


def test_pins_removed_by_hand_under_watchers_leave_nothing_attached(
    blocked_peer: Peer, pin_root: Path
) -> None:
    """Watchers hold no link: with the pins removed (`rm -r`) the program goes, the
    watchers stop, and attaching again is not refused as another tool's program."""
    ifname = blocked_peer.host_ifname
    stats, events = started(blocked_peer)
    try:
        run(["rm", "-r", str(pin_root / ifname)])
        assert xdp_ids(ifname) == []
        for watcher in (stats, events):
            code, lines = watcher.ends()
            assert code == 1 and lines[-1] == f"pingkiller: {ifname} was detached; stopping"
        pk_ok("attach", ifname, "--block", blocked_peer.peer_v4)
        assert blocked_peer.ping(blocked_peer.host_v4, count=1) == 0
    finally:
        stats.stop()
        events.stop()
