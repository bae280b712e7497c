"""The tc entry points on a real path (issue #15), attached through the binding (TcxLink)
on a sandbox veth: tagged pings, whose outer tag reaches tc ingress in skb metadata, are
judged by what the tag carries; the host's own pings to a blocked address stop at egress."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from pingkiller import abi
from pingkiller.bpf import Object, RingBuffer, TcDirection, TcxLink, tcx_supported
from pingkiller.datapath import events
from pingkiller.datapath import program as datapath
from pingkiller.datapath.rules import RuleTable
from pingkiller.demo.sandbox import PING, Sandbox
from pingkiller.model import enums
from pingkiller.model.enums import RuleAction
from pingkiller.model.network import parse_network
from pingkiller.system.interfaces import interface_index
from tests.e2e.test_vlan_stack import tagged_replies

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not tcx_supported(), reason="this kernel has no tcx (Linux 6.6+)"),
]

@pytest.fixture
def loaded() -> Iterator[Object]:
    config = abi.Config(events=enums.EventsMode.DROPS, event_rate=0)
    with datapath.load(config) as obj:
        yield obj


def test_a_ping_behind_a_tag_is_judged_at_tc_ingress(sandbox: Sandbox, loaded: Object) -> None:
    """A priority-tagged (VID 0) ping, which the host answers: the stack takes the outer
    tag into skb metadata before tc runs (skb_vlan_untag), so tc sees the frame without
    it; with 3 tags, the inner two stay in the frame for the walk."""
    peer = sandbox.add_peer()
    assert peer.ping(peer.host_v4) == 1  # the host knows the peer (ARP)
    for depth in (1, 3):
        assert tagged_replies(peer, depth) >= 1, "the host does not answer tagged pings here"
    RuleTable(loaded.maps).set([parse_network(peer.peer_v4)], RuleAction.BLOCK)
    program = loaded.programs[abi.TC_PROGRAM_NAMES[enums.Direction.IN]]
    ifindex = interface_index(peer.host_ifname)
    with RingBuffer(loaded.maps[abi.EVENTS_MAP]) as ring, \
            TcxLink.attach(program, ifindex, TcDirection.INGRESS):
        for depth in (1, 3):
            assert tagged_replies(peer, depth) == 0, depth
        dropped = [event for event in events.decode(ring.consume()) if event.src == peer.peer_v4]
    assert len(dropped) >= 6
    assert {(e.hook, e.direction, e.reason) for e in dropped} == {
        (enums.Hook.TC, enums.Direction.IN, enums.Reason.DROP_BLOCK)}
    assert all(e.ifindex == ifindex for e in dropped)
    assert tagged_replies(peer, 1) >= 1  # detached with the link: answered again


def test_the_host_s_own_pings_are_stopped_at_tc_egress(sandbox: Sandbox, loaded: Object) -> None:
    peer = sandbox.add_peer()
    table = RuleTable(loaded.maps)
    table.set([parse_network(peer.peer_v4)], RuleAction.BLOCK)
    program = loaded.programs[abi.TC_PROGRAM_NAMES[enums.Direction.OUT]]
    ifindex = interface_index(peer.host_ifname)

    def host_pings() -> int:
        result = subprocess.run([PING, "-4", "-n", "-c", "2", "-i", "0.2", "-W", "1",
                                 peer.peer_v4], capture_output=True, text=True)
        return result.stdout.count("bytes from")

    with TcxLink.attach(program, ifindex, TcDirection.EGRESS):
        assert host_pings() == 0
        table.remove([parse_network(peer.peer_v4)])
        assert host_pings() == 2  # the rule stopped them, not the hook
