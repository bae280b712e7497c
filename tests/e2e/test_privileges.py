"""Least privilege: root-only pins, the capabilities each verb needs, and other tools'
XDP programs and interfaces left alone.

Capabilities are limited with ``setpriv --bounding-set``: for uid 0 an exec then gets
exactly the bounding set, so the CLI runs with only the capabilities named.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import one_line, xdp_ids
from test_hostile_input import as_nobody, nobody_view

import pingkiller
from pingkiller.demo.sandbox import IP, Sandbox, run

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "pingkiller"]
NEEDS_ROOT = "needs root (CAP_BPF + CAP_NET_ADMIN)"
NEEDS_ROOT_TO_READ = "needs root (CAP_BPF)"  # readers: status, stats, export, exporter
LEAST = "bpf,net_admin,perfmon"  # what attach needs (docs/security.md)


def with_caps(caps: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as root with only ``caps`` (comma-separated names, '' for none)."""
    wanted = "".join(f",+{cap}" for cap in caps.split(",") if cap)
    return subprocess.run(
        ["setpriv", f"--bounding-set=-all{wanted}", "--inh-caps=-all", *CLI, *args],
        capture_output=True, text=True, timeout=60,
    )


def test_pins_are_root_only(pin_root: Path, sandbox: Sandbox) -> None:
    ifname = sandbox.add_peer().host_ifname
    subprocess.run([*CLI, "attach", ifname, "--block", "198.19.3.3"], check=True, capture_output=True)
    subprocess.run([*CLI, "attach", ifname, "--replace"], check=True, capture_output=True)
    directories = [pin_root, *(p for p in pin_root.iterdir())]
    assert len(directories) == 2
    for directory in directories:
        info = directory.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == 0 and info.st_gid == 0
    files = list(directories[1].iterdir())
    assert len(files) == 16  # the link, the program, the identity record and 13 maps
    for pin in files:
        info = pin.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0, pin


def test_attach_works_with_least_capabilities(pin_root: Path, sandbox: Sandbox) -> None:
    """CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON suffice for every verb; no CAP_SYS_ADMIN."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    attached = with_caps(LEAST, "attach", ifname, "--json")
    assert attached.returncode == 0, attached.stderr
    assert peer.ping(peer.host_v4, count=2, wait=0.5) == 0  # really dropping pings
    for verb in (["attach", ifname, "--replace"], ["status", "--json"], ["block", ifname, "198.19.3.4"],
                 ["allow", ifname, "198.19.3.5"], ["unblock", ifname, "198.19.3.4"],
                 ["stats", ifname, "--json"], ["events", ifname, "--timeout", "0.1"]):
        result = with_caps(LEAST, *verb)
        assert result.returncode == 0, (verb, result.stderr)
    (info,) = json.loads(with_caps(LEAST, "status", "--json").stdout)
    assert [rule["address"] for rule in info["rules"]] == ["198.19.3.5"]
    assert with_caps(LEAST, "detach", ifname).returncode == 0
    assert list(pin_root.iterdir()) == []
    assert peer.ping(peer.host_v4, count=1, wait=1) == 1


def test_attach_without_perfmon_is_refused_clearly(pin_root: Path, sandbox: Sandbox) -> None:
    """The verifier needs CAP_PERFMON for this program; say so instead of EPERM from libbpf."""
    ifname = sandbox.add_peer().host_ifname
    result = with_caps("bpf,net_admin", "attach", ifname)
    assert result.returncode == 1
    line = one_line(result)
    assert NEEDS_ROOT in line and "CAP_PERFMON" in line
    assert not pin_root.exists() or list(pin_root.iterdir()) == []
    # Changing and reading an attachment needs no CAP_PERFMON.
    pingkiller.attach(ifname).close()
    for verb in (["status"], ["block", ifname, "198.19.3.4"], ["detach", ifname]):
        assert with_caps("bpf,net_admin", *verb).returncode == 0, verb


@pytest.mark.parametrize("caps", ["", "bpf", "net_admin", "perfmon"])
def test_too_few_capabilities_are_refused(caps: str, pin_root: Path, sandbox: Sandbox) -> None:
    """Writers need CAP_BPF + CAP_NET_ADMIN; readers CAP_BPF alone."""
    ifname = sandbox.add_peer().host_ifname
    pingkiller.attach(ifname, block=["198.19.3.3"]).close()
    for verb in (["attach", ifname, "--replace"], ["block", ifname, "198.19.3.4"],
                 ["detach", "--all"]):
        result = with_caps(caps, *verb)
        assert result.returncode == 1, (verb, result.stderr)
        assert NEEDS_ROOT in one_line(result)
    for verb in (["status"], ["stats", ifname], ["export"]):
        result = with_caps(caps, *verb)
        if caps == "bpf":
            assert result.returncode == 0, (verb, result.stderr)
        else:
            assert result.returncode == 1, (verb, result.stderr)
            assert NEEDS_ROOT_TO_READ in one_line(result)
    (info,) = pingkiller.attachments()
    assert [rule.address for rule in info.rules] == ["198.19.3.3"]


def test_non_root_user_with_capabilities_is_refused(pin_root: Path, sandbox: Sandbox) -> None:
    """The pins are root's: even CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON do not open them."""
    ifname = sandbox.add_peer().host_ifname
    pingkiller.attach(ifname, block=["198.19.3.3"]).close()
    with nobody_view() as view:
        for verb in (["status"], ["status", ifname], ["stats", ifname], ["block", ifname, "198.19.3.4"],
                     ["detach", ifname], ["attach", ifname, "--replace"]):
            command = as_nobody([*CLI, *verb], view, caps=",+bpf,+net_admin,+perfmon")
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 1, (verb, result.stderr)
            line = one_line(result)
            needs = NEEDS_ROOT if verb[0] in ("block", "detach", "attach") else NEEDS_ROOT_TO_READ
            assert needs in line and str(pin_root) in line, line
    (info,) = pingkiller.attachments()
    assert [rule.address for rule in info.rules] == ["198.19.3.3"]


# -- other tools' programs and interfaces

FOREIGN_C = """
#define SEC(name) __attribute__((section(name), used))
struct xdp_md;
SEC("xdp") int foreign(struct xdp_md *ctx) { return 2; /* XDP_PASS */ }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang to build a foreign program")
def test_foreign_programs_and_interfaces_are_left_alone(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    ours, foreign, bystander = (sandbox.add_peer().host_ifname for _ in range(3))
    source, obj = tmp_path / "foreign.bpf.c", tmp_path / "foreign.bpf.o"
    source.write_text(FOREIGN_C)
    run(["clang", "-O2", "-target", "bpf", "-c", str(source), "-o", str(obj)])
    run([IP, "link", "set", "dev", foreign, "xdpgeneric", "obj", str(obj), "sec", "xdp"])
    (foreign_id,) = xdp_ids(foreign)

    for args in (["attach", foreign], ["attach", foreign, "--replace"], ["detach", foreign]):
        result = subprocess.run([*CLI, *args], capture_output=True, text=True)
        assert result.returncode in (1, 2), (args, result.stderr)
        line = one_line(result)
        assert f"program id {foreign_id}" in line or "no pingkiller attachment" in line, line
        assert xdp_ids(foreign) == [foreign_id]

    subprocess.run([*CLI, "attach", ours], check=True, capture_output=True)
    assert xdp_ids(foreign) == [foreign_id] and xdp_ids(bystander) == []
    (info,) = pingkiller.attachments()
    assert info.ifname == ours and xdp_ids(ours) == [info.program_id]

    done = json.loads(subprocess.run([*CLI, "detach", "--all", "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    assert done == [{"interface": ours, "hook": "xdp", "direction": "in", "was_stale": False}]
    assert xdp_ids(ours) == [] and xdp_ids(bystander) == []
    assert xdp_ids(foreign) == [foreign_id]


@pytest.mark.parametrize(("owner", "mode", "says"), [
    (65534, 0o777, "is owned by uid 65534, not 0"),  # made by a user before root's first run
    (65534, 0o700, "is owned by uid 65534, not 0"),
    (0, 0o777, "is writable by others (mode 0777)"),
    (0, 0o730, "is writable by others (mode 0730)"),
])
def test_a_pin_root_someone_else_made_or_can_write_is_refused(
    pin_root: Path, sandbox: Sandbox, owner: int, mode: int, says: str
) -> None:
    ifname = sandbox.add_peer().host_ifname
    pin_root.mkdir()
    (pin_root / "=del-1-decoy").mkdir()  # what an attacker would leave for "recovery"
    pin_root.chmod(mode)
    shutil.chown(pin_root, owner, owner)
    for verb in (["attach", ifname], ["attach", ifname, "--replace"], ["detach", "--all"]):
        result = subprocess.run([*CLI, *verb], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (verb, result.stderr)
        line = one_line(result)
        assert f"the pin root {pin_root} {says}" in line and f"rm -r {pin_root}" in line, line
    assert xdp_ids(ifname) == []  # nothing attached
    assert sorted(p.name for p in pin_root.iterdir()) == ["=del-1-decoy"]  # nothing touched
    assert stat.S_IMODE(pin_root.stat().st_mode) == mode and pin_root.stat().st_uid == owner


WRITERS = (["attach", "IF"], ["attach", "IF", "--replace"], ["detach", "--all"])


def refused_writers(ifname: str, *says: str) -> None:
    """Every writer exits 1 with one line saying ``says``, and nothing is attached."""
    for verb in WRITERS:
        args = [ifname if arg == "IF" else arg for arg in verb]
        result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (verb, result.stderr)
        line = one_line(result)
        assert all(part in line for part in says), line
    assert xdp_ids(ifname) == []


def test_a_symlinked_pin_root_is_refused(pin_root: Path, sandbox: Sandbox) -> None:
    """Even one pointing at a root-owned 0700 directory on bpffs: nothing follows it."""
    ifname = sandbox.add_peer().host_ifname
    target = pin_root.with_name(pin_root.name + "-target")
    target.mkdir(mode=0o700)
    try:
        (target / "=del-1-decoy").mkdir(mode=0o700)
        pin_root.symlink_to(target)
        refused_writers(ifname, f"the pin root {pin_root} is a symlink", f"rm -r {pin_root}")
        assert pin_root.is_symlink() and [p.name for p in target.iterdir()] == ["=del-1-decoy"]
    finally:
        pin_root.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize(("entry", "says"), [
    ("owner", "is owned by uid 65534, not 0"),  # e.g. made while the root was open to others
    ("mode", "is writable by others (mode 0777)"),
    ("group", "is writable by others (mode 0770)"),
    ("symlink", "is a symlink"),
])
def test_a_pin_root_holding_an_entry_someone_else_could_have_made_is_refused(
    pin_root: Path, sandbox: Sandbox, entry: str, says: str
) -> None:
    """Every directory below the root is trusted by writers (recovery finishes '='
    directories): each must be root's and writable by root alone, or nothing is done."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pingkiller.attach(ifname, block=[peer.peer_v4]).close()  # a real attachment beside it
    (prog_id,) = xdp_ids(ifname)
    decoy = pin_root / "=del-1-decoy"
    if entry == "symlink":
        decoy.symlink_to(pin_root / ifname)  # "recovery" would detach our attachment
    else:
        decoy.mkdir()
        decoy.chmod({"owner": 0o700, "mode": 0o777, "group": 0o770}[entry])
        if entry == "owner":
            shutil.chown(decoy, 65534, 65534)
    before = sorted(p.name for p in pin_root.iterdir())
    for verb in WRITERS:
        args = [ifname if arg == "IF" else arg for arg in verb]
        result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (verb, result.stderr)
        line = one_line(result)
        assert f"{decoy} in the pin root {says}" in line and f"rm -r {decoy}" in line, line
    assert xdp_ids(ifname) == [prog_id]  # still the same attachment: nothing touched
    assert sorted(p.name for p in pin_root.iterdir()) == before
    assert decoy.is_symlink() == (entry == "symlink")
    decoy.unlink() if entry == "symlink" else decoy.rmdir()  # the operator's fix
    subprocess.run([*CLI, "detach", ifname], check=True, capture_output=True, timeout=60)
    assert xdp_ids(ifname) == []


@pytest.mark.parametrize("exists", [False, True])
def test_a_pin_root_off_bpffs_is_refused(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    """Pins live only on bpffs: a root elsewhere (here under /tmp) is refused before
    anything is made in it, also when it is root's and 0700."""
    ifname = sandbox.add_peer().host_ifname
    root = tmp_path / "pins"
    if exists:
        root.mkdir(mode=0o700)
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(root))
    result = subprocess.run([*CLI, "attach", ifname], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    line = one_line(result)
    assert f"the pin root {root} is not on bpffs" in line and "PINGKILLER_PIN_ROOT" in line, line
    if exists:
        refused_writers(ifname, f"the pin root {root} is not on bpffs")
        assert list(root.iterdir()) == []
    else:
        assert not root.exists()  # not even the root was made
    assert xdp_ids(ifname) == []


def test_the_pin_root_is_made_0700_whatever_the_umask(pin_root: Path, sandbox: Sandbox) -> None:
    ifname = sandbox.add_peer().host_ifname
    subprocess.run(["sh", "-c", 'umask 0277 && exec "$@"', "sh", *CLI, "attach", ifname],
                   check=True, capture_output=True, timeout=60)
    assert stat.S_IMODE(pin_root.stat().st_mode) == 0o700
    subprocess.run([*CLI, "detach", ifname], check=True, capture_output=True, timeout=60)


def test_a_pin_root_made_by_nobody_in_a_sticky_parent_is_refused(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack of issue #12: where bpffs is mounted world-writable and sticky (as a
    `mount -t bpf` without a mode makes it), uid 65534 makes the pin root before root
    does, then leaves a `=del-` directory for root's "recovery" to act on. The bpffs is
    one of the test's own: the host's may be 0700, which nobody cannot enter at all."""
    ifname = sandbox.add_peer().host_ifname
    mount_point = Path(tempfile.mkdtemp(prefix="pk-bpffs-"))  # in /tmp: nobody reaches it
    mount_point.chmod(0o755)
    run(["mount", "-t", "bpf", "-o", "mode=1777", "bpf", str(mount_point)])
    try:
        hostile = mount_point / "pingkiller"
        monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(hostile))
        nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        run([*nobody, "mkdir", "-m", "0777", str(hostile)])
        run([*nobody, "mkdir", str(hostile / f"=del-1-{ifname}")])
        assert hostile.stat().st_uid == 65534
        result = subprocess.run([*CLI, "attach", ifname], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        line = one_line(result)
        assert f"the pin root {hostile} is owned by uid 65534, not 0" in line and "rm -r" in line
        assert xdp_ids(ifname) == []
        assert sorted(p.name for p in hostile.iterdir()) == [f"=del-1-{ifname}"]  # untouched
    finally:
        run(["umount", str(mount_point)])
        mount_point.rmdir()
