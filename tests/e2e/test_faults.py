"""State survives faults: kill -9 at any point, interfaces that vanish, a full rule table.

After every fault, ``status`` (a reader: it finishes nothing) shows the last change that
was completed, never a broken one; then, once the next writer has finished or undone
what was interrupted, three independent views must agree: what ``status`` reports, what
the kernel has on the interface (``bpftool net``), and which maps the running program
really uses (``bpftool prog``) compared with the pinned ones. ``detach`` always cleans up.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import xdp_ids

import pingkiller
from pingkiller import abi
from pingkiller.bpf import Map
from pingkiller.datapath import program as datapath
from pingkiller.datapath.rules import LOOKUP_FLAG_OF, RULE_MAPS, RuleTable
from pingkiller.demo.sandbox import IP, Sandbox, run
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import RuleTableFull
from pingkiller.model.network import format_network

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "pingkiller"]
SEED = int(os.environ.get("PK_FAULT_SEED", "0")) or random.randrange(1 << 30)
RuleSet = frozenset[str] | None  # None: not attached


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def bpftool_json(*args: str) -> object:
    return json.loads(run(["bpftool", "-j", *args]).stdout)


def rule_set(ifname: str) -> frozenset[str]:
    with pingkiller.open(ifname) as attachment:
        return frozenset(rule.address for rule in attachment.rules())


def assert_truthful(pin_root: Path, ifname: str, outcomes: list[RuleSet]) -> RuleSet:
    """Check what status shows right after a fault (one of ``outcomes``, never stale),
    then, after the next writer's recovery, status against the kernel for ``ifname``;
    return its rules (None: detached)."""
    completed = {info.ifname: info for info in pingkiller.attachments()}  # before any writer
    assert set(completed) <= {ifname}, completed
    shown = completed.get(ifname)
    assert shown is None or not shown.stale, shown.problem
    shown_rules = None if shown is None else frozenset(rule.address for rule in shown.rules)
    assert shown_rules in outcomes, f"status shows {shown_rules} before recovery"
    pingkiller.recover_interrupted()  # what the next writer does first
    infos = {info.ifname: info for info in pingkiller.attachments()}  # what `status` shows
    on_wire = xdp_ids(ifname)
    left = sorted(p.name for p in pin_root.iterdir()) if pin_root.is_dir() else []
    assert left == sorted(infos), f"pin root holds {left}, status shows {sorted(infos)}"
    info = infos.get(ifname)
    if info is None:
        assert on_wire == [], f"XDP program {on_wire} on {ifname} but status shows none"
        return None
    assert not info.stale, info.problem
    assert on_wire == [info.program_id], f"status says {info.program_id}, kernel has {on_wire}"
    used = set(bpftool_json("prog", "show", "id", str(info.program_id))["map_ids"])  # type: ignore[index]
    directory = Path(info.pin_dir)
    for name in (abi.SETTINGS_MAP, *RULE_MAPS):
        with Map.from_pin(directory / name) as pinned:
            assert pinned.info.id in used, f"pinned {name} is not the running program's map"
    with pingkiller.open(ifname) as attachment:
        flags = abi.Config.decode(attachment.maps[abi.SETTINGS_MAP][abi.u32_key(0)]).flags
        for name, flag in LOOKUP_FLAG_OF.items():
            if not attachment.maps[name].is_empty():
                assert flags & flag, f"{name} holds rules the program does not look up"
    return rule_set(ifname)


def assert_clean(pin_root: Path, ifname: str) -> None:
    assert xdp_ids(ifname) == []
    assert not pin_root.is_dir() or list(pin_root.iterdir()) == []


def kill_after(args: list[str], delay: float) -> None:
    """Start the CLI and SIGKILL it after ``delay`` seconds (if it still runs)."""
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def address(n: int) -> str:
    """A host or a prefix, v4 or v6, all distinct."""
    return [f"198.19.{n}.7", f"198.19.{n}.0/24", f"fd00:dead:{n:x}::7", f"fd00:dead:{n:x}::/48"][n % 4]


def test_kill_9_at_random_points(pin_root: Path, sandbox: Sandbox) -> None:
    """SIGKILL attach/replace/block/detach at random moments; status never lies."""
    print(f"PK_FAULT_SEED={SEED}")  # shown on failure: replays the same kills
    ifname = sandbox.add_peer().host_ifname
    rng = random.Random(SEED)
    started = time.monotonic()
    cli("attach", ifname, "--block", address(0))
    full_run = time.monotonic() - started
    current: RuleSet = frozenset({format_network(ipaddress.ip_network(address(0)))})
    for n in range(1, 25):
        new = ipaddress.ip_network(address(n))
        text = format_network(new)
        if current is None:
            op, args, outcomes = "attach", ["attach", ifname, "--block", text], [None, frozenset({text})]
        else:
            op = rng.choice(["block", "replace", "detach"])
            args, outcomes = {
                "block": (["block", ifname, text], [current, current | {text}]),
                "replace": (["attach", ifname, "--replace", "--block", text], [current, frozenset({text})]),
                "detach": (["detach", ifname], [current, None]),
            }[op]
        kill_after(args, rng.uniform(0, full_run * 1.2))
        current = assert_truthful(pin_root, ifname, outcomes)
        assert current in outcomes, f"seed {SEED}, step {n} ({op}): rules {current}"
    infos = json.loads(cli("status", "--json").stdout)
    assert [info["interface"] for info in infos] == ([] if current is None else [ifname])
    cli("detach", "--all")
    assert_clean(pin_root, ifname)


# -- kill -9 at every state-changing step (syscall fault injection with strace)

_CHANGES = re.compile(
    r"^\d+\s+(?:(bpf)\((BPF_OBJ_PIN|BPF_LINK_\w+|BPF_MAP_UPDATE_\w+|BPF_MAP_DELETE_\w+)"
    r"|(mkdir|rename|unlinkat|rmdir)\()"
)


def state_changing_steps(args: list[str], trace: Path) -> list[tuple[str, int]]:
    """(syscall, n-th call of it) for every call of ``args`` that changes pins, maps or links.

    Runs of the same operation are cut to their first and last call.
    """
    syscalls = "bpf,mkdir,rename,unlinkat,rmdir"
    run(["strace", "-f", "--seccomp-bpf", "-qq", "-e", f"trace={syscalls}", "-o", str(trace),
         *CLI, *args])
    seen: dict[str, int] = {}
    steps: list[tuple[str, int, str]] = []
    for line in trace.read_text().splitlines():
        match = re.match(r"^\d+\s+(\w+)\((\w*)", line)
        if not match:
            continue
        call, first = match.groups()
        seen[call] = seen.get(call, 0) + 1
        changed = _CHANGES.match(line)
        if changed and "__pycache__" not in line:
            steps.append((call, seen[call], first if call == "bpf" else call))
    kept = [s for i, s in enumerate(steps) if i in (0, len(steps) - 1)
            or steps[i - 1][2] != s[2] or steps[i + 1][2] != s[2]]
    return [(call, n) for call, n, _ in kept]


def kill_at(args: list[str], call: str, n: int) -> None:
    result = subprocess.run(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={call}",
         "-e", f"inject={call}:signal=KILL:when={n}", *CLI, *args],
        capture_output=True, timeout=60,
    )
    # strace exits as its tracee did: a kill that never fired would test nothing.
    assert result.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (call, n, result)


def kill_at_every_step(pin_root: Path, ifname: str, args: list[str],
                       prepare: Callable[[], None], outcomes: list[RuleSet], trace: Path) -> None:
    """SIGKILL ``pingkiller ARGS`` at each call that changes state, each time after
    ``prepare``; status must show one of ``outcomes`` and detach must leave nothing."""
    prepare()
    steps = state_changing_steps(args, trace)
    assert len(steps) >= 3, steps
    for call, n in steps:
        if pingkiller.attachments():
            pingkiller.detach(ifname)
        prepare()
        kill_at(args, call, n)
        found = assert_truthful(pin_root, ifname, outcomes)
        assert found in outcomes, f"killed at {call} #{n}: {len(found or ())} rules"
        if found is not None:
            pingkiller.detach(ifname)
        assert_clean(pin_root, ifname)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make setup installs it)")
@pytest.mark.parametrize("scenario", ["attach", "replace", "block", "detach"])
def test_kill_9_at_every_step(
    scenario: str, pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """SIGKILL the CLI at each call that changes state; status tells the truth every time."""
    ifname = sandbox.add_peer().host_ifname
    old, new = "198.19.200.0/24", "fd00:beef::/64"
    before: RuleSet = None if scenario == "attach" else frozenset({old})
    args, outcomes = {
        "attach": (["attach", ifname, "--block", new], [None, frozenset({new})]),
        "replace": (["attach", ifname, "--replace", "--block", new], [before, frozenset({new})]),
        "block": (["block", ifname, new], [before, frozenset({old, new})]),
        "detach": (["detach", ifname], [before, None]),
    }[scenario]

    def prepare() -> None:
        if before is not None:
            pingkiller.attach(ifname, block=[old]).close()

    kill_at_every_step(pin_root, ifname, args, prepare, outcomes, tmp_path / "trace")


# -- the interface disappears


def recreate(peer_host: str, peer_netns: str) -> None:
    run([IP, "link", "add", peer_host, "type", "veth", "peer", "name", f"{peer_host}x",
         "netns", peer_netns])
    run([IP, "link", "set", peer_host, "up"])


def test_interface_deleted_while_attached(pin_root: Path, sandbox: Sandbox) -> None:
    """Deleted veth: status shows stale, detach cleans it, a new interface of that name works."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    cli("attach", ifname, "--block", "198.19.7.7")
    run([IP, "link", "del", ifname])

    (info,) = json.loads(cli("status", "--json").stdout)
    assert info["interface"] == ifname and info["stale"] is True
    assert "gone" in info["problem"]
    assert "STALE" in cli("status").stdout
    detached = json.loads(cli("detach", ifname, "--json").stdout)
    assert detached == [{"interface": ifname, "hook": "xdp", "direction": "in", "was_stale": True}]
    assert list(pin_root.iterdir()) == []

    recreate(ifname, peer.netns)
    attached = json.loads(cli("attach", ifname, "--block", "198.19.7.8", "--json").stdout)
    assert attached["stale"] is False and xdp_ids(ifname) == [attached["program_id"]]
    assert [r["address"] for r in attached["rules"]] == ["198.19.7.8"]


def test_interface_recreated_before_detach(pin_root: Path, sandbox: Sandbox) -> None:
    """A stale attachment on a re-created interface stays stale; attaching again replaces it."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    cli("attach", ifname)
    run([IP, "link", "del", ifname])
    recreate(ifname, peer.netns)
    (info,) = json.loads(cli("status", "--json").stdout)
    assert info["stale"] is True and xdp_ids(ifname) == []
    attached = json.loads(cli("attach", ifname, "--json").stdout)
    assert not attached["stale"] and xdp_ids(ifname) == [attached["program_id"]]
    assert assert_truthful(pin_root, ifname, [frozenset()]) == frozenset()
    cli("detach", "--all")
    assert_clean(pin_root, ifname)


# -- the rule table is full


def small_table(**capacities: int) -> pingkiller.bpf.Object:
    obj = datapath.open_object()
    for name, capacity in capacities.items():
        obj.set_max_entries(name, capacity)
    return obj.load()


def snapshot(table: RuleTable) -> tuple[object, ...]:
    return (tuple(table.rules()), table.settings[abi.u32_key(0)])


def test_rule_table_full_changes_nothing() -> None:
    with small_table(rules_v4=16, prefixes_v6=4) as obj:
        table = RuleTable(obj.maps)
        hosts = [ipaddress.ip_network(f"198.19.0.{i}") for i in range(16)]
        assert table.set(hosts, RuleAction.BLOCK) == 16
        table.set([ipaddress.ip_network("fd00::/16")], RuleAction.ALLOW)
        before = snapshot(table)

        one_more = ipaddress.ip_network("198.19.1.1")
        with pytest.raises(RuleTableFull, match=r"at most 16 IPv4 address rules fit, 16 exist"):
            table.set([one_more], RuleAction.BLOCK)
        assert snapshot(table) == before

        # A batch touching several maps fails as a whole: no map is changed.
        mixed = [hosts[0], ipaddress.ip_network("fd00:1::/32"), ipaddress.ip_network("2001:db8::1"),
                 *(ipaddress.ip_network(f"fd0{i}::/16") for i in range(1, 5))]
        with pytest.raises(RuleTableFull, match=r"at most 4 IPv6 prefix rules fit, 1 exist"):
            table.set(mixed, RuleAction.ALLOW)
        assert snapshot(table) == before

        # Changing rules that exist needs no room; after removing one, one fits again.
        assert table.set(hosts[:3], RuleAction.ALLOW) == 3
        assert table.remove([hosts[15]]) == 1
        assert table.set([one_more], RuleAction.BLOCK) == 1
        assert table.count() == 17


def test_shipped_capacities() -> None:
    """The shipped maps have the capacities the full-table checks above rely on."""
    with datapath.load() as obj:
        capacities = {name: obj.maps[name].info.max_entries for name in RULE_MAPS}
    assert capacities == {
        abi.RULES_V4_MAP: abi.MAX_EXACT_RULES,
        abi.RULES_V6_MAP: abi.MAX_EXACT_RULES,
        abi.PREFIXES_V4_MAP: abi.MAX_PREFIX_RULES,
        abi.PREFIXES_V6_MAP: abi.MAX_PREFIX_RULES,
    }
