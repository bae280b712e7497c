"""Pings behind stacked priority tags: Linux strips them and answers, so pingkiller must
see through them (issue #14). Real frames from a peer namespace across a veth pair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pk_ok

from pingkiller.demo.sandbox import Peer, Sandbox

pytestmark = pytest.mark.root

# Run in the peer's namespace: send DEPTH tagged echo requests, count the replies.
PINGER = """
import sys
from scapy.all import ICMP, IP, Dot1AD, Dot1Q, Ether, conf, sendp, sniff, AsyncSniffer
iface, host_mac, src, dst, depth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
conf.verb = 0
frame = Ether(dst=host_mac)
for i in range(depth):
    frame = frame / (Dot1AD if i % 2 else Dot1Q)(vlan=0, prio=i % 8, dei=i % 2)
frame = frame / IP(src=src, dst=dst) / ICMP(type=8, id=0x4b1d, seq=1) / (b"t" * 32)
sniffer = AsyncSniffer(iface=iface, filter=f"icmp and src host {dst}")
sniffer.start()
import time; time.sleep(0.3)
for seq in range(3):
    sendp(frame, iface=iface)
    time.sleep(0.1)
time.sleep(0.7)
replies = [p for p in sniffer.stop() if p.haslayer(ICMP) and p[ICMP].type == 0]
print(len(replies))
"""


def tagged_replies(peer: Peer, depth: int) -> int:
    host_mac = Path(f"/sys/class/net/{peer.host_ifname}/address").read_text().strip()
    result = subprocess.run(
        peer.exec_args([sys.executable, "-c", PINGER, peer.peer_ifname, host_mac, peer.peer_v4,
                        peer.host_v4, str(depth)]),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("depth", [3, 6])
def test_pings_behind_stacked_priority_tags_are_killed(
    pin_root: Path, sandbox: Sandbox, depth: int
) -> None:
    peer = sandbox.add_peer()
    assert peer.ping(peer.host_v4) == 1  # the host knows the peer (ARP), replies come back
    assert tagged_replies(peer, depth) >= 1, "the host does not answer tagged pings here"
    pk_ok("attach", peer.host_ifname, "--block", peer.peer_v4)
    assert tagged_replies(peer, depth) == 0
    pk_ok("detach", peer.host_ifname)
