"""What the kill -9 tests share: kill the CLI at a moment or at a syscall, then check that
status tells the truth and that the next writer's recovery agrees with the kernel."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import CLI, xdp_ids

import pingkiller
from pingkiller import abi
from pingkiller.bpf import Map
from pingkiller.datapath.rules import LOOKUP_FLAG_OF, RULE_MAPS
from pingkiller.demo.sandbox import run

SEED = int(os.environ.get("PK_FAULT_SEED", "0")) or random.randrange(1 << 30)
RuleSet = frozenset[str] | None  # None: not attached


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def bpftool_json(*args: str) -> object:
    return json.loads(run(["bpftool", "-j", *args]).stdout)


def rule_text(rule: pingkiller.Rule) -> str:
    """A block rule's address, or any other rule's address, action and limit."""
    if rule.action is pingkiller.RuleAction.BLOCK:
        return rule.address
    return " ".join([rule.address, rule.action.name.lower(), *([str(rule.limit)] if rule.limit else [])])


def rule_set(ifname: str) -> frozenset[str]:
    with pingkiller.open(ifname) as attachment:
        return frozenset(map(rule_text, attachment.rules()))


def assert_truthful(pin_root: Path, ifname: str, outcomes: list[RuleSet]) -> RuleSet:
    """Check what status shows right after a fault (one of ``outcomes``, never stale),
    then, after the next writer's recovery, status against the kernel for ``ifname``;
    return its rules (None: detached)."""
    completed = {info.ifname: info for info in pingkiller.attachments()}  # before any writer
    assert set(completed) <= {ifname}, completed
    shown = completed.get(ifname)
    assert shown is None or not shown.stale, shown.problem
    shown_rules = None if shown is None else frozenset(map(rule_text, shown.rules))
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
