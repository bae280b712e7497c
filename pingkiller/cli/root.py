"""The options before any verb: --version and --lock-timeout."""

from __future__ import annotations

from typing import Annotated

from pingkiller.cli.options import opt
from pingkiller.cli.output import echo


def _version(value: bool) -> None:
    if value:
        import typer

        from pingkiller import __version__

        echo(f"pingkiller {__version__}")
        raise typer.Exit()


def _seconds(text: str) -> float:
    """--lock-timeout's value: seconds as the lock reads them (as its variable)."""
    from pingkiller.model.untrusted import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as err:
        import typer

        raise typer.BadParameter(str(err)) from None


def root(
    version: Annotated[
        bool, opt("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    lock_timeout: Annotated[
        float | None,
        opt("--lock-timeout", parser=_seconds, metavar="S", show_default=False,
            help="Commands that change attachments wait at most S seconds for another one's "
                 "pin lock, then fail (exit 1) naming it; 0 does not wait. Default: "
                 "PINGKILLER_LOCK_TIMEOUT, else 30."),
    ] = None,
) -> None:
    """Kill pings at the driver with XDP."""
    import pingkiller

    pingkiller.set_lock_timeout(lock_timeout)  # for this process (None: the variable, now)
