"""The man pages: docs/man/ is what pingkiller.manpages makes of the CLI now (the drift test),
one page per command, every page renders without a warning and carries its command's options,
and every --help names its page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import manpages

from pingkiller.cli import app, main
from pingkiller.cli.command import doc_path

MAN_DIR = Path(__file__).resolve().parents[3] / "docs" / "man"
PAGES = manpages.pages()


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            if not sub.hidden:
                yield from _commands(sub, f"{path} {name}")


COMMANDS = dict(_commands(typer.main.get_command(app), "pingkiller"))  # "pingkiller attach": ...
VERBS = sorted(path for path in COMMANDS if path != "pingkiller")


def page_of(path: str) -> str:
    return path.replace(" ", "-") + ".1"


def test_committed_pages_are_what_the_cli_makes_now() -> None:
    stale = manpages.stale(MAN_DIR, PAGES)
    assert stale == [], f"docs/man is stale ({', '.join(stale)}): run `make man` and commit docs/man"


def test_every_command_has_a_page() -> None:
    assert {"pingkiller attach", "pingkiller detach", "pingkiller status"} <= set(COMMANDS)
    assert set(PAGES) == {page_of(path) for path in COMMANDS}
    assert sorted(p.name for p in MAN_DIR.glob("*.1")) == sorted(PAGES)


def _groff(page: Path) -> subprocess.CompletedProcess[str]:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    return subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)],
                          capture_output=True, text=True, check=False)


def _man(page: Path) -> str:
    """The page as `man -l` shows it on an 80-column terminal, groff's warnings on."""
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed (apt-get install man-db)")
    done = subprocess.run([man, "--warnings=w", "-l", str(page)], capture_output=True, text=True,
                          check=False, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert (done.returncode, done.stderr) == (0, ""), page.name
    return done.stdout


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_without_warnings(name: str) -> None:
    done = _groff(MAN_DIR / name)
    assert (done.returncode, done.stderr) == (0, "")
    mandoc = shutil.which("mandoc")
    if mandoc is not None:  # stricter: -W warning also reports misused macros
        lint = subprocess.run([mandoc, "-Tlint", "-W", "warning", str(MAN_DIR / name)],
                              capture_output=True, text=True, check=False)
        assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_page_carries_the_options_of_its_command(path: str) -> None:
    command = COMMANDS[path]
    text = _man(MAN_DIR / page_of(path))
    sections = re.findall(r"^([A-Z][A-Z ]+)$", text, re.MULTILINE)
    assert sections[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    assert {"OPTIONS", "EXIT STATUS", "SEE ALSO"} <= set(sections)
    assert f"NAME {page_of(path)[:-2]} - " in " ".join(text.split())  # pingkiller-attach - attach
    options = text.split("\nOPTIONS\n", 1)[1]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for name in param.opts + param.secondary_opts:
                assert re.search(rf"(^|[ ,/]){re.escape(name)}\b", options, re.MULTILINE), (path, name)
            if param.help:  # the help as --help prints it (its first words; man fills lines)
                assert " ".join(param.help.split()[:3]) in " ".join(options.split()), (path, param.name)
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        assert argument.human_readable_name in text.split("\nSYNOPSIS\n", 1)[1], (path, argument.name)


@pytest.mark.parametrize("path", VERBS)
def test_verb_pages_show_the_examples_of_help(path: str) -> None:
    text = _man(MAN_DIR / page_of(path))
    examples = text.split("\nEXAMPLES\n", 1)[1].split("\nSEE ALSO\n", 1)[0]
    help_text = COMMANDS[path].help or ""
    shown = [line.strip() for line in help_text.split("Example", 1)[1].splitlines()
             if line.strip().startswith(("pingkiller", "sudo pingkiller"))]
    assert shown, path
    for line in shown:
        assert line in examples, (path, line)
    assert "pingkiller(1)" in text.split("\nSEE ALSO\n", 1)[1]


def test_every_help_names_its_man_page_and_document(capsys: pytest.CaptureFixture[str]) -> None:
    for path in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([*path.split()[1:], "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0
        assert f"man {page_of(path)[:-2]};" in out, path
        assert doc_path(path) in out, path


def test_json_help_names_the_page_that_holds_its_schema() -> None:
    for path, command in COMMANDS.items():
        option = next((p for p in command.params if "--json" in getattr(p, "opts", ())), None)
        own = manpages.DOC_SECTIONS.get(page_of(path)[:-2], ())
        if option is None:
            assert not any(s.title == "JSON OUTPUT" for s in own), path
            continue
        match = re.search(r"schema: man (pingkiller-\S+), (\S+)\)", option.help or "")
        if match is None:
            assert "schema" not in (option.help or "") and not own, path
            continue
        schema = [s for s in manpages.DOC_SECTIONS[match[1]] if s.title == "JSON OUTPUT"]
        assert schema and schema[0].file == match[2], path
        assert '.SH "JSON OUTPUT"' in PAGES[f"{match[1]}.1"], path
        if any(s.title == "JSON OUTPUT" for s in own):
            assert match[1] == page_of(path)[:-2], f"{path}: --json points at another page"


# --- the generator, on a made-up CLI -------------------------------------------------------

@click.group(help="A made-up CLI.\n\nExample:\n\n  pingkiller net show --all")
def _tool() -> None:
    pass


@_tool.group(help="Network things.")
def net() -> None:
    pass


@net.command(help=".hidden? No: a leading dot.\n\n'A leading quote, a back\\slash and --dashes.\n\n"
                  "\b\n  literal  kept\n    as is",
             epilog="Examples:\n\n  pingkiller net show eth0 --all")
@click.argument("iface", required=False)
@click.option("--all", "-a", "every", is_flag=True, help="Every one.")
@click.option("--rate", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
              help="At most N.")
@click.option("--kind", type=click.Choice(["x", "y"]), multiple=True, help="Which kinds.")
def show(iface: str | None, every: bool, rate: int, kind: tuple[str, ...]) -> None:
    pass


def test_nested_groups_get_pages_and_roff_is_escaped(tmp_path: Path) -> None:
    made = manpages.pages(_tool, version="9.9.9")
    assert sorted(made) == ["pingkiller-net-show.1", "pingkiller-net.1", "pingkiller.1"]
    show_page = made["pingkiller-net-show.1"]
    assert ".TH PINGKILLER\\-NET\\-SHOW 1" in show_page
    assert "\n\\&.hidden? No: a leading dot.\n" in show_page
    assert "\\(aqA leading quote, a back\\eslash and \\-\\-dashes." in show_page
    assert "\\fB\\-a\\fR, \\fB\\-\\-all\\fR" in show_page
    assert "[\\fB\\-\\-kind\\fR \\fBx\\fR|\\fBy\\fR]...\\&" in show_page
    assert "pingkiller\\-net\\fR(1)" in made["pingkiller.1"]  # COMMANDS and SEE ALSO
    assert "pingkiller\\-net\\-show\\fR(1)" in made["pingkiller-net.1"]
    manpages.write(tmp_path, made, date="2001-02-03")
    text = _man(tmp_path / "pingkiller-net-show.1")
    assert "pingkiller-net-show - .hidden? No: a leading dot" in text
    assert "'A leading quote, a back\\slash and --dashes." in text
    assert "  literal  kept\n" in text and "    as is" in text
    assert "-a, --all" in text and "--rate N" in text and "[default: 5; x>=0]" in text
    assert "pingkiller net show eth0 --all" in text.split("\nEXAMPLES\n", 1)[1]
    assert "2001-02-03" in text and "pingkiller 9.9.9" in text
    for name in made:
        assert _groff(tmp_path / name).stderr == ""


def test_write_keeps_dates_prunes_gone_pages_and_check_sees_drift(tmp_path: Path) -> None:
    made = manpages.pages(_tool, version="1.0.0")
    (tmp_path / "pingkiller-gone.1").write_text("old\n")
    written = manpages.write(tmp_path, made, date="2001-02-03")
    assert written == sorted([*made, "pingkiller-gone.1"])
    assert not (tmp_path / "pingkiller-gone.1").exists()
    assert manpages.write(tmp_path, made, date="2024-12-31") == []  # unchanged: dates stay
    assert '"2001-02-03"' in (tmp_path / "pingkiller.1").read_text()
    assert manpages.stale(tmp_path, manpages.pages(_tool, version="1.0.1")) == sorted(made)
    assert manpages.main(["--check", str(MAN_DIR)]) == 0
    assert manpages.main(["--check", str(tmp_path)]) == 1
