"""Classic tc filters on clsact (pingkiller.bpf.TcFilter, tc_filters...) on a real veth.

Small SCHED_CLS programs, compiled here, count the ICMP echo requests they see per CPU;
one drops them, one passes them on. Traffic is real pings between the host end of a
sandbox veth and its namespace, never on the machine's own interfaces; the sandbox (and
every filter and qdisc on its veth) is removed after each test, also on failure.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path

import pytest

from pingkiller.bpf import (
    BpfError,
    Object,
    TcDirection,
    TcFilter,
    TcxLink,
    WrongObjectType,
    clsact_present,
    remove_clsact_if_empty,
    tc_filters,
    tcx_query,
    tcx_supported,
)
from pingkiller.demo.sandbox import Peer
from pingkiller.system.interfaces import interface_index
from tests.kernel.toys import PREAMBLE, compile_toy, seen

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: attaches tc filters"),
]

INGRESS, EGRESS = TcDirection.INGRESS, TcDirection.EGRESS
SOURCE = PREAMBLE + r"""
/* An IPv4 ICMP echo request behind an untagged Ethernet header, counted. */
static __always_inline int echo_request(struct __sk_buff *skb)
{
	__u8 ethertype[2], ip[10], type;
	__u32 zero = 0;
	__u64 *n;

	if (bpf_skb_load_bytes(skb, 12, ethertype, 2) || ethertype[0] != 0x08 || ethertype[1] ||
		bpf_skb_load_bytes(skb, 14, ip, 10) || ip[0] != 0x45 || ip[9] != 1 ||
		bpf_skb_load_bytes(skb, 14 + 20, &type, 1) || type != 8)
		return 0;
	n = bpf_map_lookup_elem(&seen, &zero);
	if (n)
		*n += 1;
	return 1;
}

SEC("tc")
int drop_echo(struct __sk_buff *skb)
{
	return echo_request(skb) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

SEC("tc")
int count_echo(struct __sk_buff *skb)
{
	echo_request(skb);
	return TC_ACT_UNSPEC;	/* the next filter (or, from tcx, TCX_NEXT) */
}

SEC("xdp")
int not_tc(struct xdp_md *ctx)
{
	return XDP_PASS;
}
"""


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_toy(SOURCE, tmp_path_factory.mktemp("tcfilter"), "tc_filter_test")




def answered(peer: Peer) -> int:
    """Replies to one ping from the peer to the host end (short wait: drops are expected)."""
    return peer.ping(peer.host_v4, count=1, wait=0.4)


def tc(*args: str) -> str:
    result = subprocess.run(["tc", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"tc {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


def test_a_filter_drops_pings_until_detached(loaded: tuple[Object, Object], peer: Peer) -> None:
    first, _ = loaded
    drop = first.programs["drop_echo"]
    ifindex = interface_index(peer.host_ifname)
    assert not clsact_present(ifindex)

    attached = TcFilter.attach(drop, ifindex, INGRESS, priority=1)
    assert attached == TcFilter(ifindex, INGRESS, priority=1, handle=1)
    assert clsact_present(ifindex)
    prog_id = drop.info().id
    assert attached.query() == prog_id
    [listed] = tc_filters(ifindex, INGRESS)
    assert (listed.priority, listed.handle, listed.kind, listed.prog_id, listed.chain) == (
        1, 1, "bpf", prog_id, 0)
    assert listed.name.startswith("drop_echo") and listed.direct_action
    assert tc_filters(ifindex, EGRESS) == []
    assert f"id {prog_id}" in tc("filter", "show", "dev", peer.host_ifname, "ingress")

    assert answered(peer) == 0
    assert seen(first) >= 1

    attached.detach()
    assert attached.query() == 0
    assert tc_filters(ifindex, INGRESS) == []
    assert answered(peer) == 1
    attached.detach()  # already gone: fine
    assert clsact_present(ifindex)  # detach leaves the qdisc
    assert remove_clsact_if_empty(ifindex)
    assert not clsact_present(ifindex)
    assert not remove_clsact_if_empty(ifindex)


def test_an_occupied_place_needs_replace_and_directions_are_apart(
    loaded: tuple[Object, Object], peer: Peer
) -> None:
    first, _ = loaded
    count, drop = first.programs["count_echo"], first.programs["drop_echo"]
    ifindex = interface_index(peer.host_ifname)
    TcFilter.attach(count, ifindex, INGRESS, priority=3, handle=2)
    with pytest.raises(BpfError, match="replace=True") as raised:
        TcFilter.attach(drop, ifindex, INGRESS, priority=3, handle=2)
    assert raised.value.errno == errno.EEXIST
    in_place = TcFilter(ifindex, INGRESS, priority=3, handle=2)
    assert in_place.query() == count.info().id  # the refused attach changed nothing

    assert TcFilter.attach(drop, ifindex, INGRESS, priority=3, handle=2, replace=True) == in_place
    assert in_place.query() == drop.info().id
    assert [f.prog_id for f in tc_filters(ifindex, INGRESS)] == [drop.info().id]

    # The same priority and handle on egress is another filter: the host's own requests.
    out = TcFilter.attach(drop, ifindex, EGRESS, priority=3, handle=2)
    in_place.detach()
    assert tc_filters(ifindex, INGRESS) == [] and out.query() == drop.info().id
    sent = subprocess.run(["ping", "-4", "-n", "-c", "1", "-W", "0.4", peer.peer_v4],
                          capture_output=True)
    assert sent.returncode != 0
    out.detach()
    assert answered(peer) == 1

    with pytest.raises(WrongObjectType, match="xdp"):
        TcFilter.attach(first.programs["not_tc"], ifindex, INGRESS, priority=4)
    with pytest.raises(ValueError, match="priority"):
        TcFilter.attach(drop, ifindex, INGRESS, priority=0)
    assert tc_filters(ifindex, INGRESS) == []


def test_foreign_filters_survive_our_detach_and_keep_the_qdisc(
    loaded: tuple[Object, Object], peer: Peer, bpffs_dir: Path
) -> None:
    first, second = loaded
    ifindex, dev = interface_index(peer.host_ifname), peer.host_ifname
    foreign = second.programs["drop_echo"]
    foreign.pin(bpffs_dir / "foreign")
    tc("qdisc", "add", "dev", dev, "clsact")  # another tool's qdisc and filters first
    tc("filter", "add", "dev", dev, "ingress", "prio", "7", "handle", "1", "bpf", "da",
       "object-pinned", str(bpffs_dir / "foreign"))
    tc("filter", "add", "dev", dev, "egress", "prio", "9", "protocol", "ip", "u32",
       "match", "u32", "0", "0")

    ours = TcFilter.attach(first.programs["count_echo"], ifindex, INGRESS, priority=1)
    listed = tc_filters(ifindex, INGRESS)
    assert [(f.priority, f.kind, f.prog_id) for f in listed] == [
        (1, "bpf", first.programs["count_echo"].info().id), (7, "bpf", foreign.info().id)]
    assert {f.kind for f in tc_filters(ifindex, EGRESS)} == {"u32"}
    assert answered(peer) == 0  # ours (priority 1) counts and passes on, theirs drops
    assert seen(first) >= 1 and seen(second) >= 1

    with pytest.raises(BpfError, match="already there"):  # their place is not ours to take
        TcFilter.attach(first.programs["count_echo"], ifindex, INGRESS, priority=7)
    with pytest.raises(BpfError, match="holds a u32 filter"):
        TcFilter.attach(first.programs["count_echo"], ifindex, EGRESS, priority=9)

    ours.detach()
    assert [(f.priority, f.handle, f.prog_id) for f in tc_filters(ifindex, INGRESS)] == [
        (7, 1, foreign.info().id)]
    assert TcFilter(ifindex, INGRESS, priority=7).query() == foreign.info().id
    assert not remove_clsact_if_empty(ifindex) and clsact_present(ifindex)

    tc("filter", "del", "dev", dev, "ingress", "prio", "7")
    assert not remove_clsact_if_empty(ifindex)  # the egress filter still holds it
    assert clsact_present(ifindex)
    tc("filter", "del", "dev", dev, "egress", "prio", "9")
    assert remove_clsact_if_empty(ifindex)
    assert not clsact_present(ifindex)
    assert "clsact" not in tc("qdisc", "show", "dev", dev)


def test_an_ingress_qdisc_takes_ingress_filters_only(loaded: tuple[Object, Object], peer: Peer) -> None:
    first, _ = loaded
    count = first.programs["count_echo"]
    ifindex, dev = interface_index(peer.host_ifname), peer.host_ifname
    tc("qdisc", "add", "dev", dev, "ingress")  # the older qdisc: an ingress hook only
    attached = TcFilter.attach(count, ifindex, INGRESS, priority=2)
    assert attached.query() == count.info().id
    assert [f.prog_id for f in tc_filters(ifindex, INGRESS)] == [count.info().id]
    with pytest.raises(BpfError, match="ingress qdisc, which has no egress hook") as raised:
        TcFilter.attach(count, ifindex, EGRESS, priority=2)
    assert raised.value.errno == errno.EEXIST
    assert tc_filters(ifindex, EGRESS) == []  # not the ingress hook's filters again
    assert not clsact_present(ifindex)
    attached.detach()
    assert attached.query() == 0
    assert not remove_clsact_if_empty(ifindex)  # not a clsact qdisc: not ours to remove
    assert "ingress ffff:" in tc("qdisc", "show", "dev", dev)


def test_a_missing_interface_is_a_clean_error(loaded: tuple[Object, Object]) -> None:
    first, _ = loaded
    missing = max(index for index, _ in socket.if_nameindex()) + 1000
    with pytest.raises(BpfError, match=f"ifindex {missing}: no such interface") as raised:
        TcFilter.attach(first.programs["drop_echo"], missing, INGRESS, priority=1)
    assert raised.value.errno == errno.ENODEV
    for call in (lambda: tc_filters(missing, EGRESS), lambda: clsact_present(missing),
                 lambda: remove_clsact_if_empty(missing)):
        with pytest.raises(BpfError) as raised:
            call()
        assert raised.value.errno == errno.ENODEV
    gone = TcFilter(missing, INGRESS, priority=1)
    assert gone.query() == 0
    gone.detach()  # nothing there: fine


def test_tcx_runs_before_the_clsact_filter_and_both_run(
    loaded: tuple[Object, Object], peer: Peer
) -> None:
    if not tcx_supported():
        pytest.skip("this kernel has no tcx (Linux 6.6+)")
    first, second = loaded
    ifindex = interface_index(peer.host_ifname)
    with TcxLink.attach(first.programs["drop_echo"], ifindex, INGRESS) as link:
        legacy = TcFilter.attach(second.programs["count_echo"], ifindex, INGRESS, priority=1)
        assert tcx_query(ifindex, INGRESS) == [first.programs["drop_echo"].info().id]
        assert legacy.query() == second.programs["count_echo"].info().id
        assert answered(peer) == 0
        assert seen(first) >= 1 and seen(second) == 0  # tcx dropped it before tc saw it

        # tcx passes on (TCX_NEXT), the clsact filter drops: both see the request.
        link.update(first.programs["count_echo"])
        TcFilter.attach(second.programs["drop_echo"], ifindex, INGRESS, priority=1, replace=True)
        before = seen(first)
        assert answered(peer) == 0
        assert seen(first) > before and seen(second) >= 1
        legacy.detach()
        assert answered(peer) == 1
    assert tc_filters(ifindex, INGRESS) == [] and tcx_query(ifindex, INGRESS) == []
