"""Attachments are known by network namespace + link, not by an ifindex alone.

An ifindex is unique only within a network namespace: an interface moved away keeps
filtering there, and another interface may take its index here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from pingkiller.demo.sandbox import IP, Sandbox, run
from tests.e2e.helpers import pk, pk_json, pk_ok

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads XDP programs")


def xdp_ids_in(netns: str, ifname: str) -> list[int]:
    """Program ids XDP-attached to ``ifname`` in ``netns``, as bpftool sees them there."""
    shown = run(["ip", "netns", "exec", netns, "bpftool", "-j", "net", "show", "dev", ifname])
    (found,) = json.loads(shown.stdout)
    return sorted(entry["id"] for entry in found["xdp"])


def test_a_moved_interface_is_reported_truthfully_and_detachable(
    pin_root: Path, sandbox: Sandbox
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    attached = pk_json("attach", ifname, "--block", peer.peer_v4)
    ifindex = attached["ifindex"]
    run([IP, "link", "set", ifname, "netns", peer.netns])

    (info,) = pk_json("status")
    assert info["state"] == "moved" and info["stale"] is False, info
    assert "moved to another network namespace" in info["problem"]
    assert info["program_id"] == attached["program_id"]
    assert xdp_ids_in(peer.netns, ifname) == [attached["program_id"]]  # still filtering there
    assert "still filtering" in pk_ok("status")
    refused = pk("attach", ifname)  # the name is not here any more
    assert refused.returncode == 2 and "not found" in refused.stderr

    # Another interface takes the index here: it is not taken for the moved one.
    other = f"pkx{os.getpid() % 100000}"
    run([IP, "link", "add", other, "index", str(ifindex), "type", "veth", "peer", "name", f"{other}p"])
    try:
        assert socket.if_nametoindex(other) == ifindex
        (info,) = pk_json("status")
        assert info["state"] == "moved", info
        second = pk_json("attach", other, "--block", "198.51.100.1")
        assert second["ifindex"] == ifindex and second["state"] == "filtering"
        states = {i["interface"]: i["state"] for i in pk_json("status")}
        assert states == {ifname: "moved", other: "filtering"}
        pk_ok("detach", other)
    finally:
        run([IP, "link", "del", other], check=False)

    detached = pk_json("detach", ifname)
    assert detached == [{"interface": ifname, "hook": "xdp", "direction": "in", "was_stale": False}]
    assert xdp_ids_in(peer.netns, ifname) == []
    assert pk_json("status") == []
