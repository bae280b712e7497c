"""kill -9 anywhere (issues #5, #10, #15): at random moments and at every call that
changes pins, maps or links, of attach, replace, block, detach and a tc attach (upgrade,
conversions and rule files: test_kill_9_long.py), at XDP and at tc. After each,
status shows a state that was completed, never a broken one, and the next writer
finishes or undoes what was interrupted, so status, the kernel and the pins agree."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import time
from pathlib import Path

import pytest
from faults import (
    SEED,
    RuleSet,
    address,
    assert_clean,
    assert_truthful,
    cli,
    kill_after,
    kill_at,
    kill_at_every_step,
    state_changing_steps,
)
from helpers import our_filters, pins_left, pk, pk_ok, tc_ids, xdp_ids

import pingkiller
from pingkiller.bpf import TcDirection, tcx_supported
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.network import format_network

pytestmark = pytest.mark.root
STRACE = pytest.mark.skipif(shutil.which("strace") is None,
                            reason="needs strace (make setup installs it)")
TCX = pytest.mark.skipif(not tcx_supported(), reason="this kernel has no tcx (Linux 6.6+)")


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
            choices: dict[str, tuple[list[str], list[RuleSet]]] = {
                "block": (["block", ifname, text], [current, current | {text}]),
                "replace": (["attach", ifname, "--replace", "--block", text], [current, frozenset({text})]),
                "detach": (["detach", ifname], [current, None]),
            }
            args, outcomes = choices[op]
        kill_after(args, rng.uniform(0, full_run * 1.2))
        current = assert_truthful(pin_root, ifname, outcomes)
        assert current in outcomes, f"seed {SEED}, step {n} ({op}): rules {current}"
    infos = json.loads(cli("status", "--json").stdout)
    assert [info["interface"] for info in infos] == ([] if current is None else [ifname])
    cli("detach", "--all")
    assert_clean(pin_root, ifname)


@STRACE
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


@STRACE
@TCX
def test_kill_9_at_every_step_of_a_tc_attach(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """SIGKILL `attach --hook tc` at each call that changes state: status shows what runs
    (never a stale attachment), the tc chain holds what status shows and nothing else,
    and `detach` cleans it all."""
    ifname = sandbox.add_peer().host_ifname
    args = ["attach", ifname, "--hook", "tc", "--block", "198.19.7.0/24"]
    steps = state_changing_steps(args, tmp_path / "trace")
    pk_ok("detach", ifname)
    assert len(steps) >= 3, steps
    for call, n in steps:
        kill_at(args, call, n)
        shown = [i for i in pingkiller.attachments() if not i.stale]
        assert all(i.hook is pingkiller.Hook.TC for i in shown)
        running = tc_ids(ifname, TcDirection.INGRESS)
        assert [i.program_id for i in shown] in ([], running), (call, n, shown, running)
        if pk("detach", ifname).returncode not in (0, 2):
            pytest.fail(f"detach after a kill at {call} #{n} failed")
        assert tc_ids(ifname, TcDirection.INGRESS) == [] and pins_left(pin_root) == [], (call, n)


@STRACE
@TCX
def test_kill_9_at_every_step_of_a_clsact_attach(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A clsact filter outlives a killed writer (it holds no fd): wherever the writer dies,
    status shows it or nothing runs, and the next writer (detach) removes it."""
    ifname = sandbox.add_peer().host_ifname
    args = ["attach", ifname, "--hook", "tc", "--mode", "clsact", "--block", "198.19.7.0/24"]
    steps = state_changing_steps(args, tmp_path / "trace")
    pk_ok("detach", ifname)
    # Up to the pin directory's mkdir the steps are the tcx attach's (the rules written
    # into the loaded maps), which the test above kills at: from there on they differ.
    steps = steps[steps.index(("mkdir", 2)):]
    assert len(steps) >= 3, steps
    for call, n in steps:
        kill_at(args, call, n)
        running = our_filters(ifname)
        shown = [i.program_id for i in pingkiller.attachments() if not i.stale]
        assert running in ([], shown), (call, n, shown, running)
        if pk("detach", ifname).returncode not in (0, 2):
            pytest.fail(f"detach after a kill at {call} #{n} failed")
        assert our_filters(ifname) == [] and pins_left(pin_root) == [], (call, n)
