"""`pingkiller demo` end to end: real namespaces, real ping, JSON summary, nothing left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pingkiller.demo.sandbox import IP, run

pytestmark = pytest.mark.root

DEMO = [sys.executable, "-m", "pingkiller", "demo"]


def _leftovers(peers: list[dict[str, Any]]) -> list[str]:
    """Namespaces and host-side interfaces of the demo that still exist."""
    namespaces = run([IP, "netns", "list"]).stdout
    links = run([IP, "-o", "link", "show"]).stdout
    found = [p["namespace"] for p in peers if p["namespace"] in namespaces.split()]
    found += [p["interface"] for p in peers if f": {p['interface']}@" in links
              or f": {p['interface']}:" in links]
    return found


def _demo_namespaces(pid: int) -> list[str]:
    return [n for n in run([IP, "netns", "list"]).stdout.split() if n.startswith(f"pk-{pid % 100000}-")]


def test_demo_json_summary_kills_only_the_blocked_peer(pin_root: Path) -> None:
    start = time.monotonic()
    result = subprocess.run([*DEMO, "--duration", "3", "--json"], capture_output=True, text=True,
                            timeout=60)
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["problems"] == []
    assert summary["duration_s"] < 3 + 2 and took < 3 + 10  # pings both ways at once
    blocked, allowed, limited = summary["peers"]
    assert (blocked["role"], allowed["role"], limited["role"]) == ("blocked", "allowed", "limited")
    assert limited["limit"] == {"rate": "10/s", "burst": 10} and allowed["limit"] is None
    for family in ("ipv4", "ipv6"):
        assert blocked["pings"][family]["sent"] >= 5
        assert blocked["pings"][family]["answered"] == 0
        assert allowed["pings"][family]["sent"] >= 5
        assert allowed["pings"][family]["answered"] >= allowed["pings"][family]["sent"] - 1
        # The host's own pings: to the blocked peer none leaves (ping tries a request
        # the egress hook refused again, so it counts few sent), to the other all do.
        assert blocked["host_pings"][family]["sent"] >= 1
        assert blocked["host_pings"][family]["answered"] == 0
        assert blocked["echo_requests_received"][family] == 0
        sent = allowed["host_pings"][family]["sent"]
        assert sent >= 5 and allowed["host_pings"][family]["answered"] >= sent - 1
        assert allowed["echo_requests_received"][family] >= allowed["host_pings"][family]["answered"]
        # The limited peer pings at 50/s: about its burst and 10 a second are answered
        # (the demo itself fails unless within 3 of that), the host's pings all are.
        pings = limited["pings"][family]
        assert pings["sent"] >= 50 and 10 <= pings["answered"] <= 10 + 10 * 3 + 3 < pings["sent"]
        sent = limited["host_pings"][family]["sent"]
        assert limited["host_pings"][family]["answered"] >= sent - 1
    blocked_stats = summary["stats"][blocked["interface"]]
    allowed_stats = summary["stats"][allowed["interface"]]
    requests = sum(blocked["pings"][f]["sent"] for f in ("ipv4", "ipv6"))
    assert blocked_stats["packets"]["drop_block"] == requests
    assert allowed_stats["dropped"] == 0
    egress = summary["egress_stats"]
    tries = egress[blocked["interface"]]["packets"]["drop_block"]
    assert tries >= sum(blocked["host_pings"][f]["sent"] for f in ("ipv4", "ipv6"))
    assert egress[allowed["interface"]]["dropped"] == 0
    assert egress[allowed["interface"]]["passed"] >= sum(
        allowed["host_pings"][f]["sent"] for f in ("ipv4", "ipv6"))
    limited_stats = summary["stats"][limited["interface"]]
    limited_requests = sum(limited["pings"][f]["sent"] for f in ("ipv4", "ipv6"))
    assert limited_stats["packets"]["pass_rate"] + limited_stats["packets"]["drop_rate"] == \
        limited_requests
    assert limited_stats["buckets"]["used"] == 2  # one IPv4 source, one IPv6 /64
    assert summary["events_received"] == requests + tries + limited_stats["packets"]["drop_rate"]
    assert summary["average_ns"]["drop"] > 0 and summary["average_ns"]["pass"] > 0
    assert _leftovers(summary["peers"]) == []
    assert not pin_root.exists(), "the demo must not pin anything"


def test_demo_plain_lines_when_stdout_is_not_a_terminal(pin_root: Path) -> None:
    result = subprocess.run([*DEMO, "--duration", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("t=") and "| blocked: ipv4 0/" in line for line in lines)
    assert any(line.startswith("t=") and "host->blocked: ipv4 0/" in line
               and "peer got 0, tc out dropped " in line for line in lines)
    assert any(line.startswith("event ") and "drop (drop_block)" in line
               and ": tc out " not in line for line in lines)
    assert any(line.startswith("event ") and ": tc out " in line and "drop (drop_block)" in line
               for line in lines)
    assert "\x1b[" not in result.stdout
    assert any(line.startswith("  host to the blocked peer (tc out on ")
               and "0 echo requests reached it" in line for line in lines)
    assert any("OK: every ping to or from the blocked peer was killed" in line for line in lines)
    assert any(line.startswith("t=") and "| limited: ipv4 " in line
               and "(limit 10/s, burst 10)" in line for line in lines)
    assert any(line.startswith("  limited peer ") and "the limit allows" in line for line in lines)


def test_demo_cleans_up_on_sigterm(pin_root: Path) -> None:
    process = subprocess.Popen([*DEMO, "--duration", "30", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(_demo_namespaces(process.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_demo_namespaces(process.pid)) == 3
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:  # it hung: kill it, and remove what it could not
            process.kill()
            process.wait()
            for namespace in _demo_namespaces(process.pid):
                run([IP, "netns", "del", namespace], check=False)
    assert process.returncode == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["ok"] is False
    assert _demo_namespaces(process.pid) == []
    assert _leftovers(summary["peers"]) == []
