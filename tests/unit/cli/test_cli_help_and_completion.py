"""The CLI's help verb, its one "Did you mean", and shell completion of interfaces
(issue #14, item 6). No root, no kernel: the pin root is a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import typer
from cli_in_process import run
from click.shell_completion import ShellComplete
from typer.testing import CliRunner

from pingkiller.cli import app

COMMAND = typer.main.get_command(app)
ATTACHED_VERBS = ["detach", "upgrade", "block", "allow", "unblock", "status", "stats", "events"]


@pytest.fixture(autouse=True)
def pin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pin root holding the directories of two attachments (and a writer's temporary one)."""
    root = tmp_path / "pins"
    for name in ("pkc0", "pkc1", "=attach-1-pkc2"):
        (root / name).mkdir(parents=True)
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(root))
    return root



# --- help verb

def test_help_is_the_top_level_help() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["help"], prog_name="pingkiller")
    assert shown.exit_code == 0
    assert shown.output == runner.invoke(app, ["--help"], prog_name="pingkiller").output
    assert "Usage: pingkiller [OPTIONS] COMMAND" in shown.output and "help " in shown.output


@pytest.mark.parametrize("verb", ["attach", "events", "stats", "help"])
def test_help_verb_is_that_verbs_help(verb: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["help", verb], prog_name="pingkiller")
    assert shown.exit_code == 0
    assert shown.output == runner.invoke(app, [verb, "--help"], prog_name="pingkiller").output
    assert shown.output.startswith(f"Usage: pingkiller {verb} ")


def test_help_of_an_unknown_verb_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["help", "atach"], capsys)
    assert (code, out) == (2, "")
    assert err == ("pingkiller: No such command 'atach'. Did you mean 'attach' or 'detach'? "
                   "(see 'pingkiller --help')\n")


# --- did you mean, once

@pytest.mark.parametrize(("typo", "hint"), [
    ("atach", " Did you mean 'attach' or 'detach'?"),
    ("evnets", " Did you mean 'events'?"),
    ("frobnicate", ""),
])
def test_an_unknown_verb_says_did_you_mean_once(
    typo: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([typo], capsys)
    assert (code, out) == (2, "")
    assert err == f"pingkiller: No such command '{typo}'.{hint} (see 'pingkiller --help')\n"
    assert err.count("Did you mean") <= 1


# --- completion

def complete(args: list[str], incomplete: str) -> list[str]:
    """What click's completion machinery offers after ``pingkiller ARGS INCOMPLETE``."""
    completion = ShellComplete(COMMAND, {}, "pingkiller", "_PINGKILLER_COMPLETE")
    return [item.value for item in completion.get_completions(args, incomplete)]


@pytest.mark.parametrize("verb", ATTACHED_VERBS)
def test_verbs_on_attachments_complete_attached_interfaces(verb: str) -> None:
    assert complete([verb], "") == ["pkc0", "pkc1"]
    assert complete([verb], "pkc1") == ["pkc1"]
    assert complete([verb], "eth") == []


def test_attach_and_doctor_complete_the_interfaces_of_this_namespace() -> None:
    present = sorted(p.name for p in Path("/sys/class/net").iterdir())
    assert complete(["attach"], "") == present
    assert complete(["attach"], "lo") == [name for name in present if name.startswith("lo")]
    assert complete(["doctor", "--interface"], "") == present


def test_help_completes_verbs() -> None:
    assert complete(["help"], "st") == ["status", "stats"]


def test_completion_never_fails_on_an_unreadable_pin_root(
    pin_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(pin_root / "missing"))
    assert complete(["stats"], "") == []
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", "not/absolute")
    assert complete(["stats"], "") == []
    pin_root.chmod(0)
    try:
        monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(pin_root / "pkc0"))
        assert complete(["detach"], "") == []
    finally:
        pin_root.chmod(0o700)


def test_bash_completion_through_the_entry_point(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the script of `eval "$(_PINGKILLER_COMPLETE=source_bash pingkiller)"` asks."""
    monkeypatch.setenv("_PINGKILLER_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "pingkiller events pk")
    monkeypatch.setenv("COMP_CWORD", "2")
    code, out, _ = run([], capsys)
    assert (code, out.split()) == (0, ["pkc0", "pkc1"])
    monkeypatch.setenv("_PINGKILLER_COMPLETE", "source_bash")
    code, out, _ = run([], capsys)
    assert code == 0 and "complete -o default -F _pingkiller_completion pingkiller" in out


def test_completion_is_offered_by_the_parameter() -> None:
    """Typer turns the callbacks into click's ``Parameter.shell_complete``."""
    events = COMMAND.commands["events"]  # type: ignore[attr-defined]
    (ifname,) = [p for p in events.params if p.name == "ifname"]
    ctx = click.Context(events, info_name="events")
    assert [item.value for item in ifname.shell_complete(ctx, "pkc")] == ["pkc0", "pkc1"]
