"""Operations end to end: apply/export/--watch and the Prometheus exporter on real attachments.

Sandbox peers ping the host end of their veth, where pingkiller is attached; every CLI
call is a new process working through the pins of a private pin root.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    CLI,
    attach_foreign_program,
    free_port,
    host_ping,
    pk,
    pk_json,
    pk_ok,
    xdp_prog_id,
)
from prometheus_client.parser import text_string_to_metric_families

import pingkiller
from pingkiller import AttachmentInfo, DefaultAction, EventsMode, Hook, IcmpSet, Mode, Policy
from pingkiller.bpf import TcDirection, tcx_query, tcx_supported
from pingkiller.demo.sandbox import Peer, Sandbox
from pingkiller.model.point import Point
from pingkiller.system.interfaces import interface_index

DROP_WAIT = 0.4  # seconds a ping that is expected to be dropped waits for its reply

pytestmark = pytest.mark.root
tc_only = pytest.mark.skipif(not tcx_supported(), reason="this kernel has no tcx (Linux 6.6+)")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def info_of(ifname: str, hook: str | None = None, direction: str | None = None) -> AttachmentInfo:
    """The attachment's state, read in this process (faster than `pingkiller status`)."""
    with pingkiller.open(ifname, hook=hook, direction=direction) as attachment:
        return attachment.info()


def echo_requests_seen(peer: Peer) -> int:
    """ICMP echo requests the peer's namespace has received (its IPv4 SNMP counter)."""
    lines = peer.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = [line.split() for line in lines if line.startswith("Icmp:")][:2]
    return int(values[names.index("InEchos")])


def rules_of(ifname: str, hook: str | None = None, direction: str | None = None) -> dict[str, str]:
    return {rule.address: rule.action.name.lower()
            for rule in info_of(ifname, hook, direction).rules}


def hits_of(info: AttachmentInfo, address: str) -> int:
    (rule,) = [rule for rule in info.rules if rule.address == address]
    return rule.hits


def test_apply_reconciles_and_touches_nothing_else(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    kept, dropped, foreign = sandbox.add_peer(), sandbox.add_peer(), sandbox.add_peer()
    foreign_id = attach_foreign_program(foreign.host_ifname, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[interfaces.{kept.host_ifname}]\nblock = ["{kept.peer_v4}", "198.18.255.0/24"]\n'
        f"[interfaces.{dropped.host_ifname}]\n"
    )
    plan = pk_json("apply", "-f", str(policy), "--dry-run")
    assert [(c["interface"], c["action"]) for c in plan["changes"]] == [
        (kept.host_ifname, "attach"), (dropped.host_ifname, "attach")]
    assert pingkiller.attachments() == []  # a dry run changes nothing

    pk_ok("apply", "-f", str(policy))
    assert kept.ping(kept.host_v4, count=2, wait=DROP_WAIT) == 0
    assert dropped.ping(dropped.host_v4, wait=DROP_WAIT) == 0
    assert foreign.ping(foreign.host_v4) == 1
    before = info_of(kept.host_ifname)
    assert hits_of(before, kept.peer_v4) == 2

    # Keep one interface with a changed policy and rules; drop the other from the file.
    policy.write_text(
        f'[interfaces.{kept.host_ifname}]\ndefault = "drop"\nicmp = "echo-request"\n'
        f'allow = ["{kept.peer_v4}"]\nblock = ["198.18.255.0/24", "fd00:dead::/32"]\n'
    )
    out = pk_ok("apply", "-f", str(policy))
    assert f"detach {dropped.host_ifname}: not in the policy file" in out
    assert (f"update {kept.host_ifname}: set default pass -> drop, icmp echo -> echo-request; "
            f"add block fd00:dead::/32, allow {kept.peer_v4}") in out
    after = info_of(kept.host_ifname)
    assert after.program_id == before.program_id  # updated in place, not re-attached
    assert after.stats is not None and after.stats.dropped == 2  # counters carried on
    assert rules_of(kept.host_ifname) == {kept.peer_v4: "allow", "198.18.255.0/24": "block",
                                          "fd00:dead::/32": "block"}
    assert after.policy is not None and after.policy.default == DefaultAction.DROP
    assert after.policy.icmp_types.shorthand is IcmpSet.ECHO_REQUEST
    assert kept.ping(kept.host_v4) == 1  # allowed now
    assert kept.ping(kept.host_v6, wait=DROP_WAIT) == 0  # default drop
    assert dropped.ping(dropped.host_v4) == 1  # detached
    assert [info.ifname for info in pingkiller.attachments()] == [kept.host_ifname]
    assert xdp_prog_id(foreign.host_ifname) == foreign_id  # never touched

    assert pk_ok("apply", "-f", str(policy)).startswith("No changes")  # idempotent

    # Listing the foreign interface is refused at attach time, and it stays untouched.
    policy.write_text(policy.read_text() + f"[interfaces.{foreign.host_ifname}]\n")
    result = pk("apply", "-f", str(policy))
    assert result.returncode == 1 and "did not attach" in result.stderr
    assert xdp_prog_id(foreign.host_ifname) == foreign_id


def test_mode_change_reattaches(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    peer = sandbox.add_peer()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{peer.host_ifname}]\nmode = "native"\n')
    pk_ok("apply", "-f", str(policy))
    assert info_of(peer.host_ifname).mode == Mode.NATIVE
    policy.write_text(f'[interfaces.{peer.host_ifname}]\nmode = "generic"\n')
    out = pk_ok("apply", "-f", str(policy))
    assert ("detach and attach pk" in out
            and "again (mode native -> generic; the kernel cannot change it in place)" in out)
    assert info_of(peer.host_ifname).mode == Mode.GENERIC
    assert peer.ping(peer.host_v4, wait=DROP_WAIT) == 0


def test_invalid_file_changes_nothing(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    peer, other = sandbox.add_peer(), sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    before = info_of(peer.host_ifname)
    policy = tmp_path / "policy.toml"
    policy.write_text(  # a valid first table, then a bad key: the whole file is refused
        f'[interfaces.{other.host_ifname}]\n\n[interfaces.{peer.host_ifname}]\n'
        'block = ["198.18.0.1", "nonsense"]\n'
    )
    result = pk("apply", "-f", str(policy))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{policy}:4: [interfaces.{peer.host_ifname}] block: 'nonsense'" in result.stderr
    policy.write_text(f"[interfaces.{peer.host_ifname}]\n[interfaces.pknothere0]\n")
    result = pk("apply", "-f", str(policy))
    assert result.returncode == 2 and "pknothere0 not found on this host" in result.stderr
    assert [info.ifname for info in pingkiller.attachments()] == [peer.host_ifname]
    after = info_of(peer.host_ifname)
    assert (after.program_id, after.policy, after.rules) == (before.program_id, before.policy,
                                                             before.rules)


def test_export_round_trip(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    first, second = sandbox.add_peer(), sandbox.add_peer()
    pingkiller.attach(
        first.host_ifname,
        Policy(DefaultAction.PASS, IcmpSet.ALL, events=EventsMode.OFF, event_rate=7, timing=True),
        block=[first.peer_v4, "2001:db8::/32"], allow=["198.18.200.0/24"], mode=Mode.GENERIC,
    ).close()
    pingkiller.attach(second.host_ifname, Policy(DefaultAction.DROP, all_protocols=True),
                      allow=[second.peer_v6]).close()
    if tcx_supported():  # and a tc attachment beside the XDP one, with settings of its own
        pingkiller.attach(first.host_ifname, Policy(DefaultAction.PASS, events=EventsMode.ALL),
                          hook="tc", direction="out", block=["198.18.201.0/24"]).close()
    exported = tmp_path / "exported.toml"
    pk_ok("export", "-o", str(exported))
    plan = pk_json("apply", "-f", str(exported), "--dry-run")
    assert plan["changes"] == [] and sorted(plan["unchanged"]) == sorted(
        [first.host_ifname, second.host_ifname])
    running = pingkiller.attachments()
    assert len(plan["unchanged_attachments"]) == len(running)

    # From nothing, applying the export rebuilds the same state.
    before = {info.point: info for info in running}
    pingkiller.detach_all()
    pk_ok("apply", "-f", str(exported))
    assert pk_ok("export") == exported.read_text()
    after = pingkiller.attachments()
    assert [info.point for info in after] == sorted(before)
    for info in after:
        old = before[info.point]
        assert (info.policy, info.mode, [r.network for r in info.rules]) == (
            old.policy, old.mode, [r.network for r in old.rules])
    assert first.ping(first.host_v4, wait=DROP_WAIT) == 0


@tc_only
def test_apply_xdp_and_tc_on_one_interface_then_drop_the_tc_entry(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """One interface with an XDP and two tc attachments from one file, another with tc
    egress only: each is attached at its hook; exported, it applies with no change; with
    the tc entry gone from the file only the tc attachments are detached, and the XDP one
    runs on, the same program with its counters."""
    peer, other = sandbox.add_peer(), sandbox.add_peer()
    iface = peer.host_ifname
    policy = tmp_path / "policy.toml"
    xdp_entry = f'[[interfaces.{iface}]]\nblock = ["{peer.peer_v4}"]\n'
    policy.write_text(
        xdp_entry
        + f'[[interfaces.{iface}]]\nhook = "tc"\ndirection = "both"\n'
          f'block = ["{peer.peer_v4}", "198.18.254.0/24"]\n'
        + f'[interfaces.{other.host_ifname}]\nhook = "tc"\ndirection = "out"\n'
          f'block = ["{peer.peer_v4}"]\n'
    )
    plan = pk_json("apply", "-f", str(policy), "--dry-run")
    assert [(c["interface"], c["hook"], c["direction"], c["action"]) for c in plan["changes"]] == [
        (iface, "xdp", "in", "attach"), (iface, "tc", "in", "attach"),
        (iface, "tc", "out", "attach"), (other.host_ifname, "tc", "out", "attach")]
    assert [c["mode"] for c in plan["changes"]] == ["auto"] * 4
    assert pingkiller.attachments() == []

    out = pk_ok("apply", "-f", str(policy))
    assert f"attach {iface}: " in out and f"attach {iface} (tc in): " in out
    assert f"attach {other.host_ifname} (tc out): " in out
    assert [point.hook_text for point in pingkiller.points(iface)] == ["xdp", "tc in", "tc out"]
    assert [point.hook_text for point in pingkiller.points(other.host_ifname)] == ["tc out"]
    assert rules_of(iface, "tc", "in") == {peer.peer_v4: "block", "198.18.254.0/24": "block"}
    assert peer.ping(peer.host_v4, count=2, wait=DROP_WAIT) == 0  # XDP drops them
    requests = echo_requests_seen(peer)
    assert host_ping(peer.peer_v4, count=2, wait=DROP_WAIT) == 0  # tc out: they never leave
    assert echo_requests_seen(peer) == requests
    assert host_ping(other.peer_v4, count=2) == 2  # other's egress blocks only peer's address
    xdp_before = info_of(iface, "xdp")
    assert xdp_before.stats is not None and xdp_before.stats.dropped == 2
    tc_out = info_of(iface, "tc", "out")
    # ping tries again a request the egress hook refused (ENOBUFS): 2 or more drops
    assert tc_out.stats is not None and tc_out.stats.reasons[pingkiller.Reason.DROP_BLOCK].packets >= 2

    assert pk_ok("apply", "-f", str(policy)).startswith("No changes")
    exported = tmp_path / "exported.toml"
    pk_ok("export", "-o", str(exported))
    text = exported.read_text()
    assert text.count(f"[[interfaces.{iface}]]") == 3
    assert f"[interfaces.{other.host_ifname}]" in text
    plan = pk_json("apply", "-f", str(exported), "--dry-run")
    assert plan["changes"] == []
    assert plan["unchanged_attachments"] == [
        {"interface": iface, "hook": "xdp", "direction": "in"},
        {"interface": iface, "hook": "tc", "direction": "in"},
        {"interface": iface, "hook": "tc", "direction": "out"},
        {"interface": other.host_ifname, "hook": "tc", "direction": "out"}]

    # The tc entry goes from the file: only the tc attachments are detached.
    policy.write_text(xdp_entry + f'[interfaces.{other.host_ifname}]\nhook = "tc"\n'
                                  f'direction = "out"\nblock = ["{peer.peer_v4}"]\n')
    out = pk_ok("apply", "-f", str(policy))
    assert out.splitlines() == [f"detach {iface} (tc in): not in the policy file",
                                f"detach {iface} (tc out): not in the policy file",
                                "Applied 2 change(s)."]
    assert pingkiller.points(iface) == [Point(iface)]
    ifindex = interface_index(iface)
    assert tcx_query(ifindex, TcDirection.INGRESS) == tcx_query(ifindex, TcDirection.EGRESS) == []
    xdp_after = info_of(iface)
    assert xdp_after.program_id == xdp_before.program_id  # untouched: same program, counters on
    assert xdp_after.stats is not None and xdp_after.stats.dropped >= 2
    requests = echo_requests_seen(peer)
    host_ping(peer.peer_v4, count=2, wait=DROP_WAIT)  # requests leave (XDP drops the replies)
    assert echo_requests_seen(peer) == requests + 2
    assert [p.hook for p in pingkiller.points(other.host_ifname)] == [Hook.TC]  # kept as it was
    assert pk_ok("apply", "-f", str(policy)).startswith("No changes")


@tc_only
def test_apply_refuses_a_bad_hook_or_direction_in_one_line(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    peer = sandbox.add_peer()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{peer.host_ifname}]\nhook = "xdp"\ndirection = "out"\n')
    result = pk("apply", "-f", str(policy))
    assert result.returncode == 2 and result.stderr == (
        f"pingkiller: {policy}:3: [interfaces.{peer.host_ifname}] direction: 'out' needs hook = "
        '"tc": XDP sees only packets that arrive (add hook = "tc", or remove direction) '
        "(nothing was changed)\n")
    policy.write_text(f'[interfaces.{peer.host_ifname}]\nhook = "tc"\nmode = "generic"\n')
    result = pk("apply", "-f", str(policy))
    assert result.returncode == 2 and "is an XDP mode" in result.stderr
    assert result.stderr.count("\n") == 1
    assert pingkiller.attachments() == []


def test_watch_applies_each_edit(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    peer = sandbox.add_peer()
    policy = tmp_path / "policy.toml"
    log_file = tmp_path / "watch.log"
    with log_file.open("w") as stderr:
        watcher = subprocess.Popen(
            [*CLI, "apply", "--watch", "--interval", "0.1", "-f", str(policy)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    try:
        wait_for(lambda: "not found" in log_file.read_text(), "the missing file to be reported")
        policy.write_text(f'[interfaces.{peer.host_ifname}]\nblock = ["198.18.254.1"]\n')
        wait_for(lambda: bool(pingkiller.attachments()), "the first apply")
        assert peer.ping(peer.host_v4) == 1

        policy.write_text(f'[interfaces.{peer.host_ifname}]\nblock = ["{peer.peer_v4}"]\n')
        wait_for(lambda: rules_of(peer.host_ifname) == {peer.peer_v4: "block"}, "the edit")
        assert peer.ping(peer.host_v4, wait=DROP_WAIT) == 0

        policy.write_text("[interfaces\n")  # a broken edit is logged, the state stays
        time.sleep(0.5)
        assert rules_of(peer.host_ifname) == {peer.peer_v4: "block"}

        replacement = tmp_path / "next.toml"  # a ConfigMap-style atomic swap
        replacement.write_text("[interfaces]\n")
        replacement.rename(policy)
        wait_for(lambda: pingkiller.attachments() == [], "the detach")
        assert watcher.poll() is None
    finally:
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=10)
    err = log_file.read_text()
    assert watcher.returncode == 0, err
    assert out == "" and "Traceback" not in err
    log = err.splitlines()
    assert sum(f"error: policy file '{policy}' not found" in line for line in log) == 1
    assert sum("read (sha256" in line for line in log) == 4
    assert any(f"attach {peer.host_ifname}:" in line for line in log)
    assert any(f"update {peer.host_ifname}: add block {peer.peer_v4}; remove 198.18.254.1" in line
               for line in log)
    assert sum("error: " in line and "not valid TOML" in line for line in log) == 1
    assert any(f"detach {peer.host_ifname}: not in the policy file" in line for line in log)
    assert log[-1].endswith("stopped; attachments stay as they are")


@contextmanager
def exporter(*args: str) -> Iterator[str]:
    """Run `pingkiller exporter` on a free loopback port; yields its /metrics URL."""
    port = free_port()
    server = subprocess.Popen([*CLI, "exporter", "--listen", f"127.0.0.1:{port}", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _reachable(url) or server.poll() is not None, "the exporter")
        assert server.poll() is None, server.communicate()[1]
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0, err


def _reachable(url: str) -> bool:
    try:
        scrape(url)
    except OSError:
        return False
    return True


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape with a real HTTP client: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def at(ifname: str, hook: str = "xdp", direction: str = "in") -> dict[str, str]:
    """The labels that name one attachment's series."""
    return {"interface": ifname, "hook": hook, "direction": direction}


def test_exporter_counts_dropped_pings(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    with pingkiller.attach(peer.host_ifname, block=[peer.peer_v4, "198.18.254.0/24"]) as attachment:
        program_id = attachment.info().program_id
    iface = peer.host_ifname
    xdp = at(iface)
    with exporter("--rule-metrics") as url:
        assert value(scrape(url), "pingkiller_packets_total", **xdp, reason="drop_block") == 0
        assert peer.ping(peer.host_v4, count=3, wait=DROP_WAIT) == 0
        samples = scrape(url)
        assert value(samples, "pingkiller_up") == 1
        assert value(samples, "pingkiller_packets_total", **xdp, reason="drop_block") == 3
        assert value(samples, "pingkiller_bytes_total", **xdp, reason="drop_block") == 3 * 98
        assert value(samples, "pingkiller_rule_hits_total", **xdp, rule=peer.peer_v4,
                     action="block") == 3
        assert value(samples, "pingkiller_rule_hits_total", **xdp,
                     rule="198.18.254.0/24", action="block") == 0
        assert value(samples, "pingkiller_rules", **xdp) == 2
        assert value(samples, "pingkiller_events_total", **xdp, outcome="sent") == 3
        assert value(samples, "pingkiller_attachment_info", **xdp, mode="native",
                     program_id=str(program_id)) == 1
        assert ("pingkiller_program_runs_total", tuple(sorted(xdp.items()))) in samples
        assert value(samples, "pingkiller_program_run_time_seconds_total", **xdp) >= 0
        assert all(dict(labels).keys() >= {"interface", "hook", "direction"}
                   for name, labels in samples if name != "pingkiller_up")

    with exporter() as url:  # by default no series names an address
        samples = scrape(url)
        assert not any(name == "pingkiller_rule_hits_total" for name, _ in samples)
        assert value(samples, "pingkiller_rules", **xdp) == 2


SCRAPE_AS_NOBODY = ("import sys, urllib.request\n"
                    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")


def test_a_local_user_without_root_scrapes_no_rule_address(pin_root: Path,
                                                          sandbox: Sandbox) -> None:
    """The exporter listens on loopback, where any local user can scrape it; that user's
    `pingkiller status` says "needs root", and by default the scrape names no address."""
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4, "198.18.254.0/24"]).close()
    with exporter() as url:
        result = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                 "--clear-groups", "/usr/bin/python3", "-c", SCRAPE_AS_NOBODY, url],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "pingkiller_packets_total" in result.stdout  # the counters stay public
        assert peer.peer_v4 not in result.stdout and "198.18.254" not in result.stdout
        assert "rule=" not in result.stdout


SCRAPE_UNIX_AS = ("import socket, sys\n"
                  "client = socket.socket(socket.AF_UNIX)\n"
                  "client.settimeout(10)\n"
                  "try:\n"
                  "    client.connect(sys.argv[1])\n"
                  "except PermissionError:\n"
                  "    sys.exit('refused')\n"
                  "client.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')\n"
                  "answer = b''\n"
                  "while chunk := client.recv(65536):\n"
                  "    answer += chunk\n"
                  "sys.stdout.write(answer.decode())\n")


@pytest.fixture
def socket_directory() -> Iterator[Path]:
    """A directory only root can write that every user can enter (not under /tmp)."""
    directory = Path(f"/run/pktest-metrics-{os.getpid()}")
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_exporter_on_a_unix_socket_serves_its_group_only(pin_root: Path, sandbox: Sandbox,
                                                         socket_directory: Path) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    path = socket_directory / "metrics.sock"
    server = subprocess.Popen([*CLI, "exporter", "--listen", f"unix:{path}", "--socket-mode",
                               "0660", "--socket-group", "65534"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: path.exists() or server.poll() is not None, "the socket")
        assert server.poll() is None, server.communicate()[1]
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
        assert (info.st_uid, info.st_gid) == (0, 65534)

        def scrape_as(*ids: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["/usr/bin/setpriv", *ids, "--clear-groups", "/usr/bin/python3",
                                   "-c", SCRAPE_UNIX_AS, str(path)],
                                  capture_output=True, text=True, timeout=30)

        member = scrape_as("--reuid=65534", "--regid=65534")
        assert member.returncode == 0, member.stderr
        assert "HTTP/1.1 200" in member.stdout and "pingkiller_packets_total" in member.stdout
        outsider = scrape_as("--reuid=1000", "--regid=1000")
        assert outsider.returncode == 1 and "refused" in outsider.stderr
        result = pk("exporter", "--listen", f"unix:{path}")  # the socket is taken
        assert result.returncode == 1 and "another exporter listens" in result.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0 and "Traceback" not in err, err
    assert not path.exists()  # removed on the way out


@pytest.mark.parametrize(("args", "says"), [
    (["--listen", "unix:relative.sock"], "must be absolute"),
    (["--listen", "unix:/tmp/pingkiller-metrics.sock"], "is writable by others"),
    (["--listen", "unix:/nonexistent-dir/sock"], "does not exist"),
    (["--listen", "127.0.0.1:9477", "--socket-group", "nogroup"], "are for a unix socket"),
    (["--listen", "unix:/run/x.sock", "--socket-mode", "rw"], "not an octal file mode"),
    (["--listen", "unix:/run/x.sock", "--socket-group", "no-such-group-here"], "no group"),
])
def test_exporter_refuses_a_bad_unix_socket_in_one_line(pin_root: Path, args: list[str],
                                                        says: str) -> None:
    result = pk("exporter", *args)
    assert result.returncode in (1, 2) and says in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not Path("/run/x.sock").exists()


@tc_only
def test_exporter_labels_each_attachment_of_an_interface(pin_root: Path, sandbox: Sandbox) -> None:
    """XDP, tc in and tc out on one interface: three sets of series, told apart by hook and
    direction; the host's own pings to a blocked peer count at tc out only."""
    peer = sandbox.add_peer()
    iface = peer.host_ifname
    pingkiller.attach(iface, block=["198.18.254.0/24"]).close()
    for attachment in pingkiller.attach_both(iface, block=[peer.peer_v4]):
        attachment.close()
    programs = {(i.hook.label, i.direction.label): i.program_id
                for i in pingkiller.attachments(with_rules=False)}
    with exporter("--rule-metrics") as url:
        assert host_ping(peer.peer_v4, count=2, wait=DROP_WAIT) == 0
        samples = scrape(url)
        for hook, direction in (("xdp", "in"), ("tc", "in"), ("tc", "out")):
            labels = at(iface, hook, direction)
            mode = "native" if hook == "xdp" else "tcx"
            assert value(samples, "pingkiller_attachment_info", **labels, mode=mode,
                         program_id=str(programs[(hook, direction)])) == 1
            assert value(samples, "pingkiller_rules", **labels) == 1
        drops = value(samples, "pingkiller_packets_total", **at(iface, "tc", "out"),
                      reason="drop_block")
        assert drops >= 2  # ping tries a request the egress hook refused again
        assert value(samples, "pingkiller_rule_hits_total", **at(iface, "tc", "out"),
                     rule=peer.peer_v4, action="block") == drops
        for hook, direction in (("xdp", "in"), ("tc", "in")):
            assert value(samples, "pingkiller_packets_total", **at(iface, hook, direction),
                         reason="drop_block") == 0
        assert value(samples, "pingkiller_rule_hits_total", **at(iface, "tc", "in"),
                     rule=peer.peer_v4, action="block") == 0


def test_exporter_refuses_a_bad_listen_address(pin_root: Path) -> None:
    result = pk("exporter", "--listen", "localhost")
    assert result.returncode == 2 and "is not HOST:PORT" in result.stderr
