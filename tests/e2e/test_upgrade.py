"""Versioned pins and in-place upgrades, with real builds of another pingkiller.

A *variant* is this pingkiller copied to a temporary directory and changed the way a
release would change it: its BPF object rebuilt (same source, other build paths: another
ELF, so another program identity) and, for ABI tests, its ABI version bumped. It runs as
its own CLI (``PYTHONPATH=variant``), against the same kernel and pin root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from faults import assert_clean
from helpers import pk, pk_json, pk_ok, xdp_ids
from variants import hits_by_rule, run_cli

import pingkiller
from pingkiller import abi
from pingkiller.datapath import program as datapath
from pingkiller.demo.sandbox import PING, Sandbox
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import IDENTITY_PIN
from pingkiller.store.records import Identity

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads XDP programs")


def outdated_gauge(ifname: str) -> float:
    from pingkiller.exporter import PingkillerCollector

    (family,) = [f for f in PingkillerCollector().collect() if f.name == "pingkiller_outdated"]
    (value,) = [s.value for s in family.samples
                if s.labels == {"interface": ifname, "hook": "xdp", "direction": "in"}]
    return value


def one_line_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_status_says_outdated_and_upgrade_swaps_with_no_ping_answered(
    pin_root: Path, sandbox: Sandbox, older: list[str]
) -> None:
    """A continuous flood from a blocked peer gets no answer while the program is swapped;
    policy, rules, hit counts and counters stay; the program is the installed one after."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    assert run_cli(older, "attach", ifname, "--block", peer.peer_v4, "--events", "drops").returncode == 0
    before = pk_json("status", ifname)[0]
    assert before["outdated"] is True and before["abi_version"] == abi.ABI_VERSION
    assert before["program"] != datapath.program_digest().hex()
    assert "outdated" in pk_ok("status", ifname)
    assert outdated_gauge(ifname) == 1

    flood = subprocess.Popen(
        peer.exec_args([PING, "-4", "-n", "-q", "-i", "0.002", "-w", "4", peer.host_v4]),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        upgraded = pk_json("upgrade", ifname)
        out, _ = flood.communicate(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
    assert upgraded == [{"interface": ifname, "hook": "xdp", "direction": "in",
                         "upgraded": True, "from_abi": abi.ABI_VERSION,
                         "to_abi": abi.ABI_VERSION, "from_program": before["program"],
                         "to_program": datapath.program_digest().hex()}]
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))  # type: ignore[union-attr]
    assert sent > 100, out
    assert re.search(r" 0 received", out), out

    after = pk_json("status", ifname)[0]
    assert after["outdated"] is False and after["program"] == datapath.program_digest().hex()
    assert outdated_gauge(ifname) == 0
    assert after["program_id"] != before["program_id"] and after["link_id"] == before["link_id"]
    assert xdp_ids(ifname) == [after["program_id"]]
    assert after["policy"] == before["policy"]
    (rule,) = after["rules"]
    assert rule["address"] == peer.peer_v4 and rule["hits"] >= sent  # counted across the swap
    assert after["stats"]["dropped"] >= sent
    again = pk_json("upgrade", "--all")
    assert again[0]["upgraded"] is False
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_a_newer_abi_is_refused_by_every_verb_but_detach(
    pin_root: Path, sandbox: Sandbox, newer_abi: list[str]
) -> None:
    ifname = sandbox.add_peer().host_ifname
    assert run_cli(newer_abi, "attach", ifname, "--block", "198.51.100.9").returncode == 0
    newer = abi.ABI_VERSION + 1
    for verb in (["stats", ifname], ["status", ifname], ["block", ifname, "198.51.100.10"],
                 ["unblock", ifname, "198.51.100.9"], ["events", ifname, "--timeout", "0"],
                 ["upgrade", ifname], ["attach", ifname, "--replace"]):
        line = one_line_failure(pk(*verb))
        assert f"ABI {newer}" in line and "newer pingkiller" in line, (verb, line)
    (shown,) = json.loads(pk("status", "--json").stdout)
    assert shown["abi_version"] == newer and shown["outdated"] is True
    assert shown["stale"] is False and shown["state"] == "filtering" and shown["rules"] == []
    one_line_failure(pk("export"))
    assert outdated_gauge(ifname) == 1  # the exporter serves it, without its counters
    # Still its own: the newer build reads it.
    assert json.loads(run_cli(newer_abi, "status", "--json").stdout)[0]["rule_count"] == 1
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_a_newer_build_refuses_older_pins_until_it_upgrades_them(
    pin_root: Path, sandbox: Sandbox, newer_abi: list[str]
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    assert peer.ping(peer.host_v4, count=3) == 0
    line = one_line_failure(run_cli(newer_abi, "stats", ifname))
    assert f"ABI {abi.ABI_VERSION}" in line and f"upgrade {ifname}" in line
    one_line_failure(run_cli(newer_abi, "block", ifname, "198.51.100.10"))
    upgraded = json.loads(run_cli(newer_abi, "upgrade", ifname, "--json").stdout)
    assert upgraded[0]["upgraded"] is True and upgraded[0]["from_abi"] == abi.ABI_VERSION
    shown = json.loads(run_cli(newer_abi, "status", ifname, "--json").stdout)[0]
    assert shown["abi_version"] == abi.ABI_VERSION + 1 and shown["rules"][0]["hits"] >= 3
    assert peer.ping(peer.host_v4, count=2) == 0
    # ... and now this (older) build refuses them.
    one_line_failure(pk("stats", ifname))
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_pins_of_abi_1_are_converted(pin_root: Path, sandbox: Sandbox, abi_2: list[str]) -> None:
    """Pins from before versions were recorded (identity record version 1; the maps of
    ABI 2) read as ABI 1: refused by readers with the fix, converted keeping the rules."""
    from pingkiller.bpf import MAP_TYPE_ARRAY, Map

    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    assert run_cli(abi_2, "attach", ifname, "--block", peer.peer_v4).returncode == 0
    directory = Store().directory(Point(ifname))
    with Map.from_pin(directory / IDENTITY_PIN) as record:
        current = Identity.decode(record[abi.u32_key(0)])
    (directory / IDENTITY_PIN).unlink()
    with Map.create(MAP_TYPE_ARRAY, "pk_identity", 4, 16, 1) as old:
        old[abi.u32_key(0)] = Identity.FORMAT_V1.pack(1, current.link_id, current.ifindex, 0)
        old.pin(directory / IDENTITY_PIN)
    line = one_line_failure(pk("stats", ifname))
    assert "ABI 1" in line and f"pingkiller upgrade {ifname}" in line
    assert pk_json("upgrade", ifname)[0]["from_abi"] == 1
    shown = pk_json("status", ifname)[0]
    assert shown["abi_version"] == abi.ABI_VERSION and not shown["outdated"]
    assert [r["address"] for r in shown["rules"]] == [peer.peer_v4]
    assert peer.ping(peer.host_v4, count=2) == 0
    pk_ok("detach", ifname)


def test_pins_of_abi_2_are_converted_by_upgrade(
    pin_root: Path, sandbox: Sandbox, abi_2: list[str]
) -> None:
    """The ABI 2 release's shared rule maps become per-CPU maps and prefix tries: every
    rule, its hits, the policy and the counters carry over, and the rules still kill
    pings (exact and prefix, IPv4 and IPv6)."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    v4_prefix = str(ipaddress.ip_network(f"{peer.peer_v4}/30", strict=False))
    rules = [v4_prefix, peer.peer_v6, "198.51.100.7", "2001:db8:77::/48"]
    blocks = [word for rule in rules for word in ("--block", rule)]
    assert run_cli(abi_2, "attach", ifname, *blocks, "--events", "drops").returncode == 0
    assert peer.ping(peer.host_v4, count=3) == 0 and peer.ping(peer.host_v6, count=3) == 0
    before = json.loads(run_cli(abi_2, "status", ifname, "--json").stdout)[0]
    assert before["abi_version"] == 2 and hits_by_rule(before)[v4_prefix] >= 3
    assert hits_by_rule(before)[peer.peer_v6] >= 3

    (shown,) = json.loads(pk("status", "--json").stdout)
    assert shown["abi_version"] == 2 and shown["outdated"] is True
    assert shown["state"] == "filtering" and not shown["stale"]
    line = one_line_failure(pk("block", ifname, "198.51.100.8"))
    assert "ABI 2" in line and f"pingkiller upgrade {ifname}" in line

    (upgraded,) = pk_json("upgrade", ifname)
    assert upgraded["upgraded"] is True
    assert (upgraded["from_abi"], upgraded["to_abi"]) == (2, abi.ABI_VERSION)
    after = pk_json("status", ifname)[0]
    assert after["abi_version"] == abi.ABI_VERSION and after["outdated"] is False
    assert set(hits_by_rule(after)) == set(rules)
    assert all(hits_by_rule(after)[rule] >= hits for rule, hits in hits_by_rule(before).items())
    assert {key: after["policy"][key] for key in before["policy"]} == before["policy"]
    dropped_before = before["stats"]["packets"]["drop_block"]
    assert after["stats"]["packets"]["drop_block"] >= dropped_before >= 6
    assert (pin_root / ifname / abi.PREFIX_TRIE_V4_MAP).exists()
    # The converted rules are the ones the program runs on.
    assert peer.ping(peer.host_v4, count=2) == 0 and peer.ping(peer.host_v6, count=2) == 0
    again = hits_by_rule(pk_json("status", ifname)[0])
    assert again[v4_prefix] >= hits_by_rule(after)[v4_prefix] + 2
    assert again[peer.peer_v6] >= hits_by_rule(after)[peer.peer_v6] + 2
    pk_ok("block", ifname, "198.51.100.8")  # and this build writes to them
    # ... which the ABI 2 release now refuses, naming the newer version.
    one_line_failure(run_cli(abi_2, "stats", ifname))
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_pins_of_abi_4_are_converted_by_upgrade(
    pin_root: Path, sandbox: Sandbox, abi_4: list[str]
) -> None:
    """The ABI 4 release's settings (24 bytes) and counters (10 slots) are converted: the
    policy, every rule with its hits (the rule maps are kept), and every counter carry
    over, and the limiter works on the converted attachment."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    v4_prefix = str(ipaddress.ip_network(f"{peer.peer_v4}/30", strict=False))
    blocks = [v4_prefix, peer.peer_v6, "198.51.100.7", "2001:db8:77::/48"]
    args = [word for rule in blocks for word in ("--block", rule)]
    assert run_cli(abi_4, "attach", ifname, *args, "--allow", "198.51.100.9",
                   "--icmp", "echo-request", "--events", "drops", "--event-rate", "77").returncode == 0
    assert peer.ping(peer.host_v4, count=3) == 0 and peer.ping(peer.host_v6, count=3) == 0
    before = json.loads(run_cli(abi_4, "status", ifname, "--json").stdout)[0]
    assert before["abi_version"] == 4 and hits_by_rule(before)[v4_prefix] >= 3
    line = one_line_failure(pk("block", ifname, "198.51.100.8"))
    assert "ABI 4" in line and f"pingkiller upgrade {ifname}" in line

    (upgraded,) = pk_json("upgrade", ifname)
    assert (upgraded["from_abi"], upgraded["to_abi"]) == (4, abi.ABI_VERSION)
    after = pk_json("status", ifname)[0]
    assert after["abi_version"] == abi.ABI_VERSION and after["outdated"] is False
    assert hits_by_rule(after).keys() == {*blocks, "198.51.100.9"}
    assert all(hits_by_rule(after)[rule] >= hits for rule, hits in hits_by_rule(before).items())
    assert {key: after["policy"][key] for key in before["policy"]} == before["policy"]
    assert after["policy"]["icmp_types"] == {"ipv4": [8], "ipv6": [128]}
    assert after["policy"]["limit"] is None
    for reason, count in before["stats"]["packets"].items():
        assert after["stats"]["packets"][reason] >= count, reason
    assert after["stats"]["packets"]["drop_block"] >= 6
    assert after["stats"]["events"]["sent"] >= before["stats"]["events"]["sent"] >= 6
    # The program runs on the converted settings and the kept rules ...
    assert peer.ping(peer.host_v4, count=2) == 0
    again = pk_json("status", ifname)[0]
    assert hits_by_rule(again)[v4_prefix] >= hits_by_rule(after)[v4_prefix] + 2
    # ... and its limiter works there: a replace that limits instead of blocking.
    pk_ok("attach", ifname, "--replace", "--limit", "1/h", "--burst", "2")
    assert peer.ping(peer.host_v4, count=4, interval=0.2) == 2
    shown = pk_json("status", ifname)[0]
    assert shown["stats"]["packets"]["drop_rate"] == 2
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_apply_upgrades_outdated_attachments_as_it_reconciles(
    pin_root: Path, sandbox: Sandbox, older: list[str], newer_abi: list[str], tmp_path: Path
) -> None:
    """A package upgrade + `apply -f` (systemctl reload, a DaemonSet rollout) upgrades."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{ifname}]\ndefault = "pass"\nblock = ["{peer.peer_v4}"]\n')
    assert run_cli(older, "apply", "-f", str(policy)).returncode == 0
    assert pk_json("status", ifname)[0]["outdated"] is True
    dry = json.loads(pk_ok("apply", "-f", str(policy), "--dry-run", "--json"))
    assert [c["action"] for c in dry["changes"]] == ["upgrade"]
    assert pk_json("status", ifname)[0]["outdated"] is True  # a dry run changes nothing
    done = json.loads(pk_ok("apply", "-f", str(policy), "--json"))
    assert [c["action"] for c in done["changes"]] == ["upgrade"]
    shown = pk_json("status", ifname)[0]
    assert shown["outdated"] is False and [r["address"] for r in shown["rules"]] == [peer.peer_v4]
    assert json.loads(pk_ok("apply", "-f", str(policy), "--json"))["changes"] == []
    # Pins of a newer ABI stop the plan: nothing is changed.
    pk_ok("detach", ifname)
    assert run_cli(newer_abi, "apply", "-f", str(policy)).returncode == 0
    line = one_line_failure(pk("apply", "-f", str(policy)))
    assert "newer pingkiller" in line
    assert json.loads(run_cli(newer_abi, "status", "--json").stdout)[0]["rule_count"] == 1
    pk_ok("detach", ifname)


def test_a_handle_opened_before_a_swap_changes_the_running_rules(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Another writer's --replace or rule file brings new rule maps; a handle opened
    before it follows them, so its change is not lost in the old ones."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pingkiller.attach(ifname, block=["198.51.100.1"]).close()
    with pingkiller.open(ifname) as early:
        pingkiller.attach(ifname, block=["198.51.100.2"], replace=True).close()
        early.block(["198.51.100.3"])
        rule_file = tmp_path / "rules.txt"
        rule_file.write_text("198.51.100.4\n")
        pk_ok("block", ifname, "-f", str(rule_file))
        early.block([peer.peer_v4])
        early.set_policy(early.policy)
    shown = pk_json("status", ifname)[0]
    assert sorted(r["address"] for r in shown["rules"]) == sorted(
        ["198.51.100.2", "198.51.100.3", "198.51.100.4", peer.peer_v4])
    assert peer.ping(peer.host_v4, count=2) == 0
    pk_ok("detach", ifname)
