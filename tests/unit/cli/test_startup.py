"""CLI start-up (issue #14, item 5): a verb imports only what it needs.

`status` and `block` are called without typer (pingkiller.cli.command's fast path, taken
from the verb table); these tests
check, in a fresh interpreter, what importing the CLI and running those verbs loads, and
that the fast path makes exactly the call typer would make. No timing here: `make bench`
(section 5) measures it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pingkiller.cli import command, rules, status

# Nothing status or block needs; some cost more than the verb itself.
HEAVY = ["typer", "click", "rich", "prometheus_client", "asyncio", "pingkiller.exporter",
         "pingkiller.declarative", "pingkiller.demo", "pingkiller.doctor", "tomllib"]

CHILD = """
import json, sys
from pingkiller.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as done:
        codes.append(done.code)
heavy = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
sys.__stdout__.write("\\n" + json.dumps({"codes": codes, "heavy": heavy}) + "\\n")
"""


def _loaded_after(argvs: list[list[str]], pin_root: Path) -> dict[str, Any]:
    """Run ``main(argv)`` for each of ``argvs`` in one fresh interpreter; its exit codes and
    which of HEAVY it imported."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PINGKILLER_PIN_ROOT": str(pin_root)},
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


def test_importing_the_cli_loads_no_heavy_module(tmp_path: Path) -> None:
    assert _loaded_after([], tmp_path / "pins")["heavy"] == []


@pytest.mark.parametrize("argvs", [
    [["status"], ["status", "--json"], ["status", "pkunit0"], ["status", "pkunit0", "--json"]],
    [["block", "pkunit0", "198.18.0.7"], ["block", "pkunit0", "198.18.0.7", "fd00::/64", "--json"]],
], ids=["status", "block"])
def test_status_and_block_load_no_heavy_module(argvs: list[list[str]], tmp_path: Path) -> None:
    """Nothing is attached under this pin root: status says so (or fails without root),
    block fails naming the fix; either way the verb ran, through the library."""
    report = _loaded_after(argvs, tmp_path / "pins")
    assert len(report["codes"]) == len(argvs) and set(report["codes"]) <= {0, 1, 2}
    assert report["heavy"] == []


# -- the fast path makes typer's call

CALLS = [
    ["status"], ["status", "--json"], ["status", "eth0"], ["status", "eth0", "--json"],
    ["status", "--json", "eth0"], ["status", ""],
    ["block", "eth0", "198.18.0.7"], ["block", "eth0", "198.18.0.7", "fd00::/64", "10.0.0.0/8"],
    ["block", "--json", "eth0", "198.18.0.7"], ["block", "eth0", "198.18.0.7", "--json", "--json"],
]
NOT_FAST = [
    [], ["status", "a", "b"], ["status", "--max-rules", "3"], ["status", "-h"], ["status", "--"],
    ["status", "--", "eth0"], ["status", "--json=1"], ["status", "-"], ["block"], ["block", "eth0"],
    ["block", "eth0", "-f", "list.txt"], ["block", "eth0", "--help"], ["--lock-timeout", "1", "status"],
    ["--version"], ["help", "status"], ["allow", "eth0", "198.18.0.7"], ["statu"],
]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What the verbs hand on to the library, recorded instead of done."""
    calls: list[tuple[Any, ...]] = []

    def views(ifname: str | None, limit: int | None, hook: str | None,
              direction: str | None) -> Any:
        calls.append(("status", ifname, limit, hook, direction))
        return iter([])

    def change(verb: str, ifname: str, addresses: Any, from_file: Any, as_json: bool,
               hook: str | None, direction: str | None) -> None:
        calls.append((verb, ifname, list(addresses or []), from_file, as_json, hook, direction))

    monkeypatch.setattr(status, "_views", views)
    monkeypatch.setattr(rules, "change", change)
    return calls


@pytest.mark.parametrize("argv", CALLS, ids=" ".join)
def test_the_fast_path_calls_the_verb_as_typer_does(argv: list[str], recorded: list[tuple[Any, ...]],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fast = command.fast_call(argv)
    assert fast is not None
    command._run_fast(*fast)
    fast_out = capsys.readouterr()
    assert command.app()(args=argv, prog_name="pingkiller", standalone_mode=False) in (None, 0)
    assert capsys.readouterr() == fast_out
    assert len(recorded) == 2 and recorded[0] == recorded[1]


@pytest.mark.parametrize("argv", NOT_FAST, ids=lambda argv: " ".join(argv) or "(none)")
def test_every_other_command_line_goes_to_typer(argv: list[str]) -> None:
    assert command.fast_call(argv) is None


def test_shell_completion_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_PINGKILLER_COMPLETE", "bash_complete")
    assert command.fast_call(["status"]) is None
