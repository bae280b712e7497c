"""Large rule tables and hostile scrapers (issue #13): the exporter answers only its paths,
scrapes a 200k-rule attachment fast without exporting (or reading) its rule series,
keeps its memory flat over 2,000 scrapes and keeps serving while idle connections are
held; `status --json` and `export` stream 200k rules in little memory.

The exporter is the real CLI in a subprocess, on a free loopback port; the rules are
loaded with the library (one batch update) onto sandbox veths of a private pin root.
"""

from __future__ import annotations

import ipaddress
import json
import resource
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import CLI, free_port, wait_until_answers
from prometheus_client.parser import text_string_to_metric_families

import pingkiller
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.enums import RuleAction
from pingkiller.model.rules import RuleSet

pytestmark = pytest.mark.root

BIG = 200_000
FIRST = int(ipaddress.IPv4Address("100.64.0.0"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def at_xdp(ifname: str, **more: str) -> tuple[tuple[str, str], ...]:
    """The sorted labels of a series of ``ifname``'s XDP attachment (and ``more``)."""
    return tuple(sorted({"interface": ifname, "hook": "xdp", "direction": "in", **more}.items()))


def attach_big(ifname: str, extra: str) -> set[str]:
    """Attach with one block rule ``extra`` and BIG more (100.64.0.0 on); their addresses."""
    keys = [(FIRST + i).to_bytes(4, "big") for i in range(BIG)]
    with pingkiller.attach(ifname, block=[extra]) as attachment:
        attachment.set_rules(RuleSet(exact_v4=keys, requested=BIG), RuleAction.BLOCK)
    return {str(ipaddress.IPv4Address(FIRST + i)) for i in range(BIG)} | {extra}


@contextmanager
def exporter(*args: str) -> Iterator[tuple[tuple[str, int], subprocess.Popen[str]]]:
    """`pingkiller exporter` on a free loopback port: its address and process."""
    address = ("127.0.0.1", free_port())
    server = subprocess.Popen([*CLI, "exporter", "--listen", f"{address[0]}:{address[1]}", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_answers(server, lambda: get(address, "/livez"))
        yield address, server
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0 and "Traceback" not in err, err


def get(address: tuple[str, int], path: str, timeout: float = 10) -> tuple[int, str]:
    """One raw HTTP request (the path sent as is): (status code, body)."""
    with socket.create_connection(address, timeout=timeout) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        answer = b""
        while chunk := client.recv(1 << 16):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def scrape(address: tuple[str, int]) -> Samples:
    status, text = get(address, "/metrics")
    assert status == 200, text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def rss_kib(process: subprocess.Popen[str]) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_exporter_answers_404_off_its_paths(pin_root: Path) -> None:
    with exporter() as (address, _):
        for path in ("/", "/debug/pprof", "/../../etc/passwd", "/metricsX", "/metrics/",
                     "/%2e%2e/%2e%2e/etc/passwd", "/readyz/../metrics"):
            status, body = get(address, path)
            assert status == 404, path
            assert "pingkiller_" not in body and "root:" not in body
        assert get(address, "/metrics")[0] == 200
        assert get(address, "/livez") == (200, "ok\n")
        assert get(address, "/readyz") == (200, "ok\n")


def test_exporter_scrapes_200k_rules_fast_and_skips_their_series(pin_root: Path,
                                                                  sandbox: Sandbox) -> None:
    big, small = sandbox.add_peer(), sandbox.add_peer()
    attach_big(big.host_ifname, big.peer_v4)
    pingkiller.attach(small.host_ifname, block=[small.peer_v4, "198.18.254.0/24"]).close()
    with exporter("--rule-metrics") as (address, _):
        for _ in range(3):
            start = time.monotonic()
            samples = scrape(address)
            took = time.monotonic() - start
            assert took < 2, f"a scrape of {BIG} rules took {took:.2f} s"
        name = big.host_ifname
        assert samples[("pingkiller_rules", at_xdp(name))] == BIG + 1
        assert samples[("pingkiller_rule_series_skipped", at_xdp(name))] == BIG + 1
        assert not any(sample == "pingkiller_rule_hits_total" and ("interface", name) in labels
                       for sample, labels in samples)
        name = small.host_ifname
        assert samples[("pingkiller_rule_series_skipped", at_xdp(name))] == 0
        assert samples[("pingkiller_rule_hits_total",
                        at_xdp(name, action="block", rule=small.peer_v4))] == 0
        assert samples[("pingkiller_rules", at_xdp(name))] == 2


def test_exporter_memory_is_flat_over_2000_scrapes(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[f"198.18.200.{i}" for i in range(1, 31)]).close()
    paths = ["/metrics"] * 8 + ["/readyz", "/nope"]

    def scrapes(count: int) -> None:
        def worker(share: int) -> None:
            for i in range(share):
                status, _ = get(address, paths[i % len(paths)])
                assert status in (200, 404, 503)  # 503: four workers at once, at the cap
        threads = [threading.Thread(target=worker, args=(count // 4,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    with exporter() as (address, server):
        scrapes(200)
        warm = rss_kib(server)
        scrapes(1800)
        after = rss_kib(server)
        assert scrape(address)[("pingkiller_rules", at_xdp(peer.host_ifname))] == 30
    assert after - warm < 4096, f"RSS grew from {warm} to {after} KiB over 1800 scrapes"


def test_exporter_serves_while_200_idle_connections_are_held(pin_root: Path,
                                                             sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    with exporter() as (address, server):
        threads = len(list(Path(f"/proc/{server.pid}/task").iterdir()))
        held = [socket.create_connection(address, timeout=15) for _ in range(200)]
        try:
            for client in held[::2]:
                client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            start = time.monotonic()
            for _ in range(5):
                assert ("pingkiller_up", ()) in scrape(address)
            assert time.monotonic() - start < 2
            assert len(list(Path(f"/proc/{server.pid}/task").iterdir())) <= threads + 6
            for client in held:  # each is dropped after the request timeout (5 s)
                assert client.recv(100) == b""
            assert time.monotonic() - start < 10
        finally:
            for client in held:
                client.close()


def test_probes_and_scrapes_are_answered_during_a_flood_of_10000_idle_connections(
        pin_root: Path, sandbox: Sandbox) -> None:
    """Past its cap (512) a new connection closes the oldest idle one: the flood costs the
    exporter no more descriptors than the cap, and the kubelet's probe still gets in."""
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    held: list[socket.socket] = []
    try:
        with exporter() as (address, server):
            for _ in range(10000):
                held.append(socket.create_connection(address, timeout=15))
            for _ in range(5):
                assert get(address, "/livez") == (200, "ok\n")
            assert ("pingkiller_up", ()) in scrape(address)
            descriptors = len(list(Path(f"/proc/{server.pid}/fd").iterdir()))
            assert descriptors < 512 + 64, descriptors
            assert held[0].recv(100) == b""  # among the first to be closed
    finally:
        for client in held:
            client.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


MEASURED = ("import resource, subprocess, sys\n"
            "with open(sys.argv[1], 'wb') as out:\n"
            "    code = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def measured(out: Path, *args: str) -> tuple[float, int]:
    """Run the CLI with stdout to ``out`` in a fresh parent: (seconds, peak RSS in KiB)."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", MEASURED, str(out), *CLI, *args],
                            capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    code, peak = result.stdout.split()
    assert code == "0", result.stderr
    return took, int(peak)


def test_status_json_and_export_stream_200k_rules(pin_root: Path, sandbox: Sandbox,
                                                  tmp_path: Path) -> None:
    small, big = sandbox.add_peer(), sandbox.add_peer()
    pingkiller.attach(small.host_ifname, block=[small.peer_v4]).close()
    _, baseline = measured(tmp_path / "small.json", "status", small.host_ifname, "--json")
    expected = attach_big(big.host_ifname, big.peer_v4)

    took, peak = measured(tmp_path / "big.json", "status", big.host_ifname, "--json")
    (info,) = json.loads((tmp_path / "big.json").read_text())
    assert info["rule_count"] == len(info["rules"]) == BIG + 1
    assert {rule["address"] for rule in info["rules"]} == expected
    assert {rule["action"] for rule in info["rules"]} == {"block"}
    assert took < 15, f"status --json of {BIG} rules took {took:.1f} s"
    # All in memory this was ~1 KB a rule (~200 MB); streamed it is one batch.
    assert peak - baseline < 30_000, f"peak RSS {peak} KiB, {baseline} KiB with one rule"

    took, peak = measured(tmp_path / "policy.toml", "export")
    exported = tomllib.loads((tmp_path / "policy.toml").read_text())["interfaces"]
    assert set(exported[big.host_ifname]["block"]) == expected
    assert "allow" not in exported[big.host_ifname]
    assert exported[small.host_ifname]["block"] == [small.peer_v4]
    assert peak - baseline < 30_000, f"export: peak RSS {peak} KiB, {baseline} KiB baseline"

    shown = subprocess.run([*CLI, "status", big.host_ifname, "--max-rules", "5"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert sum(line.startswith("100.6") and "block" in line for line in shown.splitlines()) == 5
    assert f"... and {BIG + 1 - 5} more rules" in shown
    (limited,) = json.loads(subprocess.run(
        [*CLI, "status", big.host_ifname, "--json", "--max-rules", "3"],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert limited["rule_count"] == BIG + 1 and len(limited["rules"]) == 3
