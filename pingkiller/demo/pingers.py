"""What the demo counts outside pingkiller: real ``ping`` processes (:class:`Pinger`), and
the echo requests that reached a peer's namespace (:class:`EchoCounter`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import IO

from pingkiller.demo.sandbox import PING, SLEEP, Peer
from pingkiller.model.errors import SandboxError

FAMILIES = ("ipv4", "ipv6")
PING_INTERVAL = 0.2
_REPLY = re.compile(r"bytes from .*icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"no answer yet for icmp_seq=(\d+)")
_TOTALS = re.compile(r"(\d+) packets transmitted, (\d+) received")


class Pinger:
    """A real ``ping``, run inside a peer's namespace (or, without a peer, in this one: the
    host's own pings), counted line by line as it runs.

    ``sent`` is what ping counts: a request the kernel refuses to send (tc egress drops
    it, and sendmsg fails with ENOBUFS) ping tries again under the same sequence number,
    so ping counts fewer of the host's pings to the blocked peer sent than the tc
    attachment counts tries it dropped."""

    def __init__(self, peer: Peer | None, destination: str, duration: float,
                 interval: float = PING_INTERVAL) -> None:
        self.destination = destination
        self.family = "ipv6" if ":" in destination else "ipv4"
        self.sent = 0
        self.answered = 0
        self.started = time.monotonic()
        self.ended: float | None = None  # when ping's output ended
        args = [PING, "-6" if self.family == "ipv6" else "-4", "-n", "-O", "-i", str(interval),
                "-W", "1", "-w", str(max(1, round(duration))), destination]
        self._process = subprocess.Popen(
            peer.exec_args(args) if peer is not None else args, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        with self._process.stdout as lines:  # closed at ping's end (EOF), not left to the GC
            self._count(lines)
        self.ended = time.monotonic()

    def _count(self, lines: Iterable[str]) -> None:
        for line in lines:
            if reply := _REPLY.search(line):
                self.answered += 1
                self.sent = max(self.sent, int(reply.group(1)))
            elif missing := _NO_ANSWER.search(line):
                self.sent = max(self.sent, int(missing.group(1)))
            elif totals := _TOTALS.search(line):  # ping's own final count is authoritative
                self.sent, self.answered = int(totals.group(1)), int(totals.group(2))

    @property
    def seconds(self) -> float:
        """How long ping ran (until now, while it runs)."""
        return (self.ended or time.monotonic()) - self.started

    @property
    def done(self) -> bool:
        return self._process.poll() is not None

    def stop(self) -> None:
        """End ping (it prints its totals) and wait for the last line to be read."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=3)


class EchoCounter:
    """The echo requests a peer's namespace has received since this was made: its
    ``Icmp: InEchos`` (/proc/net/snmp) and ``Icmp6InEchos`` (/proc/net/snmp6), which
    count every echo request that arrived, whoever answers or drops it after.

    The two files are opened once from a short-lived process inside the namespace
    (``/proc/PID/net/...``): an open /proc/net file keeps reading the namespace it was
    opened in, so reading them again costs no process."""

    def __init__(self, peer: Peer) -> None:
        wanted = f"net:[{os.stat(peer.netns_path).st_ino}]"
        holder = subprocess.Popen(peer.exec_args([SLEEP, "30"]), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while _netns_of(holder.pid) != wanted:
                if holder.poll() is not None or time.monotonic() > deadline:
                    raise SandboxError(f"making the sandbox failed: no process could enter "
                                       f"{peer.netns} to read its ICMP counters")
                time.sleep(0.005)
            self._files: dict[str, IO[bytes]] = {}
            for family, name in (("ipv4", "snmp"), ("ipv6", "snmp6")):
                self._files[family] = open(f"/proc/{holder.pid}/net/{name}", "rb", buffering=0)  # noqa: SIM115
        finally:
            holder.kill()
            holder.wait()
        self._first = self._read()
        self.seen = dict.fromkeys(FAMILIES, 0)

    def _read(self) -> dict[str, int]:
        counts = {}
        for family, file in self._files.items():
            file.seek(0)
            text = file.read(1 << 16).decode()
            counts[family] = _in_echos(text) if family == "ipv4" else _in_echos6(text)
        return counts

    def update(self) -> dict[str, int]:
        """Echo requests received since this was made, by family (also kept in ``seen``)."""
        now = self._read()
        self.seen = {family: now[family] - self._first[family] for family in FAMILIES}
        return self.seen

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def close(self) -> None:
        for file in self._files.values():
            file.close()


def _netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def _in_echos(snmp: str) -> int:
    """``InEchos`` of /proc/net/snmp's two ``Icmp:`` lines (names, then values)."""
    names, values = [line.split() for line in snmp.splitlines() if line.startswith("Icmp:")][:2]
    return int(values[names.index("InEchos")])


def _in_echos6(snmp6: str) -> int:
    """``Icmp6InEchos`` of /proc/net/snmp6 (one ``name value`` a line)."""
    for line in snmp6.splitlines():
        name, _, value = line.partition(" ")
        if name == "Icmp6InEchos":
            return int(value)
    return 0
