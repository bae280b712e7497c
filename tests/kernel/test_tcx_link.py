"""tcx links (pingkiller.bpf.TcxLink) on a real veth: order, coexistence, pins, swaps.

Two small SCHED_CLS programs, compiled here, count what they see per CPU and pass it on
with TCX_NEXT; one variant drops ICMP instead. Traffic is real: pings between the host
and a sandbox namespace, never on the machine's own interfaces.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pingkiller.bpf import (
    LINK_TYPE_TCX,
    BpfError,
    Object,
    TcDirection,
    TcxLink,
    WrongObjectType,
    XdpLink,
    tcx_query,
    tcx_supported,
)
from pingkiller.demo.sandbox import Peer
from pingkiller.system.interfaces import interface_index
from tests.kernel.toys import PREAMBLE, compile_toy, seen

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: attaches tc programs"),
]

SOURCE = PREAMBLE + r"""
static __always_inline void count(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&seen, &zero);

	if (n)
		*n += 1;
}

SEC("tc")
int pass_on(struct __sk_buff *skb)
{
	count();
	return -1;	/* TCX_NEXT */
}

SEC("tc")
int drop_icmp(struct __sk_buff *skb)
{
	__u8 ethertype[2], proto;

	count();
	/* IPv4 behind an untagged Ethernet header: the protocol byte at 14 + 9. */
	if (bpf_skb_load_bytes(skb, 12, ethertype, 2) || ethertype[0] != 0x08 || ethertype[1] ||
		bpf_skb_load_bytes(skb, 14 + 9, &proto, 1))
		return -1;	/* TCX_NEXT */
	return proto == 1 ? 2 /* TC_ACT_SHOT */ : -1;
}
"""


def _compile(where: Path) -> Path:
    return compile_toy(SOURCE, where, "tcx_test")


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not tcx_supported():
        pytest.skip("this kernel has no tcx (Linux 6.6+)")
    return _compile(tmp_path_factory.mktemp("tcx"))




def test_two_programs_run_in_the_order_asked_and_both_see_the_traffic(
    loaded: tuple[Object, Object], peer: Peer
) -> None:
    first, second = loaded
    ifindex = interface_index(peer.host_ifname)
    with TcxLink.attach(first.programs["pass_on"], ifindex, TcDirection.INGRESS) as last, \
            TcxLink.attach(second.programs["pass_on"], ifindex, TcDirection.INGRESS,
                           first=True) as front:
        order = tcx_query(ifindex, TcDirection.INGRESS)
        assert order == [front.info().prog_id, last.info().prog_id]
        assert tcx_query(ifindex, TcDirection.EGRESS) == []
        assert peer.ping(peer.host_v4, count=3) == 3  # TCX_NEXT: nothing dropped
        assert seen(first) >= 3 and seen(second) >= 3
        info = front.info()
        assert (info.type, info.ifindex) == (LINK_TYPE_TCX, ifindex)
        assert front.direction is TcDirection.INGRESS and front.type_name == "tcx"
    assert tcx_query(ifindex, TcDirection.INGRESS) == []  # closed unpinned links detach


def test_egress_drops_what_the_host_sends(loaded: tuple[Object, Object], peer: Peer) -> None:
    first, second = loaded
    ifindex = interface_index(peer.host_ifname)
    with TcxLink.attach(first.programs["drop_icmp"], ifindex, TcDirection.EGRESS) as link, \
            TcxLink.attach(second.programs["pass_on"], ifindex, TcDirection.EGRESS):
        assert link.direction is TcDirection.EGRESS
        result = subprocess.run(["ping", "-4", "-n", "-c", "2", "-W", "1", "-i", "0.2",
                                 peer.peer_v4], capture_output=True)
        assert result.returncode != 0  # the host's requests never left
        # The next program sees all the first one passed on (neighbour discovery...),
        # but not the requests it dropped.
        assert seen(first) - seen(second) >= 2


def test_pin_reopen_and_swap(loaded: tuple[Object, Object], peer: Peer, bpffs_dir: Path) -> None:
    first, _ = loaded
    ifindex = interface_index(peer.host_ifname)
    pass_on, drop = first.programs["pass_on"], first.programs["drop_icmp"]
    with TcxLink.attach(pass_on, ifindex, TcDirection.INGRESS) as link:
        link.pin(bpffs_dir / "link")
    # Pinned: the program stays on the hook after the handle is closed.
    assert tcx_query(ifindex, TcDirection.INGRESS) == [pass_on.info().id]
    with TcxLink.from_pin(bpffs_dir / "link") as reopened:
        with pytest.raises(WrongObjectType):
            XdpLink.from_pin(bpffs_dir / "link")
        reopened.update(drop, expected=pass_on)
        assert tcx_query(ifindex, TcDirection.INGRESS) == [drop.info().id]
        assert peer.ping(peer.host_v4, count=2) == 0
        with pytest.raises(BpfError):
            reopened.update(pass_on, expected=pass_on)  # not what runs any more
        reopened.detach()
        assert tcx_query(ifindex, TcDirection.INGRESS) == []
        assert peer.ping(peer.host_v4, count=1) == 1


def test_only_tc_programs_attach(peer: Peer) -> None:
    from pingkiller.datapath import program as datapath

    with datapath.load() as obj:
        ifindex = interface_index(peer.host_ifname)
        with pytest.raises(WrongObjectType, match="xdp"):
            TcxLink.attach(obj.programs["pingkiller"], ifindex, TcDirection.INGRESS)
        assert tcx_query(ifindex, TcDirection.INGRESS) == []
