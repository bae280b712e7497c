"""The runnable examples of docs/examples/, each run for real on a sandbox (never a real NIC)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pingkiller.bpf.maps import possible_cpus
from pingkiller.demo.sandbox import IP, Peer, Sandbox

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
def example_env() -> dict[str, str]:
    """The environment as it is now (with the test's PINGKILLER_PIN_ROOT), and the
    `pingkiller` installed beside this interpreter first on PATH for the recipes."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def built_examples() -> None:
    """`make examples`: the BPF C of docs/examples/bpf with the project's rules."""
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "examples"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


class Running:
    """An example running in its own session; output read line by line until it is stopped."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=example_env(), start_new_session=True)
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 20) -> str:
        """Read stdout until a line holds ``text``; returns that line."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in output: {''.join(self.lines)}{self.stderr()}")

    def wait_for_stderr(self, text: str, timeout: float = 20) -> str:
        """Read stderr until a line holds ``text``; returns that line."""
        assert self.process.stderr is not None
        deadline, seen = time.monotonic() + timeout, []
        while select.select([self.process.stderr], [], [], max(0, deadline - time.monotonic()))[0]:
            line = self.process.stderr.readline()
            seen.append(line)
            if not line or text in line:
                break
        assert seen and text in seen[-1], f"no {text!r} on stderr: {''.join(seen)}"
        return seen[-1]

    def stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr and self.process.poll() is not None \
            else ""

    def stop(self) -> tuple[str, str]:
        """Ctrl-C (SIGINT to the whole session), as a user would; returns the rest of the output."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            out, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            out, err = self.process.communicate()
        self.lines.append(out)
        return "".join(self.lines), err


@contextmanager
def running(args: list[str]) -> Iterator[Running]:
    example = Running(args)
    try:
        yield example
    finally:
        example.stop()


def pk_json(*args: str, netns: Peer | None = None) -> Any:
    command = ["pingkiller", *args, "--json"]
    if netns is not None:
        command = netns.exec_args(command)
    result = subprocess.run(command, capture_output=True, text=True, env=example_env(), timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_drop_all_icmp_with_timing_and_watch(sandbox: Sandbox, pin_root: Path) -> None:
    peer = sandbox.add_peer()
    with running([str(EXAMPLES / "drop-all-icmp.sh"), peer.host_ifname]) as recipe:
        recipe.wait_for(f"Attached to {peer.host_ifname}")
        assert peer.ping(peer.host_v4, count=3, wait=0.3, interval=0.05) == 0
        assert peer.ping(peer.host_v6, count=3, wait=0.3, interval=0.05) == 0
        recipe.wait_for("average processing time (drop)")
        stats = pk_json("stats", peer.host_ifname)
        assert stats["packets"]["drop_default"] >= 6
        assert stats["average_ns"]["drop"] > 0
        out, _ = recipe.stop()
    assert recipe.process.returncode == 0
    assert f"Detached from {peer.host_ifname}" in out
    assert pk_json("status") == []


_PROBE = r"""
import socket, sys
address, port = sys.argv[1], int(sys.argv[2])
listener = socket.create_server(("0.0.0.0", port))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
udp.settimeout(0.5)
result = {}
try:
    socket.create_connection((address, port), timeout=1).close()
    result["tcp"] = True
except OSError:
    result["tcp"] = False
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sender.bind((address, 0))
sender.sendto(b"x", (address, port))
try:
    udp.recvfrom(16)
    result["udp"] = True
except OSError:
    result["udp"] = False
print(result["tcp"], result["udp"])
"""


def _probe(peer: Peer, address: str, port: int) -> tuple[bool, bool]:
    """TCP connect and UDP send from ``address`` to itself, inside the peer's namespace (lo)."""
    result = peer.run([sys.executable, "-c", _PROBE, address, str(port)], timeout=20)
    tcp, udp = result.stdout.split()
    return tcp == "True", udp == "True"


def test_drop_source_on_lo_in_a_namespace_with_per_cpu_counters(
    sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()  # its namespace has lo and the address peer.peer_v4
    script = peer.exec_args(["bash", str(EXAMPLES / "drop-source.sh"), "lo", peer.peer_v4])
    with running(script) as recipe:
        recipe.wait_for("Attached to lo")
        assert _probe(peer, "127.0.0.1", 40001) == (True, True)  # other sources pass
        assert _probe(peer, peer.peer_v4, 40002) == (False, False)  # TCP and UDP dropped
        recipe.wait_for("cpu 0:")
        stats = pk_json("stats", "lo", "--per-cpu", netns=peer)
        per_cpu = stats["per_cpu"]
        assert len(per_cpu) == possible_cpus()
        assert sum(cpu["drop_block"]["packets"] for cpu in per_cpu) == \
            stats["packets"]["drop_block"] >= 2
        out, _ = recipe.stop()
    assert "Detached from lo" in out


def test_block_ping_changed_on_the_fly_with_an_event_per_ping(
    sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    with running([str(EXAMPLES / "block-ping.sh"), ifname]) as recipe:
        recipe.wait_for(f"Attached to {ifname}")
        recipe.wait_for_stderr("from now on")  # `pingkiller events` reads the ring from now on
        assert peer.ping(peer.host_v4, count=1) == 1
        recipe.wait_for("pass (pass_default)")
        pk_json("block", ifname, peer.peer_v4)
        assert peer.ping(peer.host_v4, count=1, wait=0.5) == 0
        recipe.wait_for("drop (drop_block)")
        pk_json("unblock", ifname, peer.peer_v4)
        assert peer.ping(peer.host_v4, count=1) == 1
        line = recipe.wait_for("echo-request")
        out, err = recipe.stop()
    assert re.match(rf"\d\d:\d\d:\d\d\.\d{{6}} {peer.peer_v4} > {peer.host_v4} echo-request", line), line
    assert line.rstrip().endswith("pass (pass_default)")
    assert "events received" in err
    assert f"Detached from {ifname}" in out


def test_hello_world_raw_tracepoint(built_examples: None) -> None:
    with running([sys.executable, str(EXAMPLES / "hello.py")]) as hello:
        hello.wait_for("ready")
        started = subprocess.Popen(["/bin/sleep", "0"])
        started.wait()
        line = hello.wait_for(f"from pid {started.pid} ")
    assert line.strip() == f"Hello World! from pid {started.pid} (sleep)"


def test_syscall_counter_from_its_hash_map(built_examples: None) -> None:
    with running([sys.executable, str(EXAMPLES / "syscount.py"), "--duration", "2",
                  "--top", "1000"]) as syscount:
        syscount.wait_for("ready")
        # 5000 one-byte reads and writes: at least 10000 system calls by this pid
        busy = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=5000"],
                                stderr=subprocess.DEVNULL)
        busy.wait()
        header = syscount.wait_for("SYSCALLS")
        assert header.split() == ["PID", "SYSCALLS", "COMMAND"]
        rows = {}
        while True:
            line = syscount.process.stdout.readline() if syscount.process.stdout else ""
            if not line:
                break
            pid, count, _command = line.split(maxsplit=2)
            rows[int(pid)] = int(count)
    assert 10000 <= rows[busy.pid] < 10500


def test_xdp_tracer_reports_ipv4_packets_on_a_sandbox_veth(
    built_examples: None, sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()
    with running([sys.executable, str(EXAMPLES / "xdp_tracer.py"), peer.host_ifname,
                  "--count", "2"]) as tracer:
        tracer.wait_for("ready")
        assert peer.ping(peer.host_v4, count=2, interval=0.05) == 2  # the tracer lets all pass
        first = tracer.wait_for(" bytes")
        second = tracer.wait_for(" bytes")
    for line in (first, second):
        assert line.strip() == f"{peer.peer_v4} > {peer.host_v4} icmp 98 bytes"


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_library_doc_examples_run_as_written(pin_root: Path) -> None:
    blocks = _python_blocks((ROOT / "docs" / "library.md").read_text())
    assert len(blocks) >= 8
    namespace: dict[str, Any] = {}
    made: list[Peer] = []
    try:
        for number, block in enumerate(blocks, 1):
            code = compile(block, f"docs/library.md python block {number}", "exec")
            exec(code, namespace)
            box = namespace.get("box")
            if isinstance(box, Sandbox):
                made += [peer for peer in box.peers if peer not in made]
    finally:
        box = namespace.get("box")
        if isinstance(box, Sandbox):
            box.close()
    # The doc's last block closes its sandbox: nothing it made may be left.
    namespaces = subprocess.run([IP, "netns", "list"], capture_output=True, text=True).stdout
    assert made and not any(peer.netns in namespaces for peer in made)


def test_library_doc_examples_type_check(tmp_path: Path) -> None:
    """The blocks, as the one script they are, pass `mypy --strict`: the API documented is
    the API declared."""
    script = tmp_path / "library_md.py"
    script.write_text("\n".join(_python_blocks((ROOT / "docs" / "library.md").read_text())))
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                              str(script)], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout


def test_troubleshooting_verifier_example(
    built_examples: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = _python_blocks((ROOT / "docs" / "troubleshooting.md").read_text())
    monkeypatch.chdir(ROOT)
    exec(compile(block, "docs/troubleshooting.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    summary = ("invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0): "
               "R1 offset is outside of the packet")
    assert lines[0] == f"loading program 'unchecked': Permission denied ({summary})"
    assert lines[1] == "R1 offset is outside of the packet"
    assert lines[2] == summary
    assert lines[3] == "False"
    assert "unchecked.bpf.c:17" in "\n".join(lines[4:])
