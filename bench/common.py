"""Shared pieces of the benchmarks: frames, reference objects, medians, the result rows."""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "bench"
SRC_V4, DST_V4 = "198.18.0.1", "198.18.0.2"
SRC_V6, DST_V6 = "fd00:706b:ffff::1", "fd00:706b:ffff::2"
MAC_DST, MAC_SRC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")


@dataclass
class Row:
    """One line of the table: a measurement, its reference, the ratio and the target."""

    section: str
    what: str
    value: float
    unit: str
    reference: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, protocol: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, protocol, 0,
        bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))),
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return MAC_DST + MAC_SRC + b"\x08\x00" + header + payload


def ping_frame(src: str = SRC_V4, dst: str = DST_V4, seq: int = 1) -> bytes:
    """An Ethernet + IPv4 + ICMP echo request with 56 bytes of payload (98 bytes, like ping)."""
    body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + bytes(range(56))
    body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    return _ipv4(src, dst, 1, body)


def ping6_frame(src: str = SRC_V6, dst: str = DST_V6, seq: int = 1) -> bytes:
    """An Ethernet + IPv6 + ICMPv6 echo request with 56 bytes of payload (118 bytes)."""
    source, destination = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    body = struct.pack("!BBHHH", 128, 0, 0, 0x4242, seq) + bytes(range(56))
    pseudo = source + destination + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + source + destination
    return MAC_DST + MAC_SRC + b"\x86\xdd" + header + body


def tcp_frame(src: str = SRC_V4, dst: str = DST_V4) -> bytes:
    """An Ethernet + IPv4 + TCP segment (ACK, 64 bytes payload)."""
    segment = struct.pack("!HHIIBBHHH", 40000, 443, 1, 1, 5 << 4, 0x10, 65535, 0, 0) + bytes(64)
    return _ipv4(src, dst, 6, segment)


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@contextmanager
def bpffs_dir(name: str) -> Iterator[Path]:
    """A private directory on bpffs, removed (with every pin in it) on exit."""
    path = Path(f"/sys/fs/bpf/pkbench-{os.getpid()}-{name}")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def cpu(index: int) -> Iterator[None]:
    """Run this process on one CPU for the duration."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {index})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def wall(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def machine() -> dict[str, str]:
    """CPU model, cores, kernel, libbpf version, Python."""
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    libbpf = ctypes.CDLL("libbpf.so.1")
    major, minor = libbpf.libbpf_major_version(), libbpf.libbpf_minor_version()
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "libbpf": f"{major}.{minor}",
        "python": platform.python_version(),
    }


PINGKILLER = str(Path(sys.prefix) / "bin" / "pingkiller")  # the real entry point, not a pyenv shim
