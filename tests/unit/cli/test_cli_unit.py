"""CLI usage without a kernel: usage errors are one line and exit 2, help teaches, --version.

Every case here fails before anything is loaded or attached; the pin root points into a
temporary directory anyway, so a regression cannot touch real attachments.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from cli_in_process import run

import pingkiller
from pingkiller.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]

pytestmark = pytest.mark.usefixtures("private_pin_root")




USAGE_ERRORS = [
    # (argv, words the one stderr line must hold)
    (["frobnicate"], "No such command 'frobnicate'"),
    (["attach"], "Missing argument"),
    (["attach", "pkunit0", "--bogus"], "--bogus"),
    (["attach", "pkunit0", "--icmp", "bogus"], "'bogus'"),
    (["attach", "pkunit0", "--default", "maybe"], "'maybe'"),
    (["attach", "pkunit0", "--mode", "turbo"], "'turbo'"),
    (["attach", "pkunit0", "--events", "some"], "'some'"),
    (["attach", "pkunit0", "--event-rate", "-1"], "--event-rate"),
    (["attach", "pkunit0", "--event-rate", "many"], "--event-rate"),
    (["attach", "pkunit0", "--block"], "--block"),
    (["attach", "pkunit0", "--block", "192.168.1.300"], "not an IPv4/IPv6 address"),
    (["attach", "pkunit0", "--block", "10.0.0.1/8"], "did you mean 10.0.0.0/8"),
    (["attach", "pkunit0", "--allow", "2001:db8::zz"], "not an IPv4/IPv6 address"),
    (["attach", "pkunit0", "--block", "192.0.2.7", "--allow", "192.0.2.7"], "pick one"),
    (["detach"], "name one interface, or give --all"),
    (["detach", "--all", "pkunit0"], "not both"),
    (["block", "pkunit0"], "give addresses to block"),
    (["allow", "pkunit0"], "give addresses to allow"),
    (["unblock", "pkunit0"], "give addresses to unblock"),
    (["block", "pkunit0", "bad"], "'bad' is not an IPv4/IPv6 address"),
    (["unblock", "pkunit0", "1.2.3.4/33"], "not an IPv4/IPv6 address"),
    (["block", "pkunit0", "--from-file", "/nonexistent/blocklist.txt"], "not found"),
    (["block"], "Missing argument"),
    (["status", "--bogus"], "No such option"),
    (["status", "a", "b"], "unexpected extra argument"),
    (["stats"], "Missing argument"),
    (["stats", "pkunit0", "--interval", "0"], "--interval"),
    (["events", "pkunit0", "--count", "0"], "--count"),
    (["events", "pkunit0", "--timeout", "-1"], "--timeout"),
]


@pytest.mark.parametrize(("argv", "words"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], private_pin_root: Path
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("pingkiller: ")
    assert words in line
    assert not private_pin_root.exists()  # nothing was touched


def test_a_bad_line_in_a_rule_file_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "blocklist.txt"
    rules.write_text("# list\n192.0.2.7\n192.0.2.x\n")
    code, out, err = run(["block", "pkunit0", "--from-file", str(rules)], capsys)
    assert (code, out) == (2, "")
    assert err == f"pingkiller: {rules}:3:1: '192.0.2.x' is not an IPv4/IPv6 address or prefix " \
                  "(e.g. 192.168.1.78, 10.0.0.0/8, 2001:db8::/32)\n"


def test_invalid_interface_names_are_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    for name, words in [("a/b", "not a valid interface name"), ("x" * 16, "longer than 15 bytes")]:
        code, out, err = run(["block", name, "192.0.2.7"], capsys)
        assert (code, out) == (2, "")
        (line,) = err.splitlines()
        assert words in line


NOT_UTF8 = os.fsdecode(b"p\xffq")  # as Python decodes a name that is not UTF-8 from argv


@pytest.mark.parametrize("verb", [["status"], ["attach"], ["detach"], ["block"], ["allow"],
                                  ["unblock"], ["stats"], ["events"], ["upgrade"]])
def test_an_interface_name_that_is_not_utf8_is_bad_input(
    verb: list[str], capsys: pytest.CaptureFixture[str], private_pin_root: Path
) -> None:
    extra = ["192.0.2.7"] if verb[0] in ("block", "allow", "unblock") else []
    code, out, err = run([*verb, NOT_UTF8, *extra], capsys)
    assert (code, out) == (2, "")
    assert err == ("pingkiller: 'p\\xffq' is not a valid interface name (letters, digits and "
                   "_ . @ : + - only)\n")
    assert not private_pin_root.exists()


def test_no_arguments_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert code == 2
    assert "Usage: pingkiller" in out and "attach" in out
    assert err == ""


def test_every_command_is_documented_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"attach", "detach", "block", "allow", "unblock", "status", "stats", "events"} <= set(COMMANDS)
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "Example" in out
    for command in COMMANDS:
        code, out, err = run([command, "--help"], capsys)
        assert (code, err) == (0, ""), command
        assert f"Usage: pingkiller {command}" in out
        example = [line for line in out.splitlines() if "Example" in line]
        assert example, f"`pingkiller {command} --help` shows no example"
        assert f"pingkiller {command}" in out.split(example[0], 1)[1], command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--version"], capsys)
    assert (code, out, err) == (0, f"pingkiller {pingkiller.__version__}\n", "")
    assert pingkiller.__version__.count(".") == 2


@pytest.mark.root
def test_demo_whose_sandbox_cannot_be_made_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], private_pin_root: Path
) -> None:
    from pingkiller.demo import sandbox

    monkeypatch.setattr(sandbox, "IP", "/bin/false")  # as `ip` fails in a chroot or a jail
    code, _out, err = run(["demo", "--duration", "1", "--json"], capsys)
    assert code == 1
    assert err.startswith("pingkiller: making the sandbox failed: /bin/false netns add ")
    assert "exit status 1 (it needs root, iproute2" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
