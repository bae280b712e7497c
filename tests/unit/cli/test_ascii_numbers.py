"""Numbers in options are ASCII digits only: int() and float() take any Unicode digit
(``--event-rate \uff11\uff10``), ``1_000``, spaces, ``inf`` and ``nan``; the CLI refuses them all in
one line, exit 2, for every numeric option of every verb (found by walking the app, so
an option added later is covered too).
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import typer
from cli_in_process import run

from pingkiller.cli import app

ROOT = typer.main.get_command(app)
NUMBER_TYPES = (click.types.IntParamType, click.types.FloatParamType)

pytestmark = pytest.mark.usefixtures("private_pin_root")



def _commands() -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = [([], ROOT)]
    assert isinstance(ROOT, click.Group)
    found += [([name], command) for name, command in sorted(ROOT.commands.items())]
    return found


NUMERIC = [
    (path, command, param)
    for path, command in _commands()
    for param in command.params
    if isinstance(param, click.Option) and isinstance(param.type, NUMBER_TYPES)
]


def _argv(path: list[str], command: click.Command, option: str, value: str) -> list[str]:
    """``pingkiller VERB ARGS... OPTION VALUE`` with a dummy for each required argument."""
    arguments = [p for p in command.params if isinstance(p, click.Argument) and p.required]
    return [*path, *("pkunit0" for _ in arguments), option, value]



def test_the_walk_finds_the_numeric_options() -> None:
    names = {f"{' '.join(path)} {param.opts[0]}" for path, _, param in NUMERIC}
    assert {"attach --event-rate", "stats --interval", "events --count", "events --timeout",
            "exporter --max-rule-series", "demo --duration"} <= names


@pytest.mark.parametrize(("path", "command", "param"), NUMERIC,
                         ids=[f"{' '.join(p)} {o.opts[0]}" for p, _, o in NUMERIC])
@pytest.mark.parametrize("value", ["\uff11\uff10", "\u0663", "1_0", " 5", "0x10", "nan", "inf", "1" * 40])
def test_every_numeric_option_takes_ascii_digits_only(
    path: list[str], command: click.Command, param: click.Option, value: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(_argv(path, command, param.opts[0], value), capsys)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith(f"pingkiller: Invalid value for '{param.opts[0]}'")
    assert "is not a whole number" in line or "is not a number" in line
    assert all(" " <= char <= "~" for char in line), line


@pytest.mark.parametrize(("path", "command", "param"), NUMERIC,
                         ids=[f"{' '.join(p)} {o.opts[0]}" for p, _, o in NUMERIC])
def test_ascii_numbers_and_defaults_still_convert(
    path: list[str], command: click.Command, param: click.Option
) -> None:
    ctx = click.Context(command)
    default = param.get_default(ctx)
    if default is not None:
        assert param.type_cast_value(ctx, default) == default
    low = getattr(param.type, "min", None)
    text = str(int(low) + 1 if low is not None else 7)
    assert param.type_cast_value(ctx, text) == float(text)


def test_range_errors_are_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["stats", "pkunit0", "--interval", "0"], capsys)
    assert code == 2 and "0.0 is not in the range x>=0.1" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--lock-timeout", "\uff15", "status"],
        ["exporter", "--listen", "127.0.0.1:\uff11\uff19\uff14\uff18\uff11"],
        ["exporter", "--listen", "127.0.0.1:019477"],
        ["exporter", "--listen", "127.0.0.1: 9477"],
        ["attach", "pkunit0", "--mode", "\uff4e\uff41\uff54\uff49\uff56\uff45"],
        ["attach", "pkunit0", "--icmp", "x" * 100_000],
    ],
)
def test_other_values_are_ascii_too_and_quoted_short(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert all(" " <= char <= "~" for char in line), line
    assert len(line) < 300


def test_the_lock_timeout_variable_is_ascii_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PINGKILLER_LOCK_TIMEOUT", "\uff15")
    code, _, err = run(["status"], capsys)
    assert code == 2
    assert err == ("pingkiller: PINGKILLER_LOCK_TIMEOUT='\\uff15' is not a number of seconds "
                   "(digits and an optional decimal point, e.g. 30 or 2.5; 0 does not wait): "
                   "fix or unset the variable\n")


def test_the_file_limit_variables_are_ascii(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("192.0.2.1\n")
    monkeypatch.setenv("PINGKILLER_RULE_FILE_LIMIT", "\uff11M")
    code, _, err = run(["block", "pkunit0", "-f", str(rules)], capsys)
    assert code == 2
    assert err.startswith("pingkiller: PINGKILLER_RULE_FILE_LIMIT='\\uff11M' is not a size")
