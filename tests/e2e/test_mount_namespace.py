"""Pins made where they would vanish are refused: `ip netns exec` gives a command a private
mount namespace with a fresh /sys, so a bpffs pingkiller mounted there, and every pin in
it, would go when the command exits (and the attachment with them). `nsenter --net`
keeps the host's mounts, so pins made through it stay.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pins_left

from pingkiller.demo.sandbox import IP, Sandbox, run

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "pingkiller"]


def lo_xdp(netns: str) -> bool:
    """Whether lo in ``netns`` has an XDP program."""
    return "xdp" in run([IP, "-n", netns, "link", "show", "lo"]).stdout


def test_attach_under_ip_netns_exec_is_refused(pin_root: Path, sandbox: Sandbox) -> None:
    netns = sandbox.add_peer().netns
    for args in (["attach", "lo"], ["attach", "lo", "--replace"], ["detach", "lo"]):
        result = subprocess.run([IP, "netns", "exec", netns, *CLI, *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        line = lines[0]
        assert "/sys/fs/bpf is not mounted in this mount namespace" in line, line
        assert "pins made here would vanish when this command exits" in line, line
        assert "nsenter --net=/run/netns/NS pingkiller" in line, line
    assert not lo_xdp(netns)
    assert pins_left(pin_root) == []


def test_attach_through_nsenter_pins_on_the_hosts_bpffs(pin_root: Path, sandbox: Sandbox) -> None:
    netns = sandbox.add_peer().netns
    inside = ["nsenter", f"--net=/run/netns/{netns}", *CLI]
    attached = subprocess.run([*inside, "attach", "lo"], capture_output=True, text=True, timeout=60)
    assert attached.returncode == 0, attached.stderr
    assert lo_xdp(netns)  # still attached after the command exited
    assert "lo/program" in pins_left(pin_root)
    status = subprocess.run([*inside, "status", "lo"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("lo "), status.stderr
    detached = subprocess.run([*inside, "detach", "lo"], capture_output=True, text=True, timeout=60)
    assert detached.returncode == 0, detached.stderr
    assert not lo_xdp(netns) and pins_left(pin_root) == []
