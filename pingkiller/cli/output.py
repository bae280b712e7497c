"""Writing to stdout: plain lines, JSON documents and JSON lines."""

from __future__ import annotations

import sys


def echo(text: str) -> None:
    """click.echo(text). A line of printable ASCII (all status and block print) is written
    and flushed as click.echo would, without importing click."""
    if sys.stdout is not None and text.isascii() and text.isprintable():
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    import click

    click.echo(text)


def print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def json_line(data: object, *, err: bool = False) -> None:
    """``data`` as one line of JSON on stdout (or stderr), flushed."""
    import json

    out = sys.stderr if err else sys.stdout
    out.write(json.dumps(data) + "\n")
    out.flush()
