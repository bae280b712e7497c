"""Versioned pins and in-place upgrades, with real builds of another pingkiller.

A *variant* is this pingkiller copied to a temporary directory and changed the way a
release would change it: its BPF object rebuilt (same source, other build paths: another
ELF, so another program identity) and, for ABI tests, its ABI version bumped. It runs as
its own CLI (``PYTHONPATH=variant``), against the same kernel and pin root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pingkiller
from pingkiller import abi
from pingkiller.datapath import program as datapath
from pingkiller.demo.sandbox import PING, Sandbox
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import IDENTITY_PIN
from pingkiller.store.records import Identity
from tests.e2e.helpers import pk, pk_json, pk_ok, xdp_ids
from tests.e2e.test_faults import assert_clean, kill_at, kill_at_every_step, state_changing_steps

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads XDP programs")

ROOT = Path(__file__).resolve().parents[2]


def _bpf_cflags() -> list[str]:
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), "--eval",
         "print-bpf-cflags: ; @echo $(BPF_CFLAGS)", "print-bpf-cflags"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return [flag for flag in printed if not flag.startswith("-ffile-prefix-map")]


def make_variant(where: Path, *, abi_version: int | None = None) -> list[str]:
    """Build a variant of this pingkiller in ``where``; returns its CLI command."""
    shutil.copytree(ROOT / "pingkiller", where / "pingkiller",
                    ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.c"))
    elf = where / "variant.bpf.o"
    subprocess.run(
        ["clang", *_bpf_cflags(), f"-ffile-prefix-map={ROOT}=variant-{where.name}",
         "-c", str(ROOT / "kern" / "pingkiller.bpf.c"), "-o", str(elf)],
        cwd=ROOT, check=True, capture_output=True,
    )
    data = where / "pingkiller" / "datapath" / "program.py"
    text = data.read_text()
    text = text.replace('def elf_bytes() -> bytes:\n',
                        f'def elf_bytes() -> bytes:\n    return open({str(elf)!r}, "rb").read()\n', 1)
    data.write_text(text)
    if abi_version is not None:
        module = where / "pingkiller" / "abi.py"
        text = re.sub(r"^ABI_VERSION = \d+$", f"ABI_VERSION = {abi_version}",
                      module.read_text(), count=1, flags=re.M)
        text = re.sub(r"^ADOPTABLE_ABI_VERSIONS = .*$",
                      f"ADOPTABLE_ABI_VERSIONS = frozenset({{{abi.ABI_VERSION}, {abi_version}}})",
                      text, count=1, flags=re.M)
        module.write_text(text)
    return ["env", f"PYTHONPATH={where}", sys.executable, "-P", "-m", "pingkiller"]


# The last commit of ABI 2 (shared rule maps, hits counted with atomic adds): the
# release before the per-CPU rule maps, whose pins `upgrade` converts.
ABI_2_RELEASE = "b5d411aba89c9775707c61f49243ce7c94e394cb"

_DATAPATH_OF_A_RELEASE = """\
# The release's ABI from its own kern/pingkiller.h, in cffi's ABI mode (nothing compiled).
from pathlib import Path

import cffi

from cffi_src import datapath as _cdefs

ffi = cffi.FFI()
ffi.cdef(_cdefs.TYPES_CDEF + _cdefs.abi_cdef(Path(__file__).parents[1] / "kern" / "pingkiller.h"))
lib = ffi.dlopen(None)
"""


def make_release(where: Path, commit: str) -> list[str]:
    """Build the pingkiller of ``commit`` (this repository's history) in ``where``, as
    it was released: its BPF object from its kern/, its libbpf extension from its
    cffi_src/ (its build.py), its Python package and its ABI (the one extension not
    compiled: its ABI is read from its header in cffi's ABI mode). Returns its CLI."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pingkiller", "kern",
                              "cffi_src", "build.py"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    subprocess.run([sys.executable, "-P", "-c", "import build; build.compile_in_place(build.libbpf_ffi)"],
                   cwd=where, env={**os.environ, "PYTHONPATH": str(where)}, check=True,
                   capture_output=True)
    (where / "pingkiller" / "_datapath.py").write_text(_DATAPATH_OF_A_RELEASE)
    elf = where / "release.bpf.o"
    subprocess.run(
        ["clang", *_bpf_cflags(), f"-I{where / 'kern'}", f"-ffile-prefix-map={where}=release",
         "-c", str(where / "kern" / "pingkiller.bpf.c"), "-o", str(elf)],
        check=True, capture_output=True,
    )
    data = where / "pingkiller" / "datapath.py"
    text = data.read_text()
    text = text.replace('def elf_bytes() -> bytes:\n',
                        f'def elf_bytes() -> bytes:\n    return open({str(elf)!r}, "rb").read()\n', 1)
    data.write_text(text)
    return ["env", f"PYTHONPATH={where}", sys.executable, "-P", "-m", "pingkiller"]


@pytest.fixture(scope="module")
def abi_2(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ABI 2 release, built from this repository's history."""
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{ABI_2_RELEASE}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"needs the repository's history (commit {ABI_2_RELEASE[:7]}): "
                        "clone without --depth")
        pytest.skip(f"needs the repository's history (commit {ABI_2_RELEASE[:7]}, the ABI 2 "
                    "release): not a git clone, or a shallow one")
    return make_release(tmp_path_factory.mktemp("abi2"), ABI_2_RELEASE)


@pytest.fixture(scope="module")
def older(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A build of another program with this ABI: what ran before a package upgrade."""
    return make_variant(tmp_path_factory.mktemp("older"))


@pytest.fixture(scope="module")
def newer_abi(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A build whose ABI version is one past this one's (it adopts this one's maps)."""
    return make_variant(tmp_path_factory.mktemp("newer"), abi_version=abi.ABI_VERSION + 1)


def run_cli(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def outdated_gauge(ifname: str) -> float:
    from pingkiller.exporter import PingkillerCollector

    (family,) = [f for f in PingkillerCollector().collect() if f.name == "pingkiller_outdated"]
    (value,) = [s.value for s in family.samples
                if s.labels == {"interface": ifname, "hook": "xdp", "direction": "in"}]
    return value


def one_line_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_status_says_outdated_and_upgrade_swaps_with_no_ping_answered(
    pin_root: Path, sandbox: Sandbox, older: list[str]
) -> None:
    """A continuous flood from a blocked peer gets no answer while the program is swapped;
    policy, rules, hit counts and counters stay; the program is the installed one after."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    assert run_cli(older, "attach", ifname, "--block", peer.peer_v4, "--events", "drops").returncode == 0
    before = pk_json("status", ifname)[0]
    assert before["outdated"] is True and before["abi_version"] == abi.ABI_VERSION
    assert before["program"] != datapath.program_digest().hex()
    assert "outdated" in pk_ok("status", ifname)
    assert outdated_gauge(ifname) == 1

    flood = subprocess.Popen(
        peer.exec_args([PING, "-4", "-n", "-q", "-i", "0.002", "-w", "4", peer.host_v4]),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)
        upgraded = pk_json("upgrade", ifname)
        out, _ = flood.communicate(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
    assert upgraded == [{"interface": ifname, "hook": "xdp", "direction": "in",
                         "upgraded": True, "from_abi": abi.ABI_VERSION,
                         "to_abi": abi.ABI_VERSION, "from_program": before["program"],
                         "to_program": datapath.program_digest().hex()}]
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))  # type: ignore[union-attr]
    assert sent > 100, out
    assert re.search(r" 0 received", out), out

    after = pk_json("status", ifname)[0]
    assert after["outdated"] is False and after["program"] == datapath.program_digest().hex()
    assert outdated_gauge(ifname) == 0
    assert after["program_id"] != before["program_id"] and after["link_id"] == before["link_id"]
    assert xdp_ids(ifname) == [after["program_id"]]
    assert after["policy"] == before["policy"]
    (rule,) = after["rules"]
    assert rule["address"] == peer.peer_v4 and rule["hits"] >= sent  # counted across the swap
    assert after["stats"]["dropped"] >= sent
    again = pk_json("upgrade", "--all")
    assert again[0]["upgraded"] is False
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_a_newer_abi_is_refused_by_every_verb_but_detach(
    pin_root: Path, sandbox: Sandbox, newer_abi: list[str]
) -> None:
    ifname = sandbox.add_peer().host_ifname
    assert run_cli(newer_abi, "attach", ifname, "--block", "198.51.100.9").returncode == 0
    newer = abi.ABI_VERSION + 1
    for verb in (["stats", ifname], ["status", ifname], ["block", ifname, "198.51.100.10"],
                 ["unblock", ifname, "198.51.100.9"], ["events", ifname, "--timeout", "0"],
                 ["upgrade", ifname], ["attach", ifname, "--replace"]):
        line = one_line_failure(pk(*verb))
        assert f"ABI {newer}" in line and "newer pingkiller" in line, (verb, line)
    (shown,) = json.loads(pk("status", "--json").stdout)
    assert shown["abi_version"] == newer and shown["outdated"] is True
    assert shown["stale"] is False and shown["state"] == "filtering" and shown["rules"] == []
    one_line_failure(pk("export"))
    assert outdated_gauge(ifname) == 1  # the exporter serves it, without its counters
    # Still its own: the newer build reads it.
    assert json.loads(run_cli(newer_abi, "status", "--json").stdout)[0]["rule_count"] == 1
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_a_newer_build_refuses_older_pins_until_it_upgrades_them(
    pin_root: Path, sandbox: Sandbox, newer_abi: list[str]
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    assert peer.ping(peer.host_v4, count=3) == 0
    line = one_line_failure(run_cli(newer_abi, "stats", ifname))
    assert f"ABI {abi.ABI_VERSION}" in line and f"upgrade {ifname}" in line
    one_line_failure(run_cli(newer_abi, "block", ifname, "198.51.100.10"))
    upgraded = json.loads(run_cli(newer_abi, "upgrade", ifname, "--json").stdout)
    assert upgraded[0]["upgraded"] is True and upgraded[0]["from_abi"] == abi.ABI_VERSION
    shown = json.loads(run_cli(newer_abi, "status", ifname, "--json").stdout)[0]
    assert shown["abi_version"] == abi.ABI_VERSION + 1 and shown["rules"][0]["hits"] >= 3
    assert peer.ping(peer.host_v4, count=2) == 0
    # ... and now this (older) build refuses them.
    one_line_failure(pk("stats", ifname))
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


def test_pins_of_abi_1_are_converted(pin_root: Path, sandbox: Sandbox, abi_2: list[str]) -> None:
    """Pins from before versions were recorded (identity record version 1; the maps of
    ABI 2) read as ABI 1: refused by readers with the fix, converted keeping the rules."""
    from pingkiller.bpf import MAP_TYPE_ARRAY, Map

    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    assert run_cli(abi_2, "attach", ifname, "--block", peer.peer_v4).returncode == 0
    directory = Store().directory(Point(ifname))
    with Map.from_pin(directory / IDENTITY_PIN) as record:
        current = Identity.decode(record[abi.u32_key(0)])
    (directory / IDENTITY_PIN).unlink()
    with Map.create(MAP_TYPE_ARRAY, "pk_identity", 4, 16, 1) as old:
        old[abi.u32_key(0)] = Identity.FORMAT_V1.pack(1, current.link_id, current.ifindex, 0)
        old.pin(directory / IDENTITY_PIN)
    line = one_line_failure(pk("stats", ifname))
    assert "ABI 1" in line and f"pingkiller upgrade {ifname}" in line
    assert pk_json("upgrade", ifname)[0]["from_abi"] == 1
    shown = pk_json("status", ifname)[0]
    assert shown["abi_version"] == abi.ABI_VERSION and not shown["outdated"]
    assert [r["address"] for r in shown["rules"]] == [peer.peer_v4]
    assert peer.ping(peer.host_v4, count=2) == 0
    pk_ok("detach", ifname)


def _hits(shown: dict[str, object]) -> dict[str, int]:
    return {rule["address"]: rule["hits"] for rule in shown["rules"]}  # type: ignore[attr-defined, index]


def test_pins_of_abi_2_are_converted_by_upgrade(
    pin_root: Path, sandbox: Sandbox, abi_2: list[str]
) -> None:
    """The ABI 2 release's shared rule maps become per-CPU maps and prefix tries: every
    rule, its hits, the policy and the counters carry over, and the rules still kill
    pings (exact and prefix, IPv4 and IPv6)."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    v4_prefix = str(ipaddress.ip_network(f"{peer.peer_v4}/30", strict=False))
    rules = [v4_prefix, peer.peer_v6, "198.51.100.7", "2001:db8:77::/48"]
    blocks = [word for rule in rules for word in ("--block", rule)]
    assert run_cli(abi_2, "attach", ifname, *blocks, "--events", "drops").returncode == 0
    assert peer.ping(peer.host_v4, count=3) == 0 and peer.ping(peer.host_v6, count=3) == 0
    before = json.loads(run_cli(abi_2, "status", ifname, "--json").stdout)[0]
    assert before["abi_version"] == 2 and _hits(before)[v4_prefix] >= 3
    assert _hits(before)[peer.peer_v6] >= 3

    (shown,) = json.loads(pk("status", "--json").stdout)
    assert shown["abi_version"] == 2 and shown["outdated"] is True
    assert shown["state"] == "filtering" and not shown["stale"]
    line = one_line_failure(pk("block", ifname, "198.51.100.8"))
    assert "ABI 2" in line and f"pingkiller upgrade {ifname}" in line

    (upgraded,) = pk_json("upgrade", ifname)
    assert upgraded["upgraded"] is True
    assert (upgraded["from_abi"], upgraded["to_abi"]) == (2, abi.ABI_VERSION)
    after = pk_json("status", ifname)[0]
    assert after["abi_version"] == abi.ABI_VERSION and after["outdated"] is False
    assert set(_hits(after)) == set(rules)
    assert all(_hits(after)[rule] >= hits for rule, hits in _hits(before).items())
    assert after["policy"] == before["policy"]
    dropped_before = before["stats"]["packets"]["drop_block"]
    assert after["stats"]["packets"]["drop_block"] >= dropped_before >= 6
    assert (pin_root / ifname / abi.PREFIX_TRIE_V4_MAP).exists()
    # The converted rules are the ones the program runs on.
    assert peer.ping(peer.host_v4, count=2) == 0 and peer.ping(peer.host_v6, count=2) == 0
    again = _hits(pk_json("status", ifname)[0])
    assert again[v4_prefix] >= _hits(after)[v4_prefix] + 2
    assert again[peer.peer_v6] >= _hits(after)[peer.peer_v6] + 2
    pk_ok("block", ifname, "198.51.100.8")  # and this build writes to them
    # ... which the ABI 2 release now refuses, naming the newer version.
    one_line_failure(run_cli(abi_2, "stats", ifname))
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make setup installs it)")
def test_kill_9_at_every_step_of_a_conversion(
    pin_root: Path, sandbox: Sandbox, abi_2: list[str], tmp_path: Path
) -> None:
    """Killed anywhere in converting ABI 2 pins, the next writer finds the old release's
    attachment (every rule, as that release reads it) or the converted one (every rule),
    never a stale or half-converted one; upgrade then finishes from either."""
    ifname = sandbox.add_peer().host_ifname
    rules = frozenset({"198.19.200.0/24", "198.19.201.7", "fd00:beef::/64", "fd00:beef::9"})

    def prepare() -> None:
        blocks = [word for rule in sorted(rules) for word in ("--block", rule)]
        assert run_cli(abi_2, "attach", ifname, *blocks).returncode == 0

    prepare()
    steps = state_changing_steps(["upgrade", ifname], tmp_path / "trace")
    assert len(steps) >= 3, steps
    for call, n in steps:
        pk_ok("detach", ifname)
        prepare()
        kill_at(["upgrade", ifname], call, n)
        (shown,) = json.loads(pk("status", "--json").stdout)  # before a writer recovers
        assert not shown["stale"], (call, n, shown["problem"])
        pingkiller.recover_interrupted()
        (shown,) = json.loads(pk("status", "--json").stdout)
        assert shown["state"] == "filtering" and xdp_ids(ifname) == [shown["program_id"]]
        if shown["abi_version"] == 2:
            old = json.loads(run_cli(abi_2, "status", ifname, "--json").stdout)[0]
            assert set(_hits(old)) == rules, (call, n)
        else:
            assert shown["abi_version"] == abi.ABI_VERSION, (call, n)
            assert set(_hits(shown)) == rules, (call, n)
        pk_ok("upgrade", ifname)
        assert set(_hits(pk_json("status", ifname)[0])) == rules, (call, n)
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make setup installs it)")
def test_kill_9_at_every_step_of_upgrade(
    pin_root: Path, sandbox: Sandbox, older: list[str], tmp_path: Path
) -> None:
    """Each kill leaves the old or the new program running, with every rule."""
    ifname = sandbox.add_peer().host_ifname
    rules = frozenset({"198.19.200.0/24", "198.19.201.7"})

    def prepare() -> None:
        blocks = [word for rule in sorted(rules) for word in ("--block", rule)]
        assert run_cli(older, "attach", ifname, *blocks).returncode == 0

    kill_at_every_step(pin_root, ifname, ["upgrade", ifname], prepare, [rules],
                       tmp_path / "trace")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make setup installs it)")
def test_kill_9_at_every_step_of_a_rule_file(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`block -f` is all or nothing: each kill leaves none or all of the file's rules."""
    ifname = sandbox.add_peer().host_ifname
    listed = [f"10.77.{i // 250}.{i % 250 + 1}" for i in range(600)]
    rule_file = tmp_path / "list.txt"
    rule_file.write_text("\n".join(listed) + "\n")
    before = frozenset({"198.19.200.0/24"})
    outcomes = [before, before | frozenset(listed)]

    def prepare() -> None:
        pingkiller.attach(ifname, block=sorted(before)).close()

    kill_at_every_step(pin_root, ifname, ["block", ifname, "-f", str(rule_file)], prepare,
                       outcomes, tmp_path / "trace")


def test_recovery_is_reported_by_the_next_writer(pin_root: Path, sandbox: Sandbox) -> None:
    """A killed writer's leftovers are finished by the next writer, which says so."""
    ifname = sandbox.add_peer().host_ifname
    pk_ok("attach", ifname, "--block", "198.19.9.9")
    # A detach killed after it moved the pins away and detached, as it unpins them.
    kill_at(["detach", ifname], "unlinkat", 1)
    assert next(p.name for p in pin_root.iterdir()).startswith("=del-")
    result = pk("detach", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"pingkiller: recovered: {ifname}: cleaned up after an interrupted detach"
    assert xdp_ids(ifname) == []
    assert pingkiller.recover_interrupted() == []


def test_apply_upgrades_outdated_attachments_as_it_reconciles(
    pin_root: Path, sandbox: Sandbox, older: list[str], newer_abi: list[str], tmp_path: Path
) -> None:
    """A package upgrade + `apply -f` (systemctl reload, a DaemonSet rollout) upgrades."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{ifname}]\ndefault = "pass"\nblock = ["{peer.peer_v4}"]\n')
    assert run_cli(older, "apply", "-f", str(policy)).returncode == 0
    assert pk_json("status", ifname)[0]["outdated"] is True
    dry = json.loads(pk_ok("apply", "-f", str(policy), "--dry-run", "--json"))
    assert [c["action"] for c in dry["changes"]] == ["upgrade"]
    assert pk_json("status", ifname)[0]["outdated"] is True  # a dry run changes nothing
    done = json.loads(pk_ok("apply", "-f", str(policy), "--json"))
    assert [c["action"] for c in done["changes"]] == ["upgrade"]
    shown = pk_json("status", ifname)[0]
    assert shown["outdated"] is False and [r["address"] for r in shown["rules"]] == [peer.peer_v4]
    assert json.loads(pk_ok("apply", "-f", str(policy), "--json"))["changes"] == []
    # Pins of a newer ABI stop the plan: nothing is changed.
    pk_ok("detach", ifname)
    assert run_cli(newer_abi, "apply", "-f", str(policy)).returncode == 0
    line = one_line_failure(pk("apply", "-f", str(policy)))
    assert "newer pingkiller" in line
    assert json.loads(run_cli(newer_abi, "status", "--json").stdout)[0]["rule_count"] == 1
    pk_ok("detach", ifname)


def test_a_handle_opened_before_a_swap_changes_the_running_rules(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Another writer's --replace or rule file brings new rule maps; a handle opened
    before it follows them, so its change is not lost in the old ones."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pingkiller.attach(ifname, block=["198.51.100.1"]).close()
    with pingkiller.open(ifname) as early:
        pingkiller.attach(ifname, block=["198.51.100.2"], replace=True).close()
        early.block(["198.51.100.3"])
        rule_file = tmp_path / "rules.txt"
        rule_file.write_text("198.51.100.4\n")
        pk_ok("block", ifname, "-f", str(rule_file))
        early.block([peer.peer_v4])
        early.set_policy(early.policy)
    shown = pk_json("status", ifname)[0]
    assert sorted(r["address"] for r in shown["rules"]) == sorted(
        ["198.51.100.2", "198.51.100.3", "198.51.100.4", peer.peer_v4])
    assert peer.ping(peer.host_v4, count=2) == 0
    pk_ok("detach", ifname)
