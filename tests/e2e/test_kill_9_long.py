"""kill -9 at every call that changes pins, maps or links of the longer writers: an
upgrade, the conversion of old pins (ABI 2 and 4), and a rule file given to block or
limit. After each, status shows a state that was completed, never a broken one, and the
next writer finishes or undoes what was interrupted (apart from tests/e2e/test_kill_9.py
so that the test workers share them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faults import RuleSet, assert_clean, kill_at, kill_at_every_step, state_changing_steps
from helpers import pk, pk_json, pk_ok, xdp_ids
from variants import hits_by_rule, run_cli

import pingkiller
from pingkiller import abi
from pingkiller.demo.sandbox import Sandbox

pytestmark = pytest.mark.root
STRACE = pytest.mark.skipif(shutil.which("strace") is None,
                            reason="needs strace (make setup installs it)")


@STRACE
@pytest.mark.parametrize("old_abi", [2, 4])
def test_kill_9_at_every_step_of_a_conversion(
    pin_root: Path, sandbox: Sandbox, old_abi: int, request: pytest.FixtureRequest,
    tmp_path: Path
) -> None:
    """Killed anywhere in converting ABI 2 or 4 pins, the next writer finds the old
    release's attachment (every rule, as that release reads it) or the converted one
    (every rule), never a stale or half-converted one; upgrade then finishes from either."""
    release: list[str] = request.getfixturevalue(f"abi_{old_abi}")
    ifname = sandbox.add_peer().host_ifname
    rules = frozenset({"198.19.200.0/24", "198.19.201.7", "fd00:beef::/64", "fd00:beef::9"})

    def prepare() -> None:
        blocks = [word for rule in sorted(rules) for word in ("--block", rule)]
        assert run_cli(release, "attach", ifname, *blocks).returncode == 0

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
        if shown["abi_version"] == old_abi:
            old = json.loads(run_cli(release, "status", ifname, "--json").stdout)[0]
            assert set(hits_by_rule(old)) == rules, (call, n)
        else:
            assert shown["abi_version"] == abi.ABI_VERSION, (call, n)
            assert set(hits_by_rule(shown)) == rules, (call, n)
        pk_ok("upgrade", ifname)
        assert set(hits_by_rule(pk_json("status", ifname)[0])) == rules, (call, n)
    pk_ok("detach", ifname)
    assert_clean(pin_root, ifname)


@STRACE
def test_kill_9_at_every_step_of_upgrade(
    pin_root: Path, sandbox: Sandbox, older: list[str], tmp_path: Path
) -> None:
    """Each kill leaves the old or the new program running, with every rule."""
    ifname = sandbox.add_peer().host_ifname
    rules = frozenset({"198.19.200.0/24", "198.19.201.7"})

    def prepare() -> None:
        blocks = [word for rule in sorted(rules) for word in ("--block", rule)]
        assert run_cli(older, "attach", ifname, *blocks).returncode == 0

    kill_at_every_step(pin_root, ifname, ["upgrade", ifname], prepare, [frozenset(rules)],
                       tmp_path / "trace")


@STRACE
def test_kill_9_at_every_step_of_a_rule_file(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`block -f` is all or nothing: each kill leaves none or all of the file's rules."""
    ifname = sandbox.add_peer().host_ifname
    listed = [f"10.77.{i // 250}.{i % 250 + 1}" for i in range(600)]
    rule_file = tmp_path / "list.txt"
    rule_file.write_text("\n".join(listed) + "\n")
    before = frozenset({"198.19.200.0/24"})
    outcomes: list[RuleSet] = [before, before | frozenset(listed)]

    def prepare() -> None:
        pingkiller.attach(ifname, block=sorted(before)).close()

    kill_at_every_step(pin_root, ifname, ["block", ifname, "-f", str(rule_file)], prepare,
                       outcomes, tmp_path / "trace")


@STRACE
def test_kill_9_at_every_step_of_a_limit_file(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`limit -f` is all or nothing too: each kill leaves the rules as they were (a prefix
    limited at one rate) or every address of the file limited at the other, never a mix,
    and a rebuilt table keeps its rates."""
    ifname = sandbox.add_peer().host_ifname
    listed = [f"10.78.{i // 250}.{i % 250 + 1}" for i in range(600)]
    rule_file = tmp_path / "list.txt"
    rule_file.write_text("\n".join(listed) + "\n")
    before = frozenset({"198.19.201.0/24 limit 1/s burst 1"})
    after = before | {f"{address} limit 10/s burst 10" for address in listed}
    outcomes: list[RuleSet] = [before, frozenset(after)]

    def prepare() -> None:
        pingkiller.attach(ifname, limit={pingkiller.Limit.of("1/s"): ["198.19.201.0/24"]}).close()

    kill_at_every_step(pin_root, ifname, ["limit", ifname, "--rate", "10/s", "-f", str(rule_file)],
                       prepare, outcomes, tmp_path / "trace")
