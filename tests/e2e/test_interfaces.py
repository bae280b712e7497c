"""Interfaces that are not what they seem: tunnels, renamed veths, an interrupted replace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pk

import pingkiller
from pingkiller.bpf import xdp_query
from pingkiller.demo.sandbox import IP, Sandbox
from pingkiller.hooks import pinned
from pingkiller.model.enums import Mode
from pingkiller.store.layout import LINK_PIN
from pingkiller.system import interfaces

pytestmark = pytest.mark.root


def test_non_ethernet_device_is_refused(sandbox: Sandbox, pin_root: Path) -> None:
    peer = sandbox.add_peer()
    tun = f"pk{sandbox.tag}t"
    peer.run([IP, "tuntap", "add", "dev", tun, "mode", "tun"])
    result = subprocess.run(
        peer.exec_args([sys.executable, "-m", "pingkiller", "attach", tun]),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not an Ethernet device" in result.stderr
    assert not pin_root.exists() or not any(pin_root.iterdir())


def test_renamed_interface_still_filters_and_is_not_taken_for_foreign(
    sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()
    assert pk("attach", peer.host_ifname, "--block", peer.peer_v4).returncode == 0
    renamed = f"pk{sandbox.tag}r"
    subprocess.run([IP, "link", "set", peer.host_ifname, "down"], check=True)
    subprocess.run([IP, "link", "set", peer.host_ifname, "name", renamed], check=True)
    subprocess.run([IP, "link", "set", renamed, "up"], check=True)
    try:
        assert peer.ping(peer.host_v4) == 0  # still dropping
        [info] = pingkiller.attachments()
        assert not info.stale and "renamed" in info.problem and info.mode != Mode.NONE

        again = pk("attach", renamed)
        assert again.returncode == 1
        assert f"pingkiller detach {peer.host_ifname}" in again.stderr
        assert "did not attach" not in again.stderr  # not called foreign

        assert pk("detach", peer.host_ifname).returncode == 0
        assert xdp_query(interfaces.interface_index(renamed)).attached_ids == []
        assert peer.ping(peer.host_v4) == 1
    finally:
        subprocess.run([IP, "link", "del", renamed], capture_output=True)


def test_replace_interrupted_after_the_swap_keeps_the_running_maps(
    sandbox: Sandbox, pin_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=["198.18.255.1"]).close()

    real_secure = pinned.secure

    def interrupt_after_link_pin(path: Path) -> None:
        real_secure(path)
        if path.name == LINK_PIN:
            raise KeyboardInterrupt

    monkeypatch.setattr(pinned, "secure", interrupt_after_link_pin)
    with pytest.raises(KeyboardInterrupt):
        pingkiller.attach(peer.host_ifname, pingkiller.Policy(pingkiller.DefaultAction.PASS),
                          replace=True)
    monkeypatch.setattr(pinned, "secure", real_secure)

    # The pins must now be the running program's: a rule added through them is enforced.
    with pingkiller.open(peer.host_ifname) as attachment:
        assert attachment.policy.default == pingkiller.DefaultAction.PASS
        assert peer.ping(peer.host_v4) == 1
        attachment.block([peer.peer_v4])
        assert peer.ping(peer.host_v4) == 0
        assert attachment.stats().dropped >= 1
    assert [p.name for p in pin_root.iterdir()] == [peer.host_ifname]
