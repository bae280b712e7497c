"""The exporter's two processes: the one that serves HTTP has no capability, runs as
nobody under no_new_privs and a seccomp filter, and holds no BPF descriptor; the one
that reads the pins keeps CAP_BPF and CAP_NET_ADMIN only. A process that gives up its
privileges as the server does cannot change the filter even with a writable descriptor
of its maps and link in hand."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import CLI, free_port, wait_until_answers

import pingkiller
from pingkiller.demo.sandbox import Sandbox
from pingkiller.system import privileges

pytestmark = pytest.mark.root

CAP_NET_ADMIN, CAP_BPF = 12, 39


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@contextmanager
def exporter(*args: str) -> Iterator[tuple[str, subprocess.Popen[str], int]]:
    """The exporter on a free loopback port: its /metrics URL, the broker (the process
    started) and the server's pid."""
    port = free_port()
    broker = subprocess.Popen([*CLI, "exporter", "--listen", f"127.0.0.1:{port}", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until_answers(broker, lambda: urllib.request.urlopen(
            url.replace("/metrics", "/livez"), timeout=5).read())
        (server,) = _children(broker.pid)
        yield url, broker, server
    finally:
        broker.send_signal(signal.SIGTERM)
        _, err = broker.communicate(timeout=10)
    assert broker.returncode == 0 and "Traceback" not in err, err


def _bpf_descriptors(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "bpf" in target:
            found.append(target)
    return found


def test_the_serving_process_holds_no_privilege_and_no_bpf_descriptor(
        pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    with exporter("--rule-metrics") as (url, broker, server):
        served = privileges.status(server)
        assert served.uid == (65534,) * 4 and served.gid == (65534,) * 4
        assert served.groups == ()
        assert (served.effective, served.permitted, served.inheritable, served.ambient,
                served.bounding) == (0, 0, 0, 0, 0)
        assert served.no_new_privs and served.seccomp == 2
        assert _bpf_descriptors(server) == []
        assert (Path(f"/proc/{server}/status").stat().st_uid == 0)  # not dumpable

        kept = privileges.status(broker.pid)
        assert kept.uid == (0,) * 4
        assert kept.effective == kept.permitted == (1 << CAP_BPF) | (1 << CAP_NET_ADMIN)
        assert kept.bounding == kept.effective and kept.no_new_privs
        assert _bpf_descriptors(broker.pid) == []  # it opens the pins per scrape only

        assert peer.ping(peer.host_v4, count=2, wait=1.0) == 0
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert f'rule="{peer.peer_v4}"' in text  # the broker read the pins for it
        assert "pingkiller_up 1.0" in text

        # a new attachment shows without a restart
        other = sandbox.add_peer()
        pingkiller.attach(other.host_ifname, block=[other.peer_v4]).close()
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert f'interface="{other.host_ifname}"' in text


# Run as root: open the attachment's rules map and link read-write, then give up
# privileges exactly as the exporter's server does, and try to use them.
AS_THE_SERVER = """
import json, socket, sys
from pingkiller.bpf import BpfError, Map, Link
from pingkiller.exporter import separated
from pingkiller.system import seccomp

pins = sys.argv[1]
rules = Map.from_pin(pins + "/rules_v4")
link = Link.from_pin(pins + "/link")
key = socket.inet_aton(sys.argv[2])
assert rules.get_raw(key) is not None
notes = separated._give_up_privileges(65534, 65534)
assert seccomp.install() is None
tried = {}
def attempt(name, call):
    try:
        call()
        tried[name] = "done"
    except BpfError as err:
        tried[name] = err.errno
    except OSError as err:
        tried[name] = err.errno
attempt("delete", lambda: rules.__delitem__(key))
attempt("update", lambda: rules.put(key, bytes(len(rules.get_raw(key) or b""))))
attempt("detach", link.detach)
attempt("reopen", lambda: Map.from_pin(pins + "/rules_v4"))
attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
print(json.dumps({"notes": notes, "tried": tried}))
"""


def test_giving_up_privileges_as_the_server_does_leaves_no_way_to_change_the_filter(
        pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    with pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]) as attachment:
        pins = attachment.info().pin_dir
    result = subprocess.run([sys.executable, "-c", AS_THE_SERVER, pins, peer.peer_v4],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["notes"] == []
    assert outcome["tried"] == {"delete": 1, "update": 1, "detach": 1, "reopen": 1, "inet": 1}
    # and nothing changed: the rule is there and still drops the peer's pings
    with pingkiller.open(peer.host_ifname, read_only=True) as view:
        assert f"{peer.peer_v4}/32" in [str(rule.network) for rule in view.rules()]
    assert peer.ping(peer.host_v4, count=2, wait=1.0) == 0


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    directory = Path(f"/run/pktest-broker-{os.getpid()}")
    directory.mkdir(mode=0o755)
    try:
        yield directory
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)


def test_split_halves_serve_together_and_the_broker_answers_only_its_uid(
        pin_root: Path, sandbox: Sandbox, broker_dir: Path) -> None:
    """exporter-broker and `exporter --broker` as two processes (two containers in the
    DaemonSet): the server, started as nobody, serves what the broker reads; the broker
    drops a connection from any other uid without answering."""
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    os.chmod(broker_dir, 0o777)  # as an emptyDir is
    path = broker_dir / "broker.sock"
    broker = subprocess.Popen([*CLI, "exporter-broker", "--socket", str(path), "--socket-group",
                               "65534"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    server = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               *CLI, "exporter", "--broker", str(path), "--listen",
                               f"127.0.0.1:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until_answers(server, lambda: urllib.request.urlopen(url, timeout=5).read(),
                           "the split exporter", timeout=30)
        assert broker.poll() is None, broker.communicate()[1]
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert f'interface="{peer.host_ifname}"' in text and "pingkiller_up 1.0" in text
        assert privileges.status(server.pid).effective == 0
        assert privileges.status(broker.pid).effective == 1 << CAP_BPF | 1 << CAP_NET_ADMIN
        with socket.socket(socket.AF_UNIX) as intruder:  # root, not uid 65534
            intruder.settimeout(10)
            intruder.connect(str(path))
            try:
                intruder.sendall(b"M")
                answer = intruder.recv(100)
            except OSError:  # closed before the request
                answer = b""
            assert answer == b""
    finally:
        for process in (server, broker):
            process.send_signal(signal.SIGTERM)
        _, server_err = server.communicate(timeout=10)
        _, broker_err = broker.communicate(timeout=10)
    assert server.returncode == 0 and broker.returncode == 0, server_err + broker_err
    assert "refused a connection from uid 0" in broker_err
    assert not path.exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--broker", "/run/pktest-nowhere/broker.sock"], "no exporter-broker listens"),
    (["--broker", "/run/x.sock", "--rule-metrics"], "--rule-metrics is the broker's"),
    (["--broker", "/run/x.sock", "--run-time-stats"], "--run-time-stats is the broker's"),
])
def test_a_server_without_its_broker_says_so_in_one_line(args: list[str], says: str) -> None:
    result = subprocess.run([*CLI, "exporter", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode in (1, 2) and says in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
