"""Readers on a read-only bpffs: status, stats, export and the exporter need only read access
to the pins and CAP_BPF; writers there fail with one clear line.

Two kinds of read-only, each in a private mount namespace:

- ``bind``: the host's bpffs bind-mounted read-only, as a container's ``readOnly: true``
  volume is. The file system refuses changes (no pin, no directory, no rename); the
  kernel's bpf() would still open pins for writing there.
- ``superblock``: a private bpffs, attached to first, then remounted read-only. The
  kernel then refuses every open of a pin for writing (EROFS), so only a reader that
  asks for read access alone works.

Readers run with CAP_BPF only, while this test holds the writers' lock: they must not
take it, or they would hang.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import CLI, MountNamespace, free_port, limited, one_line, xdp_ids
from test_operations import DROP_WAIT, scrape, wait_for

import pingkiller
from pingkiller.demo.sandbox import Peer, Sandbox, run
from pingkiller.model.point import Point

pytestmark = pytest.mark.root

READER = ["bpf"]  # the capabilities a reader has here
WRITER = ["bpf", "net_admin", "perfmon"]


@dataclass
class ReadOnlyView:
    kind: str
    namespace: MountNamespace
    pin_root: Path  # as seen in the namespace
    peer: Peer

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PINGKILLER_PIN_ROOT": str(self.pin_root)}

    def command(self, caps: list[str], *args: str) -> list[str]:
        return self.namespace.args(limited(caps, [*CLI, *args]))

    def pk(self, caps: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(caps, *args), capture_output=True, text=True,
                              timeout=60, env=self.env)

    def ok(self, *args: str) -> str:
        """A reader's call: CAP_BPF only, exit 0, nothing on stderr."""
        result = self.pk(READER, *args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
        return result.stdout

    @contextmanager
    def writers_locked(self) -> Iterator[None]:
        """Hold the lock every writer takes (an exclusive flock on the pin root)."""
        seen_from_here = Path(f"/proc/{self.namespace.holder.pid}/root") / \
            self.pin_root.relative_to("/")
        fd = os.open(seen_from_here, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@pytest.fixture(params=["bind", "superblock"])
def read_only(request: pytest.FixtureRequest, pin_root: Path, sandbox: Sandbox,
              tmp_path: Path) -> Iterator[ReadOnlyView]:
    """An attachment blocking the peer, and a mount namespace where its pins are read-only."""
    peer = sandbox.add_peer()
    with MountNamespace() as namespace:
        if request.param == "bind":
            view = ReadOnlyView("bind", namespace, pin_root, peer)
            run([*CLI, "attach", peer.host_ifname, "--block", peer.peer_v4])
            namespace.sh("mount --bind /sys/fs/bpf /sys/fs/bpf && "
                         "mount -o remount,bind,ro /sys/fs/bpf")
        else:
            mount_point = tmp_path / "bpffs"
            mount_point.mkdir()
            view = ReadOnlyView("superblock", namespace, mount_point / "pingkiller", peer)
            namespace.sh(f"mount -t bpf bpf {mount_point}")
            attached = view.pk(WRITER, "attach", peer.host_ifname, "--block", peer.peer_v4)
            assert attached.returncode == 0, attached.stderr
            namespace.sh(f"mount -o remount,ro {mount_point}")
        yield view
    if request.param == "superblock":  # the private bpffs went with the namespace
        wait_for(lambda: xdp_ids(peer.host_ifname) == [], "the private bpffs to be freed")


def link_id_of(prog_id: int) -> int:
    """The id of the bpf_link running ``prog_id``, as the kernel lists it."""
    links = json.loads(run(["bpftool", "-j", "link", "show"]).stdout)
    (found,) = [link["id"] for link in links if link.get("prog_id") == prog_id]
    return int(found)


def test_readers_report_the_attachment(read_only: ReadOnlyView) -> None:
    peer, ifname = read_only.peer, read_only.peer.host_ifname
    assert peer.ping(peer.host_v4, count=2, wait=DROP_WAIT) == 0  # the attachment filters
    (prog_id,) = xdp_ids(ifname)
    with read_only.writers_locked():
        (info,) = json.loads(read_only.ok("status", "--json"))
        assert (info["interface"], info["program_id"], info["mode"], info["stale"]) == \
            (ifname, prog_id, "native", False)
        assert info["link_id"] == link_id_of(prog_id)
        assert [rule["address"] for rule in info["rules"]] == [peer.peer_v4]
        assert info["rules"][0]["hits"] == 2
        (one,) = json.loads(read_only.ok("status", ifname, "--json"))
        assert one["program_id"] == prog_id
        assert read_only.ok("status").startswith(f"{ifname} (ifindex ")

        stats = json.loads(read_only.ok("stats", ifname, "--json"))
        assert stats["packets"]["drop_block"] == 2

        exported = pingkiller.parse_policy_file(read_only.ok("export"))
        assert [str(n) for n in exported.attachments[Point(ifname)].rules] == [f"{peer.peer_v4}/32"]

        samples, ready = exporter_scrape(read_only)
        assert ready == 200
        assert samples[("pingkiller_up", ())] == 1
        xdp = {"interface": ifname, "hook": "xdp", "direction": "in"}
        assert samples[("pingkiller_attachment_info", tuple(sorted(
            {**xdp, "mode": "native", "program_id": str(prog_id)}.items())))] == 1
        assert samples[("pingkiller_packets_total", tuple(sorted(
            {**xdp, "reason": "drop_block"}.items())))] == 2


def exporter_scrape(view: ReadOnlyView) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float],
                                                  int]:
    """Run the exporter as a reader in the namespace: one scrape and the /readyz status."""
    port = free_port()
    server = subprocess.Popen(view.command(READER, "exporter", "--listen", f"127.0.0.1:{port}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=view.env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _answers(f"{base}/livez"), "the exporter")
        assert server.poll() is None, server.communicate()[1]
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            ready = response.status
        return scrape(f"{base}/metrics"), ready
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
        assert "Traceback" not in err and "error" not in err.lower(), err


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_events_need_the_ring_buffer_writable(read_only: ReadOnlyView) -> None:
    """Reading events moves the ring buffer's read position: the kernel lets only a
    read-write handle do that, which a read-only bind mount still allows and a read-only
    bpffs does not (then: one clear line)."""
    ifname = read_only.peer.host_ifname
    result = read_only.pk(READER, "events", ifname, "--timeout", "0.2")
    if read_only.kind == "bind":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        line = one_line(result)
        assert "needs write access" in line and "events" in line, line


@pytest.mark.parametrize("verb", [
    ["block", "{if}", "198.18.7.7"], ["unblock", "{if}", "{peer}"], ["allow", "{if}", "198.18.7.8"],
    ["detach", "{if}"], ["detach", "--all"], ["attach", "{if}", "--replace"], ["apply", "-f", "{policy}"],
])
def test_writers_fail_with_one_clear_line(read_only: ReadOnlyView, verb: list[str],
                                          tmp_path: Path) -> None:
    ifname = read_only.peer.host_ifname
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{ifname}]\nblock = ["198.18.7.9"]\n')
    args = [a.format(**{"if": ifname, "peer": read_only.peer.peer_v4, "policy": policy})
            for a in verb]
    result = read_only.pk(WRITER, *args)  # every capability a writer needs, but a read-only mount
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is mounted read-only here" in one_line(result)
    (info,) = json.loads(read_only.ok("status", "--json"))  # nothing changed
    assert [rule["address"] for rule in info["rules"]] == [read_only.peer.peer_v4]
    assert not info["stale"] and xdp_ids(ifname) == [info["program_id"]]


def test_readers_without_cap_bpf_are_refused(read_only: ReadOnlyView) -> None:
    for verb in (["status"], ["stats", read_only.peer.host_ifname], ["export"]):
        result = read_only.pk([], *verb)
        assert result.returncode == 1
        assert "needs root (CAP_BPF)" in one_line(result)
