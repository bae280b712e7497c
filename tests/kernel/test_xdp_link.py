"""XdpLink end to end: the program on the host end of a sandbox veth, real ping and TCP.

Only interfaces made by pingkiller.demo.sandbox.Sandbox are touched (namespaces + veth,
198.18.0.0/15 and fd00::/8); the sandbox fixture removes them, which also removes any
XDP program still attached.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from collections.abc import Iterator

import pytest

from pingkiller import abi
from pingkiller.bpf import BpfError, Object, RingBuffer, XdpLink, XdpMode, xdp_query
from pingkiller.datapath import program as datapath
from pingkiller.demo.sandbox import Peer
from pingkiller.model import enums

pytestmark = pytest.mark.root

DROP_PINGS = abi.Config(default_action=enums.DefaultAction.DROP, events=enums.EventsMode.DROPS)
PASS_PINGS = abi.Config(default_action=enums.DefaultAction.PASS)
TCP_CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
    "s.sendall(b'pingkiller')\n"
    "s.close()\n"
)


def host_ifindex(peer: Peer) -> int:
    assert peer.host_ifname.startswith("pk"), "only sandbox interfaces may carry test XDP"
    return socket.if_nametoindex(peer.host_ifname)


def tcp_works(peer: Peer, host: str) -> bool:
    """A TCP connection from the peer's namespace to a listener on the host end."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((host, 0))
        server.listen(1)
        server.settimeout(8)
        port = server.getsockname()[1]
        client = peer.run([sys.executable, "-c", TCP_CLIENT, host, str(port)], check=False,
                          timeout=15)
        if client.returncode != 0:
            return False
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            return conn.recv(64) == b"pingkiller"


@pytest.fixture
def dropper() -> Iterator[Object]:
    with datapath.load(DROP_PINGS) as obj:
        yield obj


@pytest.fixture
def passer() -> Iterator[Object]:
    with datapath.load(PASS_PINGS) as obj:
        yield obj


def test_xdp_link_end_to_end(peer, dropper, passer, bpffs_dir):
    ifindex = host_ifindex(peer)
    program = dropper.programs[abi.PROGRAM_NAME]
    pin = bpffs_dir / "link"
    with RingBuffer(dropper.maps[abi.EVENTS_MAP]) as ring, \
            XdpLink.attach(program, ifindex) as link:
        # Attached, in a real mode, running our program.
        assert link.mode in (XdpMode.NATIVE, XdpMode.GENERIC)
        assert link.info().ifindex == ifindex
        assert link.info().prog_id == program.info().id
        assert xdp_query(ifindex).prog_id == program.info().id

        # Pings die, TCP (and ARP / neighbour discovery under it) lives.
        assert peer.ping(peer.host_v4, count=2) == 0
        assert peer.ping(peer.host_v6, count=2) == 0
        assert tcp_works(peer, peer.host_v4)
        assert tcp_works(peer, peer.host_v6)
        dropped = dropper.maps[abi.COUNTERS_MAP].sum(abi.u32_key(enums.Reason.DROP_DEFAULT),
                                                     abi.COUNTER.format)
        assert dropped[0] >= 4
        events = list(ring.poll(1).unpack(abi.EVENT))
        assert events, "no drop event from real traffic"
        first = events[0]
        assert first[1] == ifindex  # ifindex: the host end, where the program runs
        sources = {ipaddress.ip_address(e[3][: 4 if e[7] == 4 else 16]) for e in events}
        assert sources == {ipaddress.ip_address(peer.peer_v4), ipaddress.ip_address(peer.peer_v6)}

        # Pinned, the link outlives its first fd.
        link.pin(pin)
        link_id = link.info().id
    with XdpLink.from_pin(pin) as reopened:
        assert reopened.info().id == link_id
        assert reopened.info().prog_id == program.info().id
        assert reopened.mode in (XdpMode.NATIVE, XdpMode.GENERIC)
        assert peer.ping(peer.host_v4) == 0

        # update() swaps the program in place, without a moment of no program.
        other = passer.programs[abi.PROGRAM_NAME]
        reopened.update(other)
        assert xdp_query(ifindex).prog_id == other.info().id
        assert reopened.info().id == link_id
        assert peer.ping(peer.host_v4) == 1
        reopened.update(program)
        assert reopened.info().prog_id == program.info().id
        assert peer.ping(peer.host_v4) == 0

        # Detach: pings are answered again, the link is defunct.
        reopened.detach()
        assert xdp_query(ifindex).mode == XdpMode.NONE
        assert reopened.mode == XdpMode.NONE
        assert peer.ping(peer.host_v4) == 1
        assert peer.ping(peer.host_v6) == 1
        pin.unlink()


def test_update_replaces_only_the_expected_program(peer, dropper, passer):
    ifindex = host_ifindex(peer)
    dropping = dropper.programs[abi.PROGRAM_NAME]
    passing = passer.programs[abi.PROGRAM_NAME]
    with XdpLink.attach(dropping, ifindex) as link:
        link.update(passing, expected=dropping)
        assert link.info().prog_id == passing.info().id
        with pytest.raises(BpfError) as wrong:
            link.update(dropping, expected=dropping)  # passing runs, not dropping
        assert wrong.value.errno == errno.EPERM
        assert link.info().prog_id == passing.info().id


def test_second_link_on_the_interface_is_busy(peer, dropper, passer):
    ifindex = host_ifindex(peer)
    with XdpLink.attach(dropper.programs[abi.PROGRAM_NAME], ifindex):
        with pytest.raises(BpfError) as busy:
            XdpLink.attach(passer.programs[abi.PROGRAM_NAME], ifindex)
        assert busy.value.errno == errno.EBUSY
        assert "attaching XDP program" in str(busy.value)
        assert xdp_query(ifindex).prog_id == dropper.programs[abi.PROGRAM_NAME].info().id
    # Closing the last fd of an unpinned link detaches it.
    assert xdp_query(ifindex).mode == XdpMode.NONE


def test_generic_mode(peer, dropper):
    ifindex = host_ifindex(peer)
    with XdpLink.attach(dropper.programs[abi.PROGRAM_NAME], ifindex, XdpMode.GENERIC) as link:
        assert link.mode == XdpMode.GENERIC
        state = xdp_query(ifindex)
        assert state.generic_prog_id == dropper.programs[abi.PROGRAM_NAME].info().id
        assert state.native_prog_id == 0
        assert peer.ping(peer.host_v4) == 0
        assert tcp_works(peer, peer.host_v4)
    assert peer.ping(peer.host_v4) == 1
