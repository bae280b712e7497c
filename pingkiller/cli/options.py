"""The options and arguments verbs share, as typer declarations made on first use.

Verb annotations name these (``Annotated[str, interface()]``); typer evaluates them only
when it makes the app, so nothing here imports typer before that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pingkiller.model.words import DIRECTIONS, HOOKS

Declared = Any  # a typer.Option or typer.Argument


def opt(*declarations: str, **settings: Any) -> Declared:
    """``typer.Option(...)``."""
    import typer

    return typer.Option(*declarations, **settings)


def arg(**settings: Any) -> Declared:
    """``typer.Argument(...)``."""
    import typer

    return typer.Argument(**settings)


def choice(words: list[str]) -> Any:
    """An option taking one of the library's words for a setting (pingkiller.model.enums)."""
    import click

    return click.Choice(words)


def json_flag(schema: str | None = None, docs: str = "docs/cli.md") -> Declared:
    """--json; SCHEMA is the verb whose man page (and DOCS) describes the output."""
    where = f" (schema: man pingkiller-{schema}, {docs})" if schema else ""
    return opt("--json", help=f"Machine-readable output{where}.")


def complete_interfaces(incomplete: str) -> list[str]:
    """Shell completion: the interfaces of this network namespace (/sys/class/net)."""
    try:
        names = [entry.name for entry in Path("/sys/class/net").iterdir()]
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


def complete_attached(incomplete: str) -> list[str]:
    """Shell completion: the interfaces pingkiller is attached to (their pin directories:
    a listing, no BPF call). Never fails: nothing to offer is an empty list."""
    try:
        import pingkiller

        names = sorted({point.ifname for point in pingkiller.points()})
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]


def interface(complete: Any = complete_attached, help_text: str = "Interface name, e.g. eth0.",
              ) -> Declared:
    """IFACE, completed by ``complete`` (the interfaces here, or those attached)."""
    return arg(help=help_text, show_default=False, metavar="IFACE", autocompletion=complete)


def hook_filter() -> Declared:
    """--hook for verbs that act on an interface's attachments: which hook's."""
    return opt("--hook", help="Only the attachment at this hook (default: every attachment of "
                              "IFACE).", click_type=choice(HOOKS.words), show_default=False)


def direction_filter() -> Declared:
    """--direction for verbs that act on an interface's attachments: which tc direction's."""
    return opt("--direction", help="Only the tc attachment of this direction (default: both).",
               click_type=choice(DIRECTIONS.words), show_default=False)


def address_arguments() -> Declared:
    return arg(help="IPv4/IPv6 addresses or prefixes.", show_default=False)


def from_file_option() -> Declared:
    return opt("--from-file", "-f", help="Read addresses/prefixes from FILE, one per line "
                                         "(# comments).", dir_okay=False, show_default=False)
