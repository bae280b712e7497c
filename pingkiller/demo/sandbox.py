"""Throw-away networks for the demo and the tests: namespaces joined to this host by veth pairs.

Each peer is a network namespace whose veth end talks to a host end in the current
namespace, with addresses from ranges that exist only here: 198.18.0.0/15 (RFC 2544
benchmarking) and fd00::/8 (unique local). Everything created is removed on close,
also after an error; nothing touches the machine's own interfaces.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pingkiller.model.errors import PermissionDenied, ProgramNotFound, SandboxError
from pingkiller.system import trust
from pingkiller.system.flock import acquire


def _program(name: str, package: str, fallback: str) -> str:
    """A system program from a trusted path (pingkiller.trust); ``fallback`` where it is
    missing, so that running it fails naming it."""
    try:
        return trust.program(name, package)
    except ProgramNotFound:
        return fallback


IP = _program("ip", "iproute2", "/usr/sbin/ip")
PING = _program("ping", "iputils-ping", "/usr/bin/ping")
NSENTER = _program("nsenter", "util-linux", "/usr/bin/nsenter")
SLEEP = _program("sleep", "coreutils", "/usr/bin/sleep")
_V4_POOL = ipaddress.IPv4Network("198.18.0.0/15")
# Held from choosing a free subnet until its host address exists, so that sandboxes made
# at the same time by different processes never share a subnet; in a root-only directory.
SUBNET_LOCK = trust.RUN_DIR / "sandbox.lock"
SUBNET_LOCK_TIMEOUT = 30.0  # seconds; the lock is held for a few milliseconds per peer


def run(args: list[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise SandboxError with its stderr on failure."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SandboxError(f"making the sandbox failed: {args[0]} is not installed (it needs "
                           "iproute2, iputils-ping and util-linux)") from None
    if check and result.returncode != 0:
        output = " ".join((result.stderr or result.stdout).split()) or f"exit status {result.returncode}"
        raise SandboxError(
            f"making the sandbox failed: {' '.join(args)}: {output} (it needs root, iproute2 "
            "and network namespaces)"
        )
    return result


def _used_v4_subnets() -> set[int]:
    out = run([IP, "-4", "-o", "addr", "show"], check=False).stdout
    used = set()
    for match in re.finditer(r"inet (198\.1[89]\.\d+\.\d+)/", out):
        address = ipaddress.IPv4Address(match.group(1))
        used.add((int(address) - int(_V4_POOL.network_address)) >> 8)
    return used


@contextmanager
def _subnet_lock() -> Iterator[None]:
    """Hold :data:`SUBNET_LOCK` (waiting at most :data:`SUBNET_LOCK_TIMEOUT`, then
    LockTimeout naming its holder)."""
    try:
        fd = trust.open_lock_file(trust.private_directory(SUBNET_LOCK.parent) / SUBNET_LOCK.name)
    except PermissionDenied as err:
        raise SandboxError(f"making the sandbox failed: {err}") from None
    try:
        acquire(fd, f"the sandbox lock {SUBNET_LOCK}", SUBNET_LOCK_TIMEOUT)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Peer:
    """One namespace and its link to the host."""

    netns: str
    host_ifname: str
    peer_ifname: str
    host_v4: str
    peer_v4: str
    host_v6: str
    peer_v6: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def exec_args(self, args: list[str]) -> list[str]:
        """``args`` run inside the peer's namespace (network only; mounts are kept)."""
        return [NSENTER, f"--net={self.netns_path}", *args]

    def run(
        self, args: list[str], *, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run(self.exec_args(args), check=check, timeout=timeout)

    def ping(self, destination: str, *, count: int = 1, wait: float = 1.0, interval: float = 0.2) -> int:
        """Ping from the peer; returns how many replies came back."""
        family = "-6" if ":" in destination else "-4"
        result = self.run(
            [PING, family, "-n", "-q", "-c", str(count), "-W", str(wait), "-i", str(interval),
             destination],
            check=False,
            timeout=count * (interval + wait) + 10,
        )
        match = re.search(r"(\d+) received", result.stdout)
        return int(match.group(1)) if match else 0


@dataclass
class Sandbox:
    """Namespaces and veth pairs that exist until :meth:`close` (use as a context manager)."""

    tag: str = field(default_factory=lambda: str(os.getpid() % 100000))
    peers: list[Peer] = field(default_factory=list)

    def add_peer(self) -> Peer:
        """Create one more namespace with a veth pair and IPv4/IPv6 addresses on both ends."""
        index = len(self.peers) + 1
        with _subnet_lock():
            used = _used_v4_subnets()
            subnet = next(i for i in range(1, _V4_POOL.num_addresses >> 8) if i not in used)
            base = int(_V4_POOL.network_address) + (subnet << 8)
            peer = Peer(
                netns=f"pk-{self.tag}-{index}",
                host_ifname=f"pk{self.tag}h{index}",
                peer_ifname=f"pk{self.tag}p{index}",
                host_v4=str(ipaddress.IPv4Address(base + 1)),
                peer_v4=str(ipaddress.IPv4Address(base + 2)),
                host_v6=f"fd00:706b:{subnet:x}::1",
                peer_v6=f"fd00:706b:{subnet:x}::2",
            )
            self.peers.append(peer)  # registered first, so close() removes a half-made peer
            run([IP, "netns", "add", peer.netns])
            run([IP, "link", "add", peer.host_ifname, "type", "veth", "peer", "name",
                 peer.peer_ifname, "netns", peer.netns])
            run([IP, "addr", "add", f"{peer.host_v4}/24", "dev", peer.host_ifname])
        run([IP, "-6", "addr", "add", f"{peer.host_v6}/64", "dev", peer.host_ifname, "nodad"])
        run([IP, "link", "set", peer.host_ifname, "up"])
        inside = [IP, "-n", peer.netns]
        run([*inside, "addr", "add", f"{peer.peer_v4}/24", "dev", peer.peer_ifname])
        run([*inside, "-6", "addr", "add", f"{peer.peer_v6}/64", "dev", peer.peer_ifname, "nodad"])
        run([*inside, "link", "set", peer.peer_ifname, "up"])
        run([*inside, "link", "set", "lo", "up"])
        return peer

    def close(self) -> None:
        """Remove every namespace and host-side veth this sandbox made."""
        for peer in self.peers:
            run([IP, "link", "del", peer.host_ifname], check=False)
            run([IP, "netns", "del", peer.netns], check=False)
        self.peers.clear()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
