"""Sections 2, 2b and 2c where the kernel refuses live frames: a flood from AF_PACKET senders.

Sections 2, 2b and 2c drive their floods with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES. A
kernel may refuse that flag (EPERM here); then the same droppers are flooded through the
real transmit and receive path instead: an AF_PACKET socket on the host end of the sandbox
veth sends ping frames (sendmmsg, PACKET_QDISC_BYPASS), veth puts each one in the peer's
receive ring and schedules the peer's NAPI on the sending CPU, and when the transmit ends
(local_bh_enable) that CPU runs the NET_RX softirq: veth's poll, the dropper (native XDP on
the peer; tc or nftables on a peer without XDP program), the stack. What a frame costs the
receiving side is then that softirq's time, which bench/bpf/softirq.bpf.c measures per CPU
(raw tracepoints softirq_entry/softirq_exit, this process's softirqs only): a kernel without
IRQ_TIME_ACCOUNTING, as here, only samples /proc/stat's softirq column at each tick (4 ms).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from types import TracebackType

from common import BUILD

from pingkiller import abi
from pingkiller.bpf import LIVE_FRAMES, BpfError, Link, Object, attach_raw_tracepoint
from pingkiller.demo.sandbox import Peer, Sandbox
from pingkiller.system.interfaces import interface_index

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20  # linux/if_packet.h: straight to the driver's transmit, no qdisc
BURST = 256  # frames per sendmmsg call


@cache
def live_frames_refused() -> str:
    """Why BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES cannot run here ("" if it can).

    One frame from the generator into a sandbox veth (no program on its peer, so it vanishes
    there); asked once per process."""
    with Sandbox(tag=f"lf{os.getpid() % 10000}") as box, \
            Object.from_file(BUILD / "gen.bpf.o") as gen:
        peer = box.add_peer()
        gen.load()
        gen.maps["target"][abi.u32_key(0)] = interface_index(peer.host_ifname).to_bytes(4, "little")
        try:
            gen.programs["gen_redirect"].test_run(bytes(64), flags=LIVE_FRAMES, repeat=1)
        except BpfError as err:
            name = errno.errorcode.get(err.errno or 0, str(err.errno))
            return f"the kernel refuses BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES ({name}: {err})"
    return ""


@dataclass(frozen=True)
class NetRx:
    """NET_RX softirq time of this process's threads on one CPU so far."""

    ns: int
    runs: int


class NetRxClock:
    """bench/bpf/softirq.bpf.c attached: per CPU, the time this process spent in NET_RX."""

    def __init__(self) -> None:
        self.obj = Object.from_file(BUILD / "softirq.bpf.o")
        self.links: list[Link] = []
        try:
            self.obj.load()
            self.obj.maps["owner"][abi.u32_key(0)] = os.getpid().to_bytes(4, "little")
            self.links = [attach_raw_tracepoint(self.obj.programs["net_rx_entry"], "softirq_entry"),
                          attach_raw_tracepoint(self.obj.programs["net_rx_exit"], "softirq_exit")]
        except BaseException:
            self.close()
            raise

    def read(self) -> list[NetRx]:
        return [NetRx(int.from_bytes(v[0:8], "little"), int.from_bytes(v[8:16], "little"))
                for v in self.obj.maps["net_rx"].per_cpu(abi.u32_key(0))]

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.obj.close()

    def __enter__(self) -> NetRxClock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def since(before: list[NetRx], after: list[NetRx]) -> list[NetRx]:
    """Per CPU, NET_RX time and runs between two readings."""
    return [NetRx(a.ns - b.ns, a.runs - b.runs) for a, b in zip(after, before, strict=True)]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]


class Sender:
    """An AF_PACKET socket on the host end of a sandbox veth that sends one frame over and
    over, BURST frames a sendmmsg call (ctypes releases the GIL for the call, so senders in
    two threads run at once)."""

    def __init__(self, peer: Peer, frame: bytes) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            self.sock.bind((peer.host_ifname, 0))
        except BaseException:
            self.sock.close()
            raise
        self.buffer = ctypes.create_string_buffer(frame, len(frame))
        self.iov = _Iovec(ctypes.addressof(self.buffer), len(frame))
        self.messages = (_Mmsghdr * BURST)()
        for message in self.messages:
            message.hdr.iov = ctypes.pointer(self.iov)
            message.hdr.iovlen = 1
        self.refused = 0  # frames the device refused (ENOBUFS), not sent

    def send_until(self, deadline: float) -> int:
        """Send bursts until ``deadline`` (time.perf_counter); returns the frames sent."""
        sent, fd = 0, self.sock.fileno()
        while time.perf_counter() < deadline:
            done = _LIBC.sendmmsg(fd, self.messages, BURST, 0)
            if done < 0:
                err = ctypes.get_errno()
                if err not in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
                    raise OSError(err, f"sendmmsg on AF_PACKET: {os.strerror(err)}")
                self.refused += 1
                continue
            sent += done
        return sent

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
