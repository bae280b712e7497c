"""`pingkiller events` shows what happens from now on (issue #14, item 4).

What the ring buffered while nobody read is skipped (and counted), or with --backlog
shown first and marked; --count N takes exactly N events from the ring and leaves the
rest for the next reader; every line carries the packet's time.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import time
from datetime import UTC, datetime

import pytest
from helpers import CLI, pk

from pingkiller.demo.sandbox import Peer

pytestmark = pytest.mark.root

TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{6}) ")
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"



def drops(blocked_peer: Peer, count: int) -> None:
    """``count`` pings from the blocked peer, sent quickly: ``count`` drop events."""
    assert blocked_peer.ping(blocked_peer.host_v4, count=count, wait=0.1, interval=0.01) == 0


def events(*args: str) -> tuple[list[str], list[str]]:
    """``pingkiller events ARGS``, which must exit 0: its stdout and stderr lines."""
    result = pk("events", *args, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines(), result.stderr.splitlines()


def seq(line: str) -> int:
    match = re.search(r" seq (\d+):", line)
    assert match, line
    return int(match[1])


def seconds_from_now(line: str) -> float:
    """How far the local time a human line starts with is from now (either way)."""
    match = TIME.match(line)
    assert match, line
    hours, minutes, secs, micros = (int(part) for part in match.groups())
    now = datetime.now().astimezone()
    then = now.replace(hour=hours, minute=minutes, second=secs, microsecond=micros)
    return min(abs((now - then).total_seconds() + day) for day in (-86400, 0, 86400))


def test_buffered_events_are_skipped_or_shown_first_as_backlog(blocked_peer: Peer) -> None:
    ifname = blocked_peer.host_ifname
    drops(blocked_peer, 3)  # nobody reads: they wait in the ring
    out, err = events(ifname, "--timeout", "0.5")
    assert out == []
    assert err[0] == (f"Events on {ifname} from now on: 3 buffered before now were skipped "
                      "(--backlog shows them)")
    assert err[1].startswith("0 events received;")

    drops(blocked_peer, 2)
    out, err = events(ifname, "--backlog", "--count", "2", "--timeout", "5")
    assert err[0] == (f"Events on {ifname}: first the 2 buffered before now (marked backlog), "
                      "then as they happen")
    assert len(out) == 2 and [seq(line) for line in out] == [1, 2], out
    for line in out:
        assert seconds_from_now(line) < 30, line
        sent = f"backlog {blocked_peer.peer_v4} > {blocked_peer.host_v4} echo-request"
        assert line[16:].startswith(sent), line

    drops(blocked_peer, 1)
    out, err = events(ifname, "--backlog", "--json", "--timeout", "0.5")
    assert json.loads(err[0]) == {"start": {"interface": ifname, "skipped": 0, "backlog": 1}}
    (event,) = [json.loads(line) for line in out]
    assert event["backlog"] is True and event["src"] == blocked_peer.peer_v4
    when = datetime.strptime(event["time"], ISO).replace(tzinfo=UTC)
    assert abs(time.time() - when.timestamp()) < 30
    # time is timestamp_ns (CLOCK_MONOTONIC) on the wall clock
    wall = time.time_ns() - time.monotonic_ns() + event["timestamp_ns"]
    assert abs(wall / 1e9 - when.timestamp()) < 1.0

    out, err = events(ifname, "--timeout", "0.2")  # all of it was read: nothing left
    assert (out, err[0]) == ([], f"Events on {ifname} from now on")


def test_count_takes_exactly_n_and_leaves_the_rest_for_the_next_reader(blocked_peer: Peer) -> None:
    ifname = blocked_peer.host_ifname
    drops(blocked_peer, 1)  # from before: skipped
    reader = subprocess.Popen([*CLI, "events", ifname, "--count", "2", "--timeout", "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stderr is not None
        ready, _, _ = select.select([reader.stderr], [], [], 10.0)
        assert ready, "events said nothing on stderr"
        assert "from now on: 1 buffered before now were skipped" in reader.stderr.readline()
        drops(blocked_peer, 5)
        out, err = reader.communicate(timeout=20)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    lines = out.splitlines()
    assert [seq(line) for line in lines] == [1, 2], lines
    for line in lines:
        assert seconds_from_now(line) < 30, line
        assert line[16:].startswith(f"{blocked_peer.peer_v4} > {blocked_peer.host_v4} echo-request"), line
    assert err.startswith("2 events received;"), err

    out, err_lines = events(ifname, "--backlog", "--count", "3", "--json", "--timeout", "5")
    assert json.loads(err_lines[0])["start"]["backlog"] == 3
    rest = [json.loads(line) for line in out]
    assert [(e["icmp_seq"], e["backlog"]) for e in rest] == [(3, True), (4, True), (5, True)]
    assert json.loads(err_lines[-1])["summary"]["received"] == 3
