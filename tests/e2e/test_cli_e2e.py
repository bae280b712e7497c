"""The CLI end to end: real kernel, namespaces + veth, every call a new process, real ping.

pingkiller is attached to the host end of a sandbox veth; the peer namespace pings the
host (ingress on the attached interface). Each CLI call runs as its own subprocess, so
everything after ``attach`` works only through the pins.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import (
    CLI,
    attach_foreign_program,
    flush_neighbours,
    hits,
    host_neighbour_known,
    host_ping,
    peer_ping_from,
    pins_left,
    pk,
    pk_json,
    pk_ok,
    status,
    xdp_prog_id,
)

from pingkiller.demo.sandbox import IP, PING, Peer, Sandbox, run

pytestmark = pytest.mark.root

# The --json schemas of docs/cli.md: fields may be added there, never renamed or removed.
STATUS_FIELDS = {"interface", "ifindex", "program_id", "link_id", "mode", "stale", "problem",
                 "policy", "rule_count", "rules", "stats", "pin_dir", "state", "abi_version",
                 "program", "outdated", "hook", "direction", "chain"}
POLICY_FIELDS = {"default", "icmp", "icmp_types", "all_protocols", "events", "event_rate", "timing",
                 "limit", "limit_total", "limit_prefix6", "limit_buckets"}
STATS_FIELDS = {"interface", "packets", "bytes", "dropped", "passed", "events", "average_ns",
                "kernel_run_time", "buckets"}
EVENT_FIELDS = {"time", "backlog", "timestamp_ns", "ifindex", "length", "verdict", "reason",
                "family", "protocol", "src", "dst", "type", "icmp_type", "icmp_code", "icmp_id",
                "icmp_seq", "hook", "direction"}
REASONS = {"pass_not_ping", "pass_allow", "pass_default", "drop_block", "drop_default",
           "pass_fragment", "pass_unparsed", "drop_rate", "drop_rate_total", "pass_rate"}


def test_block_outlives_cli_then_unblock_and_detach_restore(peer: Peer, pin_root: Path) -> None:
    ifname = peer.host_ifname
    assert peer.ping(peer.host_v4) == 1

    out = pk_ok("attach", ifname, "--block", peer.peer_v4)
    assert "pass pings (echo request/reply) that no rule decides" in out  # the chosen policy
    assert re.search(r"program \d+, (native|generic) mode", out)
    assert xdp_prog_id(ifname) is not None  # the attaching process has exited; still attached

    assert peer.ping(peer.host_v4) == 0
    first = status(ifname)
    assert set(first) == STATUS_FIELDS and set(first["policy"]) == POLICY_FIELDS
    assert set(first["stats"]["packets"]) == REASONS
    assert first["stale"] is False and first["interface"] == ifname
    assert first["program_id"] == xdp_prog_id(ifname)
    assert first["policy"]["default"] == "pass"
    assert hits(first, peer.peer_v4) >= 1
    assert peer.ping(peer.host_v4) == 0
    assert hits(status(ifname), peer.peer_v4) > hits(first, peer.peer_v4)

    pk_ok("unblock", ifname, peer.peer_v4)
    assert peer.ping(peer.host_v4) == 1  # at once: the next ping passes
    assert status(ifname)["rules"] == []

    pk_ok("block", ifname, peer.peer_v4)
    assert peer.ping(peer.host_v4) == 0
    out = pk_ok("detach", ifname)
    assert f"Detached from {ifname}" in out
    assert peer.ping(peer.host_v4) == 1
    assert xdp_prog_id(ifname) is None
    assert pins_left(pin_root) == []
    assert pk_json("status") == []


def test_ipv6_block_unblock_and_ndp_passes(peer: Peer, pin_root: Path) -> None:
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v6, "--icmp", "all")

    flush_neighbours(peer)
    assert peer.ping(peer.host_v6) == 0
    # The peer's neighbour solicitation (from the blocked address, ICMPv6) got through:
    # the host learned the peer's link-layer address while its pings were dropped.
    assert host_neighbour_known(peer, peer.peer_v6)
    assert hits(status(ifname), peer.peer_v6) >= 1

    pk_ok("unblock", ifname, peer.peer_v6)
    assert peer.ping(peer.host_v6) == 1

    # Default drop of all ICMP, one allowed peer: its pings, and the NDP they need, pass.
    pk_ok("attach", ifname, "--replace", "--icmp", "all", "--default", "drop", "--allow", peer.peer_v6)
    flush_neighbours(peer)
    assert peer.ping(peer.host_v6) == 1
    assert peer.ping(peer.host_v4) == 0  # everything else is still dropped
    assert pk_json("detach", ifname) == [{"interface": ifname, "hook": "xdp", "direction": "in",
                                          "was_stale": False}]
    assert pins_left(pin_root) == []


def test_default_drop_with_one_allowed_peer(peer: Peer) -> None:
    # A second peer on the same link: another address in the peer's namespace.
    other = re.sub(r"\.2$", ".3", peer.peer_v4)
    peer.run([IP, "addr", "add", f"{other}/24", "dev", peer.peer_ifname])
    assert peer_ping_from(peer, other, peer.host_v4) == 1

    out = pk_ok("attach", peer.host_ifname, "--default", "drop", "--allow", peer.peer_v4)
    assert "drop pings (echo request/reply) that no rule decides" in out
    assert peer_ping_from(peer, peer.peer_v4, peer.host_v4) == 1
    assert peer_ping_from(peer, other, peer.host_v4) == 0
    info = status(peer.host_ifname)
    assert info["stats"]["packets"]["pass_allow"] >= 1
    assert info["stats"]["packets"]["drop_default"] >= 1


def test_icmp_echo_request_drops_requests_but_lets_replies_through(peer: Peer) -> None:
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4, "--icmp", "echo-request")
    assert peer.ping(peer.host_v4) == 0  # the peer's echo requests are dropped
    assert host_ping(peer.peer_v4) == 1  # the peer's echo replies to the host pass

    # The same with --icmp echo drops the replies too: the check above can fail.
    pk_ok("attach", ifname, "--replace", "--block", peer.peer_v4, "--icmp", "echo")
    assert host_ping(peer.peer_v4) == 0


def test_events_and_stats_count_real_pings(peer: Peer) -> None:
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    reader = subprocess.Popen(
        [*CLI, "events", ifname, "--json", "--count", "3", "--timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stderr is not None  # it reads from now on: from the line saying so
        assert json.loads(reader.stderr.readline()) == {
            "start": {"interface": ifname, "skipped": 0, "backlog": 0}}
        assert peer.ping(peer.host_v4, count=3) == 0
        out, err = reader.communicate(timeout=15)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["icmp_seq"] for e in events] == [1, 2, 3]
    for event in events:
        assert set(event) == EVENT_FIELDS
        assert (event["src"], event["dst"]) == (peer.peer_v4, peer.host_v4)
        assert (event["verdict"], event["reason"], event["type"]) == ("drop", "drop_block", "echo-request")
        assert event["family"] == 4 and event["protocol"] == 1 and event["backlog"] is False
    assert json.loads(err.strip().splitlines()[-1]) == {
        "summary": {"received": 3, "suppressed": 0, "lost": 0}
    }

    pk_ok("unblock", ifname, peer.peer_v4)
    assert peer.ping(peer.host_v4, count=2) == 2
    counters = pk_json("stats", ifname)
    assert set(counters) == STATS_FIELDS
    assert counters["interface"] == ifname
    assert counters["packets"]["drop_block"] == 3
    assert counters["packets"]["pass_default"] == 2
    assert counters["bytes"]["drop_block"] == 3 * 98  # 84-byte IPv4 ping + Ethernet header
    assert counters["dropped"] == 3
    assert counters["events"] == {"sent": 3, "suppressed": 0, "lost": 0}


def test_from_file_with_100k_prefixes_is_loaded_and_enforced(peer: Peer, tmp_path: Path) -> None:
    ifname = peer.host_ifname
    blocklist = tmp_path / "blocklist.txt"
    lines = ["# a blocklist in the usual format", "; with both comment styles", ""]
    lines += [f"10.{i >> 8}.{i & 255}.0/24" for i in range(65536)]
    lines += [f"11.{i >> 8}.{i & 255}.0/24  # trailing comment" for i in range(100_000 - 65536)]
    lines.append(f"{peer.peer_v4}/31")  # covers the peer only (.2 and .3)
    blocklist.write_text("\n".join(lines) + "\n")

    pk_ok("attach", ifname, "--default", "pass")
    assert peer.ping(peer.host_v4) == 1
    result = pk_json("block", ifname, "--from-file", str(blocklist))
    assert result == {"interface": ifname, "action": "block", "requested": 100_001,
                      "limit": None, "changed": 100_001, "rule_count": 100_001,
                      "attachments": [{"hook": "xdp", "direction": "in", "changed": 100_001,
                                       "rule_count": 100_001}]}
    assert peer.ping(peer.host_v4) == 0
    removed = pk_json("unblock", ifname, f"{peer.peer_v4}/31")
    assert (removed["changed"], removed["rule_count"]) == (1, 100_000)
    assert peer.ping(peer.host_v4) == 1


def test_replace_swaps_policy_without_a_window(peer: Peer) -> None:
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    before = status(ifname)
    pinger = subprocess.Popen(
        peer.exec_args([PING, "-n", "-q", "-c", "80", "-i", "0.05", "-W", "1", peer.host_v4]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out = pk_ok("attach", ifname, "--replace", "--block", peer.peer_v4, "--icmp", "all",
                    "--events", "all")
        assert f"Replaced policy on {ifname}" in out
        pk_ok("attach", ifname, "--replace", "--block", peer.peer_v4)
        assert pinger.poll() is None, "the replaces must happen while ping runs"
        ping_out, _ = pinger.communicate(timeout=15)
    finally:
        pinger.kill()
    assert re.search(r"80 packets transmitted, 0 received", ping_out), ping_out
    after = status(ifname)
    assert after["program_id"] != before["program_id"]
    assert after["link_id"] == before["link_id"]  # the same link, its program swapped
    assert after["stats"]["packets"]["drop_block"] >= 80  # counters carried across replaces


def test_foreign_xdp_program_is_left_alone(peer: Peer, pin_root: Path, tmp_path: Path) -> None:
    ifname = peer.host_ifname
    foreign = attach_foreign_program(ifname, tmp_path)
    before = pk_json("status")

    result = pk("attach", ifname, "--block", peer.peer_v4)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"program id {foreign}" in line and "foreign_pass" in line
    assert xdp_prog_id(ifname) == foreign
    assert pk_json("status") == before == []
    assert pins_left(pin_root) == []
    assert peer.ping(peer.host_v4) == 1


def test_interface_deleted_while_attached_is_stale_and_detach_cleans(peer: Peer, pin_root: Path) -> None:
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    run([IP, "link", "del", ifname])

    (info,) = pk_json("status")
    assert info["interface"] == ifname and info["stale"] is True
    assert "gone" in info["problem"]
    (line,) = [line for line in pk_ok("status").splitlines() if "STALE" in line]
    assert line.endswith(f"`pingkiller detach {ifname}` cleans it")  # one line, even in a pipe

    refused = pk("block", ifname, "198.18.99.9")  # a rule there would filter nothing
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert f"pingkiller detach {ifname}" in refused.stderr

    result = pk("detach", ifname)
    assert result.returncode == 0 and result.stderr == ""
    assert "stale" in result.stdout
    assert pins_left(pin_root) == []
    assert pk_json("status") == []


def _status_without_counters() -> object:
    infos = pk_json("status")
    for info in infos:
        info.pop("stats")
        for rule in info["rules"]:
            rule.pop("hits")
    return infos


BAD_INPUTS = [
    # (arguments, exit code, words the one stderr line must hold); IF = attached, FREE = not.
    # Pure usage errors are covered in-process by tests/unit/cli/test_cli_unit.py; these need
    # the kernel's and the pins' state.
    (["attach", "IF", "--block", "198.18.0.300"], 2, "not an IPv4/IPv6 address"),
    (["attach", "pknosuch0"], 2, "not found"),
    (["attach", "IF"], 1, "already holds"),
    (["block", "FREE", "198.18.0.9"], 2, "no pingkiller attachment"),
    (["unblock", "IF", "not-an-address"], 2, "not an IPv4/IPv6 address"),
    (["detach", "FREE"], 2, "nothing to detach"),
    (["detach", "--all", "IF"], 2, "not both"),
    (["status", "FREE"], 2, "no pingkiller attachment"),
    (["events", "pknosuch0"], 2, "no pingkiller attachment"),
]


def test_bad_inputs_give_one_line_and_change_nothing(sandbox: Sandbox, pin_root: Path) -> None:
    attached, free = sandbox.add_peer(), sandbox.add_peer()
    pk_ok("attach", attached.host_ifname, "--block", attached.peer_v4)
    before, pins_before = _status_without_counters(), pins_left(pin_root)
    names = {"IF": attached.host_ifname, "FREE": free.host_ifname}

    for args, code, words in BAD_INPUTS:
        argv = [names.get(arg, arg) for arg in args]
        result = pk(*argv)
        assert result.returncode == code, (argv, result.stderr)
        assert result.stdout == "", argv
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (argv, result.stderr)
        assert lines[0].startswith("pingkiller: ") and words in lines[0], (argv, lines[0])

    assert _status_without_counters() == before
    assert pins_left(pin_root) == pins_before
    assert xdp_prog_id(free.host_ifname) is None
    assert attached.ping(attached.host_v4) == 0 and free.ping(free.host_v4) == 1


def test_replace_cannot_change_the_mode_and_says_so_in_one_line(peer: Peer) -> None:
    pk_ok("attach", peer.host_ifname, "--mode", "native", "--block", peer.peer_v4)
    before = status(peer.host_ifname)
    result = pk("attach", peer.host_ifname, "--replace", "--mode", "generic")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "pingkiller: replace keeps the attach mode (native); to change it to generic, "
        "detach first\n"
    )
    after = status(peer.host_ifname)
    assert (after["program_id"], after["mode"]) == (before["program_id"], "native")
