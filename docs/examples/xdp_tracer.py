"""Report source, destination and protocol of every IPv4 packet an interface receives.

BPF C: bpf/xdp_tracer.bpf.c. Every packet passes; the tracer only watches.

    make examples && sudo python3 docs/examples/xdp_tracer.py veth0
"""

import argparse
import contextlib
import ipaddress
import socket
import struct
from pathlib import Path

from pingkiller.bpf import Object, RingBuffer, XdpLink, XdpMode

OBJECT = Path(__file__).resolve().parents[2] / "build" / "examples" / "xdp_tracer.bpf.o"
EVENT = struct.Struct("=4s4sIB3x")  # struct packet_event: src, dst, length, protocol
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("interface")
    parser.add_argument("--count", type=int, help="stop after N packets")
    args = parser.parse_args()
    ifindex = socket.if_nametoindex(args.interface)
    with Object.from_file(OBJECT).load() as obj, \
            XdpLink.attach(obj.programs["xdp_tracer"], ifindex, XdpMode.AUTO), \
            RingBuffer(obj.maps["packets"]) as ring:
        print(f"ready: tracing IPv4 on {args.interface} (Ctrl-C stops)", flush=True)
        seen = 0
        while args.count is None or seen < args.count:
            for src, dst, length, protocol in ring.poll(1.0).unpack(EVENT):
                name = PROTOCOLS.get(protocol, f"proto {protocol}")
                print(f"{ipaddress.IPv4Address(src)} > {ipaddress.IPv4Address(dst)} {name} "
                      f"{length} bytes", flush=True)
                seen += 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
