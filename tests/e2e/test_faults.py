"""State survives faults other than kill -9 (test_kill_9.py): interfaces that vanish, a
full rule table. status, the kernel and the pins agree after each; ``detach`` always
cleans up."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from faults import assert_clean, assert_truthful, cli
from helpers import xdp_ids

import pingkiller
from pingkiller import abi
from pingkiller.datapath import program as datapath
from pingkiller.datapath.rules import RULE_MAPS, RuleTable
from pingkiller.demo.sandbox import IP, Sandbox, run
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import RuleTableFull

pytestmark = pytest.mark.root


# -- kill -9 at every state-changing step (syscall fault injection with strace)


# -- the interface disappears


def recreate(peer_host: str, peer_netns: str) -> None:
    run([IP, "link", "add", peer_host, "type", "veth", "peer", "name", f"{peer_host}x",
         "netns", peer_netns])
    run([IP, "link", "set", peer_host, "up"])


def test_interface_deleted_while_attached(pin_root: Path, sandbox: Sandbox) -> None:
    """Deleted veth: status shows stale, detach cleans it, a new interface of that name works."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    cli("attach", ifname, "--block", "198.19.7.7")
    run([IP, "link", "del", ifname])

    (info,) = json.loads(cli("status", "--json").stdout)
    assert info["interface"] == ifname and info["stale"] is True
    assert "gone" in info["problem"]
    assert "STALE" in cli("status").stdout
    detached = json.loads(cli("detach", ifname, "--json").stdout)
    assert detached == [{"interface": ifname, "hook": "xdp", "direction": "in", "was_stale": True}]
    assert list(pin_root.iterdir()) == []

    recreate(ifname, peer.netns)
    attached = json.loads(cli("attach", ifname, "--block", "198.19.7.8", "--json").stdout)
    assert attached["stale"] is False and xdp_ids(ifname) == [attached["program_id"]]
    assert [r["address"] for r in attached["rules"]] == ["198.19.7.8"]


def test_interface_recreated_before_detach(pin_root: Path, sandbox: Sandbox) -> None:
    """A stale attachment on a re-created interface stays stale; attaching again replaces it."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    cli("attach", ifname)
    run([IP, "link", "del", ifname])
    recreate(ifname, peer.netns)
    (info,) = json.loads(cli("status", "--json").stdout)
    assert info["stale"] is True and xdp_ids(ifname) == []
    attached = json.loads(cli("attach", ifname, "--json").stdout)
    assert not attached["stale"] and xdp_ids(ifname) == [attached["program_id"]]
    assert assert_truthful(pin_root, ifname, [frozenset()]) == frozenset()
    cli("detach", "--all")
    assert_clean(pin_root, ifname)


# -- the rule table is full


def small_table(**capacities: int) -> pingkiller.bpf.Object:
    obj = datapath.open_object()
    for name, capacity in capacities.items():
        obj.set_max_entries(name, capacity)
    return obj.load()


def snapshot(table: RuleTable) -> tuple[object, ...]:
    return (tuple(table.rules()), table.settings[abi.u32_key(0)])


def test_rule_table_full_changes_nothing() -> None:
    with small_table(rules_v4=16, prefixes_v6=4) as obj:
        table = RuleTable(obj.maps)
        hosts = [ipaddress.ip_network(f"198.19.0.{i}") for i in range(16)]
        assert table.set(hosts, RuleAction.BLOCK) == 16
        table.set([ipaddress.ip_network("fd00::/16")], RuleAction.ALLOW)
        before = snapshot(table)

        one_more = ipaddress.ip_network("198.19.1.1")
        with pytest.raises(RuleTableFull, match=r"at most 16 IPv4 address rules fit, 16 exist"):
            table.set([one_more], RuleAction.BLOCK)
        assert snapshot(table) == before

        # A batch touching several maps fails as a whole: no map is changed.
        mixed = [hosts[0], ipaddress.ip_network("fd00:1::/32"), ipaddress.ip_network("2001:db8::1"),
                 *(ipaddress.ip_network(f"fd0{i}::/16") for i in range(1, 5))]
        with pytest.raises(RuleTableFull, match=r"at most 4 IPv6 prefix rules fit, 1 exist"):
            table.set(mixed, RuleAction.ALLOW)
        assert snapshot(table) == before

        # Changing rules that exist needs no room; after removing one, one fits again.
        assert table.set(hosts[:3], RuleAction.ALLOW) == 3
        assert table.remove([hosts[15]]) == 1
        assert table.set([one_more], RuleAction.BLOCK) == 1
        assert table.count() == 17


def test_shipped_capacities() -> None:
    """The shipped maps have the capacities the full-table checks above rely on."""
    with datapath.load() as obj:
        capacities = {name: obj.maps[name].info.max_entries for name in RULE_MAPS}
    assert capacities == {
        abi.RULES_V4_MAP: abi.MAX_EXACT_RULES,
        abi.RULES_V6_MAP: abi.MAX_EXACT_RULES,
        abi.PREFIXES_V4_MAP: abi.MAX_PREFIX_RULES,
        abi.PREFIXES_V6_MAP: abi.MAX_PREFIX_RULES,
    }
