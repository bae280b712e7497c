"""help: what `pingkiller VERB --help` shows, as a verb. Imported only with typer."""

from __future__ import annotations

from typing import Annotated

import click
import typer

from pingkiller.cli.command import click_errors, unknown_verb, verb
from pingkiller.cli.options import arg
from pingkiller.cli.output import echo


def _complete_verbs(ctx: click.Context, incomplete: str) -> list[str]:
    root = ctx.find_root()
    group = root.command
    verbs = group.list_commands(root) if isinstance(group, click.Group) else []
    return [name for name in verbs if name.startswith(incomplete)]


@verb("help")
def help_verb(
    ctx: typer.Context,
    name: Annotated[str | None, arg(help="The verb to explain.", show_default=False,
                                    metavar="VERB", autocompletion=_complete_verbs)] = None,
) -> None:
    """Show pingkiller's help, or VERB's (what `pingkiller VERB --help` shows).

    Examples:

      pingkiller help

      pingkiller help attach
    """
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)
    if name is None:
        echo(root.get_help())
        return
    command = group.get_command(root, name)
    if command is None:
        raise click_errors().UsageError(unknown_verb(name, group.list_commands(root)), root)
    with click.Context(command, info_name=name, parent=root, **command.context_settings) as sub:
        echo(command.get_help(sub))
