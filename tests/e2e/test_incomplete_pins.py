"""Pins missing a piece are reported as incomplete, with their real filtering state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.point import Point
from pingkiller.store import Store
from tests.e2e.helpers import pk, pk_json, pk_ok, xdp_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads XDP programs")


@pytest.mark.parametrize("missing", ["timing", "rules_v6", "settings"])
def test_a_missing_map_pin_is_named_and_the_program_still_filters(
    missing: str, pin_root: Path, sandbox: Sandbox
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    attached = pk_json("attach", ifname, "--block", peer.peer_v4)
    (Store().directory(Point(ifname)) / missing).unlink()

    (info,) = pk_json("status")
    assert info["stale"] is False and info["state"] == "filtering", info
    assert f"incomplete: missing {missing}" in info["problem"]
    assert info["program_id"] == attached["program_id"] == xdp_ids(ifname)[0]
    assert peer.ping(peer.host_v4, count=2) == 0  # it does still drop
    human = pk_ok("status")
    assert f"incomplete: missing {missing}" in human and "it still filters" in human
    stats = pk("stats", ifname)
    assert stats.returncode == 2 and "Traceback" not in stats.stderr
    assert f"incomplete: missing {missing}" in stats.stderr
    assert pk_json("detach", ifname) == [{"interface": ifname, "hook": "xdp", "direction": "in",
                                          "was_stale": False}]
    assert xdp_ids(ifname) == []
    assert peer.ping(peer.host_v4, count=1) == 1


def test_incomplete_pins_of_a_gone_interface_are_stale(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname)
    (Store().directory(Point(ifname)) / "timing").unlink()
    sandbox.close()  # the interface goes with its namespace
    (info,) = pk_json("status")
    assert info["stale"] is True and "incomplete: missing timing" in info["problem"]
    assert pk_json("detach", ifname) == [{"interface": ifname, "hook": "xdp", "direction": "in",
                                          "was_stale": True}]
