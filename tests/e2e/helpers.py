"""Helpers for the end-to-end tests: the real CLI as a subprocess, real ping, kernel state."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pingkiller.bpf import TcDirection, tc_filters, tcx_query
from pingkiller.demo.sandbox import IP, PING, Peer, run
from pingkiller.hooks.clsact import CLSACT_PRIORITY
from pingkiller.system.interfaces import interface_index

CLI = [sys.executable, "-m", "pingkiller"]


def pk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``pingkiller ARGS`` in a new process (it inherits PINGKILLER_PIN_ROOT)."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def pk_ok(*args: str, timeout: float = 60) -> str:
    """Run the CLI, assert exit 0 and a clean stderr; returns stdout."""
    result = pk(*args, timeout=timeout)
    assert result.returncode == 0, f"pingkiller {' '.join(args)}: {result.stderr}{result.stdout}"
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing command wrote on stderr (no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def wait_until_answers(process: subprocess.Popen[str], ask: Callable[[], object],
                       what: str = "the exporter", timeout: float = 15) -> None:
    """Call ``ask`` until it raises no OSError (a server started by ``process`` answers);
    fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            ask()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} does not answer"
            time.sleep(0.05)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pk_json(*args: str) -> Any:
    return json.loads(pk_ok(*args, "--json"))


def status(ifname: str) -> dict[str, Any]:
    """``pingkiller status IFNAME --json`` of one attachment."""
    (info,) = pk_json("status", ifname)
    assert isinstance(info, dict)
    return info


def hits(info: dict[str, Any], address: str) -> int:
    """Hit count of the rule for ``address`` in a status JSON object."""
    (rule,) = [r for r in info["rules"] if r["address"] == address]
    return int(rule["hits"])


def host_ping(destination: str, *, count: int = 1, wait: float = 1.0) -> int:
    """Ping from this (root) namespace; returns how many replies came back."""
    family = "-6" if ":" in destination else "-4"
    result = subprocess.run(
        [PING, family, "-n", "-q", "-c", str(count), "-W", str(wait), "-i", "0.2", destination],
        capture_output=True, text=True, timeout=count * (wait + 0.2) + 10,
    )
    match = re.search(r"(\d+) received", result.stdout)
    return int(match.group(1)) if match else 0


def peer_ping_from(peer: Peer, source: str, destination: str, *, count: int = 1) -> int:
    """Ping from ``peer`` with a chosen source address; returns replies."""
    result = peer.run([PING, "-n", "-q", "-c", str(count), "-W", "1", "-i", "0.2", "-I", source,
                       destination], check=False)
    match = re.search(r"(\d+) received", result.stdout)
    return int(match.group(1)) if match else 0


def xdp_ids(ifname: str) -> list[int]:
    """Program ids XDP-attached to ``ifname`` (any mode), as bpftool sees them."""
    (found,) = json.loads(run(["bpftool", "-j", "net", "show", "dev", ifname]).stdout)
    return sorted(entry["id"] for entry in found["xdp"])


def xdp_prog_id(ifname: str) -> int | None:
    """The id of the XDP program on ``ifname``, or None."""
    return next(iter(xdp_ids(ifname)), None)


def pins_left(pin_root: Path) -> list[str]:
    """Everything under the pin root (empty when no attachment is pinned)."""
    if not pin_root.exists():
        return []
    return sorted(str(p.relative_to(pin_root)) for p in pin_root.rglob("*"))


def flush_neighbours(peer: Peer) -> None:
    """Forget IPv6 neighbours on both ends so the next ping must do NDP again."""
    run([IP, "-6", "neigh", "flush", "dev", peer.host_ifname], check=False)
    peer.run([IP, "-6", "neigh", "flush", "dev", peer.peer_ifname], check=False)


def host_neighbour_known(peer: Peer, address: str) -> bool:
    """Whether this host has a usable neighbour entry for ``address`` on the peer's link."""
    out = run([IP, "-6", "neigh", "show", "dev", peer.host_ifname, address]).stdout
    return bool(out.strip()) and "FAILED" not in out and "INCOMPLETE" not in out


FOREIGN_XDP_C = """
__attribute__((section("xdp"), used)) int foreign_pass(void *ctx) { return 2; }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def attach_foreign_program(ifname: str, workdir: Path) -> int:
    """Attach a tiny pass-everything XDP program with iproute2 (not pingkiller); returns its id."""
    source = workdir / "foreign.c"
    obj = workdir / "foreign.o"
    source.write_text(FOREIGN_XDP_C)
    run(["clang", "-O2", "-target", "bpf", "-c", str(source), "-o", str(obj)])
    run([IP, "link", "set", "dev", ifname, "xdpgeneric", "obj", str(obj), "sec", "xdp"])
    prog_id = xdp_prog_id(ifname)
    assert prog_id is not None
    return prog_id


class MountNamespace:
    """A private mount namespace, kept alive by a sleeping process, to run commands in.

    Mounts made in it (a read-only bind of bpffs, a private bpffs) are seen only by the
    commands run in it, and vanish with it; the rest of the machine is not touched.
    """

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                        "sleep", "infinity"])
        comm = Path(f"/proc/{self.holder.pid}/comm")
        for _ in range(500):  # until unshare has made the namespace and exec'd sleep
            if comm.read_text().strip() == "sleep":
                break
            time.sleep(0.01)
        else:
            self.close()
            raise RuntimeError("unshare did not start")

    def args(self, command: list[str]) -> list[str]:
        """``command`` run in the namespace (network, pid and the rest are this process's)."""
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--", *command]

    def sh(self, script: str) -> None:
        """Run a shell script in the namespace (as root with every capability); must pass."""
        run(self.args(["sh", "-euc", script]))

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()

    def __enter__(self) -> MountNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def limited(caps: list[str], command: list[str]) -> list[str]:
    """``command`` as root with only ``caps`` (lower-case names, e.g. "bpf") and no way to
    gain more (no_new_privs): what a container's `capabilities: {drop: [ALL], add: ...}`
    and `allowPrivilegeEscalation: false` leave a process."""
    bounding = "".join(f",+{cap}" for cap in caps)
    return ["setpriv", f"--bounding-set=-all{bounding}", "--inh-caps=-all", "--no-new-privs",
            *command]


def tc_ids(ifname: str, direction: TcDirection) -> list[int]:
    return tcx_query(interface_index(ifname), direction)


def our_filters(ifname: str) -> list[int]:
    """Program ids of the filters at pingkiller's place on ``ifname``'s clsact ingress."""
    return [f.prog_id for f in tc_filters(interface_index(ifname), TcDirection.INGRESS)
            if f.priority == CLSACT_PRIORITY]
